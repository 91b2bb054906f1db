-- Campaign state in the SQLite store (docs/architecture.md §8, docs/messaging.md §6.4): one row per
-- campaign and one per audience line, so that a run can be killed at any
-- instant and resumed without losing or re-sending anyone.
--
-- store/sqlite/init.lua puts these methods on every SQLite store; the
-- tables are migration 002 of store/sqlite/migrations.lua. Callers keep to
-- the contracts of store/init.lua (the interface); what is listed here and
-- not there (recipient_add, recipient_add_duplicate) is this backend's own.
--
-- Methods (same conventions as store/init.lua: nil, err,
-- detail on failure with err naming the operation; "not found" is nil without an
-- error; integer Unix seconds unless a name ends in _ms):
--   campaign_insert(c) -> true | nil, err, d      c = {id=, channel=, template=, kind=, spec=<JSON text>,
--                                                  status=, created_at=}; an existing id is an error
--   campaign_get(id) -> c | nil                    every column (see campaign_from_row)
--   campaign_list() -> {c, ...}                     newest first
--   campaign_update(c) -> n                         writes status, stop_reason, runner, heartbeat_at,
--                                                  total, started_at, finished_at of c.id
--   campaign_acquire(id, token, runner, at) -> token + 1 | false   the claim: only from lease_token = token
--   campaign_heartbeat(id, token, at) -> bool      only while token is the campaign's lease_token
--   campaign_release(id, token, status, reason, at) -> bool   the end of a run, same condition
--   campaign_delete(id) -> n                        the campaign and its recipients
--   recipient_add(id, r) -> true | duplicate_line  r = {line=, userid=, id_type=, alipay_id=, vars=,
--                                                  status=, checked=, code=, sub_code=, msg=, updated_at=};
--                                                  a second line with the same id_type + alipay_id is
--                                                  not added: the first one's line is returned
--   recipient_add_duplicate(id, r, first_line) -> true   stored skipped, "duplicate of line N"
--   recipients_add(id, rows) -> n                  recipient_add for each row in order, a duplicate
--                                                  stored by recipient_add_duplicate; n rows stored
--   recipients_due(id, now_ms, limit) -> rows      pending, due, in line order
--   recipients_next_due(id) -> Unix ms of the earliest pending row | nil (none pending)
--   recipient_get(id, line) -> row | nil
--   recipient_update(id, row) -> n                  writes the mutable fields of row (see SQL.update); unfenced
--   recipients_claim(id, token, now_ms, limit, at) -> rows | false   due pending rows read and marked
--                                                  inflight under token, in one transaction
--   recipients_finish(id, token, rows) -> written, refused   only rows still inflight under token
--   recipients_interrupted(id, token, reason, msg, at) -> n | false   every inflight row becomes unknown
--                                                  (reason, code INTERRUPTED); a subscription check pending
--   recipients_retry_unknown(id, at, reasons?) -> n   unknown rows (of those reasons) become pending again
--   recipient_unknown_reasons(id) -> {reason = n}
--   recipients_clear_backoff(id) -> n              pending rows become due now
--   recipient_counts(id) -> {status = n}
--   recipient_codes(id) -> {{status=, code=, sub_code=, count=}, ...}
--   recipients_page(id, after_line, limit) -> rows  every row, in line order (export)
local errors = require "alipay.errors"

local M = {}

-- ---- statements ----

local CAMPAIGN_COLUMNS = [[id, channel, template, kind, spec, status, stop_reason, runner,
  CAST(heartbeat_at AS TEXT) AS heartbeat_at, CAST(total AS TEXT) AS total,
  CAST(created_at AS TEXT) AS created_at, CAST(started_at AS TEXT) AS started_at,
  CAST(finished_at AS TEXT) AS finished_at, CAST(lease_token AS TEXT) AS lease_token]]

