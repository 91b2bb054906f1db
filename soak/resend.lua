-- Scenario 1 (issue 13 §1): a server that reads a request, then closes the
-- reused keep-alive connection without answering. libcurl sends such a
-- request again on a new connection, and a client that does not notice
-- reports one clean attempt for two deliveries.
--   a. the sandbox's own `reset` fault (it closes before handling the
--      request: a resend there is delivered once, but shows as more send
--      arrivals than recorded attempts, which the notes say);
--   b. soak/dropper.lua in front of the sandbox: the request is delivered,
--      then the answer dropped (this is where a silent resend duplicates).
-- Each at --in-flight 1 and 8, RECIPIENTS fresh followers per run; then the
-- faults are cleared and `campaign resume` brings it to completion.
local dropper = require "soak.dropper"
local settle = require "soak.settle"
local measure = require "soak.measure"

local RECIPIENTS = 200
local IN_FLIGHT = { 1, 8 }
local SEND = "alipay.open.public.message.single.send"
local RESET_P = 0.2                              -- the sandbox's reset fault, sends only
local DROP_P = { reused = 0.3, fresh = 0.05 }    -- dropped answers, by connection

-- Send arrivals at the sandbox since seq (a resend arrives twice).
local function send_arrivals(world, since)
  local events = world.sb:arrivals(since)
  local n = 0
  for _, e in ipairs(events or {}) do
    if e.event == "arrive" and e.method == SEND then n = n + 1 end
  end
  return n
end

local function attempts(rows, ids)
  local n = 0
  for _, row in ipairs(rows) do
    if ids[row.alipay_id] then n = n + (tonumber(row.attempts) or 0) end
  end
  return n
end

-- One campaign: run through `config` with the fault on, then settle it.
local function one(world, o, label, in_flight, config, faults)
  local id = "soak-" .. label
  local path, ids = world:audience(id, RECIPIENTS)
  local since = (world.sb:health() or {}).last_seq or 0
  assert(world.sb:faults(faults or {}))
  local code, _, err = world:alipay(world:run_args(config, id, path, ("--in-flight %d --qps 1000"):format(in_flight)))
  assert(world.sb:faults {})
  o:ran()
  if code == 2 then return o:problem("%s: campaign run: usage error: %s", label, err) end
  local runs, problem = settle(world, id)
  o:ran(runs)
  if problem then o:problem("%s: %s", label, problem) end
  local result, merr = measure(world, id, ids)
  if not result then return o:problem("%s: %s", label, merr) end
  o:counted(("%s (run exit %d)"):format(label, code), result)
  local rows = world:rows(id) or {}
  o:note("  %s: %d send arrivals at the sandbox, %d attempts recorded", label, send_arrivals(world, since),
    attempts(rows, ids))
end

return function(world, o)
  for _, n in ipairs(IN_FLIGHT) do
    one(world, o, "reset-inflight" .. n, n, world.config_path, { reset = RESET_P, methods = { SEND } })
  end
  local d, err = dropper.start(world.sb.base_url, DROP_P, world.root)
  if not d then return o:problem("%s", err) end
  local config = world:config(d.gateway)
  for _, n in ipairs(IN_FLIGHT) do
    one(world, o, "drop-inflight" .. n, n, config)
  end
  local stats = d:stats()
  if stats then
    o:note("dropping layer: %d forwarded, %d answers dropped on reused connections, %d on new ones",
      stats.forwarded, stats.dropped_reused, stats.dropped_fresh)
  end
  d:stop()
end
