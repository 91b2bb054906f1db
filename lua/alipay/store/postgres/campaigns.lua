-- Campaign state in the PostgreSQL store (docs/architecture.md §8, docs/messaging.md §6.4): the
-- contracts of store/init.lua, as store/sqlite/campaigns.lua keeps them,
-- for several processes (workers, hosts) sharing one database.
--
-- store/postgres/init.lua puts these methods on every PostgreSQL store;
-- the tables are migration 002 (and 003) of store/postgres/migrations.lua.
--
-- Concurrency, where SQLite has one writer at a time and PostgreSQL does not:
--   * recipients_claim and recipients_finish check the token under
--     SELECT ... FOR KEY SHARE of the campaign row, held to their commit;
--     campaign_acquire takes that row FOR UPDATE, the one mode that
--     conflicts with it: an acquire waits for a claim or finish in progress
--     and they for it, so a token is never superseded between their check
--     and their writes, while several claimers and finishers of one
--     campaign run at once. FOR KEY SHARE rather than FOR SHARE because
--     heartbeats (plain UPDATEs: FOR NO KEY UPDATE) do not conflict with
--     it: campaign/dispatch.lua writes answers and a heartbeat in one
--     transaction, and two such transactions, each holding a share lock and
--     waiting to update, would deadlock.
--   * campaign_acquire, _heartbeat and _release are one statement each,
--     whose WHERE names the token: a second acquire of the same token
--     re-reads the row after the first one commits and finds a newer token
--     (0 rows: false).
--   * The claim takes its pending rows with FOR UPDATE SKIP LOCKED: a row
--     another claimer is taking is skipped, never waited for and never
--     taken twice.
--   * recipients_interrupted checks under FOR UPDATE: it touches every
--     inflight row, so it waits until no claim or finish of the campaign
--     is running rather than lock rows in an order that could deadlock
--     with one.
--   * recipients_finish writes its rows in line order, the order every
--     writer of several rows uses.
--   * campaign_insert is INSERT ... ON CONFLICT DO NOTHING: of two
--     processes creating one id, one gets kind state, neither a constraint error.
local errors = require "alipay.errors"

local M = {}

-- ---- statements ----

local CAMPAIGN_COLUMNS = [[id, channel, template, kind, spec, status, stop_reason, runner,
  CAST(heartbeat_at AS TEXT) AS heartbeat_at, CAST(total AS TEXT) AS total,
  CAST(created_at AS TEXT) AS created_at, CAST(started_at AS TEXT) AS started_at,
  CAST(finished_at AS TEXT) AS finished_at, CAST(lease_token AS TEXT) AS lease_token]]

-- Integer columns as text (lua-dbi reads them through atoi), always of
-- the alias r, so that the claim's UPDATE ... FROM can return them.
local RECIPIENT_COLUMNS = [[CAST(r.line AS TEXT) AS line, r.userid, r.id_type, r.alipay_id, r.vars, r.status,
  CAST(r.checked AS TEXT) AS checked, CAST(r.dup_of AS TEXT) AS dup_of, r.code, r.sub_code, r.msg,
  CAST(r.attempts AS TEXT) AS attempts, CAST(r.tries AS TEXT) AS tries, CAST(r.uncertain AS TEXT) AS uncertain,
  CAST(r.next_attempt_at AS TEXT) AS next_attempt_at, CAST(r.updated_at AS TEXT) AS updated_at,
  r.unknown_reason, CAST(r.lease_token AS TEXT) AS lease_token]]

