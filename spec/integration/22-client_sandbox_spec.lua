-- The client end to end against the local sandbox gateway: real HTTP and
-- HTTPS, real signatures both ways, and every injected fault turned into
-- the right typed error.
local helpers = require "helpers"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local FOLLOW = "alipay.open.public.user.follow.query"
local SUBSCRIBE_PATH = "/v3/alipay/open/app/messagetemplate/subscribe/query"

describe("the client against the sandbox", function()
  local sb

  setup(function()
    sb = assert(sandbox.start {
      app_id = APP_ID,
      app_public_key = helpers.key_text("app_public.pem"),
      seed = "spec/fixtures/sandbox_seed.json",
    })
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function() sb:reset() end)

  local function client(extra)
    local cfg = {
      app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs8.pem"),
      alipay_public_key = sb.alipay_public_key, gateway = sb.gateway, timeout_ms = 5000,
    }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return assert(alipay.new(cfg))
  end

  it("makes a verified v2 call over HTTP and over HTTPS with the sandbox CA", function()
    local res, _, err = client():execute(FOLLOW, { user_id = "2088000000000001" })
    assert.is_nil(err)
    assert.are.equal("10000", res.code)
    assert.is_string(res.is_follow)
    local tls = client { gateway = sb.https_gateway, ca_file = sb.ca_file }
    res, _, err = tls:execute(FOLLOW, { user_id = "2088000000000001" })
    assert.is_nil(err)
    assert.are.equal("10000", res.code)
  end)

  it("makes a verified v3 call", function()
    local res, _, err = client():v3("POST", SUBSCRIBE_PATH,
      { user_id = "2088000000000001", template_id_list = { "nonexistent" } })
    assert.is_nil(err)
    assert.is_boolean(res.show_component)
  end)

  it("fails the TLS handshake with a CA that did not sign the sandbox's certificate", function()
    local _, _, err = client { gateway = sb.https_gateway, ca_file = "spec/fixtures/keys/alipay_root_cert.crt" }
      :execute(FOLLOW, { user_id = "2088000000000001" })
    assert.are.equal("transport", err.kind)
    assert.are.equal("tls", err.reason)
  end)

  it("surfaces the gateway's string to sign when the app key is not the registered one", function()
    local dir = helpers.tmpdir()
    local ok, out = helpers.run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " ..
                                dir .. "/other.pem")
    assert(ok, out)
    local _, _, err = client { private_key = helpers.read(dir .. "/other.pem") }
      :execute(FOLLOW, { user_id = "2088000000000001" })
    assert.are.equal("gateway", err.kind)
    assert.are.equal("40002", err.code)
    assert.are.equal("isv.invalid-signature", err.sub_code)
    assert.is_truthy(err.sub_msg:find("app_id=2021000122671080&amp;", 1, true))
    assert.is_true(err.verified)
    assert.is_false(err.retryable)
  end)

  it("reuses one connection for many calls (keep-alive, seen by the sandbox)", function()
    local c = client()
    for _ = 1, 25 do assert(c:execute(FOLLOW, { user_id = "2088000000000001" })) end
    local connections = {}
    for _, ev in ipairs(sb:arrivals()) do
      if ev.event == "arrive" then connections[ev.connection] = true end
    end
    local n = 0
    for _ in pairs(connections) do n = n + 1 end
    assert.are.equal(1, n)
  end)

  it("sends a Beijing-time timestamp the sandbox accepts, whatever the host's time zone", function()
    local script = ([[
      package.cpath = 'build/lua5.4/?.so;' .. package.cpath
      package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path
      local f = io.open('spec/fixtures/keys/app_private_pkcs1.pem'); local key = f:read('a'); f:close()
      local c = assert(require('alipay').new{ app_id = '%s', private_key = key,
        alipay_public_key = %q, gateway = '%s' })
      local res, _, err = c:execute('%s', { user_id = '2088000000000001' })
      io.write(res and res.code or tostring(err))
    ]]):format(APP_ID, sb.alipay_public_key, sb.gateway, FOLLOW)
    local file = helpers.tmpdir() .. "/tz.lua"
    helpers.write(file, script)
    for _, tz in ipairs { "America/Los_Angeles", "Asia/Kolkata", "UTC" } do
      local ok, out = helpers.run("TZ=" .. tz .. " lua5.4 " .. file)
      assert(ok, out)
      assert.are.equal("10000", out, tz)
    end
    local expected = alipay.beijing_timestamp():sub(1, 13) -- to the hour
    local seen = 0
    for _, ev in ipairs(sb:arrivals()) do
      if ev.event == "arrive" and ev.timestamp then
        seen = seen + 1
        assert.are.equal(expected, ev.timestamp:sub(1, 13))
      end
    end
    assert.are.equal(3, seen)
  end)

  it("deletes a template at runtime, and sends with it then fail as Alipay's do", function()
    local c = client()
    local send = {
      to_user_id = "2088857585575154",
      template = { template_id = "14330d60f0ab4516853a0900827cee35", context = {
        head_color = "#85be53", url = "https://example.com/o/1", action_name = "查看",
        keyword1 = { value = "1", color = "#000000" }, keyword2 = { value = "2", color = "#000000" },
        keyword3 = { value = "3", color = "#000000" } } },
    }
    assert(c:execute("alipay.open.public.message.single.send", send))
    assert(sb:delete_template("14330d60f0ab4516853a0900827cee35"))
    local _, _, err = c:execute("alipay.open.public.message.single.send", send)
    assert.are.equal("MSG_TEMPLATE_NOT_EXIST", err.sub_code)
    local ok, derr = sb:delete_template("14330d60f0ab4516853a0900827cee35")
    assert.is_nil(ok)
    assert.matches("no live template", tostring(derr))
  end)

  describe("faults", function()
    local function fault_call(faults, extra)
      sb:faults(faults)
      local _, _, err = client(extra):execute(FOLLOW, { user_id = "2088000000000001" })
      return err
    end

    it("20000 is a retryable gateway error", function()
      local err = fault_call { error_rate = 1 }
      assert.are.equal("gateway", err.kind)
      assert.are.equal("20000", err.code)
      assert.is_true(err.retryable)
      assert.is_true(err.verified)
    end)

    it("40005 above the QPS is a retryable gateway error", function()
      sb:faults { throttle_qps = 2 }
      local c = client()
      local throttled
      for _ = 1, 10 do
        local _, _, err = c:execute(FOLLOW, { user_id = "2088000000000001" })
        if err then throttled = err break end
      end
      assert.is_table(throttled)
      assert.are.equal("gateway", throttled.kind)
      assert.are.equal("40005", throttled.code)
      assert.is_true(throttled.retryable)
    end)

    it("HTTP 502 is a retryable http error with an unknown outcome", function()
      local err = fault_call { http_502 = 1 }
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.is_true(err.retryable and err.unknown)
    end)

    it("a reset connection is a retryable transport error", function()
      local err = fault_call { reset = 1 }
      assert.are.equal("transport", err.kind)
      assert.is_true(err.retryable and err.unknown)
    end)

    it("a truncated body is a retryable transport or decode error", function()
      local err = fault_call { truncate = 1 }
      assert.is_true(err.kind == "transport" or err.kind == "decode", tostring(err))
      assert.is_true(err.retryable and err.unknown)
    end)

    it("a refused connection is retryable and known not to have been sent", function()
      local _, _, err = client { gateway = "http://127.0.0.1:1/gateway.do" }
        :execute(FOLLOW, { user_id = "2088000000000001" })
      assert.are.equal("transport", err.kind)
      assert.are.equal("connect", err.reason)
      assert.is_true(err.retryable)
      assert.is_false(err.unknown)
      err = fault_call({ latency_ms = 1500 }, { timeout_ms = 300 })
      assert.is_true(err.unknown, "a timeout may have been executed")
    end)

    it("a wrong signature is a signature error, never a result", function()
      local err = fault_call { bad_sign = 1 }
      assert.are.equal("signature", err.kind)
      assert.is_false(err.retryable)
    end)

    it("latency past the timeout is a retryable transport timeout", function()
      local err = fault_call({ latency_ms = 1500 }, { timeout_ms = 300 })
      assert.are.equal("transport", err.kind)
      assert.are.equal("timeout", err.reason)
      assert.is_true(err.retryable)
    end)

    it("a response over the size cap fails cleanly", function()
      local err = fault_call({}, { max_response_bytes = 1024 })
      assert.is_nil(err) -- a small answer fits
      local c = client { max_response_bytes = 1024 }
      local _, _, big = c:execute("alipay.open.public.follow.batchquery", {})
      assert.are.equal("transport", big.kind)
      assert.are.equal("too_large", big.reason)
      assert.is_false(big.retryable)
    end)

    it("v3 faults are typed the same way", function()
      local c = client()
      sb:faults { error_rate = 1 }
      local _, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = "2088000000000001", template_id_list = { "x" } })
      assert.are.equal("gateway", err.kind)
      assert.is_true(err.retryable)
      sb:faults { bad_sign = 1 }
      _, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = "2088000000000001", template_id_list = { "x" } })
      assert.are.equal("signature", err.kind)
      sb:faults { http_502 = 1 }
      _, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = "2088000000000001", template_id_list = { "x" } })
      assert.are.equal("http", err.kind)
      assert.is_true(err.retryable)
    end)
  end)
end)