-- Integer columns are read as text (lua-dbi reads INTEGER as a 32-bit int).
-- ORDER BY and WHERE name them through the table: a bare name would be the
-- text alias, which sorts "10" before "2".
local RECIPIENT_COLUMNS = [[CAST(line AS TEXT) AS line, userid, id_type, alipay_id, vars, status,
  CAST(checked AS TEXT) AS checked, CAST(dup_of AS TEXT) AS dup_of, code, sub_code, msg,
  CAST(attempts AS TEXT) AS attempts, CAST(tries AS TEXT) AS tries, CAST(uncertain AS TEXT) AS uncertain,
  CAST(next_attempt_at AS TEXT) AS next_attempt_at, CAST(updated_at AS TEXT) AS updated_at,
  unknown_reason, CAST(lease_token AS TEXT) AS lease_token]]

local SQL = {
  campaign_insert = [[
    INSERT INTO campaigns (id, channel, template, kind, spec, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)]],
  campaign_exists = "SELECT id FROM campaigns WHERE id = ?",
  campaign_get = "SELECT " .. CAMPAIGN_COLUMNS .. " FROM campaigns WHERE id = ?",
  campaign_list = "SELECT " .. CAMPAIGN_COLUMNS
    .. " FROM campaigns ORDER BY campaigns.created_at DESC, campaigns.rowid DESC",
  campaign_update = [[
    UPDATE campaigns SET status = ?, stop_reason = ?, runner = ?, heartbeat_at = ?, total = ?,
      started_at = ?, finished_at = ? WHERE id = ?]],
  -- The lease (fencing): each statement names the token it expects, so a
  -- runner whose token was superseded changes nothing, whatever it believes.
  campaign_token = "SELECT CAST(lease_token AS TEXT) AS token FROM campaigns WHERE id = ?",
  campaign_acquire = [[
    UPDATE campaigns SET status = 'running', stop_reason = NULL, finished_at = NULL, runner = ?, heartbeat_at = ?,
      started_at = coalesce(started_at, ?), lease_token = lease_token + 1
    WHERE id = ? AND lease_token = ?]],
  campaign_heartbeat = "UPDATE campaigns SET heartbeat_at = ? WHERE id = ? AND lease_token = ?",
  campaign_release = [[
    UPDATE campaigns SET status = ?, stop_reason = ?, runner = NULL, heartbeat_at = ?, finished_at = ?
    WHERE id = ? AND lease_token = ?]],
  campaign_delete = "DELETE FROM campaigns WHERE id = ?",
  recipients_delete = "DELETE FROM campaign_recipients WHERE campaign = ?",

  recipient_add = [[
    INSERT INTO campaign_recipients (campaign, line, userid, id_type, alipay_id, vars, status, checked,
      code, sub_code, msg, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (campaign, id_type, alipay_id) WHERE dup_of IS NULL AND alipay_id IS NOT NULL DO NOTHING]],
  recipient_first = [[
    SELECT CAST(line AS TEXT) AS line FROM campaign_recipients
    WHERE campaign = ? AND id_type = ? AND alipay_id = ? AND dup_of IS NULL]],
  recipient_add_duplicate = [[
    INSERT INTO campaign_recipients (campaign, line, userid, id_type, alipay_id, vars, status, checked,
      dup_of, code, msg, updated_at)
    VALUES (?, ?, ?, ?, ?, NULL, 'skipped', 1, ?, 'DUPLICATE', ?, ?)]],
  recipients_due = "SELECT " .. RECIPIENT_COLUMNS .. [[ FROM campaign_recipients
    WHERE campaign = ? AND status = 'pending' AND next_attempt_at <= ?
    ORDER BY campaign_recipients.line LIMIT ?]],
  recipients_next_due = [[
    SELECT CAST(min(next_attempt_at) AS TEXT) AS at FROM campaign_recipients
    WHERE campaign = ? AND status = 'pending']],
  recipient_get = "SELECT " .. RECIPIENT_COLUMNS .. " FROM campaign_recipients WHERE campaign = ? AND line = ?",
  recipient_update = [[
    UPDATE campaign_recipients SET status = ?, checked = ?, code = ?, sub_code = ?, msg = ?, attempts = ?,
      tries = ?, uncertain = ?, next_attempt_at = ?, updated_at = ?, unknown_reason = ?
    WHERE campaign = ? AND line = ?]],
  -- pending -> inflight, one row, under the run's token. A subscription
  -- check (checked = 0) is a read: it does not count as a send attempt.
  recipient_claim = [[
    UPDATE campaign_recipients SET status = 'inflight', attempts = attempts + checked, lease_token = ?,
      updated_at = ?
    WHERE campaign = ? AND line = ? AND status = 'pending']],
  -- inflight -> its result, only for a row still inflight under this token.
  recipient_finish = [[
    UPDATE campaign_recipients SET status = ?, checked = ?, code = ?, sub_code = ?, msg = ?, attempts = ?,
      tries = ?, uncertain = ?, next_attempt_at = ?, updated_at = ?, unknown_reason = ?
    WHERE campaign = ? AND line = ? AND status = 'inflight' AND lease_token = ?]],
  -- Rows left inflight by a run that ended without their answer: a send
  -- may have been delivered (unknown, with the reason); a subscription
  -- check sent nothing (pending again).
  recipients_interrupted = [[
    UPDATE campaign_recipients SET status = 'unknown', code = 'INTERRUPTED', sub_code = NULL, msg = ?, uncertain = 1,
      next_attempt_at = 0, updated_at = ?, unknown_reason = ?
    WHERE campaign = ? AND status = 'inflight' AND checked = 1]],
  recipients_interrupted_checks = [[
    UPDATE campaign_recipients SET status = 'pending', next_attempt_at = 0, updated_at = ?
    WHERE campaign = ? AND status = 'inflight' AND checked = 0]],
  recipients_retry_unknown = [[
    UPDATE campaign_recipients SET status = 'pending', uncertain = 1, next_attempt_at = 0, updated_at = ?
    WHERE campaign = ? AND status = 'unknown']],
  recipients_retry_unknown_reason = [[
    UPDATE campaign_recipients SET status = 'pending', uncertain = 1, next_attempt_at = 0, updated_at = ?
    WHERE campaign = ? AND status = 'unknown' AND unknown_reason = ?]],
  recipient_unknown_reasons = [[
    SELECT unknown_reason, CAST(count(*) AS TEXT) AS n FROM campaign_recipients
    WHERE campaign = ? AND status = 'unknown' GROUP BY unknown_reason]],
  recipients_clear_backoff = [[
    UPDATE campaign_recipients SET next_attempt_at = 0
    WHERE campaign = ? AND status = 'pending' AND next_attempt_at > 0]],
  recipient_counts = [[
    SELECT status, CAST(count(*) AS TEXT) AS n FROM campaign_recipients WHERE campaign = ? GROUP BY status]],
  recipient_codes = [[
    SELECT status, code, sub_code, CAST(count(*) AS TEXT) AS n FROM campaign_recipients
    WHERE campaign = ? AND status IN ('sent', 'failed', 'skipped', 'unknown')
    GROUP BY status, code, sub_code ORDER BY status, count(*) DESC, code, sub_code]],
  recipients_page = "SELECT " .. RECIPIENT_COLUMNS .. [[ FROM campaign_recipients
    WHERE campaign = ? AND campaign_recipients.line > ? ORDER BY campaign_recipients.line LIMIT ?]],
}
M.SQL = SQL

local STATUSES = { "pending", "inflight", "sent", "failed", "skipped", "unknown" }
M.STATUSES = STATUSES

-- ---- rows ----

local function to_integer(text)
  local n = tonumber(text)
  if n == nil then return nil end
  return math.tointeger(math.floor(n))
end

local function campaign_from_row(row)
  return {
    id = row.id, channel = row.channel, template = row.template, kind = row.kind, spec = row.spec,
    status = row.status, stop_reason = row.stop_reason, runner = row.runner,
    heartbeat_at = to_integer(row.heartbeat_at), total = to_integer(row.total) or 0,
    created_at = to_integer(row.created_at), started_at = to_integer(row.started_at),
    finished_at = to_integer(row.finished_at), lease_token = to_integer(row.lease_token) or 0,
  }
end

local function recipient_from_row(row)
  return {
    line = to_integer(row.line), userid = row.userid, id_type = row.id_type, alipay_id = row.alipay_id,
    vars = row.vars, status = row.status, checked = to_integer(row.checked) == 1,
    dup_of = to_integer(row.dup_of), code = row.code, sub_code = row.sub_code, msg = row.msg,
    attempts = to_integer(row.attempts) or 0, tries = to_integer(row.tries) or 0,
    uncertain = to_integer(row.uncertain) == 1, next_attempt_at = to_integer(row.next_attempt_at) or 0,
    updated_at = to_integer(row.updated_at), unknown_reason = row.unknown_reason,
    lease_token = to_integer(row.lease_token) or 0,
  }
end
M.recipient_from_row = recipient_from_row

-- unknown_reason is kept on unknown rows, and on pending rows that an
-- unknown one became (why an earlier attempt is uncertain); cleared on others.
local function reason_of(r)
  if r.status == "unknown" or r.status == "pending" then return r.unknown_reason end
  return nil
end

local function rows_of(rows, convert)
  for i, row in ipairs(rows) do rows[i] = convert(row) end
  return rows
end

-- ---- methods ----

local methods = {}

function methods:campaign_insert(c)
  local rows, err, detail = self:query("campaign_insert", SQL.campaign_exists, c.id)
  if not rows then return nil, err, detail end
  if rows[1] then return errors.fail("state", ("campaign_insert: a campaign %s already exists"):format(c.id)) end
  local _, ierr, idetail = self:exec("campaign_insert", SQL.campaign_insert, c.id, c.channel, c.template, c.kind,
    c.spec, c.status, c.created_at)
  if ierr then return nil, ierr, idetail end
  return true
end

function methods:campaign_get(id)
  local rows, err, detail = self:query("campaign_get", SQL.campaign_get, id)
  if not rows then return nil, err, detail end
  return rows[1] and campaign_from_row(rows[1]) or nil
end

function methods:campaign_list()
  local rows, err, detail = self:query("campaign_list", SQL.campaign_list)
  if not rows then return nil, err, detail end
  return rows_of(rows, campaign_from_row)
end

function methods:campaign_update(c)
  return self:exec("campaign_update", SQL.campaign_update, c.status, c.stop_reason, c.runner, c.heartbeat_at,
    c.total or 0, c.started_at, c.finished_at, c.id)
end

-- Runs fn atomically -> fn's results | nil, err, detail (a raise inside
-- rolls back and becomes the failure).
local function atomically(self, op, fn)
  local ok, a, b = pcall(self.transaction, self, fn)
  if not ok then
    if errors.is_error(a) then return errors.failure(a) end
    return errors.fail("store", op .. ": " .. tostring(a))
  end
  return a, b