local SQL = {
  campaign_insert = [[
    INSERT INTO campaigns (id, channel, template, kind, spec, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO NOTHING]],
  campaign_get = "SELECT " .. CAMPAIGN_COLUMNS .. " FROM campaigns WHERE id = ?",
  campaign_list = "SELECT " .. CAMPAIGN_COLUMNS .. " FROM campaigns ORDER BY created_at DESC, seq DESC",
  campaign_update = [[
    UPDATE campaigns SET status = ?, stop_reason = ?, runner = ?, heartbeat_at = ?, total = ?,
      started_at = ?, finished_at = ? WHERE id = ?]],
  -- The token under a lock held to the commit (see the header).
  campaign_token_shared = "SELECT CAST(lease_token AS TEXT) AS token FROM campaigns WHERE id = ? FOR KEY SHARE",
  campaign_token_exclusive = "SELECT CAST(lease_token AS TEXT) AS token FROM campaigns WHERE id = ? FOR UPDATE",
  -- FOR UPDATE first (see the header): a plain UPDATE would not wait for
  -- the claims and finishes in progress.
  campaign_acquire = [[
    WITH locked AS (SELECT id FROM campaigns WHERE id = ? FOR UPDATE)
    UPDATE campaigns c SET status = 'running', stop_reason = NULL, finished_at = NULL, runner = ?, heartbeat_at = ?,
      started_at = coalesce(c.started_at, ?), lease_token = c.lease_token + 1
    FROM locked WHERE c.id = locked.id AND c.lease_token = ?]],
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
  recipients_due = "SELECT " .. RECIPIENT_COLUMNS .. [[ FROM campaign_recipients r
    WHERE r.campaign = ? AND r.status = 'pending' AND r.next_attempt_at <= ? ORDER BY r.line LIMIT ?]],
  recipients_next_due = [[
    SELECT CAST(min(next_attempt_at) AS TEXT) AS at FROM campaign_recipients
    WHERE campaign = ? AND status = 'pending']],
  recipient_get = "SELECT " .. RECIPIENT_COLUMNS .. " FROM campaign_recipients r WHERE r.campaign = ? AND r.line = ?",
  recipient_update = [[
    UPDATE campaign_recipients SET status = ?, checked = ?, code = ?, sub_code = ?, msg = ?, attempts = ?,
      tries = ?, uncertain = ?, next_attempt_at = ?, updated_at = ?, unknown_reason = ?
    WHERE campaign = ? AND line = ?]],
  -- The due pending rows, taken (SKIP LOCKED: never a row another claimer
  -- holds) and marked inflight under the token in one statement; a
  -- subscription check (checked = 0) does not count as a send attempt. The
  -- taken lines are an array the UPDATE finds by primary key: a join with
  -- them was planned as a scan of every pending row per taken one while the
  -- table had no statistics (right after an import), 40 ms a claim of 50.
  recipients_claim = [[
    UPDATE campaign_recipients r SET status = 'inflight', attempts = r.attempts + r.checked, lease_token = ?,
      updated_at = ?
    WHERE r.campaign = ? AND r.status = 'pending' AND r.line = ANY (ARRAY (
      SELECT line FROM campaign_recipients
      WHERE campaign = ? AND status = 'pending' AND next_attempt_at <= ?
      ORDER BY line LIMIT ? FOR UPDATE SKIP LOCKED))
    RETURNING ]] .. RECIPIENT_COLUMNS,
  recipient_finish = [[
    UPDATE campaign_recipients SET status = ?, checked = ?, code = ?, sub_code = ?, msg = ?, attempts = ?,
      tries = ?, uncertain = ?, next_attempt_at = ?, updated_at = ?, unknown_reason = ?
    WHERE campaign = ? AND line = ? AND status = 'inflight' AND lease_token = ?]],
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
  -- SQLite's order: bytes (COLLATE "C"), NULLs first.
  recipient_codes = [[
    SELECT status, code, sub_code, CAST(count(*) AS TEXT) AS n FROM campaign_recipients
    WHERE campaign = ? AND status IN ('sent', 'failed', 'skipped', 'unknown')
    GROUP BY status, code, sub_code
    ORDER BY status COLLATE "C", count(*) DESC, code COLLATE "C" NULLS FIRST, sub_code COLLATE "C" NULLS FIRST]],
  recipients_page = "SELECT " .. RECIPIENT_COLUMNS .. [[ FROM campaign_recipients r
    WHERE r.campaign = ? AND r.line > ? ORDER BY r.line LIMIT ?]],
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

-- unknown_reason is kept on unknown rows and on pending rows an unknown
-- one became (why an earlier attempt is uncertain); cleared on others.
local function reason_of(r)
  if r.status == "unknown" or r.status == "pending" then return r.unknown_reason end
  return nil
end

local function rows_of(rows, convert)
  for i, row in ipairs(rows) do rows[i] = convert(row) end
  return rows
end

local function by_line(a, b) return a.line < b.line end

-- ---- methods ----

local methods = {}

function methods:campaign_insert(c)
  local n, err, detail = self:exec("campaign_insert", SQL.campaign_insert, c.id, c.channel, c.template, c.kind,
    c.spec, c.status, c.created_at)
  if not n then return nil, err, detail end
  if n == 0 then return errors.fail("state", ("campaign_insert: a campaign %s already exists"):format(c.id)) end
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

-- Whether token is the campaign's current lease token, the row locked
-- (sql: shared or exclusive) until the transaction ends.
local function token_current(self, op, sql, id, token)
  local rows = must(self:query(op, sql, id))
  return rows[1] ~= nil and to_integer(rows[1].token) == token
end

function methods:campaign_acquire(id, token, runner, at)
  local n, err, detail = self:exec("campaign_acquire", SQL.campaign_acquire, id, runner, at, at, token)
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

-- -> true (added) | the line it repeats | nil, err, detail
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

-- One batch of an import; the caller holds the transaction.
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

function methods:recipients_claim(id, token, now_ms, limit, at)
  return atomically(self, "recipients_claim", function()
    if not token_current(self, "recipients_claim", SQL.campaign_token_shared, id, token) then return false end
    local rows = must(self:query("recipients_claim", SQL.recipients_claim, token, at, id, id, now_ms, limit))
    rows_of(rows, recipient_from_row)
    table.sort(rows, by_line) -- RETURNING has no order
    return rows
  end)
end

function methods:recipients_finish(id, token, rows)
  if type(rows) ~= "table" then return errors.fail("input", "recipients_finish: rows must be a list") end
  return atomically(self, "recipients_finish", function()
    if not token_current(self, "recipients_finish", SQL.campaign_token_shared, id, token) then return 0, #rows end
    local ordered = {}
    for i, r in ipairs(rows) do ordered[i] = r end
    table.sort(ordered, by_line)
    local written = 0
    for _, r in ipairs(ordered) do
      written = written + must(self:exec("recipients_finish", SQL.recipient_finish, r.status, r.checked and 1 or 0,
        r.code, r.sub_code, r.msg, r.attempts, r.tries, r.uncertain and 1 or 0, math.floor(r.next_attempt_at or 0),
        r.updated_at, reason_of(r), id, r.line, token))
    end
    return written, #rows - written
  end)
end

function methods:recipients_interrupted(id, token, reason, msg, at)
  return atomically(self, "recipients_interrupted", function()
    if not token_current(self, "recipients_interrupted", SQL.campaign_token_exclusive, id, token) then
      return false
    end
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

return M
