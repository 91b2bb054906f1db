-- No call that is not a query leaves twice behind the caller's back (issue
-- 13 §1), and a response with huge headers is named for what it is (§5).
--
-- The loopback server: an nginx whose /drop location reads each request,
-- counts its arrival, and closes a reused keep-alive connection without an
-- answer (the work done, the answer lost); /gw/ is the same in front of the
-- sandbox gateway, which executes every request it forwards. libcurl
-- resends a request on its own when a reused connection dies before any
-- byte of the answer, and the ngx transport did the same: a send then
-- arrived twice and was reported a success. Now every such call arrives
-- once, answered, or is reported unknown (transport, reason reset), through
-- the curl transport, the ngx transport inside nginx, the client, and a
-- campaign whose stored attempts must equal the gateway's arrivals.
-- Queries (req.idempotent, client.READ_ONLY_V2) may still be resent.
local helpers = require "helpers"
local cjson = require "cjson"
local alipay = require "alipay"
local client_mod = require "alipay.client"
local curl = require "alipay.transport.curl"
local request = require "alipay.transport.request"
local runner = require "alipay.sandbox.nginx"
local sandbox = require "alipay.sandbox"
local lifeaccount = require "alipay.messaging.lifeaccount"
local mini = require "alipay.messaging.mini"

local APP_ID = "2021000122671080"
local SEND = "alipay.open.public.message.single.send"
local LIFE = "alipaylife_resend"
local TEMPLATE = "14330d60f0ab4516853a0900827cee35" -- claimed in the seed: 3 keywords
local CONTEXT = {
  head_color = "#85be53", url = "https://example.com/sale", action_name = "查看详情",
  keyword1 = { value = "SALE", color = "#85be53" }, keyword2 = { value = "open", color = "#85be53" },
  keyword3 = { value = "2024-06-07 18:41", color = "#85be53" },
}
local ROOT = helpers.cwd()

local function follower(n) return ("20880000%08d"):format(n) end

local function send_biz(n)
  return { to_user_id = follower(n), template = { template_id = TEMPLATE, context = CONTEXT } }
end

-- ---- the code inside the loopback nginx ----
local APP = [==[
local cjson = require "cjson.safe"
local M = {}

local function reply(t)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode(t))
end

local function reused()
  return tonumber(ngx.var.connection_requests) > 1
end

-- Every request read is an arrival of its ?id; on a reused connection it
-- then gets no answer.
function M.drop()
  ngx.req.read_body()
  ngx.shared.arrivals:incr(ngx.var.arg_id or "none", 1, 0)
  if reused() then return ngx.exit(444) end
  ngx.print("ok")
end

function M.arrivals()
  local out = {}
  for _, k in ipairs(ngx.shared.arrivals:get_keys(0)) do out[k] = ngx.shared.arrivals:get(k) end
  reply(out)
end

function M.clear()
  ngx.shared.arrivals:flush_all()
  ngx.print("ok")
end

-- The sandbox gateway behind us executes every request; the answer to one
-- that came on a reused connection is lost.
function M.front()
  ngx.req.read_body()
  local res = ngx.location.capture("/upstream" .. ngx.var.uri:sub(4),
    { method = ngx.HTTP_POST, body = ngx.req.get_body_data() or "", args = ngx.var.args })
  if reused() then return ngx.exit(444) end
  ngx.status = res.status
  ngx.header["Content-Type"] = res.header["Content-Type"]
  ngx.print(res.body)
end

function M.big_header()
  ngx.header["X-Big"] = string.rep("a", 1024 * 1024)
  ngx.print("ok")
end

function M.many_headers()
  local values = {}
  for i = 1, 1100 do values[i] = string.rep("b", 1000) end
  ngx.header["X-Many"] = values
  ngx.print("ok")
end

local function query()
  ngx.req.read_body()
  return cjson.decode(ngx.req.get_body_data() or "{}")
end

local function flat(detail)
  return { kind = detail.kind, reason = detail.reason, unknown = detail.unknown, msg = detail.msg }
end

-- Transport requests through the ngx transport, one after the other.
function M.raw()
  local q = query()
  local t = assert(require("alipay.transport.ngx").new { timeout_ms = 5000 })
  local out = {}
  for i, r in ipairs(q.requests) do
    local res, _, detail = t:request { method = r.method or "POST", body = r.body, idempotent = r.idempotent,
      url = "http://127.0.0.1:" .. ngx.var.server_port .. r.path }
    out[i] = res and { status = res.status } or { err = flat(detail) }
  end
  reply(out)
end

-- Sends through the client on the ngx transport, one after the other.
function M.sends()
  local q = query()
  local c = assert(require("alipay").new { app_id = q.app_id, private_key = q.private_key,
    alipay_public_key = q.alipay_public_key, gateway = q.gateway, transport = "ngx", timeout_ms = 5000 })
  local out = {}
  for i, biz in ipairs(q.bizs) do
    local res, _, detail = c:execute(q.method, biz)
    out[i] = res and { code = res.code } or { err = flat(detail) }
  end
  c:close()
  reply(out)
end

return M
]==]

