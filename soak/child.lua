-- A command run in the background, so that the soak can signal it while it
-- runs (SIGINT, SIGTERM, SIGSTOP/SIGCONT) and wait for it with a deadline.
--
--   local child = require "soak.child"
--   local c = assert(child.spawn(command, dir))   -- command: a shell command line
--   c.pid; c:signal("INT"); c:running(); c:seconds()
--   c:wait(timeout_s) -> exit status | nil (still running at the deadline)
--   c:kill()                                      -- SIGCONT + SIGKILL, then waits
--   child.kill_all()                              -- every child still running (the soak's cleanup)
--
-- Plain Lua cannot fork: a shell starts the command, writes its pid, waits
-- for it and writes its exit status (128 + N when signal N ended it, as a
-- shell reports it). The command starts with SIGINT and SIGTERM at their
-- defaults (env --default-signal): a non-interactive shell starts background
-- commands with SIGINT ignored, which is not how an operator's Ctrl-C or
-- systemd's SIGTERM finds the CLI.
local core = require "alipay.core"
local shell = require "alipay.util.shell"
local fs = require "alipay.util.fs"

local quote = shell.quote

local M = {}

local POLL_MS = 20
local PID_WAIT_S = 5

local Child = {}
Child.__index = Child

local serial = 0
local spawned = {}

function M.spawn(command, dir)
  serial = serial + 1
  local base = ("%s/child-%d"):format(dir, serial)
  local pid_file, rc_file = base .. ".pid", base .. ".rc"
  local script = ("env --default-signal=INT,TERM sh -c %s & echo $! >%s; wait $!; echo $? >%s.tmp; mv %s.tmp %s")
    :format(quote(command), quote(pid_file), quote(rc_file), quote(rc_file), quote(rc_file))
  if not shell.execute(("(%s) </dev/null >/dev/null 2>&1 &"):format(script)) then
    return nil, "could not start: " .. command
  end
  local started = core.monotonic_ms()
  local self = setmetatable({ rc_file = rc_file, started_ms = started }, Child)
  while core.monotonic_ms() - started < PID_WAIT_S * 1000 do
    self.pid = tonumber((fs.read(pid_file) or ""):match("%d+"))
    if self.pid then
      spawned[#spawned + 1] = self
      return self
    end
    core.sleep_ms(POLL_MS)
  end
  return nil, "no pid after " .. PID_WAIT_S .. " s: " .. command
end

function Child:seconds()
  return (core.monotonic_ms() - self.started_ms) / 1000
end

function Child:exit_status()
  if self.code then return self.code end
  self.code = tonumber((fs.read(self.rc_file) or ""):match("%d+"))
  if self.code then self.ended_ms = core.monotonic_ms() end
  return self.code
end

function Child:running()
  return self:exit_status() == nil
end

-- Only while it runs: a pid can be reused once it has ended.
function Child:signal(name)
  if not self:running() then return false end
  return shell.execute(("kill -%s %d 2>/dev/null"):format(name, self.pid))
end

function Child:wait(timeout_s)
  local deadline = core.monotonic_ms() + timeout_s * 1000
  repeat
    local code = self:exit_status()
    if code then return code end
    core.sleep_ms(POLL_MS)
  until core.monotonic_ms() > deadline
  return nil
end

function Child:kill()
  if self:running() then
    self:signal("CONT")
    self:signal("KILL")
  end
  return self:wait(10)
end

function M.kill_all()
  for _, c in ipairs(spawned) do c:kill() end
end

return M
