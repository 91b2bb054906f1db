-- The client against a scripted transport: exactly what goes on the wire
-- and how every kind of answer is turned into a result or a typed error.
-- (The same client against the sandbox gateway is in spec/22.)
local helpers = require "helpers"
local alipay = require "alipay"
local core = alipay.core
local cjson = require "cjson"

local APP_ID = "2021000122671080"
local app_key_text = helpers.key_text("app_private_pkcs1.pem")
local app_pub_text = helpers.key_text("app_public.pem")
-- In these specs "Alipay" signs its answers with the app's key pair, so
-- the configured Alipay public key is the app's own public key.
local alipay_key = assert(core.private_key(app_key_text))
local app_pub = assert(core.public_key(app_pub_text))

-- A transport that records requests and answers with a scripted response.
local function scripted(answer)
  local t = { requests = {} }
  function t.request(_, req)
    t.requests[#t.requests + 1] = req
    return answer(req)
  end
  return t
end

local function new_client(answer, extra)
  local cfg = { app_id = APP_ID, private_key = app_key_text, alipay_public_key = app_pub_text,
                gateway = "http://127.0.0.1:1/gateway.do", transport = scripted(answer) }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return assert(alipay.new(cfg))
end

-- A v2 answer body whose node content is `content`, signed unless told.
local function v2_body(method, content, opts)
  opts = opts or {}
  local node = (method:gsub("%.", "_")) .. "_response"
  local sign = opts.sign or alipay_key:sign(content)
  if opts.unsigned then return ('{"%s":%s}'):format(node, content) end
  return ('{"%s":%s,"sign":"%s"}'):format(node, content, sign)
end

local function ok200(body) return { status = 200, headers = {}, body = body } end

local function parse_url(url)
  local query = url:match("%?(.*)$")
  return assert(core.form_decode(query))
end

describe("alipay.new", function()
  local function config_error(cfg, field, pattern)
    local client, _, err = alipay.new(cfg)
    assert.is_nil(client)
    assert.are.equal("config", err.kind)
    assert.are.equal(field, err.field)
    assert.matches(pattern, err.msg)
    assert.is_nil(err.msg:find("MII", 1, true), "a key appears in: " .. err.msg)
    assert.is_false(err.retryable)
    return err
  end
  local base = function(extra)
    local cfg = { app_id = APP_ID, private_key = app_key_text, alipay_public_key = app_pub_text }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return cfg
  end

  it("accepts a public-key mode config and defaults to production RSA2", function()
    local client = assert(alipay.new(base()))
    assert.are.equal("https://openapi.alipay.com/gateway.do", client.config.gateway)
    assert.are.equal("https://openapi.alipay.com", client.config.base_url)
    assert.are.equal("RSA2", client.config.sign_type)
    local sandbox = assert(alipay.new(base { env = "sandbox" }))
    assert.matches("alipaydev", sandbox.config.gateway)
  end)

  it("names the field of every bad value, and never echoes a key", function()
    config_error(base { app_id = "abc" }, "app_id", "numeric id")
    config_error(base { private_key = "garbage" }, "private_key", "not a PEM or base64 RSA key")
    config_error(base { private_key = app_pub_text }, "private_key", "public key or certificate")
    config_error(base { alipay_public_key = app_key_text }, "alipay_public_key", "this is a private key")
    config_error(base { sign_type = "MD5" }, "sign_type", "RSA2")
    config_error(base { env = "staging" }, "env", "production")
    config_error(base { env = "sandbox", gateway = "http://x/gateway.do" }, "env", "not both")
    config_error(base { gateway = "ftp://x" }, "gateway", "http")
    config_error(base { timeout_ms = -5 }, "timeout_ms", "whole number")
    config_error(base { timeout_ms = "10" }, "timeout_ms", "must be a number")
    config_error(base { encrypt_key = "not base64!" }, "encrypt_key", "not valid base64")
    config_error(base { encrypt_key = "AAAA" }, "encrypt_key", "expected 16, 24 or 32")
    config_error(base { privat_key = "x" }, "privat_key", "unknown configuration field")
    config_error(base { private_key_file = "/nonexistent/key.pem" }, "private_key", "not both")
    config_error(base { transport = 42 }, "transport", "request function")
    config_error(base { ca_file = "/nonexistent/ca.pem" }, "ca_file", "cannot read")
    config_error(base { app_cert = helpers.key_text("app_cert.crt") }, "alipay_cert", "certificate mode")
    local cfg = base()
    cfg.private_key = nil
    config_error(cfg, "private_key", "missing")
    cfg = base()
    cfg.alipay_public_key = nil
    config_error(cfg, "alipay_public_key", "missing")
  end)

  it("reads keys from files", function()
    local cfg = base()
    cfg.private_key, cfg.alipay_public_key = nil, nil
    cfg.private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem"
    cfg.alipay_public_key_file = "spec/fixtures/keys/alipay_public_stable.txt"
    assert(alipay.new(cfg))
    cfg.private_key_file = "/nonexistent/key.pem"
    config_error(cfg, "private_key_file", "cannot read the file")
  end)

  it("refuses an app certificate that does not match the private key", function()
    config_error(base {
      app_cert = "spec/fixtures/keys/app_cert.crt", alipay_cert = "spec/fixtures/keys/alipay_cert.crt",
      alipay_root_cert = "spec/fixtures/keys/alipay_root_cert.crt",
    }, "alipay_public_key", "certificate mode")
    local cfg = base {
      app_cert = "spec/fixtures/keys/app_cert.crt", alipay_cert = "spec/fixtures/keys/alipay_cert.crt",
      alipay_root_cert = "spec/fixtures/keys/alipay_root_cert.crt",
    }
    cfg.alipay_public_key = nil
    config_error(cfg, "app_cert", "does not match private_key")
  end)
end)

describe("client:execute on the wire", function()
  local method = "alipay.open.app.messagetemplate.subscribe.query"
  local biz = { user_id = "2088102146158132", template_id_list = { "t1", "t2" } }

  it("puts system params and sign in the query, biz_content in the body, and signs both", function()
    local client = new_client(function() return ok200(v2_body(method, '{"code":"10000","msg":"Success"}')) end)
    assert(client:execute(method, biz, { notify_url = "" }))
    local req = client.transport.requests[1]
    assert.are.equal("POST", req.method)
    assert.are.equal("application/x-www-form-urlencoded;charset=utf-8", req.headers["Content-Type"])
    local query = parse_url(req.url)
    local body = assert(core.form_decode(req.body))
    assert.is_nil(query.biz_content)
    assert.is_nil(query.notify_url, "an empty parameter is not sent")
    assert.are.same({ "app_id", "charset", "format", "method", "sign", "sign_type", "timestamp", "version" },
      (function() local ks = {} for k in pairs(query) do ks[#ks + 1] = k end table.sort(ks) return ks end)())
    assert.are.equal("utf-8", query.charset)
    assert.are.same(biz, cjson.decode(body.biz_content))
    local all = {}
    for k, v in pairs(query) do all[k] = v end
    all.biz_content = body.biz_content
    assert.is_true(app_pub:verify(core.sign_content(all), query.sign))
  end)

  it("sends the timestamp in Beijing time whatever the host's time zone", function()
    local now = 1700000000 -- 2023-11-14 22:13:20 UTC
    assert.are.equal("2023-11-15 06:13:20", alipay.beijing_timestamp(now))
    local script = "package.cpath='build/lua5.4/?.so;'..package.cpath " ..
      "package.path='lua/?.lua;lua/?/init.lua;'..package.path " ..
      "io.write(require('alipay').beijing_timestamp(" .. now .. "))"
    for _, tz in ipairs { "UTC", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "EST5EDT" } do
      local ok, out = helpers.run("TZ=" .. tz .. " lua5.4 -e \"" .. script .. "\"")
      assert(ok, out)
      assert.are.equal("2023-11-15 06:13:20", out, tz)
    end
    local client = new_client(function() return ok200(v2_body(method, '{"code":"10000","msg":"Success"}')) end)
    assert(client:execute(method, biz, { now = now }))
    assert.are.equal("2023-11-15 06:13:20", parse_url(client.transport.requests[1].url).timestamp)
  end)

  it("encrypts biz_content with AES and signs the ciphertext", function()
    local aes = "aa4BtZ4tspm2wnXLb1ThQA=="
    local client = new_client(function() return ok200(v2_body(method, '{"code":"10000","msg":"Success"}')) end,
                              { encrypt_key = aes })
    assert(client:execute(method, biz))
    local req = client.transport.requests[1]
    local query, body = parse_url(req.url), core.form_decode(req.body)
    assert.are.equal("AES", query.encrypt_type)
    assert.are.same(biz, cjson.decode(core.aes_decrypt(aes, body.biz_content)))
    local all = {}
    for k, v in pairs(query) do all[k] = v end
    all.biz_content = body.biz_content
    assert.is_true(app_pub:verify(core.sign_content(all), query.sign))
  end)

  it("adds a per-call app_auth_token and timeout", function()
    local client = new_client(function() return ok200(v2_body(method, '{"code":"10000","msg":"Success"}')) end,
                              { app_auth_token = "config-token" })
    assert(client:execute(method, biz))
    assert(client:execute(method, biz, { app_auth_token = "call-token", timeout_ms = 1234 }))
    assert.are.equal("config-token", parse_url(client.transport.requests[1].url).app_auth_token)
    assert.are.equal("call-token", parse_url(client.transport.requests[2].url).app_auth_token)
    assert.are.equal(1234, client.transport.requests[2].timeout_ms)
  end)

  it("raises on misuse", function()
    local client = new_client(function() end)
    assert.has_error(function() client:execute(nil, {}) end)
    assert.has_error(function() client:execute("not a method", {}) end)
    assert.has_error(function() client:execute(method, 42) end)
  end)
end)

describe("client:execute answers", function()
  local method = "alipay.open.public.message.single.send"

  local function call(answer, extra)
    return new_client(answer, extra):execute(method, { to_user_id = "2088102146158132" })
  end

  it("returns the decoded node of a verified success", function()
    local res, err = call(function()
      return ok200(v2_body(method, '{"code":"10000","msg":"Success","url":"https:\\/\\/x.cn\\/a"}'))
    end)
    assert.is_nil(err)
    assert.are.equal("10000", res.code)
    assert.are.equal("https://x.cn/a", res.url)
  end)

  it("rejects a tampered success", function()
    local sign = alipay_key:sign('{"code":"10000","msg":"Success"}')
    local _, _, err = call(function()
      return ok200(v2_body(method, '{"code":"10000","msg":"Succes5"}', { sign = sign }))
    end)
    assert.are.equal("signature", err.kind)
    assert.is_false(err.retryable)
  end)

  it("rejects a success without a signature", function()
    local _, _, err = call(function()
      return ok200(v2_body(method, '{"code":"10000","msg":"Success"}', { unsigned = true }))
    end)
    assert.are.equal("signature", err.kind)
    assert.matches("without a signature", err.msg)
  end)

  it("types a signed business error", function()
    local _, _, err = call(function()
      return ok200(v2_body(method, '{"code":"40004","msg":"Business Failed","sub_code":"MSG_TEMPLATE_NOT_EXIST",' ..
                                   '"sub_msg":"模板不存在"}'))
    end)
    assert.are.equal("business", err.kind)
    assert.are.equal("40004", err.code)
    assert.are.equal("MSG_TEMPLATE_NOT_EXIST", err.sub_code)
    assert.is_true(err.verified)
    assert.is_false(err.retryable)
    assert.matches("MSG_TEMPLATE_NOT_EXIST", tostring(err))
  end)

  it("marks an unsigned error_response as unverified", function()
    local _, _, err = call(function()
      return ok200('{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"}}')
    end)
    assert.are.equal("gateway", err.kind)
    assert.are.equal("isv.invalid-app-id", err.sub_code)
    assert.is_false(err.verified)
    assert.are.equal("error_response", err.node)
  end)

  it("makes 20000 and 40005 retryable and 40002 not", function()
    for code, retry in pairs { ["20000"] = true, ["40005"] = true, ["40002"] = false, ["20001"] = false } do
      local _, _, err = call(function()
        return ok200(v2_body(method, ('{"code":"%s","msg":"x","sub_code":"y"}'):format(code)))
      end)
      assert.are.equal("gateway", err.kind)
      assert.are.equal(retry, err.retryable, code)
    end
  end)

  it("types HTTP errors, bodies that are not JSON and transport failures as retryable with unknown outcome", function()
    local _, _, err = call(function() return { status = 502, headers = {}, body = "<html>Bad Gateway</html>" } end)
    assert.are.equal("http", err.kind)
    assert.are.equal(502, err.status)
    assert.is_true(err.retryable and err.unknown)
    _, _, err = call(function() return ok200("<html>oops</html>") end)
    assert.are.equal("decode", err.kind)
    assert.is_true(err.retryable and err.unknown)
    _, _, err = call(function() return ok200(v2_body(method, '{"code":"10000"'):sub(1, 30)) end)
    assert.are.equal("decode", err.kind)
    _, _, err = call(function()
      return nil, alipay.errors.new("transport", { msg = "timed out", reason = "timeout" })
    end)
    assert.are.equal("transport", err.kind)
    assert.are.equal(method, err.method)
    assert.is_true(err.retryable and err.unknown)
  end)

  it("decrypts a signed encrypted answer", function()
    local aes = "aa4BtZ4tspm2wnXLb1ThQA=="
    local quoted = '"' .. core.aes_encrypt(aes, '{"code":"10000","msg":"Success","x":"y"}') .. '"'
    local res = assert(call(function() return ok200(v2_body(method, quoted)) end, { encrypt_key = aes }))
    assert.are.equal("y", res.x)
    local _, _, err = call(function() return ok200(v2_body(method, quoted)) end)
    assert.are.equal("config", err.kind)
    assert.are.equal("encrypt_key", err.field)
  end)
end)

describe("client:v3", function()
  local path = "/v3/alipay/open/app/messagetemplate/subscribe/query"

  local function signed_answer(status, body, headers)
    headers = headers or {}
    local ts, nonce = "1717756911576", "abc123"
    headers["alipay-timestamp"], headers["alipay-nonce"] = ts, nonce
    headers["alipay-signature"] = alipay_key:sign(ts .. "\n" .. nonce .. "\n" .. body .. "\n")
    headers["alipay-trace-id"] = "0b1234"
    return { status = status, headers = headers, body = body }
  end

  it("sends a verifiable Authorization header with nonce, timestamp and request id", function()
    local client = new_client(function() return signed_answer(200, '{"show_component":true}') end,
                              { app_auth_token = "tok" })
    local res = assert(client:v3("POST", path, { user_id = "2088" }))
    assert.is_true(res.show_component)
    local req = client.transport.requests[1]
    assert.are.equal("http://127.0.0.1:1" .. path, req.url)
    local auth, sig = req.headers.Authorization:match("^ALIPAY%-SHA256withRSA (.-),sign=(.+)$")
    assert.matches("^app_id=" .. APP_ID .. ",nonce=%x+,timestamp=%d+$", auth)
    assert.is_true(app_pub:verify(auth .. "\nPOST\n" .. path .. "\n" .. req.body .. "\ntok\n", sig))
    assert.matches("^%x+$", req.headers["alipay-request-id"])
    assert.is_true(#req.headers["alipay-request-id"] <= 32)
    assert.are.equal("tok", req.headers["alipay-app-auth-token"])
  end)

  it("signs a GET with its query and an empty body line", function()
    local client = new_client(function() return signed_answer(200, '{}') end)
    assert(client:v3("GET", "/v3/alipay/open/public/template/message/get?template_id=TM1"))
    local req = client.transport.requests[1]
    local auth, sig = req.headers.Authorization:match("^ALIPAY%-SHA256withRSA (.-),sign=(.+)$")
    assert.is_nil(req.body)
    local get_path = "/v3/alipay/open/public/template/message/get?template_id=TM1"
    assert.is_true(app_pub:verify(auth .. "\nGET\n" .. get_path .. "\n\n", sig))
  end)

  it("requires a valid signature on success", function()
    local _, _, err = new_client(function() return { status = 200, headers = {}, body = "{}" } end):v3("POST", path, {})
    assert.are.equal("signature", err.kind)
    local answer = signed_answer(200, '{"a":1}')
    answer.body = '{"a":2}'
    _, _, err = new_client(function() return answer end):v3("POST", path, {})
    assert.are.equal("signature", err.kind)
  end)

  it("types error bodies as business or gateway errors", function()
    local _, _, err = new_client(function()
      return signed_answer(400, '{"code":"USER_TEMPLATE_ILLEGAL","message":"模板不合法"}')
    end):v3("POST", path, {})
    assert.are.equal("business", err.kind)
    assert.are.equal("USER_TEMPLATE_ILLEGAL", err.sub_code)
    assert.are.equal("400", err.code)
    assert.is_true(err.verified)
    assert.are.equal("0b1234", err.trace_id)
    _, _, err = new_client(function()
      return signed_answer(429, '{"code":"app-call-limited","message":"slow down"}')
    end):v3("POST", path, {})
    assert.are.equal("gateway", err.kind)
    assert.is_true(err.retryable)
    _, _, err = new_client(function()
      return { status = 401, headers = {}, body = '{"code":"invalid-signature","message":"bad"}' }
    end):v3("POST", path, {})
    assert.are.equal("gateway", err.kind)
    assert.is_false(err.verified)
    assert.is_false(err.retryable)
    _, _, err = new_client(function() return { status = 502, headers = {}, body = "<html>" } end):v3("POST", path, {})
    assert.are.equal("http", err.kind)
    assert.is_true(err.retryable)
  end)
end)