local function nginx_string(s)
  return '"' .. s:gsub("[\\\"]", "\\%0") .. '"'
end

local function start_server(sandbox_port)
  return runner.start {
    lua = true,
    conf = function(port, _, prefix)
      helpers.write(prefix .. "/t23_app.lua", APP)
      local lua_path = table.concat({ ROOT .. "/lua/?.lua", ROOT .. "/lua/?/init.lua", prefix .. "/?.lua" }, ";")
      local function at(path, fn)
        return ("    location %s { content_by_lua_block { require('t23_app').%s() } }"):format(path, fn)
      end
      return table.concat({
        "  lua_package_path " .. nginx_string(lua_path .. ";;") .. ";",
        "  lua_package_cpath " .. nginx_string(helpers.nginx_lua_cpath()) .. ";",
        "  lua_shared_dict arrivals 1m;",
        "  lua_socket_log_errors off;",
        "  keepalive_requests 100000;",
        "  client_body_buffer_size 1m;",
        "  server {",
        ("    listen 127.0.0.1:%d;"):format(port),
        at("= /drop", "drop"), at("= /arrivals", "arrivals"), at("= /clear", "clear"),
        at("/gw/", "front"), at("= /big-header", "big_header"), at("= /many-headers", "many_headers"),
        at("= /ngx/raw", "raw"), at("= /ngx/sends", "sends"),
        "    location /upstream/ {",
        "      internal;",
        "      rewrite ^/upstream(/.*)$ $1 break;",
        ("      proxy_pass http://127.0.0.1:%d;"):format(sandbox_port),
        "    }",
        "  }",
      }, "\n")
    end,
  }
end

