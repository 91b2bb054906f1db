-- Campaign benchmark (not part of CI): how fast the engine sends and
-- whether its memory stays flat as the audience grows.
--
--  1. Throughput through the sandbox gateway (real RSA2 on both sides, over
--     keep-alive loopback HTTP) at 1, 8, 32 and 64 requests in flight:
--     - with 0 ms of injected latency, against the RSA floor: one sign plus
--       one verify per recipient, 1 / (t_sign + t_verify) from
--       `openssl speed rsa2048` (the client cannot beat it on one core; the
--       sandbox signs its answers on the same machine);
--     - with 50 ms of injected latency, against the ideal in_flight / 50 ms.
--  2. Peak memory (VmHWM) of a child process per audience size, 100,000 and
--     1,000,000 recipients, with the import (campaign.create) and the send
--     (c:run) phases timed separately. Sending a million messages through
--     the sandbox would take far too long, so these runs use a stub
--     transport that answers every request at once with a canned, signed
--     success: the client still signs each request and verifies each answer,
--     the store still records every recipient.
--
-- BENCH_QUICK=1 runs smaller sizes. Run from the repository root:
--   lua5.4 bench/campaign.lua
package.cpath = (os.getenv("ALIPAY_BUILD") or "build/lua5.4") .. "/?.so;" .. package.cpath
-- lua/: lua-alipay; sandbox/lua/: the sandbox gateway (lua-alipay-sandbox).
package.path = "lua/?.lua;lua/?/init.lua;sandbox/lua/?.lua;sandbox/lua/?/init.lua;" .. package.path
local fs = require "alipay.util.fs"

local cjson = require "cjson"
local core = require "alipay.core"

local QUICK = os.getenv("BENCH_QUICK") == "1"
local APP_ID = "2021000122671080"
local CHANNEL = "bench"
local TEMPLATE = "0bench0template0000000000000001"
local IN_FLIGHT = { 1, 8, 32, 64 }
local LATENCY_MS = 50
local MEMORY_SIZES = QUICK and { 5000, 50000 } or { 100000, 1000000 }
-- Stub runs sign with 1024-bit keys: 2048-bit signing alone would take
-- 1,000,000 x ~0.45 ms = 7.5 minutes of the 1M run; memory does not depend on it.
-- alipay.new refuses RSA2 keys under 2048 bits, so they sign as "RSA".
local STUB_KEY_BITS = 1024

local DATA = {
  head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看订单",
  keyword1 = { value = "{order_no}", color = "#85be53" },
  keyword2 = { value = "已发货", color = "#85be53" },
  keyword3 = { value = "2026-11-22 10:00", color = "#85be53" },
}

-- ---- helpers ----

local function read(path) return assert(fs.read(path)) end

local function write(path, data) assert(fs.write(path, data)) end

-- Wall-clock seconds with sub-millisecond resolution.
local function now() return require("alipay.core").now_ms() / 1000 end

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "command failed: " .. cmd)
end

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/lua-alipay-bench.XXXXXX")
  local dir = p:read("*l")
  p:close()
  return dir
end

local function vm_kb(field)
  local status = read("/proc/self/status")
  return tonumber(status:match(field .. ":%s*(%d+) kB"))
end

local function openssl_speed(bits)
  local p = assert(io.popen(("openssl speed -seconds %d rsa%d 2>/dev/null"):format(QUICK and 1 or 2, bits)))
  local out = p:read("*a")
  p:close()
  local sign, verify = out:match("rsa%s+" .. bits .. " bits%s+[%d.]+s%s+[%d.]+s%s+([%d.]+)%s+([%d.]+)")
  assert(sign, "could not read `openssl speed rsa" .. bits .. "` output")
  return tonumber(sign), tonumber(verify)
end