end

local function must(v, err, detail)
  if v == nil then error(detail or err, 0) end
  return v
end

-- Whether token is the campaign's current lease token (inside a transaction).
local function token_current(self, op, id, token)
  local rows = must(self:query(op, SQL.campaign_token, id))
  return rows[1] ~= nil and to_integer(rows[1].token) == token
end

function methods:campaign_acquire(id, token, runner, at)
  local n, err, detail = self:exec("campaign_acquire", SQL.campaign_acquire, runner, at, at, id, token)
  if not n then return nil, err, detail end
  if n == 0 then return false end
  return token + 1
end

function methods:campaign_heartbeat(id, token, at)
  local n, err, detail = self:exec("campaign_heartbeat", SQL.campaign_heartbeat, at, id, token)
  if not n then return nil, err, detail end
  return n == 1
end

function methods:campaign_release(id, token, status, stop_reason, at)
  local finished = (status == "completed" or status == "stopped") and at or nil
  local n, err, detail = self:exec("campaign_release", SQL.campaign_release, status, stop_reason, at, finished, id,
    token)
  if not n then return nil, err, detail end
  return n == 1
end

function methods:campaign_delete(id)
  local _, err, detail = self:exec("campaign_delete", SQL.recipients_delete, id)
  if err then return nil, err, detail end
  return self:exec("campaign_delete", SQL.campaign_delete, id)