describe("no call leaves twice behind the caller's back", function()
  local sb, srv, base, http

  local function get_json(path)
    local res = assert(http:request { url = base .. path, idempotent = true })
    return cjson.decode(res.body)
  end

  local function post_json(path, payload)
    local res = assert(http:request { method = "POST", url = base .. path, body = cjson.encode(payload),
      headers = { ["Content-Type"] = "application/json" }, timeout_ms = 60000 })
    assert(res.status == 200, "HTTP " .. res.status .. ": " .. res.body .. "\n" .. srv:error_log():sub(-2000))
    return cjson.decode(res.body)
  end

  local function clear()
    assert(http:request { url = base .. "/clear", idempotent = true })
  end

  -- Sandbox arrivals of method, and deliveries by recipient.
  local function gateway_counts(method)
    local arrived = 0
    for _, ev in ipairs(assert(sb:arrivals())) do
      if ev.event == "arrive" and ev.method == method then arrived = arrived + 1 end
    end
    local by_id = {}
    for _, d in ipairs(assert(sb:deliveries())) do
      by_id[d.to_user_id] = (by_id[d.to_user_id] or 0) + 1
    end
    return arrived, by_id
  end

  -- outcomes[i] = {ok=true} or {err=detail}: each arrived exactly once, each
  -- failure is an unknown reset, and the mode was exercised at least once.
  local function assert_once(outcomes, arrivals, ids)
    local failed = 0
    for i, o in ipairs(outcomes) do
      assert.are.equal(1, arrivals[ids[i]], "arrivals of call " .. i)
      if o.err then
        failed = failed + 1
        assert.are.same({ "transport", "reset", true }, { o.err.kind, o.err.reason, o.err.unknown },
          "call " .. i .. ": " .. tostring(o.err.msg))
      end
    end
    assert.is_true(failed >= 1, "no call met a dropped connection")
    assert.is_true(failed < #outcomes, "no call was answered")
  end

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = helpers.fixtures .. "/sandbox_seed.json" })
    local err
    srv, err = start_server(tonumber(sb.gateway:match(":(%d+)/")))
    assert(srv, err)
    base = "http://127.0.0.1:" .. srv.port
    http = assert(require("alipay.core").http { timeout_ms = 10000 })
  end)

  teardown(function()
    if http then http:close() end
    if sb then sb:stop() end
    runner.stop_all()
    helpers.cleanup()
  end)

  before_each(function()
    clear()
    assert(sb:reset())
  end)

  describe("the curl transport", function()
    -- n requests of `shape` in a row on one transport; ids are prefix..i.
    local function in_a_row(shape, n, prefix)
      local t = assert(curl.new { timeout_ms = 5000 })
      local outcomes, ids = {}, {}
      for i = 1, n do
        ids[i] = prefix .. i
        local res, _, detail = t:request { method = shape.method, body = shape.body, idempotent = shape.idempotent,
          url = base .. "/drop?id=" .. ids[i] }
        outcomes[i] = res and { ok = res.status == 200 } or { err = detail }
      end
      t:close()
      return outcomes, get_json("/arrivals"), ids
    end

    it("never resends a POST whose body was written: one arrival, or unknown", function()
      assert_once(in_a_row({ method = "POST", body = "biz_content=" .. ("x"):rep(2000) }, 8, "body"))
    end)

    it("never resends a request without a body (its headers are the whole request)", function()
      assert_once(in_a_row({ method = "POST", body = "" }, 6, "empty"))
      clear()
      assert_once(in_a_row({ method = "GET" }, 6, "get"))
    end)

    it("holds with many transfers in flight", function()
      local t = assert(curl.new { timeout_ms = 5000 })
      local outcomes, ids, by_id = {}, {}, {}
      for _ = 1, 4 do -- rounds of 4 at once: the later rounds reuse the connections of the first
        for _ = 1, 4 do
          local i = #ids + 1
          ids[i] = "flight" .. i
          by_id[assert(t:submit { method = "POST", body = "n=" .. i, url = base .. "/drop?id=" .. ids[i] })] = i
        end
        while t:pending() > 0 do
          for _, d in ipairs(t:wait(5000)) do
            outcomes[by_id[d.id]] = d.res and { ok = true } or { err = d.detail }
          end
        end
      end
      t:close()
      assert_once(outcomes, get_json("/arrivals"), ids)
    end)

    it("still resends a query (idempotent) on a new connection: it succeeds", function()
      local outcomes, arrivals, ids = in_a_row({ method = "POST", body = "q=1", idempotent = true }, 4, "query")
      local twice = 0
      for i, o in ipairs(outcomes) do
        assert.is_true(o.ok, "query " .. i)
        if arrivals[ids[i]] == 2 then twice = twice + 1 end
      end
      assert.is_true(twice >= 1)
    end)

    it("refuses a request whose idempotent field is not a boolean", function()
      local t = assert(curl.new {})
      assert.has_error(function() t:request { url = base .. "/drop", idempotent = "yes" } end,
        "http: field 'idempotent' must be a boolean, got string")
      t:close()
    end)
  end)

  describe("the client", function()
    local function client(transport, gateway)
      return assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
        alipay_public_key = sb.alipay_public_key, gateway = gateway or (base .. "/gw/gateway.do"),
        transport = transport, timeout_ms = 5000 })
    end

    it("marks only the library's read-only v2 methods idempotent", function()
      local c = client("curl")
      local read_only = {}
      for _, m in ipairs { lifeaccount.METHODS.follow_query, lifeaccount.METHODS.followers,
                           lifeaccount.METHODS.industry_query, mini.METHODS.subscriptions } do
        read_only[m] = true
        assert.is_true(c:prepare_v2(m, {}).idempotent, m)
      end
      assert.are.same(read_only, client_mod.READ_ONLY_V2)
      for _, m in ipairs { SEND, mini.METHODS.send, lifeaccount.METHODS.claim, lifeaccount.METHODS.industry_modify,
                           "alipay.trade.query" } do
        assert.is_nil(c:prepare_v2(m, {}).idempotent, m)
      end
      assert.is_nil(c:prepare_v3("GET", "/v3/alipay/open/public/user/follow/query").idempotent)
      c:close()
    end)

    it("sends through curl: each delivered once, answered or unknown", function()
      local c = client("curl")
      local outcomes, ids = {}, {}
      for i = 1, 8 do
        ids[i] = follower(i)
        local res, _, detail = c:execute(SEND, send_biz(i))
        outcomes[i] = res and { ok = true } or { err = detail }
      end
      c:close()
      local arrived, delivered = gateway_counts(SEND)
      assert.are.equal(8, arrived)
      assert_once(outcomes, delivered, ids)
    end)

    -- 20 recipients, one in flight: the campaign's stored attempts equal
    -- the gateway's arrivals, and nobody is delivered twice.
    local function run_campaign(gateway, faults, n)
      local workspace = require "alipay.workspace"
      local key_file = helpers.tmpdir() .. "/alipay_public.pem"
      helpers.write(key_file, sb.alipay_public_key)
      local ws = assert(workspace.open {
        config = { channels = { [LIFE] = { kind = "alipaylife", app_id = APP_ID,
          private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem", alipay_public_key_file = key_file,
          gateway = gateway, timeout_ms = 5000 } } },
        store = helpers.tmpdir() .. "/state.db" })
      assert(ws.registry:import { { channel = LIFE, kind = "alipaylife", id = TEMPLATE, name = "订单状态提醒",
        keywords = { "订单号", "订单状态", "更新时间" } } })
      local ctx = assert(ws:campaign_ctx())
      local recipients = {}
      for i = 1, n do recipients[i] = { user_id = follower(i) } end
      local campaign = require "alipay.campaign"
      local c = assert(campaign.create(ctx, { id = "resend", channel = LIFE, template = TEMPLATE,
        audience = { recipients = recipients }, data = CONTEXT, policy = { in_flight = 1 } }))
      if faults then assert(sb:faults(faults)) end
      local summary = assert(c:run())
      assert(sb:faults {})
      local path = helpers.tmpdir() .. "/export.jsonl"
      assert(c:export(path, "jsonl"))
      local attempts, rows = 0, {}
      for text in io.lines(path) do
        local row = cjson.decode(text)
        attempts = attempts + (tonumber(row.attempts) or 0)
        rows[row.alipay_id] = row
      end
      local arrived, delivered = gateway_counts(SEND)
      assert.are.equal(arrived, attempts, "stored attempts and gateway arrivals")
      for id, count in pairs(delivered) do
        assert.are.equal(1, count, "deliveries to " .. id)
        assert.is_truthy(rows[id].status == "sent" or rows[id].status == "unknown", id .. ": " .. rows[id].status)
      end
      for id, row in pairs(rows) do
        if row.status == "sent" then assert.are.equal(1, delivered[id], id .. " is sent") end
      end
      return summary
    end

    it("a campaign (20 recipients, one in flight) through the dropping server", function()
      local summary = run_campaign(base .. "/gw/gateway.do", nil, 20)
      assert.are.equal(20, summary.counts.sent + summary.counts.unknown)
      assert.is_true(summary.counts.unknown >= 1)
    end)

    it("a campaign against the sandbox's reset fault", function()
      local summary = run_campaign(sb.gateway, { reset = 0.5, methods = { SEND } }, 40)
      assert.are.equal(40, summary.counts.sent + summary.counts.unknown)
    end)
  end)

  describe("the ngx transport inside nginx", function()
    local function raw(requests)
      return post_json("/ngx/raw", { requests = requests }), get_json("/arrivals")
    end

    it("never resends a request that was written: one arrival, or unknown", function()
      local requests, ids = {}, {}
      for i = 1, 8 do
        ids[i] = "ngx" .. i
        requests[i] = { path = "/drop?id=" .. ids[i], body = i % 2 == 0 and "" or ("b"):rep(100 * i) }
      end
      local out, arrivals = raw(requests)
      assert_once(out, arrivals, ids)
    end)

    it("still resends a query (idempotent): it succeeds", function()
      local requests, ids = {}, {}
      for i = 1, 4 do
        ids[i] = "ngxq" .. i
        requests[i] = { path = "/drop?id=" .. ids[i], body = "q", idempotent = true }
      end
      local out, arrivals = raw(requests)
      local twice = 0
      for i, o in ipairs(out) do
        assert.are.equal(200, o.status, "query " .. i)
        if arrivals[ids[i]] == 2 then twice = twice + 1 end
      end
      assert.is_true(twice >= 1)
    end)

    it("sends through the client: each delivered once, answered or unknown", function()
      local bizs, ids = {}, {}
      for i = 1, 8 do
        bizs[i], ids[i] = send_biz(i), follower(i)
      end
      local out = post_json("/ngx/sends", { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
        alipay_public_key = sb.alipay_public_key, gateway = base .. "/gw/gateway.do", method = SEND, bizs = bizs })
      local arrived, delivered = gateway_counts(SEND)
      assert.are.equal(8, arrived)
      assert_once(out, delivered, ids)
    end)

    it("names a response header block over the cap, with the cap", function()
      local out = raw { { path = "/big-header", method = "GET" }, { path = "/many-headers", method = "GET" } }
      for i = 1, 2 do
        assert.are.same({ "transport", "too_large" }, { out[i].err.kind, out[i].err.reason })
        assert.are.equal(("response headers too large (over %d bytes)"):format(request.MAX_HEADER_BYTES),
          out[i].err.msg)
      end
    end)
  end)

  describe("a response with huge headers, through curl", function()
    it("is named too large, with the limit, not 'Out of memory'", function()
      local t = assert(curl.new { timeout_ms = 5000 })
      for _, path in ipairs { "/big-header", "/many-headers" } do
        local res, err, detail = t:request { url = base .. path }
        assert.is_nil(res)
        assert.are.same({ "transport", "too_large", false }, { detail.kind, detail.reason, detail.retryable })
        assert.are.equal(("response headers too large (over %d bytes)"):format(request.MAX_HEADER_BYTES), detail.msg)
        assert.is_true(#err < 200)
      end
      -- A smaller max_response_bytes is the cap then.
      local small = assert(curl.new { timeout_ms = 5000, max_response_bytes = 4096 })
      local _, _, detail = small:request { url = base .. "/big-header" }
      assert.are.equal("response headers too large (over 4096 bytes)", detail.msg)
      t:close()
      small:close()
    end)
  end)
end)
