-- Scenario 2 (issue 13 §2): a runner paused past the staleness window while
-- another takes the campaign over. `alipay campaign run … --stale-after 3`
-- runs as a child; once it is sending it gets SIGSTOP (Ctrl-Z, a VM pause);
-- past the window, `alipay campaign resume ID --stale-after 3` starts and
-- takes the campaign over; once that one is sending, the first gets
-- SIGCONT. Both run to their end (the first must notice that it lost the
-- campaign before another request leaves); then plain resumes complete it.
--
-- A CLI without --stale-after (before the fix) cannot run this in a few
-- seconds: the scenario is reported as not run, unless
-- SOAK_WAIT_DEFAULT_STALE=1 asks it to pause past the default 60 s window.
local core = require "alipay.core"
local child = require "soak.child"
local traffic = require "soak.traffic"
local settle = require "soak.settle"
local measure = require "soak.measure"
local fs = require "alipay.util.fs"
local shell = require "alipay.util.shell"

local RECIPIENTS = 600
local LATENCY_MS = 50      -- 8 in flight: about 160 sends a second
local STALE_S = 3
local DEFAULT_STALE_S = 60 -- lease.lua's window before --stale-after existed
local SENDING = 60         -- gateway requests that show a runner is sending
local END_WAIT_S = 60

local function tail(path)
  local line = ""
  for l in (fs.read(path) or ""):gmatch("[^\n]+") do line = l end
  return #line > 240 and line:sub(1, 240) .. "…" or line
end

return function(world, o)
  local window, option = STALE_S, ("--stale-after %d"):format(STALE_S)
  if not world:supports("--stale-after") then
    if os.getenv("SOAK_WAIT_DEFAULT_STALE") ~= "1" then
      return o:problem("not run: `alipay campaign run` has no --stale-after option (SOAK_WAIT_DEFAULT_STALE=1 "
        .. "pauses the runner past the default %d s window instead)", DEFAULT_STALE_S)
    end
    window, option = DEFAULT_STALE_S, ""
    o:note("no --stale-after: pausing past the default %d s window", DEFAULT_STALE_S)
  end
  local id = "soak-takeover"
  local path, ids = world:audience(id, RECIPIENTS)
  assert(world.sb:faults { latency_ms = LATENCY_MS })
  local dir = world.dir
  local seq = traffic.seq(world)
  local first = assert(child.spawn(world:command(world:run_args(world.config_path, id, path,
    "--in-flight 8 --qps 1000 " .. option), dir .. "/first.out", dir .. "/first.err"), dir))
  o:ran()
  local second
  local ok, err = pcall(function()
    if not traffic.wait(world, first, seq, SENDING, 20) then
      return o:problem("the first runner was not sending (exit %s): %s", tostring(first:exit_status()),
        tail(dir .. "/first.err"))
    end
    first:signal("STOP")
    o:note("first runner (pid %d) stopped with SIGSTOP after %.1f s", first.pid, first:seconds())
    core.sleep_ms((window + 2) * 1000)
    seq = traffic.seq(world)
    second = assert(child.spawn(world:command(("campaign resume %s --progress none --config %s %s")
      :format(id, shell.quote(world.config_path), option),
      dir .. "/second.out", dir .. "/second.err"), dir))
    o:ran()
    if not traffic.wait(world, second, seq, SENDING, 20) then
      o:problem("the resume did not take over (exit %s): %s", tostring(second:exit_status()),
        tail(dir .. "/second.err"))
    end
    first:signal("CONT")
    o:note("first runner continued with SIGCONT while the resume runs")
    local first_code, second_code = first:wait(END_WAIT_S), second:wait(END_WAIT_S)
    o:note("first runner: exit %s: %s", tostring(first_code), tail(dir .. "/first.err"))
    o:note("resume: exit %s: %s", tostring(second_code), tail(dir .. "/second.err"))
    if not first_code or not second_code then o:problem("a runner did not end within %d s", END_WAIT_S) end
  end)
  first:kill()
  if second then second:kill() end
  assert(world.sb:faults {})
  if not ok then o:raised(err) end
  local runs, problem = settle(world, id)
  o:ran(runs)
  if problem then o:problem("%s", problem) end
  local result, merr = measure(world, id, ids)
  if not result then return o:problem("%s", merr) end
  o:counted(id, result)
end