end

function methods:recipient_add(id, r)
  local n, err, detail = self:exec("recipient_add", SQL.recipient_add, id, r.line, r.userid, r.id_type, r.alipay_id,
    r.vars, r.status, r.checked == false and 0 or 1, r.code, r.sub_code, r.msg, r.updated_at)
  if not n then return nil, err, detail end
  if n == 1 then return true end
  local rows, qerr, qdetail = self:query("recipient_add", SQL.recipient_first, id, r.id_type, r.alipay_id)
  if not rows then return nil, qerr, qdetail end
  if not rows[1] then return errors.fail("store", "recipient_add: the row was neither added nor found") end
  return to_integer(rows[1].line)
end

function methods:recipient_add_duplicate(id, r, first_line)
  local _, err, detail = self:exec("recipient_add_duplicate", SQL.recipient_add_duplicate, id, r.line, r.userid,
    r.id_type, r.alipay_id, first_line, ("duplicate of line %d"):format(first_line), r.updated_at)
  if err then return nil, err, detail end
  return true
end

-- One batch of an import. The caller holds the transaction (a batch is
-- all or nothing there); a loop of prepared statements is already as fast
-- as SQLite gets, so there is no multi-row INSERT to build.
function methods:recipients_add(id, rows)
  if type(rows) ~= "table" then return errors.fail("input", "recipients_add: rows must be a list") end
  for i = 1, #rows do
    local added, err, detail = self:recipient_add(id, rows[i])
    if not added then return nil, err, detail end
    if added ~= true then
      local _, derr, ddetail = self:recipient_add_duplicate(id, rows[i], added)
      if derr then return nil, derr, ddetail end
    end
  end
  return #rows
