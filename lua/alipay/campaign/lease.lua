-- Campaign-level state: who is running a campaign, whether that runner is
-- still alive, and the status a reader should see.
--
--   local state = require "alipay.campaign.lease"
--   state.identity() -> "host/pid/token"           this process (one token per run)
--   state.alive(c, now_s, stale_s?) -> bool         c.runner still works on it
--   state.held(c, now_s, stale_s?) -> bool          a live process runs it or imports its audience
--   state.visible(c, now_s, stale_s?) -> status, stop_reason  "interrupted" for a runner that died
--   state.claim(store, id, now_s, stale_s?) -> campaign, runner, orphans | nil, err, detail
--     makes this process the runner: campaign.lease_token is the run's fencing token (one more than any
--     before); orphans is the unknown reason of rows an earlier run left inflight ("superseded" when that
--     runner may still be alive, "runner_died" otherwise). A refusal's detail is {kind = "state",
--     reason = "running" | "importing" | "import_interrupted" | "raced"}; campaign:delete adds
--     "holds_results" (recipients with results, no force)
--   state.release(store, c, status, reason, now_s) -> true | false (superseded) | nil, err   the end of a run
--   state.superseded(store, c) -> one line: who holds the campaign now
--
-- A runner writes a heartbeat while it runs. It is dead when its process no
-- longer exists on this host (kill -9 included), or when its heartbeat is
-- older than stale_s (policy.stale_after_s, default STALE_S: another host, a
-- process that hangs or is stopped with SIGSTOP). A runner judged dead may
-- still wake up: the fencing token is what stops it (store/init.lua).
local core = require "alipay.core"
local errors = require "alipay.errors"

local M = {}

local STALE_S = 60
M.STALE_S = STALE_S

local function read_first_line(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local line = f:read("l")
  f:close()
  return line
end

local host = (read_first_line("/proc/sys/kernel/hostname") or os.getenv("HOSTNAME") or "localhost")
  :gsub("[/%s]", "_")
local own_pid = tonumber((read_first_line("/proc/self/stat") or ""):match("^(%d+)")) or 0
M.host, M.pid = host, own_pid

function M.identity()
  return ("%s/%d/%s"):format(host, own_pid, core.random_hex(4))
end

local function parse(runner)
  local h, pid = tostring(runner):match("^([^/]*)/(%d+)/")
  return h, tonumber(pid)
end

-- A process of this host that exists and is not a zombie.
local function process_alive(pid)
  local stat = read_first_line("/proc/" .. pid .. "/stat")
  if not stat then return false end
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- The runner's process is known to be gone (same host, no such process).
local function process_gone(runner)
  local h, pid = parse(runner)
  return h == host and pid ~= nil and pid > 0 and own_pid > 0 and not process_alive(pid)
end

function M.alive(c, now, stale_s)
  if not c.runner then return false end
  if process_gone(c.runner) then return false end
  return (c.heartbeat_at or 0) >= now - (stale_s or STALE_S)
end

local ACTIVE = { running = true, importing = true }

function M.held(c, now, stale_s)
  return ACTIVE[c.status] == true and M.alive(c, now, stale_s)
end

function M.visible(c, now, stale_s)
  if c.status == "running" and not M.alive(c, now, stale_s) then
    return "interrupted", ("the process that ran it (%s) stopped without finishing; run it again to resume")
      :format(tostring(c.runner))
  end
  if c.status == "importing" and not M.alive(c, now, stale_s) then
    return "interrupted", "the audience import did not finish: delete the campaign, then create it again"
  end
  return c.status, c.stop_reason
end

function M.claim(store, id, now, stale_s)
  local runner = M.identity()
  local orphans
  local ok, c, err, detail = pcall(store.transaction, store, function()
    local current, gerr, gdetail = store:campaign_get(id)
    if gerr then return nil, gerr, gdetail end
    if not current then
      return errors.fail("state", { campaign = id, reason = "unknown",
        msg = ("campaign %s does not exist"):format(id) })
    end
    -- Each refusal names the one next step that works (resuming does not).
    if current.status == "importing" and M.alive(current, now, stale_s) then
      return errors.fail("state", { reason = "importing", campaign = id, msg =
        ("campaign %s is still importing its audience in another process (%s): wait for it to finish")
          :format(id, tostring(current.runner)) })
    end
    if current.status == "importing" then
      return errors.fail("state", { reason = "import_interrupted", campaign = id, msg =
        ("campaign %s cannot run: its audience import was interrupted; delete the campaign, then create it "
          .. "again"):format(id) })
    end
    if M.held(current, now, stale_s) then
      return errors.fail("state", { reason = "running", campaign = id, msg =
        ("campaign %s is already running in another process (%s): wait for it to finish")
          :format(id, tostring(current.runner)) })
    end
    -- A run that never released its lease and whose process may still
    -- exist (stopped, hung, on another host) is superseded: if it wakes up,
    -- its token no longer counts.
    orphans = (current.status == "running" and current.runner and not process_gone(current.runner))
      and "superseded" or "runner_died"
    local token, aerr, adetail = store:campaign_acquire(id, current.lease_token or 0, runner, now)
    if token == nil then return nil, aerr, adetail end
    if token == false then
      return errors.fail("state", { reason = "raced", campaign = id, msg =
        ("campaign %s was claimed by another process at the same moment: wait for it to finish"):format(id) })
    end
    current.status, current.stop_reason, current.finished_at = "running", nil, nil
    current.runner, current.heartbeat_at, current.lease_token = runner, now, token
    current.started_at = current.started_at or now
    return current
  end)
  if not ok then return errors.fail("store", tostring(c)) end
  if not c then return nil, err, detail end
  return c, runner, orphans
end

function M.release(store, c, status, reason, now)
  local ok, err, detail = store:campaign_release(c.id, c.lease_token, status, reason, now)
  if not ok then return ok, err, detail end
  c.status, c.stop_reason, c.runner, c.heartbeat_at = status, reason, nil, now
  c.finished_at = (status == "completed" or status == "stopped") and now or nil
  return true
end

-- "host/pid (lease token N) at <UTC time>": who holds c's campaign now.
function M.superseded(store, c)
  local now = store:campaign_get(c.id)
  if not now or not now.runner then return "another run (it has ended since)" end
  local h, pid = parse(now.runner)
  return ("%s/%s (lease token %s) at %s"):format(tostring(h), tostring(pid), tostring(now.lease_token),
    os.date("!%Y-%m-%dT%H:%M:%SZ", now.started_at and now.heartbeat_at or os.time()))
end

return M
