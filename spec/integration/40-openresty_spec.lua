-- OpenResty for real: Debian's nginx with the Lua module runs the client
-- with the cosocket transport (alipay.transport.ngx) against the sandbox
-- gateway, on loopback. Every outcome is compared with what the curl
-- transport gives for the same call; the non-blocking claim is proved from
-- the sandbox's arrival log, not from a clock.
local helpers = require "helpers"
local alipay = require "alipay"
local core = alipay.core
local cjson = require "cjson"
local beijing_time = require "alipay.util.beijing_time"
local sandbox = require "alipay.sandbox"
local runner = require "alipay.sandbox.nginx"

local APP_ID = "2021000122671080"
local USER = "2088857585575154" -- a follower in the seed
local FOLLOW = "alipay.open.public.user.follow.query"
local SEND = "alipay.open.public.message.single.send"
local BATCH = "alipay.open.public.follow.batchquery"
local SUBSCRIBE_PATH = "/v3/alipay/open/app/messagetemplate/subscribe/query"
local SHIPPED_TEMPLATE = "14330d60f0ab4516853a0900827cee35" -- claimed in the seed: 3 keywords

-- ---- where things are ----

local ROOT = helpers.cwd()


-- ---- the code that runs inside the test nginx ----
-- One module, written into the nginx prefix. It keeps one client per
-- configuration for the worker's life (as an application would) and
-- answers JSON, errors flattened to their fields.
local APP = [==[
local cjson = require "cjson.safe"
local alipay = require "alipay"
local fs = require "alipay.util.fs"
local ngx_transport = require "alipay.transport.ngx"
local auto = require "alipay.transport.auto"

local M = {}
local settings = {}
local clients = {}

local function read_file(path)
  return assert(fs.read(path))
end

local function reply(t)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode(t))
end

local function request_json()
  ngx.req.read_body()
  return cjson.decode(ngx.req.get_body_data() or "{}") or {}
end

local function flat(err)
  if not err then return nil end
  return { kind = err.kind, reason = err.reason, retryable = err.retryable, unknown = err.unknown,
    code = err.code, sub_code = err.sub_code, status = err.status, verified = err.verified,
    msg = err.msg, text = tostring(err) }
end

local function now_ms()
  ngx.update_time()
  return ngx.now() * 1000
end

-- Wraps a transport to record what each answer says about its connection.
local function spy(inner)
  local s = { inner = inner, log = {}, name = inner.name }
  function s.request(_, req)
    local res, _, err = inner:request(req)
    s.log[#s.log + 1] = res and { reused = res.reused, connects = res.connects } or { reason = err.reason }
    return res, err
  end
  function s.submit(_, req) return inner:submit(req) end
  function s.wait(_, ms) return inner:wait(ms) end
  function s.pending() return inner:pending() end
  function s.close() inner:close() end
  return s
end

-- kind: "ngx" (config.transport = "ngx"), "curl", or "auto".
function M.client(over, kind)
  kind = kind or "ngx"
  local key = kind .. " " .. cjson.encode(over or {})
  if clients[key] then return clients[key] end
  local cfg = { app_id = settings.app_id, private_key = settings.private_key,
    alipay_public_key = settings.alipay_public_key, gateway = settings.gateway, timeout_ms = 5000 }
  for k, v in pairs(over or {}) do cfg[k] = v end
  if cfg.gateway == "https" then cfg.gateway = settings.https_gateway end
  if kind == "auto" then cfg.transport = auto.new(cfg) else cfg.transport = kind end
  local c, _, err = alipay.new(cfg)
  if not c then return nil, err end
  if kind ~= "auto" then c.transport = spy(c.transport) end
  clients[key] = c
  return c
end

local function follow_call(c)
  local res, _, err = c:execute("alipay.open.public.user.follow.query", { user_id = settings.user })
  return { current = c.transport.current and c.transport.current(), picked = c.transport.last,
    code = res and res.code, err = flat(err) }
end

function M.init_worker(path)
  settings = cjson.decode(read_file(path))
  settings.private_key = read_file(settings.private_key_file)
  if not settings.init_call then return end
  -- No cosockets in init_worker: the auto transport must use curl here,
  -- and cosockets in the timer below and in content handlers.
  local c = assert(M.client({}, "auto"))
  ngx.shared.t40:set("init_worker", cjson.encode(follow_call(c)))
  -- The ngx transport itself says why it cannot work here.
  ngx.shared.t40:set("init_worker_ngx", cjson.encode(follow_call(assert(M.client({}, "ngx")))))
  ngx.timer.at(0, function(premature)
    if not premature then ngx.shared.t40:set("timer", cjson.encode(follow_call(c))) end
  end)
end

function M.phases()
  local shared = ngx.shared.t40
  reply { init_worker = cjson.decode(shared:get("init_worker") or "null"),
    init_worker_ngx = cjson.decode(shared:get("init_worker_ngx") or "null"),
    timer = cjson.decode(shared:get("timer") or "null"), log = shared:get("log"),
    content = follow_call(assert(M.client({}, "auto"))) }
end

function M.log_phase()
  ngx.shared.t40:set("log", auto.wanted())
end

-- One client call: {api=, method=, biz=, verb=, path=, body=, config=, transport=}.
function M.call()
  local q = request_json()
  local c, cerr = M.client(q.config, q.transport)
  if not c then return reply { err = flat(cerr) } end
  local res, err
  if q.api == "v3" then
    res, _, err = c:v3(q.verb or "POST", q.path, q.body)
  else
    res, _, err = c:execute(q.method, q.biz)
  end
  local log = c.transport.log
  reply { res = res, err = flat(err), last = log and log[#log] }
end

-- n calls in a row on one client.
function M.loop()
  local q = request_json()
  local c = assert(M.client(q.config, "ngx"))
  local first = #c.transport.log
  local codes, log = {}, {}
  for i = 1, q.n do
    local res, _, err = c:execute(q.method, q.biz)
    codes[i] = res and res.code or tostring(err)
  end
  for i = first + 1, #c.transport.log do log[#log + 1] = c.transport.log[i] end
  reply { codes = codes, log = log }
end

-- n calls in flight at once from this one handler: submit, then wait.
function M.campaign()
  local q = request_json()
  local c = assert(M.client(q.config, q.transport or "ngx"))
  local t = c.transport
  local ctx_of, codes = {}, {}
  for _ = 1, q.n do
    local req, ctx = c:prepare_v2(q.method, q.biz)
    ctx_of[assert(t:submit(req))] = ctx
  end
  local in_flight = t:pending()
  while t:pending() > 0 do
    for _, d in ipairs(t:wait(5000)) do
      local res, _, err = c:finish_v2(ctx_of[d.id], d.res, d.err, d.detail)
      codes[#codes + 1] = res and res.code or tostring(err)
    end
  end
  reply { codes = codes, in_flight = in_flight, picked = t.last }
end

-- Transport-level requests in a row on one ngx transport; URLs starting
-- with "/" go to this server.
function M.raw()
  local q = request_json()
  local t = assert(ngx_transport.new { timeout_ms = q.timeout_ms or 5000,
    max_response_bytes = q.max_response_bytes, connect_timeout_ms = q.connect_timeout_ms })
  local out = {}
  for i, r in ipairs(q.requests) do
    local url = r.url:gsub("^/", "http://127.0.0.1:" .. ngx.var.server_port .. "/")
    local started = now_ms()
    local res, _, err = t:request { method = r.method, url = url, headers = r.headers, body = r.body,
      timeout_ms = r.timeout_ms }
    out[i] = { res = res, err = flat(err), elapsed_ms = now_ms() - started }
  end
  reply(out)
end

-- ---- fixtures: answers written byte by byte on the raw connection ----

local RAW = {
  close = "HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nX-Fold: a\r\n  b\r\n\r\nthe body runs to the close",
  http10 = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
  interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
  chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
  bad_chunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
  not_http = "SSH-2.0-OpenSSH_9.2\r\n",
  nothing = "",
  partial = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
  big_header = "HTTP/1.1 200 OK\r\nX-Big: " .. ("x"):rep(3000) .. "\r\nContent-Length: 2\r\n\r\nok",
  big_length = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" .. ("x"):rep(5000),
  big_chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. ("3e8\r\n" .. ("y"):rep(1000) .. "\r\n"):rep(5) .. "0\r\n\r\n",
  big_close = "HTTP/1.1 200 OK\r\n\r\n" .. ("z"):rep(5000),
}

function M.fixture()
  local name = ngx.var.uri:match("^/fixture/(.*)$")
  if name == "echo" then -- chunked by nginx (no Content-Length), keep-alive
    ngx.req.read_body()
    return reply { method = ngx.req.get_method(), target = ngx.var.request_uri,
      headers = ngx.req.get_headers(), body = ngx.req.get_body_data() or "",
      connection = tonumber(ngx.var.connection) }
  end
  local sock = assert(ngx.req.socket(true))
  if name == "trickle" then -- the head, then one body byte every 100 ms
    sock:send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    for _ = 1, 100 do
      ngx.sleep(0.1)
      if not sock:send("x") then break end
    end
    return ngx.exit(444)
  end
  if RAW[name] and RAW[name] ~= "" then sock:send(RAW[name]) end
  return ngx.exit(444)
end

return M
]==]

local function nginx_string(s)
  return '"' .. s:gsub("[\\\"]", "\\%0") .. '"'
end

-- The example's endpoints (examples/openresty/handlers), as its nginx.conf
-- declares them, plus a look into its followers "database".
local EXAMPLE_LOCATIONS = [[
    location = /alipay/notify { content_by_lua_block { require("handlers.notify").serve() } }
    location = /alipay/gateway { content_by_lua_block { require("handlers.gateway").serve() } }
    location = /orders/shipped { content_by_lua_block { require("handlers.shipped").serve() } }
    location = /followers {
      content_by_lua_block { ngx.print(ngx.shared.alipay_followers:get(ngx.var.arg_user) or "none") }
    }
]]

-- Starts a test nginx (one worker) running APP with `settings`; opts.ca is
-- the CA it trusts for HTTPS; opts.example, when given, is the settings
-- file of the example handlers, which are then served too.
local function start_app(settings, opts)
  return runner.start {
    lua = true,
    conf = function(port, _, prefix)
      helpers.write(prefix .. "/t40_app.lua", APP)
      helpers.write(prefix .. "/t40.json", cjson.encode(settings))
      local example_init, example_worker = "", ""
      if opts.example then
        helpers.write(prefix .. "/example.json", cjson.encode(opts.example))
        example_init = "  init_by_lua_block { require('handlers.client').load("
          .. ("%q"):format(prefix .. "/example.json") .. ") }"
        example_worker = " require('handlers.client').init()"
      end
      local lua_path = table.concat({ ROOT .. "/lua/?.lua", ROOT .. "/lua/?/init.lua",
        ROOT .. "/examples/openresty/?.lua", prefix .. "/?.lua" }, ";") .. ";;"
      local cpath = helpers.nginx_lua_cpath()
      local app = "require('t40_app')"
      return table.concat({
        "  lua_package_path " .. nginx_string(lua_path) .. ";",
        "  lua_package_cpath " .. nginx_string(cpath) .. ";",
        "  lua_shared_dict t40 1m;",
        "  lua_shared_dict alipay_notify_seen 1m;",
        "  lua_shared_dict alipay_gateway_seen 1m;",
        "  lua_shared_dict alipay_followers 1m;",
        "  lua_ssl_trusted_certificate " .. nginx_string(opts.ca) .. ";",
        "  lua_ssl_verify_depth 2;",
        -- Failures come back as typed errors; nginx need not log them too.
        "  lua_socket_log_errors off;",
        example_init,
        "  init_worker_by_lua_block { " .. app .. ".init_worker(" .. ("%q"):format(prefix .. "/t40.json") .. ")"
          .. example_worker .. " }",
        "  keepalive_requests 100000;",
        "  server {",
        ("    listen 127.0.0.1:%d;"):format(port),
        "    location = /call { content_by_lua_block { " .. app .. ".call() } }",
        "    location = /loop { content_by_lua_block { " .. app .. ".loop() } }",
        "    location = /campaign { content_by_lua_block { " .. app .. ".campaign() } }",
        "    location = /raw { content_by_lua_block { " .. app .. ".raw() } }",
        "    location = /phases { content_by_lua_block { " .. app .. ".phases() }",
        "                         log_by_lua_block { " .. app .. ".log_phase() } }",
        "    location /fixture/ { content_by_lua_block { " .. app .. ".fixture() } }",
        opts.example and EXAMPLE_LOCATIONS or "",
        "  }",
      }, "\n")
    end,
  }
end

-- ---- the spec's own HTTP (lua5.4, core.http) ----

local http = assert(core.http { timeout_ms = 60000 })

local function post_json(url, payload)
  local res, err = http:request { method = "POST", url = url, body = cjson.encode(payload),
    headers = { ["Content-Type"] = "application/json" } }
  assert(res, err)
  assert(res.status == 200, "HTTP " .. res.status .. ": " .. res.body)
  return cjson.decode(res.body)
end

-- The typed-error fields two transports must agree on.
local function shape(err)
  if not err then return nil end
  return { kind = err.kind, reason = err.reason, retryable = err.retryable, unknown = err.unknown,
    code = err.code, sub_code = err.sub_code, status = err.status, verified = err.verified }
end

local function post_form(url, body, content_type)
  local res, err = http:request { method = "POST", url = url, body = body,
    headers = { ["Content-Type"] = content_type or "application/x-www-form-urlencoded; charset=utf-8" } }
  return assert(res, err)
end

describe("OpenResty (nginx + cosockets)", function()
  local sb, app, wrong_ca_app, notify_app
  -- A key pair acting as Alipay for the notifications the specs sign.
  local alipay_key
  local app_key_file = ROOT .. "/" .. helpers.fixtures .. "/keys/app_private_pkcs1.pem"

  local function url(srv, path) return ("http://127.0.0.1:%d%s"):format(srv.port, path) end

  local function call(payload, srv) return post_json(url(srv or app, "/call"), payload) end

  -- The same call through the curl transport, from this (plain Lua) process.
  local function curl_call(payload)
    local cfg = { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
      alipay_public_key = sb.alipay_public_key, gateway = sb.gateway, timeout_ms = 5000,
      transport = "curl" }
    for k, v in pairs(payload.config or {}) do cfg[k] = v end
    if cfg.gateway == "https" then cfg.gateway, cfg.ca_file = sb.https_gateway, cfg.ca_file or sb.ca_file end
    local c = assert(alipay.new(cfg))
    local res, err, _
    if payload.api == "v3" then
      res, _, err = c:v3(payload.verb or "POST", payload.path, payload.body)
    else
      res, _, err = c:execute(payload.method, payload.biz)
    end
    c:close()
    return res, err
  end

  -- Runs payload under `faults` through nginx, then through curl, and
  -- checks that both fail (or succeed) the same way. Returns the nginx side.
  local function same_as_curl(payload, faults)
    sb:reset()
    sb:faults(faults or {})
    local out = call(payload)
    sb:reset()
    sb:faults(faults or {})
    local res, err = curl_call(payload)
    sb:reset()
    assert.are.same(shape(err), out.err and shape(out.err) or nil)
    assert.are.equal(res == nil, out.res == nil)
    return out
  end

  -- The arrive and answer events of the gateway calls made after `since`.
  local function gateway_events(since)
    local arrivals, answers = {}, {}
    for _, ev in ipairs(assert(sb:arrivals(since))) do
      if ev.event == "arrive" then arrivals[ev.seq] = ev end
    end
    for _, ev in ipairs(assert(sb:arrivals(since))) do
      -- Only answers to these arrivals: a request of an earlier test may
      -- still be sleeping in the sandbox.
      if ev.event == "answer" and arrivals[ev.request] then answers[#answers + 1] = ev end
    end
    local list = {}
    for _, ev in pairs(arrivals) do list[#list + 1] = ev end
    table.sort(list, function(a, b) return a.seq < b.seq end)
    table.sort(answers, function(a, b) return a.seq < b.seq end)
    return list, answers
  end

  local function last_seq()
    return assert(sb:health()).last_seq
  end

  setup(function()
    sb = assert(sandbox.start {
      app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
      seed = helpers.fixtures .. "/sandbox_seed.json",
    })
    local settings = {
      app_id = APP_ID, private_key_file = app_key_file, alipay_public_key = sb.alipay_public_key,
      gateway = sb.gateway, https_gateway = sb.https_gateway, user = USER, init_call = true,
    }
    local function example_settings(alipay_public_key)
      return { app_id = APP_ID, private_key_file = app_key_file, alipay_public_key = alipay_public_key,
        gateway = sb.gateway, timeout_ms = 5000,
        example = { shipped_template_id = SHIPPED_TEMPLATE, order_url = "https://shop.example.com/orders/" } }
    end
    local err
    app, err = start_app(settings, { ca = sb.ca_file, example = example_settings(sb.alipay_public_key) })
    assert(app, err)
    -- The example again, with a client that trusts our own "Alipay" key.
    local key_file = helpers.tmpdir() .. "/alipay_key.pem"
    local ok, out = helpers.run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. key_file)
    assert(ok, out)
    alipay_key = assert(core.private_key(helpers.read(key_file)))
    settings.init_call = false
    notify_app, err = start_app(settings, { ca = sb.ca_file, example = example_settings(alipay_key:public_pem()) })
    assert(notify_app, err)
    -- Another nginx that trusts a CA which did not sign the sandbox's
    -- certificate (connection pools are per worker, so it gets its own).
    local dir = helpers.tmpdir()
    local wrong = assert(runner.make_ca(dir, "wrong"))
    wrong_ca_app, err = start_app(settings, { ca = wrong.cert })
    assert(wrong_ca_app, err)
  end)

  teardown(function()
    if app then app:stop() end
    if wrong_ca_app then wrong_ca_app:stop() end
    if notify_app then notify_app:stop() end
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  -- Shows the nginx error logs when a test fails, the fastest way to see why.
  local function explain(ok, msg)
    if ok then return end
    local logs = {}
    for name, srv in pairs { app = app, notify_app = notify_app, wrong_ca_app = wrong_ca_app } do
      local log = srv:error_log():gsub("[^\n]*%[info%][^\n]*\n", "")
      logs[#logs + 1] = "--- " .. name .. " error log (tail) ---\n" .. log:sub(-2000)
    end
    error(tostring(msg) .. "\n" .. table.concat(logs, "\n"), 0)
  end
  local function guarded(fn)
    return function() explain(pcall(fn)) end
  end

  describe("the client through the ngx transport", function()
    before_each(function() sb:reset() end)

    it("makes a verified v2 call", guarded(function()
      local out = same_as_curl { method = FOLLOW, biz = { user_id = USER } }
      assert.is_nil(out.err)
      assert.are.equal("10000", out.res.code)
      assert.are.equal("T", out.res.is_follow)
    end))

    it("makes a verified v3 call", guarded(function()
      local out = same_as_curl { api = "v3", path = SUBSCRIBE_PATH,
        body = { user_id = USER, template_id_list = { "nonexistent" } } }
      assert.is_nil(out.err)
      assert.is_boolean(out.res.show_component)
    end))

    it("returns a verified business error", guarded(function()
      local out = same_as_curl { method = SEND, biz = { to_user_id = USER,
        template = { template_id = "no-such-template", context = {} } } }
      assert.are.equal("business", out.err.kind)
      assert.are.equal("40004", out.err.code)
      assert.are.equal("MSG_TEMPLATE_NOT_EXIST", out.err.sub_code)
      assert.is_true(out.err.verified)
    end))

    it("rejects a tampered (badly signed) response", guarded(function()
      local out = same_as_curl({ method = FOLLOW, biz = { user_id = USER } }, { bad_sign = 1 })
      assert.are.equal("signature", out.err.kind)
      assert.is_false(out.err.retryable)
      out = same_as_curl({ api = "v3", path = SUBSCRIBE_PATH,
        body = { user_id = USER, template_id_list = { "x" } } }, { bad_sign = 1 })
      assert.are.equal("signature", out.err.kind)
    end))

    it("types an HTTP 502 as a retryable http error", guarded(function()
      local out = same_as_curl({ method = FOLLOW, biz = { user_id = USER } }, { http_502 = 1 })
      assert.are.equal("http", out.err.kind)
      assert.are.equal(502, out.err.status)
      assert.is_true(out.err.retryable and out.err.unknown)
    end))

    it("types a reset connection as a retryable transport error", guarded(function()
      local out = same_as_curl({ method = FOLLOW, biz = { user_id = USER } }, { reset = 1 })
      assert.are.equal("transport", out.err.kind)
      assert.are.equal("reset", out.err.reason)
      assert.is_true(out.err.retryable and out.err.unknown)
    end))

    it("types a truncated body as a retryable transport error", guarded(function()
      local out = same_as_curl({ method = FOLLOW, biz = { user_id = USER } }, { truncate = 1 })
      assert.are.equal("transport", out.err.kind)
      assert.are.equal("reset", out.err.reason)
      assert.is_true(out.err.retryable and out.err.unknown)
    end))

    it("times out past timeout_ms", guarded(function()
      local out = same_as_curl({ method = FOLLOW, biz = { user_id = USER }, config = { timeout_ms = 300 } },
        { latency_ms = 1500 })
      assert.are.equal("transport", out.err.kind)
      assert.are.equal("timeout", out.err.reason)
      assert.is_true(out.err.retryable)
    end))

    it("refuses a response over max_response_bytes, not retryable", guarded(function()
      local out = same_as_curl { method = FOLLOW, biz = { user_id = USER }, config = { max_response_bytes = 1024 } }
      assert.is_nil(out.err) -- a small answer fits
      out = same_as_curl { method = BATCH, biz = {}, config = { max_response_bytes = 1024 } }
      assert.are.equal("transport", out.err.kind)
      assert.are.equal("too_large", out.err.reason)
      assert.is_false(out.err.retryable)
    end))

    it("speaks HTTPS verified against lua_ssl_trusted_certificate", guarded(function()
      local out = same_as_curl { method = FOLLOW, biz = { user_id = USER }, config = { gateway = "https" } }
      assert.is_nil(out.err)
      assert.are.equal("10000", out.res.code)
    end))

    it("fails the TLS handshake when nginx trusts another CA", guarded(function()
      local payload = { method = FOLLOW, biz = { user_id = USER }, config = { gateway = "https" } }
      local out = call(payload, wrong_ca_app)
      assert.are.equal("transport", out.err.kind)
      assert.are.equal("tls", out.err.reason)
      assert.is_true(out.err.retryable)
      local other = helpers.tmpdir()
      local wrong = assert(runner.make_ca(other, "other"))
      local _, err = curl_call { method = FOLLOW, biz = { user_id = USER },
        config = { gateway = "https", ca_file = wrong.cert } }
      assert.are.same(shape(err), shape(out.err))
    end))
  end)

  describe("connections", function()
    before_each(function() sb:reset() end)

    local function one_connection(config)
      local since = last_seq()
      local out = post_json(url(app, "/loop"), { n = 10, method = FOLLOW, biz = { user_id = USER },
        config = config })
      for i = 1, 10 do assert.are.equal("10000", out.codes[i]) end
      -- At most the first call opened a connection; the others reused it.
      local connects = 0
      for i = 1, 10 do connects = connects + out.log[i].connects end
      assert.is_true(connects <= 1)
      assert.is_true(out.log[10].reused >= 9)
      local arrivals = gateway_events(since)
      assert.are.equal(10, #arrivals)
      for i = 2, 10 do assert.are.equal(arrivals[1].connection, arrivals[i].connection) end
    end

    it("keeps one connection alive for many calls (seen by the sandbox)", guarded(function()
      one_connection(nil)
    end))

    it("keeps HTTPS connections alive too", guarded(function()
      one_connection { gateway = "https" }
    end))

    it("retries once, on another connection, when a kept-alive one dies unanswered (as curl)", guarded(function()
      local payload = { method = FOLLOW, biz = { user_id = USER } }
      assert.are.equal("10000", call(payload).res.code) -- leaves a connection in the pool
      sb:faults { reset = 1, count = 1 }
      local since = last_seq()
      local out = call(payload)
      assert.is_nil(out.err)
      assert.are.equal("10000", out.res.code)
      local arrivals = gateway_events(since)
      assert.are.equal(2, #arrivals)
      assert.are_not.equal(arrivals[1].connection, arrivals[2].connection)
      -- curl does the same with its own kept-alive connection.
      local c = assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
        alipay_public_key = sb.alipay_public_key, gateway = sb.gateway, transport = "curl" })
      assert(c:execute(FOLLOW, { user_id = USER }))
      sb:faults { reset = 1, count = 1 }
      since = last_seq()
      local res, _, err = c:execute(FOLLOW, { user_id = USER })
      c:close()
      assert.is_nil(err)
      assert.are.equal("10000", res.code)
      assert.are.equal(2, #gateway_events(since))
    end))
  end)

  describe("the worker is never blocked", function()
    before_each(function() sb:reset() end)

    -- Fires n calls at the test nginx at once; returns the gateway's events.
    local function fire(n, transport)
      local since = last_seq()
      local payload = cjson.encode { method = FOLLOW, biz = { user_id = USER }, transport = transport }
      local ids = {}
      for _ = 1, n do
        ids[#ids + 1] = assert(http:submit { method = "POST", url = url(app, "/call"), body = payload,
          headers = { ["Content-Type"] = "application/json" } })
      end
      local done = 0
      while http:pending() > 0 do
        for _, d in ipairs(http:wait(30000)) do
          assert(d.res, d.err)
          local out = cjson.decode(d.res.body)
          assert(out.res, out.err and out.err.text)
          assert.are.equal("10000", out.res.code)
          done = done + 1
        end
      end
      assert.are.equal(n, done)
      return gateway_events(since)
    end

    it("has 20 calls of one worker at the sandbox before the first is answered", guarded(function()
      sb:faults { latency_ms = 500 }
      local arrivals, answers = fire(20, "ngx")
      assert.are.equal(20, #arrivals)
      assert.are.equal(20, #answers)
      local first_answer = answers[1].seq
      for _, ev in ipairs(arrivals) do
        assert.is_true(ev.seq < first_answer, "call " .. ev.seq .. " arrived after the first answer")
      end
    end))

    it("(the same measure shows curl blocking the worker)", guarded(function()
      sb:faults { latency_ms = 300 }
      local arrivals, answers = fire(3, "curl")
      assert.are.equal(3, #arrivals)
      -- One at a time: each call arrives only after the previous answer.
      assert.is_true(arrivals[2].seq > answers[1].seq)
      assert.is_true(arrivals[3].seq > answers[2].seq)
    end))

    it("keeps 20 calls in flight from one handler with submit/wait", guarded(function()
      sb:faults { latency_ms = 300 }
      local since = last_seq()
      local out = post_json(url(app, "/campaign"), { n = 20, method = FOLLOW, biz = { user_id = USER } })
      assert.are.equal(20, out.in_flight)
      assert.are.equal(20, #out.codes)
      for _, code in ipairs(out.codes) do assert.are.equal("10000", code) end
      local arrivals, answers = gateway_events(since)
      assert.are.equal(20, #arrivals)
      for _, ev in ipairs(arrivals) do assert.is_true(ev.seq < answers[1].seq) end
    end))
  end)

  describe("the auto transport", function()
    it("keeps calls in flight with cosockets from a content handler", guarded(function()
      local out = post_json(url(app, "/campaign"), { n = 5, method = FOLLOW, biz = { user_id = USER },
        transport = "auto" })
      assert.are.equal(5, out.in_flight)
      assert.are.same({ "10000", "10000", "10000", "10000", "10000" }, out.codes)
      assert.are.equal("ngx", out.picked)
    end))

    it("uses curl in init_worker and log, cosockets in timers and content handlers", guarded(function()
      local out
      for _ = 1, 50 do -- the timer runs right after the worker started
        local res = assert(http:request { url = url(app, "/phases") })
        out = cjson.decode(res.body)
        if out.timer ~= cjson.null then break end
        os.execute("sleep 0.1")
      end
      assert.are.same({ current = "curl", picked = "curl", code = "10000" }, out.init_worker)
      assert.are.same({ current = "ngx", picked = "ngx", code = "10000" }, out.timer)
      assert.are.same({ current = "ngx", picked = "ngx", code = "10000" }, out.content)
      local refused = out.init_worker_ngx.err
      assert.are.same({ "transport", "other", false }, { refused.kind, refused.reason, refused.retryable })
      assert.matches("init_worker phase", refused.msg)
      -- log_by_lua ran after the first /phases request.
      local res = assert(http:request { url = url(app, "/phases") })
      assert.are.equal("curl", cjson.decode(res.body).log)
    end))
  end)

  describe("HTTP/1.1 on the wire", function()
    local function raw(requests, extra)
      local payload = { requests = requests }
      for k, v in pairs(extra or {}) do payload[k] = v end
      return post_json(url(app, "/raw"), payload)
    end

    it("sends Host, User-Agent, Content-Length and the request's headers", guarded(function()
      local out = raw { { method = "PUT", url = "/fixture/echo?a=1&b=%2B", body = "hello",
        headers = { ["X-Custom"] = "v", ["Content-Type"] = "text/plain" } } }
      local res = assert(out[1].res, out[1].err and out[1].err.text)
      assert.are.equal(200, res.status)
      local seen = cjson.decode(res.body)
      assert.are.equal("PUT", seen.method)
      assert.are.equal("/fixture/echo?a=1&b=%2B", seen.target)
      assert.are.equal("hello", seen.body)
      assert.are.equal("127.0.0.1:" .. app.port, seen.headers.host)
      assert.are.equal("lua-alipay", seen.headers["user-agent"])
      assert.are.equal("5", seen.headers["content-length"])
      assert.are.equal("v", seen.headers["x-custom"])
      assert.are.equal("chunked", res.headers["transfer-encoding"])
    end))

    it("reuses a kept-alive connection and reports it", guarded(function()
      local out = raw { { url = "/fixture/echo" }, { url = "/fixture/echo" } }
      local a, b = out[1].res, out[2].res
      assert.are.equal(cjson.decode(a.body).connection, cjson.decode(b.body).connection)
      assert.are.equal(0, b.connects)
      assert.is_true(b.reused >= 1)
    end))

    it("reads bodies to the close, chunked with trailers, after 1xx, from HTTP/1.0", guarded(function()
      local out = raw { { url = "/fixture/close" }, { url = "/fixture/chunked" },
        { url = "/fixture/interim" }, { url = "/fixture/http10" } }
      local close = assert(out[1].res)
      assert.are.equal("the body runs to the close", close.body)
      assert.are.equal("1, 2", close.headers["x-a"])
      assert.are.equal("a b", close.headers["x-fold"])
      assert.are.equal("hello world", assert(out[2].res).body)
      assert.are.equal("ok", assert(out[3].res).body)
      assert.are.equal(200, out[3].res.status)
      assert.are.equal("ok", assert(out[4].res).body)
    end))

    it("types every failure with curl's reasons", guarded(function()
      local out = raw({
        { url = "/fixture/nothing" }, { url = "/fixture/partial" }, { url = "/fixture/not_http" },
        { url = "/fixture/bad_chunk" }, { url = "http://127.0.0.1:1/" },
        { url = "http://no-such-host.invalid/" }, { url = "ftp://127.0.0.1/" },
      })
      local reasons = {}
      for i, r in ipairs(out) do
        assert.is_nil(r.res)
        assert.are.equal("transport", r.err.kind)
        reasons[i] = r.err.reason
      end
      assert.are.same({ "reset", "reset", "recv", "recv", "connect", "resolve", "other" }, reasons)
    end))

    it("caps the response in the headers, by Content-Length, chunked and to the close", guarded(function()
      local out = raw({ { url = "/fixture/big_header" }, { url = "/fixture/big_length" },
        { url = "/fixture/big_chunked" }, { url = "/fixture/big_close" }, { url = "/fixture/http10" } },
        { max_response_bytes = 1024 })
      for i = 1, 4 do
        assert.are.equal("too_large", out[i].err and out[i].err.reason, "request " .. i)
        assert.is_false(out[i].err.retryable)
      end
      assert.are.equal("ok", out[5].res.body)
    end))

    it("keeps to timeout_ms when the server trickles its body", guarded(function()
      local out = raw { { url = "/fixture/trickle", timeout_ms = 600 } }
      assert.are.equal("timeout", out[1].err.reason)
      assert.is_true(out[1].elapsed_ms < 1500, "took " .. out[1].elapsed_ms .. " ms")
    end))
  end)
  describe("the example (examples/openresty)", function()
    before_each(function() sb:reset() end)

    local function shipped(event)
      local res = assert(http:request { method = "POST", url = url(app, "/orders/shipped"),
        body = cjson.encode(event), headers = { ["Content-Type"] = "application/json" } })
      return res.status, cjson.decode(res.body)
    end

    it("sends a Life Account template message when an order is shipped", guarded(function()
      local status, out = shipped { user_id = USER, order_id = "SO-1001", carrier = "SF", tracking_no = "SF123" }
      assert.are.equal(200, status)
      assert.is_true(out.sent)
      local deliveries = assert(sb:deliveries())
      assert.are.equal(1, #deliveries)
      assert.are.equal(SEND, deliveries[1].method)
      assert.are.equal(USER, deliveries[1].to_user_id)
      assert.are.equal(SHIPPED_TEMPLATE, deliveries[1].template_id)
      assert.are.equal("SO-1001", deliveries[1].payload.template.context.keyword1.value)
    end))

    it("says whether a failed send is worth retrying", guarded(function()
      local status, out = shipped { user_id = "2088999999999999", order_id = "SO-1002" }
      assert.are.equal(422, status)
      assert.are.same({ false, "business", "MSG_SD_NOFOLLOW", false },
        { out.sent, out.error.kind, out.error.sub_code, out.error.retryable })
      sb:faults { http_502 = 1 }
      status, out = shipped { user_id = USER, order_id = "SO-1003" }
      assert.are.equal(502, status)
      assert.are.same({ "http", true }, { out.error.kind, out.error.retryable })
      status = shipped { order_id = "SO-1004" }
      assert.are.equal(400, status)
      assert.are.equal(0, #assert(sb:deliveries()))
    end))

    -- ---- messages only Alipay can sign: signed here with alipay_key ----

    local function notification(fields)
      local params = { notify_id = core.random_hex(16), app_id = APP_ID, charset = "utf-8",
        notify_type = "trade_status_sync", notify_time = beijing_time.format(os.time() - 5), out_trade_no = "SO-1001",
        trade_status = "TRADE_SUCCESS", total_amount = "88.00", sign_type = "RSA2", version = "1.0" }
      for k, v in pairs(fields or {}) do params[k] = v end
      return params
    end

    -- Rule V1 (notify_url): sign_type is left out of the signed string.
    local function sign_v1(params, key)
      params.sign = (key or alipay_key):sign(core.sign_content(params, { exclude = { "sign_type" } }))
      return core.form_encode(params)
    end

    -- Rule V2 (the app gateway): sign_type is signed too.
    local function sign_v2(params, key)
      params.sign = (key or alipay_key):sign(core.sign_content(params))
      return core.form_encode(params)
    end

    local function notify_post(body, content_type)
      local res = post_form(url(notify_app, "/alipay/notify"), body, content_type)
      return res.status, res.body
    end

    local function count(text, pattern)
      local n = 0
      for _ in text:gmatch(pattern) do n = n + 1 end
      return n
    end

    it("accepts a notification signed by Alipay, once", guarded(function()
      local body = sign_v1(notification { out_trade_no = "SO-7001" })
      assert.are.same({ 200, "success" }, { notify_post(body) })
      -- Alipay repeats it when our answer is lost: acknowledged, not processed again.
      assert.are.same({ 200, "success" }, { notify_post(body) })
      assert.are.equal(1, count(notify_app:error_log(), "alipay notify: trade_status_sync order SO%-7001 "))
    end))

    it("refuses forged, tampered, foreign and malformed notifications", guarded(function()
      local app_key = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem")))
      local forged = sign_v1(notification(), app_key) -- a valid signature, but not Alipay's
      assert.are.same({ 400, "fail" }, { notify_post(forged) })
      local tampered = sign_v1(notification { total_amount = "0.01" }):gsub("total_amount=0.01", "total_amount=88.00")
      assert.are.same({ 400, "fail" }, { notify_post(tampered) })
      local unsigned = core.form_encode(notification())
      assert.are.same({ 400, "fail" }, { notify_post(unsigned) })
      local foreign = sign_v1(notification { app_id = "2021000000000001" })
      assert.are.same({ 400, "fail" }, { notify_post(foreign) })
      assert.are.same({ 400, "fail" }, { notify_post("notify_id=1&sign=%zz") })
      assert.are.same({ 400, "fail" }, { notify_post(sign_v1(notification()), "application/json") })
      local res = assert(http:request { url = url(notify_app, "/alipay/notify") })
      assert.are.same({ 400, "fail" }, { res.status, res.body })
      -- A V2-signed body is not a valid V1 notification either.
      assert.are.same({ 400, "fail" }, { notify_post(sign_v2(notification())) })
      -- Nor is a genuine one sent long ago (beyond the replay window), or signed with RSA.
      assert.are.same({ 400, "fail" }, { notify_post(sign_v1(notification { notify_time = "2001-01-01 00:00:00" })) })
      local rsa = notification { sign_type = "RSA" }
      rsa.sign = alipay_key:sign(core.sign_content(rsa, { exclude = { "sign_type" } }), "RSA")
      assert.are.same({ 400, "fail" }, { notify_post(core.form_encode(rsa)) })
      -- A body over client_max_body_size never reaches Lua; one under it with too many fields
      -- is refused before it is parsed.
      assert.are.equal(413, notify_post(("a=1&"):rep(20000) .. "b=2"))
      assert.are.same({ 413, "fail" }, { notify_post(("a=1&"):rep(300) .. "b=2") })
      assert.are.equal(0, count(notify_app:error_log(), "alipay notify: trade_status_sync order SO%-1001 "))
    end))

    local function gateway_post(body)
      local res = post_form(url(notify_app, "/alipay/gateway"), body)
      return res.status, res.body
    end

    local function gateway_message(fields)
      local params = { app_id = APP_ID, charset = "utf-8", sign_type = "RSA2" }
      for k, v in pairs(fields) do params[k] = v or nil end
      return params
    end

    -- The signed envelope: <alipay><response>INNER</response><sign>SIG</sign>...
    local function envelope(body)
      local inner = body:match("<response>(.-)</response>")
      local sig = body:match("<sign>(.-)</sign>")
      return assert(inner, body), assert(sig, body)
    end

    it("refuses a notification stripped of sign_type at the gateway; the real one is still processed",
       guarded(function()
      local genuine = notification { out_trade_no = "SO-7002" }
      local body = sign_v1(genuine)
      local stripped = {}
      for k, v in pairs(genuine) do stripped[k] = v end
      stripped.sign_type = nil -- V1 never signs it: the signature still holds
      assert.are.same({ 200, "fail" }, { gateway_post(core.form_encode(stripped)) })
      assert.are.same({ 200, "success" }, { notify_post(body) })
      assert.are.equal(1, count(notify_app:error_log(), "alipay notify: trade_status_sync order SO%-7002 "))
      assert.matches("reason=misdirected", notify_app:error_log())
    end))

    it("answers the gateway check with an envelope signed by the app key", guarded(function()
      local res = post_form(url(notify_app, "/alipay/gateway"), sign_v2(gateway_message {
        app_id = false, -- Alipay's check carries none
        service = "alipay.service.check",
        biz_content = "<XML><AppId>" .. APP_ID .. "</AppId><EventType>verifygw</EventType></XML>" }))
      assert.are.equal(200, res.status)
      assert.matches("xml", res.headers["content-type"])
      local inner, sig = envelope(res.body)
      local app_pub = assert(core.public_key(helpers.key_text("app_public.pem")))
      assert.is_true(app_pub:verify(inner, sig, "RSA2"))
      assert.matches("^<success>true</success>", inner)
      assert.are.equal(app_pub:public_base64(), inner:match("<biz_content>(.-)</biz_content>"))
      -- A check Alipay did not sign: refused, still in a signed envelope.
      local forged = sign_v2(gateway_message { service = "alipay.service.check",
        biz_content = "<XML><EventType>verifygw</EventType></XML>" },
        assert(core.private_key(helpers.key_text("app_private_pkcs1.pem"))))
      local status, body = gateway_post(forged)
      assert.are.equal(200, status)
      inner, sig = envelope(body)
      assert.is_true(app_pub:verify(inner, sig, "RSA2"))
      assert.matches("<success>false</success><error_code>VERIFY_FAILED</error_code>", inner, 1, true)
    end))

    it("records Life Account follow and unfollow events, each once", guarded(function()
      local user = "2088" .. ("%012d"):format(math.random(0, 999999999))
      local function event(kind, time)
        return sign_v2(gateway_message { service = "alipay.mobile.public.message.notify",
          biz_content = ("<XML><AppId><![CDATA[%s]]></AppId><FromUserId><![CDATA[%s]]></FromUserId>"
            .. "<CreateTime><![CDATA[%s]]></CreateTime><MsgType><![CDATA[event]]></MsgType>"
            .. "<EventType><![CDATA[%s]]></EventType><ActionParam><![CDATA[]]></ActionParam></XML>")
            :format(APP_ID, user, time, kind) })
      end
      local function state()
        return assert(http:request { url = url(notify_app, "/followers?user=" .. user) }).body
      end
      assert.are.equal("none", state())
      local now_ms = os.time() * 1000
      local follow = event("follow", tostring(now_ms - 3000))
      assert.are.same({ 200, "success" }, { gateway_post(follow) })
      assert.are.equal("follow", state())
      assert.are.same({ 200, "success" }, { gateway_post(event("unfollow", tostring(now_ms - 2000))) })
      assert.are.equal("unfollow", state())
      -- Alipay's retry of the follow: acknowledged, not applied again.
      assert.are.same({ 200, "success" }, { gateway_post(follow) })
      assert.are.equal("unfollow", state())
      assert.are.equal(1, count(notify_app:error_log(), "life account: " .. user .. " follow"))
      -- A forged event changes nothing.
      local other_sign = "sign=" .. core.form_encode(alipay_key:sign("something else"))
      local forged = event("follow", tostring(now_ms - 1000)):gsub("sign=[^&]+", function() return other_sign end)
      assert.are.same({ 200, "fail" }, { gateway_post(forged) })
      assert.are.equal("unfollow", state())
    end))
  end)
  describe("without nginx", function()
    local ngx_transport = require "alipay.transport.ngx"
    local auto = require "alipay.transport.auto"

    it("parses http(s) URLs for the request line, the Host header and the pool", function()
      local u = ngx_transport.parse_url("https://openapi.alipay.com/gateway.do?a=1#frag")
      assert.are.same({ "https", "openapi.alipay.com", 443, "/gateway.do?a=1", "openapi.alipay.com", false },
        { u.scheme, u.host, u.port, u.target, u.authority, u.ip })
      u = ngx_transport.parse_url("HTTP://127.0.0.1:8080?x=1")
      assert.are.same({ "http", 8080, "/?x=1", "127.0.0.1:8080", true },
        { u.scheme, u.port, u.target, u.authority, u.ip })
      u = ngx_transport.parse_url("http://[::1]:9000/v3/x")
      assert.are.same({ "::1", "[::1]", "[::1]:9000", "/v3/x" }, { u.host, u.connect_host, u.authority, u.target })
      assert.is_nil((ngx_transport.parse_url("ftp://example.com/")))
      assert.is_nil((ngx_transport.parse_url("http://user:secret@example.com/")))
      assert.is_nil((ngx_transport.parse_url("http://example.com:0/")))
      assert.is_nil((ngx_transport.parse_url("/relative")))
      assert.is_nil((ngx_transport.parse_url("http://example.com/a b")))
      assert.is_nil((ngx_transport.parse_url("http://example.com/a\r\nX-Injected: 1")))
      assert.is_nil((ngx_transport.parse_url("http://exa mple.com/")))
    end)

    it("refuses a proxy up front: cosockets cannot use one", function()
      local t, _, err = ngx_transport.new { proxy = "http://proxy.example:3128" }
      assert.is_nil(t)
      assert.are.same({ "config", "proxy" }, { err.kind, err.field })
      assert.matches('transport = "curl"', err.msg, 1, true)
    end)

    it("is curl outside nginx, whatever the config says about proxies", function()
      local t = assert(auto.new { proxy = "http://proxy.example:3128" })
      assert.are.equal("curl", t.current())
      t:close()
    end)

    it("makes real calls through curl when auto runs in plain Lua", guarded(function()
      sb:reset()
      local c = assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
        alipay_public_key = sb.alipay_public_key, gateway = sb.gateway,
        transport = auto.new { timeout_ms = 5000 } })
      local res = assert(c:execute(FOLLOW, { user_id = USER }))
      assert.are.equal("10000", res.code)
      assert.are.equal("curl", c.transport.last)
      -- and the concurrent form, through curl multi
      local t = c.transport
      local ctx_of = {}
      for _ = 1, 5 do
        local req, ctx = c:prepare_v2(FOLLOW, { user_id = USER })
        ctx_of[assert(t:submit(req))] = ctx
      end
      local ok = 0
      while t:pending() > 0 do
        for _, d in ipairs(t:wait(5000)) do
          if assert(c:finish_v2(ctx_of[d.id], d.res, d.err)).code == "10000" then ok = ok + 1 end
        end
      end
      assert.are.equal(5, ok)
      c:close()
    end))
  end)
end)
