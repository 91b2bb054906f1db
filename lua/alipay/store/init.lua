-- Persistence for imported templates, user bindings and small state
-- (docs/architecture.md §8): an interface plus the choice of a driver. Only SQLite
-- exists now; a shared store (Redis) for campaigns spread over several
-- workers implements the same methods later.
--
--   local store = require "alipay.store"
--   local st, err, detail = store.open("/var/lib/alipay/state.db")  -- SQLite file
--   local st, err = store.open{ path = "state.db", driver = "sqlite", busy_timeout_ms = 5000 }
--
-- The interface every driver implements (store.interface lists the names):
--
--   Conventions: a failure returns nil, err, detail (docs/errors.md): err is a
--   one-line string that names the operation ("binding_put: database is
--   locked") and never contains the values; detail.kind is "store" (the
--   database failed), "input" (a bad argument), "state" (the store is closed)
--   or "io" (its directory is missing). "Not found" is nil WITHOUT an error;
--   deletions and status updates return the number of rows they changed.
--   Times are integer Unix seconds.
--
--   templates  (one row per channel code + template id)
--     template_put(t) -> true                 upsert; t = {channel=, id=, name=?, keywords={...in order...},
--                                               kind="alipaylife"|"alipaymini", library_id=?,
--                                               status="valid"|"invalid" (default "valid"), invalid_code=?,
--                                               invalid_at=?, imported_at=? (default now)}
--     template_get(channel, id) -> t | nil    the same fields as put
--     template_list(channel?) -> {t, ...}      ordered by channel, then id
--     template_set_status(channel, id, status, code, at) -> 0 | 1
--     template_delete(channel, id) -> 0 | 1
--   bindings   (business user id + channel code -> Alipay id and its type)
--     binding_put(userid, channel, alipay_id, id_type) -> true     upsert; id_type "user_id"|"open_id"
--     binding_delete(userid, channel?) -> n    channel nil: every channel of the user
--     binding_get(userid, channel) -> {alipay_id=, id_type=} | nil
--     bindings_of(userid) -> {[channel] = {alipay_id=, id_type=}}  (empty table when none)
--     binding_count(channel?) -> n
--   meta       (small key-value state: cursors such as a resumable follower export)
--     meta_get(key) -> string | nil
--     meta_put(key, value) -> true            value a string or number (read back as a string);
--                                               nil deletes the key
--   transactions and lifetime
--     transaction(fn) -> fn's results          fn(store) runs atomically. An error raised by fn rolls
--                                               back and is re-raised as it was; returning (even nil,
--                                               err) commits. Nested calls are savepoints: an inner
--                                               failure undoes only the inner part. Failing to begin
--                                               or commit raises too ("transaction: database is locked").
--     close() -> true                          idempotent; later calls fail with "... the store is closed"
local errors = require "alipay.errors"

local store = {}

store.interface = {
  "template_put", "template_get", "template_list", "template_set_status", "template_delete",
  "binding_put", "binding_delete", "binding_get", "bindings_of", "binding_count",
  "meta_get", "meta_put",
  "transaction", "close",
}

-- Driver name -> module. Data, so a driver can be registered from outside:
-- store.drivers.redis = "myapp.store.redis".
store.drivers = {
  sqlite = "alipay.store.sqlite",
}

-- store.open(path | {path=, driver=, ...}) -> store | nil, err, detail
function store.open(opts)
  if type(opts) == "string" then opts = { path = opts } end
  if type(opts) ~= "table" then
    return errors.fail("input", "store.open: expected a file path or a table {path=, driver=}")
  end
  local name = opts.driver or "sqlite"
  local module_name = store.drivers[name]
  if not module_name then
    local known = {}
    for k in pairs(store.drivers) do known[#known + 1] = k end
    table.sort(known)
    return errors.fail("input", ("store.open: unknown driver %q (known: %s)")
      :format(tostring(name), table.concat(known, ", ")))
  end
  local ok, driver = pcall(require, module_name)
  if not ok then
    return errors.fail("store", ("store.open: the %s driver cannot be loaded: %s"):format(name, tostring(driver)))
  end
  return driver.open(opts)
end

return store