end

function methods:recipients_due(id, now_ms, limit)
  local rows, err, detail = self:query("recipients_due", SQL.recipients_due, id, now_ms, limit)
  if not rows then return nil, err, detail end
  return rows_of(rows, recipient_from_row)
end

function methods:recipients_next_due(id)
  local rows, err, detail = self:query("recipients_next_due", SQL.recipients_next_due, id)
  if not rows then return nil, err, detail end
  return rows[1] and to_integer(rows[1].at) or nil
end

function methods:recipient_get(id, line)
  local rows, err, detail = self:query("recipient_get", SQL.recipient_get, id, line)
  if not rows then return nil, err, detail end
  return rows[1] and recipient_from_row(rows[1]) or nil
end

function methods:recipient_update(id, r)
  return self:exec("recipient_update", SQL.recipient_update, r.status, r.checked and 1 or 0, r.code, r.sub_code,
    r.msg, r.attempts, r.tries, r.uncertain and 1 or 0, math.floor(r.next_attempt_at or 0), r.updated_at,
    reason_of(r), id, r.line)
end

-- The claim reads the due rows and marks them in one transaction, and the
-- token is checked in that same transaction: BEGIN IMMEDIATE holds the
-- write lock throughout, so no acquire can come between the check and the
-- marks (the PostgreSQL backend locks the campaign row: FOR KEY SHARE).
function methods:recipients_claim(id, token, now_ms, limit, at)
  return atomically(self, "recipients_claim", function()
    if not token_current(self, "recipients_claim", id, token) then return false end
    local rows = must(self:query("recipients_claim", SQL.recipients_due, id, now_ms, limit))
    local marked = {}
    for _, row in ipairs(rows) do
      local r = recipient_from_row(row)
      if must(self:exec("recipients_claim", SQL.recipient_claim, token, at, id, r.line)) == 1 then
        r.status, r.lease_token, r.updated_at = "inflight", token, at
        if r.checked then r.attempts = r.attempts + 1 end
        marked[#marked + 1] = r
      end
    end
    return marked
  end)
end

function methods:recipients_finish(id, token, rows)
  if type(rows) ~= "table" then return errors.fail("input", "recipients_finish: rows must be a list") end
  return atomically(self, "recipients_finish", function()
    if not token_current(self, "recipients_finish", id, token) then return 0, #rows end
    local written = 0
    for _, r in ipairs(rows) do
      written = written + must(self:exec("recipients_finish", SQL.recipient_finish, r.status, r.checked and 1 or 0,
        r.code, r.sub_code, r.msg, r.attempts, r.tries, r.uncertain and 1 or 0, math.floor(r.next_attempt_at or 0),
        r.updated_at, reason_of(r), id, r.line, token))
    end
    return written, #rows - written
  end)
end

function methods:recipients_interrupted(id, token, reason, msg, at)
  return atomically(self, "recipients_interrupted", function()
    if not token_current(self, "recipients_interrupted", id, token) then return false end
    local n = must(self:exec("recipients_interrupted", SQL.recipients_interrupted, msg, at, reason, id))
    must(self:exec("recipients_interrupted", SQL.recipients_interrupted_checks, at, id))
    return n
  end)
end

function methods:recipients_retry_unknown(id, at, reasons)
  if reasons == nil then
    return self:exec("recipients_retry_unknown", SQL.recipients_retry_unknown, at, id)
  end
  if type(reasons) ~= "table" then
    return errors.fail("input", "recipients_retry_unknown: reasons must be a list of reason names")
  end
  return atomically(self, "recipients_retry_unknown", function()
    local n = 0
    for _, reason in ipairs(reasons) do
      n = n + must(self:exec("recipients_retry_unknown", SQL.recipients_retry_unknown_reason, at, id, reason))
    end
    return n
  end)
end

function methods:recipient_unknown_reasons(id)
  local rows, err, detail = self:query("recipient_unknown_reasons", SQL.recipient_unknown_reasons, id)
  if not rows then return nil, err, detail end
  local by = {}
  for _, row in ipairs(rows) do by[row.unknown_reason or "unrecorded"] = to_integer(row.n) end
  return by
end

function methods:recipients_clear_backoff(id)
  return self:exec("recipients_clear_backoff", SQL.recipients_clear_backoff, id)
end

function methods:recipient_counts(id)
  local rows, err, detail = self:query("recipient_counts", SQL.recipient_counts, id)
  if not rows then return nil, err, detail end
  local counts = {}
  for _, s in ipairs(STATUSES) do counts[s] = 0 end
  for _, row in ipairs(rows) do counts[row.status] = to_integer(row.n) end
  return counts
end

function methods:recipient_codes(id)
  local rows, err, detail = self:query("recipient_codes", SQL.recipient_codes, id)
  if not rows then return nil, err, detail end
  local list = {}
  for i, row in ipairs(rows) do
    list[i] = { status = row.status, code = row.code, sub_code = row.sub_code, count = to_integer(row.n) }
  end
  return list
end

function methods:recipients_page(id, after_line, limit)
  local rows, err, detail = self:query("recipients_page", SQL.recipients_page, id, after_line, limit)
  if not rows then return nil, err, detail end
  return rows_of(rows, recipient_from_row)
end

M.methods = methods

-- ---- compatibility ----

-- Every SQLite store has these methods from the start now, and its tables
-- come from migration 002: attach() only checks, for callers written before
-- -> store | nil, err, detail.
function M.attach(store)
  if type(store) ~= "table" or type(store.recipients_add) ~= "function" then
    return errors.fail("store", "campaigns.attach: the store does not implement the campaign methods")
  end
  return store
end

return M
