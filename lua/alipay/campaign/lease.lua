-- Campaign-level state: who is running a campaign, whether that runner is
-- still alive, and the status a reader should see.
--
--   local state = require "alipay.campaign.lease"
--   state.identity() -> "host/pid/token"           this process (one token per run)
--   state.alive(c, now_s) -> bool                   c.runner still works on it
--   state.held(c, now_s) -> bool                    a live process runs it or imports its audience
--   state.visible(c, now_s) -> status, stop_reason  "interrupted" for a runner that died
--   state.claim(store, id, now_s) -> campaign, runner | nil, err, detail   makes this process the runner;
--     a refusal's detail is {kind = "state", reason = "running" | "importing" | "import_interrupted"};
--     campaign:delete adds "holds_results" (recipients with results, no force)
--   state.release(store, c, status, reason, now_s)  records the end of a run
--
-- A runner writes a heartbeat while it runs. It is dead when its process no
-- longer exists on this host (kill -9 included), or when its heartbeat is
-- older than STALE_S (another host, or a process that hangs).
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

function M.alive(c, now)
  if not c.runner then return false end
  local h, pid = parse(c.runner)
  if h == host and pid and pid > 0 and own_pid > 0 and not process_alive(pid) then return false end
  return (c.heartbeat_at or 0) >= now - STALE_S
end

local ACTIVE = { running = true, importing = true }

function M.held(c, now)
  return ACTIVE[c.status] == true and M.alive(c, now)
end

function M.visible(c, now)
  if c.status == "running" and not M.alive(c, now) then
    return "interrupted", ("the process that ran it (%s) stopped without finishing; run it again to resume")
      :format(tostring(c.runner))
  end
  if c.status == "importing" and not M.alive(c, now) then
    return "interrupted", "the audience import did not finish: delete the campaign, then create it again"
  end
  return c.status, c.stop_reason
end

function M.claim(store, id, now)
  local runner = M.identity()
  local ok, c, err, detail = pcall(store.transaction, store, function()
    local current, gerr, gdetail = store:campaign_get(id)
    if gerr then return nil, gerr, gdetail end
    if not current then
      return errors.fail("state", { campaign = id, reason = "unknown",
        msg = ("campaign %s does not exist"):format(id) })
    end
    -- Each refusal names the one next step that works (resuming does not).
    if current.status == "importing" and M.alive(current, now) then
      return errors.fail("state", { reason = "importing", campaign = id, msg =
        ("campaign %s is still importing its audience in another process (%s): wait for it to finish")
          :format(id, tostring(current.runner)) })
    end
    if current.status == "importing" then
      return errors.fail("state", { reason = "import_interrupted", campaign = id, msg =
        ("campaign %s cannot run: its audience import was interrupted; delete the campaign, then create it "
          .. "again"):format(id) })
    end
    if M.held(current, now) then
      return errors.fail("state", { reason = "running", campaign = id, msg =
        ("campaign %s is already running in another process (%s): wait for it to finish")
          :format(id, tostring(current.runner)) })
    end
    current.status, current.stop_reason, current.finished_at = "running", nil, nil
    current.runner, current.heartbeat_at = runner, now
    current.started_at = current.started_at or now
    assert(store:campaign_update(current))
    return current
  end)
  if not ok then return errors.fail("store", tostring(c)) end
  if not c then return nil, err, detail end
  return c, runner
end

function M.release(store, c, status, reason, now)
  c.status, c.stop_reason, c.runner, c.heartbeat_at = status, reason, nil, now
  c.finished_at = (status == "completed" or status == "stopped") and now or nil
  return store:campaign_update(c)
end

return M
