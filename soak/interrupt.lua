-- Scenario 3 (issue 13 §3): Ctrl-C and SIGTERM while answers are on their
-- way. With LATENCY_MS on every answer, `alipay campaign run` (then
-- `campaign resume`) is started, signalled at a random moment while it
-- sends, and resumed again, TRIALS times: SIGINT each time, except one
-- double SIGINT (the second while the first drains) and one SIGTERM (what
-- systemd sends). Then plain resumes complete the campaign.
-- Checked at each signal (a problem otherwise): the process exits within
-- the drain (5 s by default) plus EXIT_MARGIN_S, with status 130 after
-- SIGINT and 143 after SIGTERM, naming `alipay campaign resume ID` (after
-- a single signal: a second one may end the process without a word).
-- A process still running at that deadline is killed (SIGKILL), so that a
-- slow exit cannot stretch the soak.
local core = require "alipay.core"
local child = require "soak.child"
local traffic = require "soak.traffic"
local settle = require "soak.settle"
local measure = require "soak.measure"
local shell = require "alipay.util.shell"
local fs = require "alipay.util.fs"

-- More than 10 trials of at most 1.2 s each send: the signals find it running.
local RECIPIENTS = 1000
local LATENCY_MS = 150       -- 8 in flight: about 50 answers a second, always some in flight
local MIN_TRIALS, MAX_TRIALS = 6, 10
-- After the child's first send: a signal during start-up (or during the
-- audience import of `run`) is another story than a drain.
local MIN_DELAY_MS, MAX_DELAY_MS = 100, 1200
local START_WAIT_S = 15
local DOUBLE_GAP_MS = 100
local DRAIN_S = 5            -- the default of --drain
local EXIT_MARGIN_S = 3
local EXPECTED = { INT = 130, TERM = 143 }

-- The signals of each trial: SIGINT, one double SIGINT and one SIGTERM at
-- random places (never the first: the first trial is the `run`).
local function plan(n)
  local trials = {}
  for i = 1, n do trials[i] = { "INT" } end
  local double = math.random(2, n)
  local term
  repeat term = math.random(2, n) until term ~= double
  trials[double] = { "INT", "INT" }
  trials[term] = { "TERM" }
  return trials
end

local function first_line_with(text, needle)
  for line in text:gmatch("[^\n]+") do
    if line:find(needle, 1, true) then return line end
  end
  return nil
end

local function last_line(text)
  local line = ""
  for l in text:gmatch("[^\n]+") do line = l end
  return #line > 240 and line:sub(1, 240) .. "…" or line
end

-- One trial: start, wait, signal, wait for the exit. -> "completed" when the
-- campaign ended before the signal found it running, "signalled" otherwise.
local function trial(world, o, id, i, signals, command)
  local out, err = ("%s/trial-%d.out"):format(world.dir, i), ("%s/trial-%d.err"):format(world.dir, i)
  local since = traffic.seq(world)
  local c = assert(child.spawn(world:command(command, out, err), world.dir))
  o:ran()
  if traffic.wait(world, c, since, 1, START_WAIT_S) then core.sleep_ms(math.random(MIN_DELAY_MS, MAX_DELAY_MS)) end
  if not c:running() then
    local code = c:exit_status()
    o:note("trial %d: ended (exit %d) before the signal", i, code)
    if code ~= 0 then o:problem("trial %d: exit %d before any signal: %s", i, code, last_line(fs.read(err) or "")) end
    return code == 0 and "completed" or nil
  end
  local at = core.monotonic_ms()
  c:signal(signals[1])
  if signals[2] then
    core.sleep_ms(DOUBLE_GAP_MS)
    c:signal(signals[2])
  end
  local code = c:wait(DRAIN_S + EXIT_MARGIN_S)
  local took = (core.monotonic_ms() - at) / 1000
  local name = table.concat(signals, "+SIG")
  local moment = ("trial %d: SIG%s %.1f s after the start"):format(i, name, (at - c.started_ms) / 1000)
  if not code then
    c:kill()
    o:note("%s: still running %.1f s later: killed", moment, took)
    o:problem("trial %d (SIG%s): did not exit within %d s (the drain, %d s, and %d s more): killed", i,
      name, DRAIN_S + EXIT_MARGIN_S, DRAIN_S, EXIT_MARGIN_S)
    return "signalled"
  end
  o:note("%s: exit %d in %.2f s", moment, code, took)
  local text = fs.read(err) or ""
  if code ~= EXPECTED[signals[1]] then
    o:problem("trial %d (SIG%s): exit %d, expected %d: %s", i, name, code, EXPECTED[signals[1]], last_line(text))
  end
  -- A second signal ends the process at once: it need not say more.
  if not signals[2] and not first_line_with(text, "alipay campaign resume " .. id) then
    o:problem("trial %d (SIG%s): the message does not name `alipay campaign resume %s`: %s", i, name, id,
      last_line(text))
  end
  return "signalled"
end

return function(world, o)
  local id = "soak-signals"
  local path, ids = world:audience(id, RECIPIENTS)
  local trials = plan(math.random(MIN_TRIALS, MAX_TRIALS))
  assert(world.sb:faults { latency_ms = LATENCY_MS })
  local signalled, term = 0, false
  local ok, err = pcall(function()
    for i, signals in ipairs(trials) do
      local command = i == 1 and world:run_args(world.config_path, id, path, "--in-flight 8 --qps 1000")
        or ("campaign resume %s --progress none --config %s"):format(id, shell.quote(world.config_path))
      local result = trial(world, o, id, i, signals, command)
      if result == "completed" then break end
      if result == "signalled" then
        signalled, term = signalled + 1, term or signals[1] == "TERM"
      end
    end
  end)
  assert(world.sb:faults {})
  if not ok then o:raised(err) end
  if ok and (signalled < MIN_TRIALS or not term) then
    o:problem("only %d signals (SIGTERM %s) found the campaign running", signalled, term and "among them" or "not")
  end
  local runs, problem = settle(world, id)
  o:ran(runs)
  if problem then o:problem("%s", problem) end
  local result, merr = measure(world, id, ids)
  if not result then return o:problem("%s", merr) end
  o:counted(id, result)
end
