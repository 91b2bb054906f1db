-- The sandbox gateway served by nginx (alipay.sandbox, alipay.sandbox.server)
-- and `bin/alipay sandbox`: real signed requests over loopback HTTP and
-- HTTPS, the arrival log, every fault, the admin endpoints, the CLI.
local helpers = require "helpers"
local core = require "alipay.core"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"
local runner = require "alipay.sandbox.nginx"

local APP_ID = "2021000122671080"
local APP_PUBLIC_KEY = helpers.key_text("app_public.pem")
local app_key = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem")))
local SEED = helpers.fixtures .. "/sandbox_seed.json"

-- From the seed: a follower with a long-term subscription to a mini template.
local USER = "2088857585575154"
local MINI_TEMPLATE = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM="
local SUBSCRIBE_QUERY = "alipay.open.app.messagetemplate.subscribe.query"
local FOLLOW_QUERY = "alipay.open.public.user.follow.query"
local MINI_SEND = "alipay.open.app.mini.templatemessage.send"
local V3_SUBSCRIBE_QUERY = "/v3/alipay/open/app/messagetemplate/subscribe/query"

local SUBSCRIBE_BIZ = { user_id = USER, template_id_list = { MINI_TEMPLATE } }

-- ---- an HTTP client: core.http, or the curl CLI while the core has none ----

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function curl_client(ca_file)
  local dir = helpers.tmpdir()
  local client = {}
  function client.request(req)
    local cmd = { "curl -sS --max-time 10 -H 'Expect:'", "-X", req.method or "GET",
      "-D", shell_quote(dir .. "/headers"), "-o", shell_quote(dir .. "/body"),
      "-w '%{http_code}'" }
    if ca_file then cmd[#cmd + 1] = "--cacert " .. shell_quote(ca_file) end
    for name, value in pairs(req.headers or {}) do
      cmd[#cmd + 1] = "-H " .. shell_quote(name .. ": " .. value)
    end
    if req.body then
      helpers.write(dir .. "/request", req.body)
      cmd[#cmd + 1] = "--data-binary @" .. shell_quote(dir .. "/request")
    end
    cmd[#cmd + 1] = shell_quote(req.url)
    os.remove(dir .. "/body")
    local ok, out = helpers.run(table.concat(cmd, " "))
    if not ok then return nil, "curl: " .. out end
    local headers = {}
    for line in helpers.read(dir .. "/headers"):gmatch("[^\r\n]+") do
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then headers[name:lower()] = value end
    end
    return { status = tonumber(out:match("(%d+)%s*$")), headers = headers,
      body = helpers.read(dir .. "/body") }
  end
  -- Several GETs in one curl run, which keeps its connection alive.
  function client.get_many(urls)
    local cmd = { "curl -sS --max-time 10" }
    for _, url in ipairs(urls) do cmd[#cmd + 1] = shell_quote(url) .. " -o /dev/null" end
    return helpers.run(table.concat(cmd, " "))
  end
  function client.close() end
  return client
end

local function new_client(ca_file)
  if not core.http then return curl_client(ca_file) end
  local engine = assert(core.http { timeout_ms = 10000, ca_file = ca_file })
  local client = {}
  function client.request(req) return engine:request(req) end
  function client.get_many(urls)
    for _, url in ipairs(urls) do
      local res, err = engine:request { url = url }
      if not res then return false, err end
    end
    return true
  end
  function client.close() engine:close() end
  return client
end

-- ---- signed requests, built here with the core ----

local function beijing_timestamp()
  return os.date("!%Y-%m-%d %H:%M:%S", os.time() + 8 * 3600)
end

-- A signed v2 call: system parameters and sign in the query, biz_content in
-- the body (docs/protocol.md §1.3). Returns the request and its parameters.
local function v2_request(gateway, method, biz, extra)
  local params = {
    app_id = APP_ID, method = method, format = "JSON", charset = "utf-8", sign_type = "RSA2",
    timestamp = beijing_timestamp(), version = "1.0", biz_content = cjson.encode(biz),
  }
  for k, v in pairs(extra or {}) do params[k] = v end
  params.sign = app_key:sign(core.sign_content(params))
  local system = {}
  for k, v in pairs(params) do
    if k ~= "biz_content" then system[k] = v end
  end
  return {
    method = "POST", url = gateway .. "?" .. core.form_encode(system),
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8" },
    body = "biz_content=" .. core.form_encode(params.biz_content),
  }, params
end

-- The same call as one GET URL (the gateway accepts GET too).
local function v2_get_url(gateway, method, biz)
  local params = {
    app_id = APP_ID, method = method, format = "JSON", charset = "utf-8", sign_type = "RSA2",
    timestamp = beijing_timestamp(), version = "1.0", biz_content = cjson.encode(biz),
  }
  params.sign = app_key:sign(core.sign_content(params))
  return gateway .. "?" .. core.form_encode(params)
end

-- Verifies a v2 answer with the sandbox's key: ok, decoded node, extraction.
local function check_v2(pub, method, body)
  local node = assert(core.extract(body, method))
  local ok = pub:verify(node.content, node.sign)
  return ok, cjson.decode(node.content), node
end

local function v3_request(base_url, method, path, payload)
  local body = payload and cjson.encode(payload) or ""
  local auth = ("app_id=%s,nonce=%s,timestamp=%d"):format(APP_ID, core.random_hex(16),
    os.time() * 1000)
  local content = auth .. "\n" .. method .. "\n" .. path .. "\n" .. body .. "\n"
  return {
    method = method, url = base_url .. path, body = body,
    headers = {
      Authorization = "ALIPAY-SHA256withRSA " .. auth .. ",sign=" .. app_key:sign(content),
      ["Content-Type"] = "application/json",
      ["alipay-request-id"] = core.random_hex(16),
    },
  }, auth:match("timestamp=(%d+)")
end

-- Verifies a v3 answer: alipay-signature over timestamp, nonce and body.
local function check_v3(pub, res)
  local h = res.headers
  assert(h["alipay-signature"], "the v3 answer is not signed")
  return pub:verify(h["alipay-timestamp"] .. "\n" .. h["alipay-nonce"] .. "\n" .. res.body .. "\n",
    h["alipay-signature"])
end

-- ---- small helpers ----

local function alive(pid)
  local f = io.open(("/proc/%d/stat"):format(pid), "rb")
  if not f then return false end
  local stat = f:read("*a")
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function dir_exists(path)
  return (os.execute("test -d " .. shell_quote(path))) == true
end

-- Arrival-log events by kind, and the answer of each arrival.
local function split_events(events)
  local arrivals, answers = {}, {}
  for _, e in ipairs(events) do
    if e.event == "arrive" then
      arrivals[#arrivals + 1] = e
    else
      answers[e.request] = e
    end
  end
  return arrivals, answers
end

local function has_fault(event, name)
  for _, f in ipairs(event.faults or {}) do
    if f == name then return true end
  end
  return false
end

local function call_v2(client, sb, method, biz)
  return client.request((v2_request(sb.gateway, method, biz or SUBSCRIBE_BIZ)))
end

local function code_of(pub, method, res)
  local ok, node = check_v2(pub, method, res.body)
  assert.is_true(ok)
  return node.code, node
end

describe("alipay.sandbox gateway", function()
  local sb, client, tls_client, pub

  lazy_setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = APP_PUBLIC_KEY, seed = SEED })
    client = new_client()
    tls_client = new_client(sb.ca_file)
    pub = assert(core.public_key(sb.alipay_public_key))
  end)

  lazy_teardown(function()
    if client then client.close() end
    if tls_client then tls_client.close() end
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    assert(sb:reset())
  end)

  it("exposes its URLs, keys and files", function()
    assert.matches("^http://127%.0%.0%.1:%d+/gateway%.do$", sb.gateway)
    assert.equal(sb.base_url .. "/gateway.do", sb.gateway)
    assert.matches("^https://127%.0%.0%.1:%d+$", sb.https_base_url)
    assert.equal(sb.https_base_url .. "/gateway.do", sb.https_gateway)
    assert.equal(sb.base_url .. "/__sandbox", sb.admin)
    assert.matches("BEGIN PUBLIC KEY", sb.alipay_public_key)
    assert.equal(2048, pub:bits())
    assert.equal(sb.alipay_public_key, helpers.read(sb.files.alipay_public_key))
    assert.matches("BEGIN CERTIFICATE", helpers.read(sb.ca_file))
    assert.is_nil(sb.alipay_cert)
    local health = assert(sb:health())
    assert.is_true(health.ok)
    -- The private key is only in the worker's config, readable by its owner.
    assert.is_nil(io.open(sb.prefix .. "/alipay_private_key.pem"))
    local ok, mode = helpers.run("stat -c %a " .. shell_quote(sb.prefix .. "/sandbox.json"))
    assert.is_true(ok)
    assert.equal("600", mode:match("%d+"))
  end)

  it("answers a signed v2 call over HTTP with a verified answer", function()
    local res = assert(call_v2(client, sb, SUBSCRIBE_QUERY))
    assert.equal(200, res.status)
    local code, node = code_of(pub, SUBSCRIBE_QUERY, res)
    assert.equal("10000", code, res.body)
    assert.is_table(node)
  end)

  it("answers the same call over HTTPS, verified against the generated CA", function()
    local req = v2_request(sb.https_gateway, SUBSCRIBE_QUERY, SUBSCRIBE_BIZ)
    local res = assert(tls_client.request(req))
    assert.equal(200, res.status)
    assert.equal("10000", (code_of(pub, SUBSCRIBE_QUERY, res)))
    -- Without the CA the client refuses the sandbox's certificate.
    local untrusting = new_client()
    local refused, err = untrusting.request(req)
    untrusting.close()
    assert.is_nil(refused)
    assert.is_string(err)
  end)

  it("answers signed v3 calls over HTTP and HTTPS", function()
    for _, base in ipairs { sb.base_url, sb.https_base_url } do
      local c = base == sb.base_url and client or tls_client
      local res = assert(c.request((v3_request(base, "POST", V3_SUBSCRIBE_QUERY, SUBSCRIBE_BIZ))))
      assert.equal(200, res.status, res.body)
      assert.is_true(check_v3(pub, res))
      assert.is_table(cjson.decode(res.body))
    end
  end)

  it("logs each arrival and its answer", function()
    local req, params = v2_request(sb.gateway, SUBSCRIBE_QUERY, SUBSCRIBE_BIZ)
    assert(client.request(req))
    local v3req, v3_timestamp = v3_request(sb.https_base_url, "POST", V3_SUBSCRIBE_QUERY,
      SUBSCRIBE_BIZ)
    assert(tls_client.request(v3req))
    local events = assert(sb:arrivals())
    assert.equal(4, #events)
    local arrivals, answers = split_events(events)
    local a, b = arrivals[1], arrivals[2]
    assert.same({ "v2", SUBSCRIBE_QUERY, "http", params.timestamp },
      { a.api, a.method, a.scheme, a.timestamp })
    assert.same({ "v3", SUBSCRIBE_QUERY, "https", v3_timestamp },
      { b.api, b.method, b.scheme, b.timestamp })
    for _, arrival in ipairs(arrivals) do
      assert.is_number(arrival.connection)
      assert.is_number(arrival.connection_requests)
      local answer = assert(answers[arrival.seq])
      assert.equal(200, answer.status)
      assert.is_true(answer.seq > arrival.seq)
      assert.is_true(answer.at_ms >= arrival.at_ms)
    end
    -- ?since= returns only the newer events.
    local newer = assert(sb:arrivals(events[2].seq))
    assert.equal(2, #newer)
    assert.equal(events[3].seq, newer[1].seq)
  end)

  it("serves 20 keep-alive requests on one connection", function()
    local urls = {}
    for i = 1, 20 do urls[i] = v2_get_url(sb.gateway, FOLLOW_QUERY, { user_id = USER }) end
    assert(client.get_many(urls))
    local arrivals = split_events(assert(sb:arrivals()))
    assert.equal(20, #arrivals)
    for i, arrival in ipairs(arrivals) do
      assert.equal(arrivals[1].connection, arrival.connection)
      assert.equal(arrivals[1].connection_requests + i - 1, arrival.connection_requests)
    end
  end)

  it("serves concurrent requests without serialising them", function()
    if not core.http then return pending("needs core.http (engine:submit)") end
    -- While the first answer sleeps, the others arrive: the arrival log
    -- shows every arrival before any answer.
    assert(sb:faults { latency_ms = 300 })
    local engine = assert(core.http { timeout_ms = 10000 })
    finally(function() engine:close() end)
    for _ = 1, 5 do engine:submit((v2_request(sb.gateway, SUBSCRIBE_QUERY, SUBSCRIBE_BIZ))) end
    local done = 0
    while engine:pending() > 0 do
      for _, r in ipairs(engine:wait(5000)) do
        assert(r.res, r.err)
        done = done + 1
      end
    end
    assert.equal(5, done)
    local events = assert(sb:arrivals())
    assert.equal(10, #events)
    for i = 1, 5 do assert.equal("arrive", events[i].event) end
    for i = 6, 10 do assert.equal("answer", events[i].event) end
    assert.is_true(events[10].at_ms - events[1].at_ms < 5 * 300)
  end)

  it("records deliveries, and reset clears them", function()
    local res = assert(call_v2(client, sb, MINI_SEND, {
      to_user_id = USER, user_template_id = MINI_TEMPLATE, page = "pages/index/index",
      data = cjson.encode { keyword1 = { value = "A1001" }, keyword2 = { value = "12:00" },
        keyword3 = { value = "SF" } },
    }))
    assert.equal("10000", (code_of(pub, MINI_SEND, res)), res.body)
    local deliveries = assert(sb:deliveries())
    assert.equal(1, #deliveries)
    assert(sb:reset())
    assert.same({}, assert(sb:deliveries()))
  end)

  describe("faults", function()
    it("latency_ms delays the answer", function()
      assert(sb:faults { latency_ms = 300 })
      local res = assert(call_v2(client, sb, SUBSCRIBE_QUERY))
      assert.equal("10000", (code_of(pub, SUBSCRIBE_QUERY, res)))
      local arrivals, answers = split_events(assert(sb:arrivals()))
      local answer = answers[arrivals[1].seq]
      assert.is_true(answer.at_ms - arrivals[1].at_ms >= 295)
      assert.is_true(has_fault(answer, "latency_ms"))
    end)

    it("reset closes the connection without an answer", function()
      assert(sb:faults { reset = 1 })
      local res, err = call_v2(client, sb, SUBSCRIBE_QUERY)
      assert.is_nil(res)
      assert.is_string(err)
      local res3, err3 = client.request((v3_request(sb.base_url, "POST", V3_SUBSCRIBE_QUERY,
        SUBSCRIBE_BIZ)))
      assert.is_nil(res3)
      assert.is_string(err3)
    end)

    it("http_502 answers an HTML 502", function()
      assert(sb:faults { http_502 = 1 })
      local res = assert(call_v2(client, sb, SUBSCRIBE_QUERY))
      assert.equal(502, res.status)
      assert.matches("text/html", res.headers["content-type"])
      assert.matches("502 Bad Gateway", res.body)
    end)

    it("throttle_qps answers 40005 past N requests in a second", function()
      assert(sb:faults { throttle_qps = 3 })
      local codes = {}
      for i = 1, 8 do
        codes[i] = code_of(pub, SUBSCRIBE_QUERY, assert(call_v2(client, sb, SUBSCRIBE_QUERY)))
      end
      -- Group by the second each request arrived in: within a second the
      -- first 3 pass, the rest are throttled.
      local arrivals = split_events(assert(sb:arrivals()))
      assert.equal(8, #arrivals)
      local per_second, throttled = {}, 0
      for i, arrival in ipairs(arrivals) do
        local second = math.floor(arrival.at_ms / 1000)
        per_second[second] = (per_second[second] or 0) + 1
        assert.equal(per_second[second] > 3 and "40005" or "10000", codes[i])
        if codes[i] == "40005" then throttled = throttled + 1 end
      end
      assert.is_true(throttled >= 2)
      local _, node = check_v2(pub, SUBSCRIBE_QUERY,
        assert(call_v2(client, sb, SUBSCRIBE_QUERY)).body)
      if node.code == "40005" then assert.matches("call%-limited", node.sub_code) end
    end)

    it("throttle with count answers 40005 to exactly the next N requests, at any speed", function()
      assert(sb:faults { throttle = 1, count = 3 })
      local codes = {}
      for i = 1, 5 do
        codes[i] = code_of(pub, SUBSCRIBE_QUERY, assert(call_v2(client, sb, SUBSCRIBE_QUERY)))
      end
      assert.same({ "40005", "40005", "40005", "10000", "10000" }, codes)
      local _, answers = split_events(assert(sb:arrivals()))
      local marked = 0
      for _, answer in pairs(answers) do
        if has_fault(answer, "throttle") then marked = marked + 1 end
      end
      assert.equal(3, marked)
      assert.same({ throttle = 1, count = 0 }, assert(sb:faults()))
    end)

    it("error_rate answers a signed 20000, on v2 and v3", function()
      assert(sb:faults { error_rate = 1 })
      local code, node = code_of(pub, SUBSCRIBE_QUERY, assert(call_v2(client, sb, SUBSCRIBE_QUERY)))
      assert.equal("20000", code)
      assert.is_string(node.sub_code)
      local res = assert(client.request((v3_request(sb.base_url, "POST", V3_SUBSCRIBE_QUERY,
        SUBSCRIBE_BIZ))))
      assert.is_true(res.status >= 500, res.body)
      if res.headers["alipay-signature"] then assert.is_true(check_v3(pub, res)) end
    end)

    it("truncate sends half the announced body, then closes", function()
      assert(sb:faults { truncate = 1 })
      local res, err = call_v2(client, sb, SUBSCRIBE_QUERY)
      if res then
        assert.is_true(#res.body < tonumber(res.headers["content-length"]))
        assert.is_nil(core.extract(res.body, SUBSCRIBE_QUERY))
      else
        assert.is_string(err)
      end
      local _, answers = split_events(assert(sb:arrivals()))
      local answer = select(2, next(answers))
      assert.is_true(has_fault(answer, "truncate"))
    end)

    it("bad_sign answers with a signature that does not verify, on v2 and v3", function()
      assert(sb:faults { bad_sign = 1 })
      local res = assert(call_v2(client, sb, SUBSCRIBE_QUERY))
      local ok, node = check_v2(pub, SUBSCRIBE_QUERY, res.body)
      assert.is_false(ok)
      assert.equal("10000", node.code)
      local res3 = assert(client.request((v3_request(sb.base_url, "POST", V3_SUBSCRIBE_QUERY,
        SUBSCRIBE_BIZ))))
      assert.equal(200, res3.status)
      assert.is_false(check_v3(pub, res3))
    end)

    it("count limits how many requests get faults", function()
      assert(sb:faults { error_rate = 1, count = 2 })
      local codes = {}
      for i = 1, 4 do
        codes[i] = code_of(pub, SUBSCRIBE_QUERY, assert(call_v2(client, sb, SUBSCRIBE_QUERY)))
      end
      assert.same({ "20000", "20000", "10000", "10000" }, codes)
      assert.equal(0, assert(sb:faults()).count)
    end)

    it("methods limits which methods get faults, v2 and v3 alike", function()
      assert(sb:faults { error_rate = 1, methods = { SUBSCRIBE_QUERY } })
      assert.equal("20000", (code_of(pub, SUBSCRIBE_QUERY,
        assert(call_v2(client, sb, SUBSCRIBE_QUERY)))))
      assert.equal("10000", (code_of(pub, FOLLOW_QUERY,
        assert(call_v2(client, sb, FOLLOW_QUERY, { user_id = USER })))))
      local res = assert(client.request((v3_request(sb.base_url, "POST", V3_SUBSCRIBE_QUERY,
        SUBSCRIBE_BIZ))))
      assert.is_true(res.status >= 500)
    end)

    it("are replaced by each POST, cleared by {} and by reset", function()
      assert.same({ latency_ms = 5 }, assert(sb:faults { latency_ms = 5 }))
      assert.same({ http_502 = 0.5 }, assert(sb:faults { http_502 = 0.5 }))
      assert.same({ http_502 = 0.5 }, assert(sb:faults()))
      assert.same({}, assert(sb:faults {}))
      assert(sb:faults { reset = 1 })
      assert(sb:reset())
      assert.same({}, assert(sb:faults()))
      assert.equal(200, assert(call_v2(client, sb, SUBSCRIBE_QUERY)).status)
    end)

    it("rejects bad fault settings with a 400 JSON error", function()
      for _, bad in ipairs {
        { bogus = 1 }, { error_rate = 2 }, { reset = "yes" }, { latency_ms = -1 },
        { count = 1.5 }, { methods = "x" }, { methods = { 1 } },
      } do
        local ok, err = sb:faults(bad)
        assert.is_nil(ok)
        assert.matches("HTTP 400", err)
      end
      local res = assert(client.request { method = "POST", url = sb.admin .. "/faults",
        body = "{not json" })
      assert.equal(400, res.status)
      assert.is_string(cjson.decode(res.body).error)
      res = assert(client.request { url = sb.admin .. "/nothing" })
      assert.equal(404, res.status)
      res = assert(client.request { url = sb.admin .. "/arrivals?since=x" })
      assert.equal(400, res.status)
    end)
  end)

  it("keeps signatures and keys out of its logs", function()
    -- Requests whose connection dies in odd ways log the most.
    assert(sb:faults { truncate = 0.5, reset = 0.3 })
    for _ = 1, 6 do call_v2(client, sb, SUBSCRIBE_QUERY) end
    -- Many at once, with less than a millisecond of latency: the workers
    -- wait for each other's lock, and a sleep shorter than nginx's 1 ms
    -- would make nginx warn in a line that carries the request line.
    if core.http then
      assert(sb:faults { latency_ms = 0.4 })
      local engine = assert(core.http { timeout_ms = 10000 })
      for _ = 1, 32 do assert(engine:submit((v2_request(sb.gateway, SUBSCRIBE_QUERY, SUBSCRIBE_BIZ)))) end
      local rounds = 0
      while engine:pending() > 0 and rounds < 200 do
        rounds = rounds + 1
        engine:wait(100)
      end
      engine:close()
    end
    assert(sb:faults {})
    local _, params = v2_request(sb.gateway, SUBSCRIBE_QUERY, SUBSCRIBE_BIZ)
    os.execute("sleep 0.3") -- the log lines are written by a timer
    local logs = sb:error_log() .. (helpers.read(sb.prefix .. "/access.log"))
    assert.matches("sandbox v2 " .. SUBSCRIBE_QUERY:gsub("%.", "%%.") .. " status=200", logs)
    assert.is_nil(logs:find("sign=", 1, true))
    assert.is_nil(logs:find(params.sign:sub(1, 40), 1, true))
    assert.is_nil(logs:find("PRIVATE KEY", 1, true))
    assert.is_nil(logs:find("biz_content", 1, true))
  end)
end)

describe("alipay.sandbox start and stop", function()
  after_each(function()
    runner.stop_all()
    helpers.cleanup()
  end)

  it("stops nginx and removes its prefix", function()
    local sb = assert(sandbox.start { app_id = APP_ID, app_public_key = APP_PUBLIC_KEY })
    assert.is_true(alive(sb.pid))
    assert.is_true(sb:running())
    assert.is_true(dir_exists(sb.prefix))
    assert.is_true(sb:stop())
    assert.is_false(alive(sb.pid))
    assert.is_false(dir_exists(sb.prefix))
    assert.is_true(sb:stop()) -- idempotent
    assert.is_false(sb:running())
  end)

  it("refuses bad options with a message", function()
    local cases = {
      { {}, "app_id" },
      { { app_id = "x", app_public_key = APP_PUBLIC_KEY }, "app_id" },
      { { app_id = APP_ID }, "app_public_key" },
      { { app_id = APP_ID, app_public_key = APP_PUBLIC_KEY, seed = "/nonexistent.json" }, "seed" },
      { { app_id = APP_ID, app_public_key = APP_PUBLIC_KEY, seed = 42 }, "seed" },
    }
    -- Refused by the gateway in the worker, reported by start at once.
    cases[#cases + 1] = { { app_id = APP_ID, app_public_key = "not a key" },
      "^sandbox gateway failed: .*app_public_key" }
    cases[#cases + 1] = { { app_id = APP_ID, app_public_key = APP_PUBLIC_KEY,
      seed = { library = 5 } }, "^sandbox gateway failed: .*seed" }
    for _, case in ipairs(cases) do
      local sb, err = sandbox.start(case[1])
      assert.is_nil(sb)
      assert.matches(case[2], err)
    end
  end)

  it("names the Debian packages when nginx or its Lua module is missing", function()
    local nginx, modules = runner.nginx, runner.lua_modules
    finally(function() runner.nginx, runner.lua_modules = nginx, modules end)
    runner.nginx = "/nonexistent/nginx"
    local sb, err = sandbox.start { app_id = APP_ID, app_public_key = APP_PUBLIC_KEY }
    assert.is_nil(sb)
    assert.matches("nginx libnginx%-mod%-http%-lua", err)
    runner.nginx, runner.lua_modules = nginx, { "/nonexistent/ngx_http_lua_module.so" }
    sb, err = sandbox.start { app_id = APP_ID, app_public_key = APP_PUBLIC_KEY }
    assert.is_nil(sb)
    assert.matches("Lua module", err)
    assert.matches("nginx libnginx%-mod%-http%-lua", err)
  end)

  it("answers in certificate mode, for an app in certificate mode", function()
    -- An app certificate for the fixture key, signed by a throwaway CA.
    local dir = helpers.tmpdir()
    local ca = assert(runner.make_ca(dir, "app-ca"))
    helpers.write(dir .. "/app.key", helpers.key_text("app_private_pkcs8.pem"))
    assert(helpers.run(("openssl req -new -key %s/app.key -subj /CN=app -out %s/app.csr"
      .. " && openssl x509 -req -in %s/app.csr -CA %s -CAkey %s -set_serial 4242 -days 1"
      .. " -out %s/app.crt"):format(dir, dir, dir, ca.cert, ca.key, dir)))
    local app_cert = helpers.read(dir .. "/app.crt")

    local sb = assert(sandbox.start { app_id = APP_ID, app_cert = app_cert, cert_mode = true })
    finally(function() sb:stop() end)
    assert.matches("BEGIN CERTIFICATE", sb.alipay_cert)
    assert.equal(sb.alipay_cert, helpers.read(sb.files.alipay_cert))
    assert.equal(sb.alipay_root_cert, helpers.read(sb.files.alipay_root_cert))
    -- The bundle holds an EC root too; only the RSA root counts.
    local root_sn = assert(core.root_cert_sn(sb.alipay_root_cert))
    assert.matches("^%x+$", root_sn)
    local client = new_client()
    finally(function() client.close() end)
    local req = v2_request(sb.gateway, SUBSCRIBE_QUERY, SUBSCRIBE_BIZ,
      { app_cert_sn = assert(core.cert_sn(app_cert)), alipay_root_cert_sn = root_sn })
    local res = assert(client.request(req))
    local node = assert(core.extract(res.body, SUBSCRIBE_QUERY))
    assert.equal(assert(core.cert_sn(sb.alipay_cert)), node.cert_sn)
    local leaf = assert(core.public_key(sb.alipay_cert))
    assert.is_true(leaf:verify(node.content, node.sign))
    assert.equal("10000", cjson.decode(node.content).code)
  end)
end)

describe("bin/alipay", function()
  local state

  before_each(function()
    state = helpers.tmpdir() .. "/sandbox-state.json"
  end)

  after_each(function()
    helpers.run("bin/alipay sandbox stop --state " .. shell_quote(state))
    helpers.cleanup()
  end)

  it("prints help for every command", function()
    for _, args in ipairs { "--help", "sandbox --help", "sandbox start --help",
      "sandbox stop --help", "sandbox status --help", "help sandbox" } do
      local ok, out = helpers.run("bin/alipay " .. args)
      assert.is_true(ok, args)
      assert.matches("Usage: alipay", out)
    end
    local _, out = helpers.run("bin/alipay sandbox start --help")
    assert.matches("%-%-app%-public%-key", out)
  end)

  it("fails with a usage error on unknown commands and missing options", function()
    local ok, out = helpers.run("bin/alipay frobnicate")
    assert.is_false(ok)
    assert.matches("unknown command", out)
    ok, out = helpers.run("bin/alipay sandbox start --state " .. shell_quote(state))
    assert.is_false(ok)
    assert.matches("app%-id", out)
    ok, out = helpers.run("bin/alipay sandbox start --app-id " .. APP_ID
      .. " --state " .. shell_quote(state))
    assert.is_false(ok)
    assert.matches("%-%-app%-public%-key", out)
    ok, out = helpers.run("bin/alipay sandbox stop --state " .. shell_quote(state))
    assert.is_false(ok)
    assert.matches("no sandbox recorded", out)
  end)

  it("starts a sandbox with --json, reports its status, and stops it", function()
    local ok, out = helpers.run(("bin/alipay sandbox start --json --app-id %s --app-public-key %s"
      .. " --seed %s --state %s"):format(APP_ID, helpers.fixtures .. "/keys/app_public.pem", SEED,
      shell_quote(state)))
    assert.is_true(ok, out)
    local info = cjson.decode(out)
    assert.matches("^http://127%.0%.0%.1:%d+/gateway%.do$", info.gateway)
    assert.matches("^https://", info.https_gateway)
    assert.equal(info.base_url .. "/__sandbox", info.admin)
    assert.equal(info.alipay_public_key, helpers.read(info.alipay_public_key_file))
    assert.matches("BEGIN CERTIFICATE", helpers.read(info.ca_file))
    assert.equal(state, info.state)

    -- It outlives the command, and answers signed calls.
    assert.is_true(alive(info.pid))
    local client = new_client()
    finally(function() client.close() end)
    local res = assert(client.request((v2_request(info.gateway, SUBSCRIBE_QUERY, SUBSCRIBE_BIZ))))
    local pub = assert(core.public_key(info.alipay_public_key))
    assert.is_true((check_v2(pub, SUBSCRIBE_QUERY, res.body)))

    -- A second start with the same state refuses.
    ok, out = helpers.run(("bin/alipay sandbox start --app-id %s --app-public-key %s --state %s")
      :format(APP_ID, helpers.fixtures .. "/keys/app_public.pem", shell_quote(state)))
    assert.is_false(ok)
    assert.matches("already running", out)

    ok, out = helpers.run("bin/alipay sandbox status --json --state " .. shell_quote(state))
    assert.is_true(ok, out)
    assert.is_true(cjson.decode(out).healthy)

    ok, out = helpers.run("bin/alipay sandbox stop --state " .. shell_quote(state))
    assert.is_true(ok, out)
    assert.matches("stopped", out)
    assert.is_false(alive(info.pid))
    assert.is_false(dir_exists(info.prefix))
    assert.is_nil(io.open(state))
    ok = helpers.run("bin/alipay sandbox status --state " .. shell_quote(state))
    assert.is_false(ok)
  end)

  it("starts in certificate mode and prints the certificate files", function()
    local ok, out = helpers.run(("bin/alipay sandbox start --cert-mode --app-id %s"
      .. " --app-public-key %s --state %s"):format(APP_ID,
      helpers.fixtures .. "/keys/app_public.pem", shell_quote(state)))
    assert.is_true(ok, out)
    local cert_file = out:match("alipay_cert_file%s+(%S+)")
    local root_file = out:match("alipay_root_cert_file%s+(%S+)")
    assert.matches("BEGIN CERTIFICATE", helpers.read(cert_file))
    assert.matches("BEGIN CERTIFICATE", helpers.read(root_file))
  end)
end)
