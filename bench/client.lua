-- make bench (client part): against the local sandbox gateway,
--  1. the client's CPU time per v2 call (no injected latency), divided by
--     the cost of one RSA2 sign plus one verify from `openssl speed`: the
--     floor any correct client must pay. The goal is under 1.3.
--  2. calls per second with 1, 8, 32 and 64 transfers in flight and 50 ms
--     of injected latency, against the ideal in_flight / latency. The
--     sandbox runs a worker per core (alipay.sandbox.replica keeps their
--     state one), so it is not the single-core ceiling it used to be.
package.cpath = (os.getenv("ALIPAY_BUILD") or "build/lua5.4") .. "/?.so;" .. package.cpath
-- lua/: lua-alipay; sandbox/lua/: the sandbox gateway (lua-alipay-sandbox).
package.path = "lua/?.lua;lua/?/init.lua;sandbox/lua/?.lua;sandbox/lua/?/init.lua;" .. package.path
local fs = require "alipay.util.fs"

local alipay = require "alipay"
local sandbox = require "alipay.sandbox"

local CALLS = tonumber(os.getenv("BENCH_CALLS") or "") or 2000
local LATENCY_MS = 50
local APP_ID = "2021000122671080"
local METHOD = "alipay.open.public.user.follow.query"

local function read(path) return assert(fs.read(path)) end

local function openssl_speed()
  local p = assert(io.popen("openssl speed -seconds 2 rsa2048 2>/dev/null"))
  local out = p:read("*a")
  p:close()
  local sign, verify = out:match("rsa%s+2048 bits%s+[%d.]+s%s+[%d.]+s%s+([%d.]+)%s+([%d.]+)")
  assert(sign, "could not read `openssl speed rsa2048` output")
  return tonumber(sign), tonumber(verify)
end

-- Wall-clock seconds, for throughput only (CPU figures use os.clock).
local function now() return require("alipay.core").now_ms() / 1000 end

local sb = assert(sandbox.start {
  app_id = APP_ID,
  app_public_key = read("spec/fixtures/keys/app_public.pem"),
  seed = "spec/fixtures/sandbox_seed.json",
  workers = tonumber(os.getenv("BENCH_SANDBOX_WORKERS") or "") or "auto",
})

local ok, err = pcall(function()
  local client = assert(alipay.new {
    app_id = APP_ID, private_key_file = "spec/fixtures/keys/app_private_pkcs1.pem",
    alipay_public_key = sb.alipay_public_key, gateway = sb.gateway,
  })
  local biz = { user_id = "2088000000000001" }
  assert(client:execute(METHOD, biz)) -- warm up: connection, JIT of nothing, caches

  -- Runs `total` calls with up to `in_flight` transfers at once; returns
  -- the client's CPU seconds per call and the wall seconds in all.
  -- Also returns the steady rate: completions per second between the end
  -- of the first round (in_flight answers) and the start of the last one,
  -- leaving out the filling and the draining of the pipeline, which a
  -- rate over the whole run counts against the steady in_flight / latency.
  local function run(total, in_flight)
    local contexts = {}
    local started, finished = 0, 0
    local cpu0, t0 = os.clock(), now()
    local t_first, t_last
    while finished < total do
      while started < total and client:pending() < in_flight do
        local req, ctx = client:prepare_v2(METHOD, biz)
        contexts[assert(client:submit(req))] = ctx
        started = started + 1
      end
      for _, done in ipairs(client:wait(1000)) do
        assert(client:finish_v2(contexts[done.id], done.res, done.err, done.detail))
        contexts[done.id] = nil
        finished = finished + 1
        if finished == in_flight then t_first = now() end
        if finished == total - in_flight then t_last = now() end
      end
    end
    local steady = t_first and t_last and t_last > t_first and (total - 2 * in_flight) / (t_last - t_first) or nil
    return (os.clock() - cpu0) / total, now() - t0, steady
  end

  local cpu0 = os.clock()
  for _ = 1, CALLS do assert(client:execute(METHOD, biz)) end
  local sequential = (os.clock() - cpu0) / CALLS
  local pipelined = run(CALLS, 8)
  local sign_s, verify_s = openssl_speed()
  local floor = 1 / sign_s + 1 / verify_s
  print(("lua-alipay client benchmark (%s), %d calls to the sandbox over keep-alive"):format(_VERSION, CALLS))
  print(("RSA floor (sign+verify)      %8.1f us   (openssl speed rsa2048: %.0f sign/s, %.0f verify/s)"):format(
    floor * 1e6, sign_s, verify_s))
  print(("client CPU per call, 8 in flight  %8.1f us   ratio %.3f (goal: under 1.3)"):format(
    pipelined * 1e6, pipelined / floor))
  print(("client CPU per call, sequential   %8.1f us   ratio %.3f"):format(sequential * 1e6, sequential / floor))
  print("  (sequential calls sleep once per call while the sandbox works; on a virtual machine the")
  print("   kernel's sleep and wake-up are charged to the process, so this figure includes them)")

  sb:faults { latency_ms = LATENCY_MS }
  print(("\nthroughput with %d ms of injected latency, the sandbox on %d nginx workers"):format(LATENCY_MS,
    assert(sb:health()).workers))
  print(("%-10s %10s %10s %8s %12s"):format("in flight", "calls/s", "ideal", "ratio", "whole run"))
  for _, in_flight in ipairs { 1, 8, 32, 64 } do
    local total = in_flight * 30
    local _, wall, steady = run(total, in_flight)
    local ideal = in_flight / (LATENCY_MS / 1000)
    local rate = steady or total / wall
    print(("%-10d %10.1f %10.1f %8.3f %12.3f"):format(in_flight, rate, ideal, rate / ideal, total / wall / ideal))
  end
  print("  calls/s and ratio: the steady rate, between the first round's answers and the last round's")
  print("  requests; whole run: the rate over the run, filling and draining of the pipeline included")
end)
sb:stop()
if not ok then error(err, 0) end