-- An audience of n generated followers, written line by line.
local function write_audience(path, n, prefix)
  local f = assert(io.open(path, "wb"))
  f:write("user_id,order_no\n")
  local batch = {}
  for i = 1, n do
    batch[#batch + 1] = ("%s%08d,HU%07d\n"):format(prefix, i, i)
    if #batch == 1000 then
      f:write(table.concat(batch))
      batch = {}
    end
  end
  f:write(table.concat(batch))
  f:close()
end

-- The engine's context over a channel file (transport: the stub), with
-- the template imported; ctx.close() closes the workspace.
local function engine_context(config, transport)
  local ws = assert(require("alipay.workspace").open { config = config, transport = transport })
  assert(ws.registry:import({ { id = TEMPLATE, name = "订单状态提醒", keywords = { "订单号", "订单状态", "更新时间" } } },
    { channel = CHANNEL }))
  local ctx = assert(ws:campaign_ctx { log = function() end })
  ctx.close = function() ws:close() end
  return ctx
end

local function channel_file(dir, fields)
  local channel = { kind = "alipaylife", id_type = "user_id", app_id = APP_ID }
  for k, v in pairs(fields) do channel[k] = v end
  write(dir .. "/alipay.json", cjson.encode { store = "bench.db", channels = { [CHANNEL] = channel } })
  return dir .. "/alipay.json"
end

-- ---- 1. throughput through the sandbox ----

-- The steady rate of a run, from the sandbox's arrival log: requests per
-- second between the in_flight-th arrival and the in_flight-th from the
-- end, leaving out the filling and draining of the pipeline. nil when the
-- run is too short to have a steady part.
local function steady_rate(sb, in_flight)
  local at = {}
  for _, ev in ipairs(assert(sb:arrivals())) do
    if ev.event == "arrive" and ev.method == "alipay.open.public.message.single.send" then at[#at + 1] = ev.at_ms end
  end
  table.sort(at)
  local first, last = at[in_flight], at[#at - in_flight]
  if not (first and last and last > first) then return nil end
  return (#at - 2 * in_flight) / ((last - first) / 1000)
end

local function throughput()
  local sandbox = require "alipay.sandbox"
  local campaign = require "alipay.campaign"
  local dir = tmpdir()
  local sb = assert(sandbox.start {
    app_id = APP_ID, app_public_key = read("spec/fixtures/keys/app_public.pem"),
    seed = {
      industries = { { code = "10001/20102", name = "IT科技/IT软件与服务" } },
      industry = { primary = "10001/20102" },
      library = { { template_id = "TM000000223", name = "订单状态提醒", industry = "10001/20102",
        keywords = { "订单号", "订单状态", "更新时间" } } },
      -- Claimed in the seed, so that a reset (between runs) keeps it.
      claimed = { { template_id = "TM000000223", msg_template_id = TEMPLATE } },
      followers = { generate = { count = 100000, user_id_prefix = "20880000" } },
    },
  })
  local rows = {}
  local ok, err = pcall(function()
    write(dir .. "/alipay_public_key.pem", sb.alipay_public_key)
    local p = io.popen("pwd")
    local cwd = p:read("*l")
    p:close()
    local config = channel_file(dir, { private_key_file = cwd .. "/spec/fixtures/keys/app_private_pkcs1.pem",
      alipay_public_key_file = "alipay_public_key.pem", gateway = sb.gateway })
    local ctx = engine_context(config)
    local runs = 0
    for _, latency in ipairs { 0, LATENCY_MS } do
      for _, in_flight in ipairs(IN_FLIGHT) do
        -- Enough recipients for a few seconds each.
        local n = latency == 0 and (QUICK and 500 or 3000) or math.max(40, in_flight * (QUICK and 8 or 25))
        runs = runs + 1
        local audience = ("%s/audience-%d.csv"):format(dir, runs)
        write_audience(audience, n, "20880000")
        assert(sb:reset()) -- keeps the delivery log small; clears the faults too
        if latency > 0 then assert(sb:faults { latency_ms = latency }) end
        local c = assert(campaign.create(ctx, {
          id = ("bench-%d-%d"):format(latency, in_flight), channel = CHANNEL, template = TEMPLATE,
          audience = { file = audience }, data = DATA,
          policy = { in_flight = in_flight, qps = 100000 },
        }))
        local t0, cpu0 = now(), os.clock()
        local summary = assert(c:run {})
        local wall, cpu = now() - t0, os.clock() - cpu0
        local steady = steady_rate(sb, in_flight)
        assert(summary.status == "completed", "bench campaign " .. tostring(summary.status)
          .. ": " .. tostring(summary.stop_reason))
        assert(summary.counts.sent == n, ("sent %d of %d"):format(summary.counts.sent, n))
        rows[#rows + 1] = { latency = latency, in_flight = in_flight, n = n, rate = n / wall, cpu_s = cpu / n,
                            steady = steady }
        io.stderr:write(("  %d ms, %2d in flight: %d sent in %.2f s\n"):format(latency, in_flight, n, wall))
      end
    end
    ctx.close()
  end)
  sb:stop()
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(err, 0) end
  return rows
end

-- ---- 2. memory, in a child process per size ----

-- A transport that answers every request at once with the same signed
-- success, as the gateway would: the client verifies it like any answer.
local function stub_transport(alipay_key)
  local bodies = {}
  local function body_for(url)
    local method = url:match("[?&]method=([^&]+)") or "unknown"
    if not bodies[method] then
      local node = method:gsub("%.", "_") .. "_response"
      local content = '{"code":"10000","msg":"Success"}'
      bodies[method] = ('{"%s":%s,"sign":"%s"}'):format(node, content, alipay_key:sign(content, "RSA"))
    end
    return bodies[method]
  end
  local queue, next_id = {}, 0
  local t = {}
  function t.request(_, req) return { status = 200, headers = {}, body = body_for(req.url) } end
  function t.submit(_, req)
    next_id = next_id + 1
    queue[#queue + 1] = { id = next_id, res = { status = 200, headers = {}, body = body_for(req.url) } }
    return next_id
  end
  function t.wait(_)
    local done = queue
    queue = {}
    return done
  end
  function t.pending() return #queue end
  function t.close() end
  return t
end

local function memory_child(n, dir)
  local campaign = require "alipay.campaign"
  local alipay_key = assert(core.private_key(read(dir .. "/stub_alipay_key.pem")))
  local config = channel_file(dir .. "/" .. n, { private_key_file = dir .. "/stub_app_key.pem", sign_type = "RSA",
    alipay_public_key_file = dir .. "/stub_alipay_pub.pem", gateway = "http://stub.invalid/gateway.do" })
  local ctx = engine_context(config, stub_transport(alipay_key))
  local start_kb = vm_kb("VmHWM")
  local t0 = now()
  local c = assert(campaign.create(ctx, { id = "memory-" .. n, channel = CHANNEL, template = TEMPLATE,
    audience = { file = dir .. "/audience-" .. n .. ".csv" }, data = DATA,
    policy = { in_flight = 32, qps = 100000 } }))
  local t1 = now()
  local import_kb = vm_kb("VmHWM")
  local summary = assert(c:run {})
  local t2 = now()
  assert(summary.counts.sent == n, ("sent %s of %d (%s)"):format(tostring(summary.counts.sent), n,
    tostring(summary.stop_reason)))
  ctx.close()
  io.write(cjson.encode { n = n, start_kb = start_kb, import_kb = import_kb, send_kb = vm_kb("VmHWM"),
    import_s = t1 - t0, send_s = t2 - t1 }, "\n")
end

local function memory()
  local dir = tmpdir()
  local rows = {}
  local ok, err = pcall(function()
    sh(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:%d -out %s/stub_app_key.pem 2>/dev/null")
      :format(STUB_KEY_BITS, dir))
    sh(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:%d -out %s/stub_alipay_key.pem 2>/dev/null")
      :format(STUB_KEY_BITS, dir))
    sh(("openssl pkey -in %s/stub_alipay_key.pem -pubout -out %s/stub_alipay_pub.pem"):format(dir, dir))
    for _, n in ipairs(MEMORY_SIZES) do
      sh(("mkdir -p %s/%d"):format(dir, n))
      write_audience(("%s/audience-%d.csv"):format(dir, n), n, "20881000")
      io.stderr:write(("  memory: %s recipients (child process)...\n"):format(n))
      local p = assert(io.popen(("lua5.4 bench/campaign.lua --memory-child %d %s"):format(n, dir)))
      local out = p:read("*a")
      local closed = p:close()
      local line = out:match("(%b{})%s*$")
      assert(closed and line, "memory child failed for " .. n .. ":\n" .. out)
      rows[#rows + 1] = cjson.decode(line)
      os.execute(("rm -rf %s/%d %s/audience-%d.csv"):format(dir, n, dir, n))
    end
  end)
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(err, 0) end
  return rows
end

-- ---- report ----

local function mb(kb) return ("%.1f MB"):format(kb / 1024) end

local function report(speed, rows, mem)
  local sign_s, verify_s = speed.sign, speed.verify
  local floor = 1 / (1 / sign_s + 1 / verify_s)
  print(("lua-alipay campaign benchmark (%s)%s"):format(_VERSION, QUICK and ", BENCH_QUICK" or ""))
  print(("RSA floor: 1 / (sign + verify) = %.0f recipients/s   (openssl speed rsa2048: %.0f sign/s, %.0f verify/s)")
    :format(floor, sign_s, verify_s))
  print("")
  print("throughput through the sandbox gateway")
  print(("%-8s %9s %10s %13s %17s %7s   %s"):format("latency", "in flight", "recipients", "recipients/s",
    "reference", "ratio", "client CPU per recipient / whole run"))
  for _, r in ipairs(rows) do
    local ref, label, rate = floor, "RSA floor", r.rate
    local cpu
    if r.latency > 0 then
      ref, label = r.in_flight / (r.latency / 1000), "ideal"
      rate = r.steady or r.rate
      cpu = ("whole run %.3f"):format(r.rate / ref)
    else
      cpu = ("%.0f us = %.2f x (sign + verify)"):format(r.cpu_s * 1e6, r.cpu_s * floor)
    end
    print(("%-8s %9d %10d %13.1f %17s %7.3f   %s"):format(r.latency .. " ms", r.in_flight, r.n, rate,
      ("%.0f/s %s"):format(ref, label), rate / ref, cpu))
  end
  print("  0 ms: against one RSA2 sign + verify per recipient; the sandbox signs its answers on the same")
  print("  cores. 50 ms: against in_flight / latency, which the 0 ms rate caps on this machine; the rate is")
  print("  the steady one (the sandbox's arrivals, without the first and last round), the whole run's after.")
  print("")
  print(("peak memory (VmHWM of a child process), stub transport, %d-bit throwaway keys"):format(STUB_KEY_BITS))
  print(("%-12s %12s %12s %12s %10s %10s %12s"):format("recipients", "at start", "after import",
    "after send", "import", "send", "send rate"))
  for _, m in ipairs(mem) do
    print(("%-12d %12s %12s %12s %9.1fs %9.1fs %10.0f/s"):format(m.n, mb(m.start_kb), mb(m.import_kb),
      mb(m.send_kb), m.import_s, m.send_s, m.n / m.send_s))
  end
  if #mem >= 2 then
    local small, big = mem[1], mem[#mem]
    local growth = big.send_kb / small.send_kb
    print(("  %dx the recipients, %.2fx the peak memory: %s"):format(big.n // small.n, growth,
      growth < 1.5 and "flat (the audience is streamed)" or "NOT flat"))
  end
end

-- ---- main ----

if arg[1] == "--memory-child" then
  memory_child(tonumber(arg[2]), arg[3])
  os.exit(0)
end

local sign_s, verify_s = openssl_speed(2048)
local rows = throughput()
local mem = memory()
report({ sign = sign_s, verify = verify_s }, rows, mem)
