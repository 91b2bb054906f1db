-- Persistence for imported templates, user bindings, small state and
-- campaigns (docs/architecture.md §8): the interface every backend implements, and
-- store.open, which picks the backend: SQLite (store/sqlite/) for a file
-- path, PostgreSQL (store/postgres/) for a postgresql:// or postgres://
-- URL. Each is one line of store.backends: nothing above alipay.store
-- names a backend.
--
--   local store = require "alipay.store"
--   local st, err, detail = store.open("/var/lib/alipay/state.db")  -- a string is a SQLite file
--   local st, err = store.open("postgresql://alipay@db.example:5432/alipay")  -- a URL is PostgreSQL
--                                           -- (the password in the URL, or in PGPASSWORD)
--   local st, err = store.open{ path = "state.db", driver = "sqlite", busy_timeout_ms = 5000 }
--   local st, err = store.open{ path = "state.db", readonly = true }   -- reading only
--   local st, err = store.open{ path = "shared.db", adopt = true }     -- add our tables to another's file
--
-- Options every backend honours:
--   readonly  the store is only read: an existing store is opened without
--             any write (not created, not migrated: its schema must be this
--             version's, else kind "state"), so it serves a file on a
--             read-only mount or one this user may not write. Every method
--             that writes then fails (kind "store") naming the file.
--   adopt     a file (a database's current schema) that holds another
--             application's tables and no lua-alipay schema is refused (kind
--             "state", naming the file and one of its tables) rather than
--             silently given our tables; adopt = true shares it on purpose.
--
-- Conventions of every method: a failure returns nil, err, detail
-- (docs/errors.md): err is a one-line string that names the operation
-- ("binding_put: database is locked") and never contains the values;
-- detail.kind is "store" (the database failed), "input" (a bad argument),
-- "state" (the store is closed, or a campaign id is taken) or "io" (its
-- directory is missing). "Not found" is nil WITHOUT an error; deletions and
-- updates return the number of rows they changed. Times are integer Unix
-- seconds unless a name ends in _ms. Backends own their schema: each keeps
-- numbered migrations and applies them in open().
--
-- Shapes:
--   t (template)  {channel=, id=, name=?, keywords={...in order...}, kind="alipaylife"|"alipaymini",
--                  library_id=?, status="valid"|"invalid" (default "valid"), invalid_code=?,
--                  invalid_at=?, imported_at=? (default now)}
--   c (campaign)  {id=, channel=, template=, kind=, spec=<JSON text>, status="importing"|"created"|
--                  "running"|"completed"|"stopped", stop_reason=?, runner=?, heartbeat_at=?, total=,
--                  created_at=, started_at=?, finished_at=?, lease_token= (0 until first claimed)}
--   r (recipient) {line=, userid=?, id_type=?, alipay_id=?, vars=<JSON text>?, status="pending"|"inflight"|
--                  "sent"|"failed"|"skipped"|"unknown", checked=bool, dup_of=?, code=?, sub_code=?, msg=?,
--                  attempts=, tries=, uncertain=bool, next_attempt_at=<Unix ms>, updated_at=,
--                  unknown_reason=? (status unknown: alipay.campaign.outcome.UNKNOWN_REASONS),
--                  lease_token= (the token it was last marked inflight under)}
--
-- Fencing (docs/messaging.md §6.4): a campaign's lease_token only grows;
-- campaign_acquire increments it, and every transition a run makes names
-- the token it holds: a runner whose token was superseded changes nothing.
-- The methods marked [fenced] check the token in the same transaction as
-- their writes, atomically with respect to campaign_acquire (SQLite: BEGIN
-- IMMEDIATE; PostgreSQL: lock the campaign row, FOR KEY SHARE against an
-- acquire's FOR UPDATE, so that several claimers of one campaign run at
-- once, docs/architecture.md §8). The unfenced
-- recipient_update and campaign_update are for imports, tools and specs.
local errors = require "alipay.errors"
local url = require "alipay.store.url"

local store = {}

-- { name, contract } in order. Specs check that every backend has each
-- method and that campaign/ and messaging/ call no other (spec/unit/55).
store.methods = {
  -- templates (one row per channel code + template id)
  { "template_put", "(t) -> true; upsert" },
  { "template_get", "(channel, id) -> t | nil" },
  { "template_list", "(channel?) -> {t, ...} ordered by channel, then id" },
  { "template_set_status", "(channel, id, status, code?, at?) -> 0 | 1" },
  { "template_delete", "(channel, id) -> 0 | 1" },
  -- bindings (business user id + channel code -> Alipay id and its type)
  { "binding_put", "(userid, channel, alipay_id, id_type) -> true; upsert, id_type user_id | open_id" },
  { "binding_delete", "(userid, channel?) -> n; channel nil: every channel of the user" },
  { "binding_get", "(userid, channel) -> {alipay_id=, id_type=} | nil" },
  { "bindings_of", "(userid) -> {[channel] = {alipay_id=, id_type=}}, empty when none" },
  { "binding_count", "(channel?) -> n" },
  -- meta (small key-value state: cursors such as a resumable follower export)
  { "meta_get", "(key) -> string | nil" },
  { "meta_put", "(key, value) -> true; value a string or number (read back as a string), nil deletes" },
  -- campaigns
  { "campaign_insert", "(c) -> true; an existing id fails with kind state" },
  { "campaign_get", "(id) -> c | nil" },
  { "campaign_list", "() -> {c, ...} newest created_at first" },
  { "campaign_update", "(c) -> n; writes status, stop_reason, runner, heartbeat_at, total, started_at, "
    .. "finished_at of c.id" },
  { "campaign_acquire", "(id, token, runner, at) -> new token | false; [fenced] only while the campaign's "
    .. "lease_token is token: lease_token + 1, status running, runner, heartbeat_at = at, started_at if unset, "
    .. "stop_reason and finished_at cleared; false when another claim came first" },
  { "campaign_heartbeat", "(id, token, at) -> true | false; [fenced] sets heartbeat_at only while token is "
    .. "current; false: superseded" },
  { "campaign_release", "(id, token, status, stop_reason, at) -> true | false; [fenced] ends a run: status, "
    .. "stop_reason, runner cleared, heartbeat_at = at, finished_at = at when completed or stopped" },
  { "campaign_delete", "(id) -> n; the campaign and all its recipients" },
  -- recipients of a campaign (one row per audience line)
  { "recipients_add", "(id, {r, ...}) -> n stored, in order; a repeat of a stored id_type + alipay_id is "
    .. "stored skipped, code DUPLICATE, dup_of and msg \"duplicate of line N\"" },
  { "recipients_due", "(id, now_ms, limit) -> {r, ...} pending with next_attempt_at <= now_ms, in line order" },
  { "recipients_next_due", "(id) -> the smallest next_attempt_at of pending rows | nil when none pending" },
  { "recipient_get", "(id, line) -> r | nil" },
  { "recipient_update", "(id, r) -> n; writes status, checked, code, sub_code, msg, attempts, tries, "
    .. "uncertain, next_attempt_at, updated_at, unknown_reason (when status is unknown) of r.line; unfenced" },
  { "recipients_claim", "(id, token, now_ms, limit, at) -> {r, ...} | false; [fenced] in ONE transaction: "
    .. "reads up to limit pending rows due by now_ms in line order and marks each pending -> inflight (only "
    .. "from pending) under token, attempts + 1 when checked, updated_at = at; returns the rows as marked; "
    .. "false (nothing marked) when token is not current" },
  { "recipients_finish", "(id, token, {r, ...}) -> written, refused; [fenced] writes each r as recipient_update "
    .. "does, only where the row is still inflight under token and token is current; refused = rows not written" },
  { "recipients_interrupted", "(id, token, reason, msg, at) -> n | false; [fenced] every inflight row (any "
    .. "token): a checked one becomes unknown with reason, code INTERRUPTED, msg, uncertain, due now (n "
    .. "counts these); an unchecked one (a subscription check) pending; false when token is not current" },
  { "recipients_retry_unknown", "(id, at, reasons?) -> n; unknown rows (reasons: only those whose "
    .. "unknown_reason is listed) become pending, uncertain, due now; unknown_reason is kept (why an earlier "
    .. "attempt is uncertain)" },
  { "recipient_unknown_reasons", "(id) -> {[reason] = n} of unknown rows; \"unrecorded\" for rows without one" },
  { "recipients_clear_backoff", "(id) -> n; pending rows become due now" },
  { "recipient_counts", "(id) -> {[status] = n} with every status, 0 when none" },
  { "recipient_codes", "(id) -> {{status=, code=, sub_code=, count=}, ...} of finished rows, by status, "
    .. "most frequent first" },
  { "recipients_page", "(id, after_line, limit) -> {r, ...} with line > after_line, in line order (export)" },
  -- transactions and lifetime
  { "transaction", "(fn) -> fn's results; fn(store) runs atomically: an error raised by fn rolls back and is "
    .. "re-raised as it was, returning (even nil, err) commits; nested calls are savepoints (an inner failure "
    .. "undoes only the inner part); failing to begin or commit raises" },
  { "close", "() -> true; idempotent, later calls fail with kind state" },
}

-- The method names alone, in order.
store.interface = {}
for i, m in ipairs(store.methods) do store.interface[i] = m[1] end

-- Backend name -> module. Data, so a backend can be registered from outside
-- (store.backends.mine = "my.store"); `drivers` is the older name of the
-- same table.
store.backends = {
  sqlite = "alipay.store.sqlite",
  postgres = "alipay.store.postgres",
}
store.drivers = store.backends

-- Whether a store location is a URL (a database server) rather than a
-- file path, and the form of a location that may be shown: a URL without
-- its password. Every message that names a store uses store.display.
store.is_url = url.is_url
store.display = url.redact

-- store.missing(st) -> the interface methods st lacks, in interface order
-- ({} for a complete store).
function store.missing(st)
  local lacking = {}
  for _, name in ipairs(store.interface) do
    if type(st) ~= "table" or type(st[name]) ~= "function" then lacking[#lacking + 1] = name end
  end
  return lacking
end

-- store.open(path | url | {path= (or url=), driver=, ...}) -> store | nil, err, detail.
-- Without a driver, the location picks it: a URL by its scheme (alipay.store.url),
-- anything else is an SQLite file. The backend's module has open(opts) ->
-- store | nil, err, detail.
function store.open(opts)
  if type(opts) == "string" then opts = { path = opts } end
  if type(opts) ~= "table" then
    return errors.fail("input", "store.open: expected a file path, a URL or a table {path=, driver=}")
  end
  local name = opts.driver
  if name == nil then
    local why
    local location = opts.url or opts.path
    name, why = url.backend(location)
    if not name then return errors.fail("input", ("store.open: %s: %s"):format(url.redact(location), why)) end
  end
  local module_name = store.backends[name]
  if not module_name then
    local known = {}
    for k in pairs(store.backends) do known[#known + 1] = k end
    table.sort(known)
    return errors.fail("input", ("store.open: unknown driver %q (known: %s)")
      :format(tostring(name), table.concat(known, ", ")))
  end
  local ok, backend = pcall(require, module_name)
  if not ok then
    return errors.fail("store", ("store.open: the %s driver cannot be loaded: %s"):format(name, tostring(backend)))
  end
  return backend.open(opts)
end

return store
