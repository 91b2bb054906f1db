-- make soak: issue 13's soak, a few minutes on 127.0.0.1 only. Three
-- scenarios run campaigns through bin/alipay (child processes, a store in a
-- temporary directory) against the sandbox gateway, with faults, and count
-- every campaign's recipients in the store against the sandbox's delivery
-- log (soak/tally.lua defines both counts):
--
--   lost        a recipient the store says `sent` that the sandbox never
--               delivered, or one the sandbox delivered that the store shows
--               `pending`, `failed` or `skipped` (an answer lost);
--   duplicated  a recipient the sandbox delivered more than once, unless the
--               store records a retry of an `unknown` outcome for it
--               (`--retry-unknown`, which this soak never passes).
--
--   1. resend   (soak/resend.lua)    answers dropped on reused keep-alive connections
--   2. takeover (soak/takeover.lua)  a runner paused (SIGSTOP) past --stale-after, a resume, SIGCONT
--   3. signals  (soak/interrupt.lua) SIGINT at random moments, a double SIGINT, SIGTERM, resume between
--
-- The last line is `lost=L duplicated=D (checked N recipients in K runs)`
-- (K: every `campaign run|resume` child). Exit status 0 when both are 0 and
-- no scenario reported a problem: one that could not run or complete, or a
-- signal's exit that broke its contract (soak/interrupt.lua); 1 otherwise
-- (the lines above the last say which scenario, and why).
-- Environment: SOAK_SEED (random moments; default: the time), SOAK_ONLY
-- (comma-separated scenario names), SOAK_KEEP=1 (keep the temporary
-- directory), SOAK_WAIT_DEFAULT_STALE=1 (a CLI without --stale-after: pause
-- the runner past the default 60 s window instead of skipping scenario 2).
package.cpath = (os.getenv("ALIPAY_BUILD") or "build/lua5.4") .. "/?.so;" .. package.cpath
package.path = "lua/?.lua;lua/?/init.lua;sandbox/lua/?.lua;sandbox/lua/?/init.lua;./?.lua;" .. package.path

local core = require "alipay.core"
local tally = require "soak.tally"
local outcome = require "soak.outcome"
local child = require "soak.child"

local SCENARIOS = {
  { name = "resend", run = "soak.resend" },
  { name = "takeover", run = "soak.takeover" },
  { name = "signals", run = "soak.interrupt" },
}

local function selected(name)
  local only = os.getenv("SOAK_ONLY")
  if not only or only == "" then return true end
  return ("," .. only .. ","):find("," .. name .. ",", 1, true) ~= nil
end

local function main()
  local started = core.monotonic_ms()
  local seed = tonumber(os.getenv("SOAK_SEED") or "") or os.time()
  math.randomseed(seed)
  print(("soak: seed %d (SOAK_SEED=%d repeats the random moments)"):format(seed, seed))
  local world, err = require("soak.world").start()
  if not world then
    print("soak: " .. tostring(err))
    print("lost=0 duplicated=0 (checked 0 recipients in 0 runs)")
    return 1
  end
  local total, runs, problems = tally.empty(), 0, 0
  local ok, raised = pcall(function()
    for _, s in ipairs(SCENARIOS) do
      if selected(s.name) then
        local o = outcome.new(s.name)
        local t0 = core.monotonic_ms()
        local fine, scenario_err = pcall(require(s.run), world, o)
        if not fine then o:raised(scenario_err) end
        print(("== %s: lost=%d duplicated=%d (checked %d recipients in %d runs, %.0f s)"):format(s.name,
          o.tally.lost, o.tally.duplicated, o.tally.checked, o.runs, (core.monotonic_ms() - t0) / 1000))
        for _, line in ipairs(o.notes) do print("   " .. line) end
        for _, line in ipairs(o.problems) do print("   PROBLEM: " .. line) end
        tally.add(total, o.tally)
        runs, problems = runs + o.runs, problems + #o.problems
      end
    end
  end)
  child.kill_all()
  world:stop()
  if not ok then
    print("soak: stopped: " .. tostring(raised))
    problems = problems + 1
  end
  print(("soak: %.0f s, %d problem(s)"):format((core.monotonic_ms() - started) / 1000, problems))
  print(("lost=%d duplicated=%d (checked %d recipients in %d runs)"):format(total.lost, total.duplicated,
    total.checked, runs))
  return (total.lost == 0 and total.duplicated == 0 and problems == 0) and 0 or 1
end

os.exit(main())
