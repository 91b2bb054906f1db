-- The sandbox gateway's logic, driven directly (no nginx, no network): every
-- request is built and signed here as a client would, and every answer is
-- verified with gw.alipay_public_key through core.extract, as a client would.
local helpers = require "helpers"
local core = require "alipay.core"
local cjson = require "cjson"
local gateway = require "alipay.sandbox.openapi"

local APP_ID = "2021000122671080"
local AES_KEY = "aa4BtZ4tspm2wnXLb1ThQA=="
local OTHER_AES_KEY = "aYA0GP8JEW+D7/UFaskCWA=="
local SEED_PATH = helpers.fixtures .. "/sandbox_seed.json"
local T0 = 1717756911 -- 2024-06-07 18:41:51 in Beijing
local SIGN_ERROR_PREFIX = "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："

-- Seed facts the specs rely on (spec/fixtures/sandbox_seed.json).
local F1 = "2088857585575154"     -- follower; long-term MINI_A, one-time MINI_C
local F2 = "2088088617867163"     -- follower; one-time MINI_A
local F3 = "2088595874450942"     -- follower; one-time MINI_A x3 (2 + 1 accumulated)
local F4 = "2088064507100478"     -- follower; refused MINI_A long-term
local F6 = "2088727077415862"     -- follower; long-term on the deleted MINI_D
local F1_OPEN = "0V7KGVDalY9Ks76za6O6goGeF8QreKU60cAqETZaAs3Yp5"
local STRANGER = "2088999999999999"
local GENERATED = "2088000000000001" -- the first generated follower
local CLAIMED = "14330d60f0ab4516853a0900827cee35"         -- TM000000223, 3 keywords
local CLAIMED_DELETED = "7d5e0c1f2a9b48c6a1e3f0d2b4c6e8a0" -- TM000000226
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=" -- 3 keywords
local MINI_B = "NzVmYjA1ZDM0NjQ2NDZkNjk0YzBmMjc4OGM3ZDAxNDE=" -- 2 keywords
local MINI_C = "YjU0ZGJkNzU4MzJmNGVkNGE1ZGY1NzQ4MTQ5OTQ3MzQ=" -- 4 keywords
local MINI_D = "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M=" -- deleted

local SEND = "alipay.open.public.message.single.send"
local MINI_SEND = "alipay.open.app.mini.templatemessage.send"
local SUB_QUERY = "alipay.open.app.messagetemplate.subscribe.query"
local FOLLOW_QUERY = "alipay.open.public.user.follow.query"
local BATCH = "alipay.open.public.follow.batchquery"
local TEMPLATE_GET = "alipay.open.public.template.message.get"
local INDUSTRY_MODIFY = "alipay.open.public.template.message.industry.modify"
local CATEGORY = "alipay.open.public.setting.category.query"

local app_private = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem")))
local app_public_pem = helpers.key_text("app_public.pem")
local seed_text = helpers.read(SEED_PATH)

local now = T0
local function clock() return now end

-- ---- key material: the sandbox's own key, and a throwaway PKI for
-- certificate mode (the fixture app certificate's private key is not ours) ----

local pki
local function material()
  if pki then return pki end
  local dir = helpers.tmpdir()
  local subj = "/C=CN/O=lua-alipay sandbox specs/OU=Sandbox/CN="
  local steps = {
    "openssl genrsa -out %s/alipay.key 2048",
    "openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -keyout %s/ca.key -out %s/ca.crt -subj '"
      .. subj .. "Sandbox Root CA'",
    "openssl req -new -key spec/fixtures/keys/app_private_pkcs1.pem -out %s/app.csr -subj '" .. subj .. APP_ID .. "'",
    "openssl x509 -req -in %s/app.csr -CA %s/ca.crt -CAkey %s/ca.key -set_serial 4242 -days 2 -sha256 -out %s/app.crt",
    "openssl req -new -key %s/alipay.key -out %s/alipay.csr -subj '" .. subj .. "Alipay Sandbox'",
    "openssl x509 -req -in %s/alipay.csr -CA %s/ca.crt -CAkey %s/ca.key -set_serial 77 -days 2 -sha256 "
      .. "-out %s/alipay.crt",
  }
  for _, step in ipairs(steps) do
    local cmd = step:gsub("%%s", dir)
    local ok, out = helpers.run(cmd)
    assert(ok, cmd .. "\n" .. out)
  end
  pki = {}
  for _, name in ipairs{ "alipay.key", "ca.crt", "app.crt", "alipay.crt" } do
    pki[name] = helpers.read(dir .. "/" .. name)
  end
  return pki
end

-- ---- gateways ----

local function seed_table(mutate)
  local seed = cjson.decode(seed_text)
  if mutate then mutate(seed) end
  return seed
end

local function config(over)
  local cfg = { app_id = APP_ID, app_public_key = app_public_pem, alipay_private_key = material()["alipay.key"],
    encrypt_key = AES_KEY, seed = seed_table(), clock = clock }
  for k, v in pairs(over or {}) do
    if v == false then cfg[k] = nil else cfg[k] = v end
  end
  return cfg
end

local function new_gateway(over)
  return assert(gateway.new(config(over)))
end

local function cert_gateway(over)
  local m = material()
  local cfg = { app_public_key = false, app_cert = m["app.crt"], alipay_cert = m["alipay.crt"],
    alipay_root_cert = m["ca.crt"] }
  for k, v in pairs(over or {}) do cfg[k] = v end
  return new_gateway(cfg)
end

-- ---- a v2 client ----

local function beijing(t)
  return os.date("!%Y-%m-%d %H:%M:%S", t + 8 * 3600)
end

-- A signed v2 request. opts: params (overrides; false removes), raw_biz,
-- aes (true or a key), key (signing key), sign (literal), in_query
-- (biz_content in the query too), body_extra (fields added to the body).
local function v2_request(method, biz, opts)
  opts = opts or {}
  local p = { app_id = APP_ID, method = method, format = "JSON", charset = "utf-8", sign_type = "RSA2",
    timestamp = beijing(now), version = "1.0" }
  local text = opts.raw_biz or (biz ~= nil and cjson.encode(biz) or nil)
  if opts.aes then
    text = assert(core.aes_encrypt(opts.aes == true and AES_KEY or opts.aes, text))
    p.encrypt_type = "AES"
  end
  p.biz_content = text
  for k, v in pairs(opts.params or {}) do
    if v == false then p[k] = nil else p[k] = v end
  end
  p.sign = opts.sign or (opts.key or app_private):sign(core.sign_content(p), p.sign_type == "RSA" and "RSA" or "RSA2")
  if opts.sign == false then p.sign = nil end
  local query, body = {}, {}
  for k, v in pairs(p) do
    if k == "biz_content" and not opts.in_query then body[k] = v else query[k] = v end
  end
  for k, v in pairs(opts.body_extra or {}) do body[k] = v end
  return { query = core.form_encode(query), body = next(body) and core.form_encode(body) or "",
    content_type = "application/x-www-form-urlencoded;charset=utf-8" }, p
end

-- Reads an answer as a client does: extract, verify, decrypt, decode.
-- -> node table, info {verified, signed, encrypted, cert_sn, node, body}
local function read_v2(gw, method, alg, status, headers, body)
  assert.are.equal(200, status)
  assert.are.equal("application/json;charset=utf-8", headers["content-type"])
  local x = assert(core.extract(body, method))
  local info = { node = x.node, encrypted = x.encrypted, cert_sn = x.cert_sn, body = body,
    signed = x.sign ~= nil and x.sign ~= "" }
  if info.signed then
    local key = assert(core.public_key(gw.alipay_public_key))
    info.verified = key:verify(x.content, x.sign, alg or "RSA2") == true
  end
  local content = x.content
  if x.encrypted then content = assert(core.aes_decrypt(AES_KEY, cjson.decode(content))) end
  return cjson.decode(content), info
end

local function call_v2(gw, method, biz, opts)
  local req, p = v2_request(method, biz, opts)
  local node, info = read_v2(gw, method, p.sign_type == "RSA" and "RSA" or nil, gw:handle_v2(req))
  return node, info, p
end

-- A signed, verified success: the node.
local function ok_v2(gw, method, biz, opts)
  local node, info = call_v2(gw, method, biz, opts)
  assert.is_true(info.verified, "answer not verified")
  assert.are.equal("10000", node.code, node.sub_code and (node.sub_code .. ": " .. tostring(node.sub_msg)))
  assert.are.equal("Success", node.msg)
  return node, info
end

-- A signed, verified error with this code and sub_code: the node.
local function err_v2(gw, method, biz, code, sub_code, opts)
  local node, info, p = call_v2(gw, method, biz, opts)
  assert.is_true(info.verified, "answer not verified")
  assert.are.equal(sub_code, node.sub_code, tostring(node.sub_msg))
  assert.are.equal(code, node.code)
  return node, info, p
end

local function biz_fail(gw, method, biz, sub_code, opts)
  local node = err_v2(gw, method, biz, "40004", sub_code, opts)
  assert.are.equal("Business Failed", node.msg)
  return node
end

-- ---- a v3 client ----

local function v3_request(verb, path, opts)
  opts = opts or {}
  local body = opts.raw_body or (opts.json and cjson.encode(opts.json)) or ""
  if opts.aes then body = assert(core.aes_encrypt(AES_KEY, body)) end
  local query = opts.query or ""
  local auth = "app_id=" .. (opts.app_id or APP_ID)
    .. (opts.app_cert_sn and (",app_cert_sn=" .. opts.app_cert_sn) or "")
    .. ",nonce=" .. core.random_hex(16) .. ",timestamp=" .. (opts.ts or ("%.0f"):format(now * 1000))
  local signed = opts.signed_text or (auth .. "\n" .. verb .. "\n" .. path .. (query ~= "" and ("?" .. query) or "")
    .. "\n" .. body .. "\n" .. (opts.token and (opts.token .. "\n") or ""))
  local headers = {
    authorization = "ALIPAY-SHA256withRSA " .. auth .. ",sign=" .. (opts.key or app_private):sign(signed),
    ["content-type"] = opts.aes and "text/plain" or "application/json",
    ["alipay-request-id"] = core.random_hex(16),
    ["alipay-app-auth-token"] = opts.token,
    ["alipay-root-cert-sn"] = opts.root_sn,
    ["alipay-encrypt-type"] = opts.aes and "AES" or nil,
  }
  for k, v in pairs(opts.headers or {}) do
    if v == false then headers[k] = nil else headers[k] = v end
  end
  return { method = verb, path = path, query = query, headers = headers, body = body }
end

-- -> decoded body, info {status, headers, verified, signed}
local function read_v3(gw, status, headers, body)
  local info = { status = status, headers = headers, body = body, signed = headers["alipay-signature"] ~= nil }
  assert.is_string(headers["alipay-trace-id"])
  if info.signed then
    local key = assert(core.public_key(gw.alipay_public_key))
    local text = headers["alipay-timestamp"] .. "\n" .. headers["alipay-nonce"] .. "\n" .. body .. "\n"
    info.verified = key:verify(text, headers["alipay-signature"]) == true
  end
  local text = body
  if headers["alipay-encrypt-type"] == "AES" then text = assert(core.aes_decrypt(AES_KEY, body)) end
  return cjson.decode(text), info
end

local function call_v3(gw, verb, path, opts)
  return read_v3(gw, gw:handle_v3(v3_request(verb, path, opts)))
end

local function ok_v3(gw, verb, path, opts)
  local res, info = call_v3(gw, verb, path, opts)
  assert.are.equal(200, info.status, info.body)
  assert.is_true(info.verified)
  return res, info
end

local function err_v3(gw, verb, path, status, code, opts)
  local res, info = call_v3(gw, verb, path, opts)
  assert.are.equal(status, info.status, info.body)
  assert.are.equal(code, res.code)
  assert.is_string(res.message)
  return res, info
end

-- ---- business payloads ----

local function context(over)
  local c = { head_color = "#85be53", url = "https://example.com/orders/1", action_name = "查看详情",
    first = { color = "#85be53", value = "您的订单有新动态" },
    keyword1 = { color = "#85be53", value = "HU7142" },
    keyword2 = { color = "#85be53", value = "已发货" },
    keyword3 = { color = "#85be53", value = "2024-06-07 18:41" },
    remark = { color = "#85be53", value = "感谢使用" } }
  for k, v in pairs(over or {}) do
    if v == false then c[k] = nil else c[k] = v end
  end
  return c
end

local function single_send(over, to)
  return { to_user_id = to or F1, template = { template_id = CLAIMED, context = context(over) } }
end

local function mini_data(n, value)
  local d = {}
  for i = 1, n do d["keyword" .. i] = { value = value or ("值" .. i) } end
  return cjson.encode(d)
end

local function mini_send(to, template_id, data)
  return { to_user_id = to, user_template_id = template_id or MINI_A, page = "pages/index?id=1",
    data = data or mini_data(3) }
end

local function subscribe_query(user, ids)
  return { user_id = user, template_id_list = ids }
end

local function relation(res, template_id)
  for _, r in ipairs(res.subscribe_relations or {}) do
    if r.template_id == template_id then return r end
  end
end

describe("sandbox gateway", function()
  before_each(function() now = T0 end)
  teardown(function() helpers.cleanup() end)

  describe("gateway.new", function()
    it("builds a gateway whose alipay_public_key is the public half of its signing key", function()
      local gw = assert(gateway.new(config{ seed = SEED_PATH }))
      local signer = assert(core.private_key(material()["alipay.key"]))
      assert.are.equal(signer:public_pem(), gw.alipay_public_key)
      assert.matches("^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-", gw.alipay_public_key)
      assert.are.equal(25000, gw:state():follower_count())
    end)

    local bad = {
      { "app_id", { app_id = false } },
      { "app_id", { app_id = "not-an-id" } },
      { "app_public_key, app_cert", { app_public_key = false } },
      { "app_public_key, app_cert", { app_cert = "x" } },
      { "app_public_key", { app_public_key = "not a key" } },
      { "alipay_private_key", { alipay_private_key = false } },
      { "alipay_private_key",
        { alipay_private_key = "-----BEGIN " .. "PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----" } },
      { "encrypt_key", { encrypt_key = "aGVsbG8=" } },
      { "seed", { seed = "/nonexistent/seed.json" } },
      { "seed.library%[1%].template_id", { seed = seed_table(function(s) s.library[1].template_id = nil end) } },
      { "seed.subscriptions%[1%].type", { seed = seed_table(function(s) s.subscriptions[1].type = "weekly" end) } },
      { "seed.industry.primary", { seed = seed_table(function(s) s.industry.primary = "99999/1" end) } },
      { "clock", { clock = 42 } },
    }
    for _, case in ipairs(bad) do
      it("names the bad field: " .. case[1]:gsub("%%", ""), function()
        local gw, err = gateway.new(config(case[2]))
        assert.is_nil(gw)
        assert.matches("^" .. case[1] .. ":", err)
      end)
    end

    it("refuses an alipay_cert that does not hold the sandbox's key", function()
      local gw, err = gateway.new(config{ alipay_private_key = helpers.key_text("app_private_pkcs8.pem"),
        app_public_key = false, app_cert = material()["app.crt"], alipay_cert = material()["alipay.crt"] })
      assert.is_nil(gw)
      assert.matches("^alipay_cert:", err)
    end)

    it("reads a seed given as a path and as a table alike", function()
      local a = ok_v2(new_gateway{ seed = SEED_PATH }, TEMPLATE_GET, { template_id = "TM000000224" })
      local b = ok_v2(new_gateway(), TEMPLATE_GET, { template_id = "TM000000224" })
      assert.are.equal(a.msg_template_id, b.msg_template_id)
    end)

    it("takes JSON nulls in the configuration and the seed for absent fields", function()
      local cfg = config{ seed = seed_table(function(s)
        s.industry.modified_at = cjson.null
        s.subscriptions[1].count = cjson.null
        s.claimed[1].deleted = cjson.null
      end) }
      cfg.encrypt_key, cfg.app_cert, cfg.alipay_cert = cjson.null, cjson.null, cjson.null
      local gw = assert(gateway.new(cfg))
      biz_fail(gw, FOLLOW_QUERY, { user_id = cjson.null }, "ILLEGAL_BIZ_PARAMS")
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40003", "isv.missing-encrypt-key", { aes = true })
    end)

    it("accepts a generator given as a bare count", function()
      local gw = new_gateway{ seed = { followers = { generate = 3, user_id_prefix = "20881111" } } }
      assert.are.equal(3, gw:state():follower_count())
      assert.is_true(gw:state():follows("user_id", "2088111100000002"))
    end)
  end)

  describe("v2 request checks", function()
    local gw
    before_each(function() gw = new_gateway() end)

    it("answers a correctly signed call with a signed success", function()
      local node, info = ok_v2(gw, FOLLOW_QUERY, { user_id = F1 })
      assert.are.equal("T", node.is_follow)
      assert.are.equal("alipay_open_public_user_follow_query_response", info.node)
      assert.is_nil(info.cert_sn)
    end)

    it("answers a missing method with an unsigned error_response", function()
      local req = v2_request(FOLLOW_QUERY, { user_id = F1 }, { params = { method = false } })
      local node, info = read_v2(gw, "x", nil, gw:handle_v2(req))
      assert.are.equal("error_response", info.node)
      assert.is_false(info.signed)
      assert.are.same({ "40001", "isv.missing-method" }, { node.code, node.sub_code })
      assert.are.equal("Missing Required Arguments", node.msg)
    end)

    it("answers an unknown method with an unsigned error_response", function()
      local req = v2_request("alipay.trade.query", { out_trade_no = "1" })
      local node, info = read_v2(gw, "alipay.trade.query", nil, gw:handle_v2(req))
      assert.are.equal("error_response", info.node)
      assert.is_false(info.signed)
      assert.are.same({ "40002", "isv.invalid-method" }, { node.code, node.sub_code })
    end)

    it("answers an unknown app_id unsigned, under the method's node", function()
      local node, info = call_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = { app_id = "2021000000000000" } })
      assert.are.equal("alipay_open_public_user_follow_query_response", info.node)
      assert.is_false(info.signed)
      assert.is_nil(info.body:find('"sign"', 1, true))
      assert.are.same({ "40002", "isv.invalid-app-id" }, { node.code, node.sub_code })
    end)

    it("answers a missing app_id unsigned with isv.missing-app-id", function()
      local node, info = call_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = { app_id = false } })
      assert.is_false(info.signed)
      assert.are.same({ "40001", "isv.missing-app-id" }, { node.code, node.sub_code })
    end)

    it("checks the app before the signature", function()
      local node, info = call_v2(gw, FOLLOW_QUERY, { user_id = F1 },
        { params = { app_id = "2021000000000000" }, sign = false })
      assert.is_false(info.signed)
      assert.are.equal("isv.invalid-app-id", node.sub_code)
    end)

    it("answers a missing sign with a signed 40001 isv.missing-signature", function()
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40001", "isv.missing-signature", { sign = false })
    end)

    for _, case in ipairs{ { "sign_type", "isv.missing-signature-type" }, { "charset", "isv.missing-charset" },
      { "timestamp", "isv.missing-timestamp" }, { "version", "isv.missing-version" } } do
      it("answers a missing " .. case[1] .. " with 40001 " .. case[2], function()
        err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40001", case[2], { params = { [case[1]] = false } })
      end)
    end

    it("treats an empty system parameter as missing", function()
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40001", "isv.missing-version", { params = { version = "" } })
    end)

    it("rejects a sign_type other than RSA2 and RSA", function()
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-signature-type",
        { params = { sign_type = "SM2" } })
    end)

    it("accepts RSA (SHA1) requests and signs the answer with SHA1", function()
      local req = v2_request(FOLLOW_QUERY, { user_id = F1 }, { params = { sign_type = "RSA" } })
      local node, info = read_v2(gw, FOLLOW_QUERY, "RSA", gw:handle_v2(req))
      assert.is_true(info.verified)
      assert.are.equal("10000", node.code)
      local _, info2 = read_v2(gw, FOLLOW_QUERY, "RSA2", gw:handle_v2(req))
      assert.is_false(info2.verified)
    end)

    it("accepts charset utf-8 in any case and rejects others", function()
      ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = { charset = "UTF-8" } })
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-charset", { params = { charset = "GBK" } })
    end)

    it("accepts format JSON in any case, or none, and rejects others", function()
      ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = { format = "json" } })
      ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = { format = false } })
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-format", { params = { format = "XML" } })
    end)

    it("reads the timestamp as Beijing time, within 10 minutes of the clock", function()
      ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = { timestamp = beijing(T0 - 590) } })
      ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = { timestamp = beijing(T0 + 590) } })
      for _, ts in ipairs{ beijing(T0 - 660), beijing(T0 + 660),
        os.date("!%Y-%m-%d %H:%M:%S", T0), -- host time in UTC: 8 hours off
        "2024/06/07 18:41:51", "2024-06-07T18:41:51", "2024-02-30 10:00:00", "2024-06-07 24:00:00" } do
        err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-timestamp", { params = { timestamp = ts } })
      end
    end)

    it("checks the timestamp before the signature", function()
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-timestamp",
        { params = { timestamp = beijing(T0 - 3600) }, sign = "AAAA" })
    end)

    it("answers a bad signature with the string it computed, & escaped as &amp;", function()
      local node, _, p = err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-signature",
        { key = assert(core.private_key(material()["alipay.key"])) })
      local expected = core.sign_content(p):gsub("&", "&amp;")
      assert.are.equal(SIGN_ERROR_PREFIX .. expected, node.sub_msg)
      assert.truthy(node.sub_msg:find("&amp;biz_content={\"user_id\":\"" .. F1 .. "\"}&amp;", 1, true))
      assert.are.equal("Invalid Arguments", node.msg)
    end)

    it("rejects a request altered after signing", function()
      local req = v2_request(FOLLOW_QUERY, { user_id = F1 })
      req.body = "biz_content=" .. core.form_encode(cjson.encode{ user_id = F2 })
      local node, info = read_v2(gw, FOLLOW_QUERY, nil, gw:handle_v2(req))
      assert.is_true(info.verified)
      assert.are.equal("isv.invalid-signature", node.sub_code)
    end)

    it("drops empty parameters from the string to sign", function()
      local req, p = v2_request(FOLLOW_QUERY, { user_id = F1 })
      p.notify_url = ""
      local query = {}
      for k, v in pairs(p) do if k ~= "biz_content" then query[k] = v end end
      req.query = core.form_encode(query)
      local node, info = read_v2(gw, FOLLOW_QUERY, nil, gw:handle_v2(req))
      assert.is_true(info.verified)
      assert.are.equal("10000", node.code)
    end)

    it("takes parameters from the query string, the body, or both", function()
      ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { in_query = true })
      local req = v2_request(FOLLOW_QUERY, { user_id = F1 }, { params = { notify_url = "https://a.example/n" } })
      local node = read_v2(gw, FOLLOW_QUERY, nil, gw:handle_v2(req))
      assert.are.equal("10000", node.code)
    end)

    it("rejects a field present in both the query string and the body", function()
      local node = err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-parameter",
        { body_extra = { version = "1.0" } })
      assert.matches("version", node.sub_msg)
    end)

    it("answers a malformed form or a non-form body with an unsigned error_response", function()
      local req = v2_request(FOLLOW_QUERY, { user_id = F1 })
      local bad_query = { query = req.query .. "&x=%zz", body = req.body, content_type = req.content_type }
      local node, info = read_v2(gw, FOLLOW_QUERY, nil, gw:handle_v2(bad_query))
      assert.are.equal("error_response", info.node)
      assert.is_false(info.signed)
      assert.are.equal("isv.invalid-parameter", node.sub_code)
      local json_body = { query = req.query, body = '{"user_id":"1"}', content_type = "application/json" }
      node, info = read_v2(gw, FOLLOW_QUERY, nil, gw:handle_v2(json_body))
      assert.are.equal("error_response", info.node)
      assert.are.equal("isv.invalid-parameter", node.sub_code)
    end)

    it("requires biz_content to be a JSON object", function()
      for _, raw in ipairs{ "not json", "[1,2]", '"text"', "42" } do
        local node = err_v2(gw, FOLLOW_QUERY, nil, "40002", "isv.invalid-parameter", { raw_biz = raw })
        assert.matches("biz_content", node.sub_msg)
      end
    end)

    it("hands an absent biz_content to the method as an empty object", function()
      local node = biz_fail(gw, FOLLOW_QUERY, nil, "ILLEGAL_BIZ_PARAMS")
      assert.matches("user_id or open_id", node.sub_msg)
      local cat = ok_v2(gw, CATEGORY, nil)
      assert.are.equal("IT科技/IT软件与服务", cat.primary_category)
    end)

    it("accepts the app_auth_tokens of the seed and refuses others with 20001", function()
      ok_v2(gw, FOLLOW_QUERY, { user_id = F1 },
        { params = { app_auth_token = "202405BBa6f4b2c8d9e0f1a2b3c4d5e6f7a8X71" } })
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "20001", "aop.invalid-app-auth-token",
        { params = { app_auth_token = "202405BBunknown" } })
    end)

    it("writes / as \\/ in the signed content", function()
      local _, info = ok_v2(gw, TEMPLATE_GET, { template_id = "TM000000224" })
      assert.truthy(info.body:find("10001\\\\\\/20102", 1, true))
    end)
  end)

  describe("v2 AES content encryption", function()
    local gw
    before_each(function() gw = new_gateway() end)

    it("decrypts the request and encrypts the answer, signed over the quoted ciphertext", function()
      local node, info = ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { aes = true })
      assert.is_true(info.encrypted)
      assert.are.equal("T", node.is_follow)
      assert.matches('^{"alipay_open_public_user_follow_query_response":"', info.body)
    end)

    it("encrypts business errors too", function()
      local node, info = err_v2(gw, MINI_SEND, mini_send(STRANGER), "40004", "MSG_UNSUBSCRIBED", { aes = true })
      assert.is_true(info.encrypted)
      assert.are.equal("Business Failed", node.msg)
    end)

    it("answers an undecryptable biz_content with a plain signed 40003", function()
      local _, info = err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40003", "isv.decryption-error-unknown",
        { aes = OTHER_AES_KEY })
      assert.is_false(info.encrypted)
    end)

    it("rejects an encrypt_type other than AES", function()
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-encrypt-type",
        { params = { encrypt_type = "DES" } })
    end)

    it("answers 40003 isv.missing-encrypt-key when the app has no AES key", function()
      local plain = new_gateway{ encrypt_key = false }
      local _, info = err_v2(plain, FOLLOW_QUERY, { user_id = F1 }, "40003", "isv.missing-encrypt-key", { aes = true })
      assert.is_false(info.encrypted)
    end)
  end)

  describe("certificate mode", function()
    local gw, m, params
    before_each(function()
      gw = cert_gateway()
      m = material()
      params = { app_cert_sn = core.cert_sn(m["app.crt"]), alipay_root_cert_sn = core.root_cert_sn(m["ca.crt"]) }
    end)

    it("accepts requests carrying the SNs and answers with alipay_cert_sn before sign", function()
      local node, info = ok_v2(gw, FOLLOW_QUERY, { user_id = F1 }, { params = params })
      assert.are.equal("T", node.is_follow)
      local sn = core.cert_sn(m["alipay.crt"])
      assert.are.equal(sn, info.cert_sn)
      local at_node = info.body:find('"alipay_open_public_user_follow_query_response"', 1, true)
      local at_sn = info.body:find('"alipay_cert_sn":"' .. sn .. '"', 1, true)
      local at_sign = info.body:find('"sign":"', 1, true)
      assert.truthy(at_node < at_sn and at_sn < at_sign)
      -- A client holding the Alipay certificate verifies with its key.
      local x = assert(core.extract(info.body, FOLLOW_QUERY))
      assert.is_true(assert(core.public_key(m["alipay.crt"])):verify(x.content, x.sign))
    end)

    it("rejects a wrong or missing app_cert_sn", function()
      local wrong = { app_cert_sn = core.cert_sn(helpers.key_text("app_cert.crt")),
        alipay_root_cert_sn = params.alipay_root_cert_sn }
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-app-cert-sn", { params = wrong })
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-app-cert-sn",
        { params = { alipay_root_cert_sn = params.alipay_root_cert_sn } })
    end)

    it("rejects a wrong or missing alipay_root_cert_sn", function()
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-alipay-root-cert-sn",
        { params = { app_cert_sn = params.app_cert_sn,
          alipay_root_cert_sn = core.root_cert_sn(helpers.key_text("alipay_root_cert.crt")) } })
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-alipay-root-cert-sn",
        { params = { app_cert_sn = params.app_cert_sn } })
    end)

    it("verifies with the certificate's key", function()
      err_v2(gw, FOLLOW_QUERY, { user_id = F1 }, "40002", "isv.invalid-signature",
        { params = params, key = assert(core.private_key(m["alipay.key"])) })
    end)

    it("speaks v3 with app_cert_sn, alipay-root-cert-sn and alipay-sn", function()
      local res, info = ok_v3(gw, "POST", "/v3/alipay/open/public/user/follow/query",
        { json = { user_id = F1 }, app_cert_sn = params.app_cert_sn, root_sn = params.alipay_root_cert_sn })
      assert.are.equal("T", res.is_follow)
      assert.are.equal(core.cert_sn(m["alipay.crt"]), info.headers["alipay-sn"])
      err_v3(gw, "POST", "/v3/alipay/open/public/user/follow/query", 400, "invalid-alipay-root-cert-sn",
        { json = { user_id = F1 }, app_cert_sn = params.app_cert_sn, root_sn = "0123" })
      err_v3(gw, "POST", "/v3/alipay/open/public/user/follow/query", 400, "invalid-app-cert-sn",
        { json = { user_id = F1 }, root_sn = params.alipay_root_cert_sn })
    end)
  end)

  describe("alipay.open.public.template.message.get", function()
    local gw
    before_each(function() gw = new_gateway() end)

    it("claims a library template: a stable 32-hex id and the template as JSON text", function()
      local node = ok_v2(gw, TEMPLATE_GET, { template_id = "TM000000225" })
      assert.matches("^%x+$", node.msg_template_id)
      assert.are.equal(32, #node.msg_template_id)
      local t = cjson.decode(node.template)
      assert.are.equal("TM000000225", t.template_id)
      assert.are.equal("服务到期提醒", t.name)
      assert.are.same({ { key = "keyword1", name = "服务名称" }, { key = "keyword2", name = "到期时间" },
        { key = "keyword3", name = "续费方式" }, { key = "keyword4", name = "客服电话" } }, t.keywords)
      assert.are.equal(node.msg_template_id, ok_v2(gw, TEMPLATE_GET, { template_id = "TM000000225" }).msg_template_id)
      assert.are.equal(node.msg_template_id,
        ok_v2(new_gateway(), TEMPLATE_GET, { template_id = "TM000000225" }).msg_template_id)
    end)

    it("returns the seed's id for a template the seed claimed", function()
      assert.are.equal(CLAIMED, ok_v2(gw, TEMPLATE_GET, { template_id = "TM000000223" }).msg_template_id)
    end)

    it("gives a template claimed again after its deletion a new id", function()
      local id = ok_v2(gw, TEMPLATE_GET, { template_id = "TM000000226" }).msg_template_id
      assert.are_not.equal(CLAIMED_DELETED, id)
      ok_v2(gw, SEND, { to_user_id = F1, template = { template_id = id,
        context = context{ keyword3 = false } } })
    end)

    it("requires a template_id of at most 20 characters", function()
      biz_fail(gw, TEMPLATE_GET, {}, "ILLEGAL_BIZ_PARAMS")
      local node = biz_fail(gw, TEMPLATE_GET, { template_id = "TM0000002230000000000" }, "ILLEGAL_BIZ_PARAMS")
      assert.matches("template_id", node.sub_msg)
    end)

    it("answers TEMPLATE_MESSAGE_ID_INVAILD outside the library or the industry", function()
      biz_fail(gw, TEMPLATE_GET, { template_id = "TM999999999" }, "TEMPLATE_MESSAGE_ID_INVAILD")
      biz_fail(gw, TEMPLATE_GET, { template_id = "TM000000301" }, "TEMPLATE_MESSAGE_ID_INVAILD")
    end)

    it("answers NEED_SELECT_INDUSTRY before any industry is set", function()
      local none = new_gateway{ seed = seed_table(function(s) s.industry = nil end) }
      biz_fail(none, TEMPLATE_GET, { template_id = "TM000000224" }, "NEED_SELECT_INDUSTRY")
      assert.are.same({ code = "10000", msg = "Success" }, ok_v2(none, CATEGORY, nil))
    end)

    it("answers APPINFO_NOT_EXIST and PUBLIC_NOT_ONLINE for a missing or offline Life Account", function()
      local absent = new_gateway{ seed = seed_table(function(s) s.life_account = "absent" end) }
      biz_fail(absent, TEMPLATE_GET, { template_id = "TM000000224" }, "APPINFO_NOT_EXIST")
      local offline = new_gateway{ seed = seed_table(function(s) s.life_account = "offline" end) }
      biz_fail(offline, TEMPLATE_GET, { template_id = "TM000000224" }, "PUBLIC_NOT_ONLINE")
    end)

    it("answers EXCEED_MAX_TEMPLATE_NUM past 20 claimed templates", function()
      local many = new_gateway{ seed = seed_table(function(s)
        for i = 1, 25 do
          s.library[#s.library + 1] = { template_id = ("TM9%08d"):format(i), name = "模板" .. i,
            industry = "10001/20102", keywords = { "内容" } }
        end
      end) }
      -- The seed holds one live claim; 19 more reach the limit.
      for i = 1, 19 do ok_v2(many, TEMPLATE_GET, { template_id = ("TM9%08d"):format(i) }) end
      biz_fail(many, TEMPLATE_GET, { template_id = "TM900000020" }, "EXCEED_MAX_TEMPLATE_NUM")
      -- Already claimed ones still answer.
      ok_v2(many, TEMPLATE_GET, { template_id = "TM900000001" })
      ok_v2(many, TEMPLATE_GET, { template_id = "TM000000223" })
    end)
  end)

  describe("industry.modify and setting.category.query", function()
    local gw
    -- A main (primary_*) and a deputy (secondary_*) industry, each a
    -- level-1/level-2 pair: the official model's field docs and exactly
    -- what alipay-easysdk's testSetIndustry sends.
    local AIRLINE = { primary_industry_code = "10003/20301", primary_industry_name = "交通运输/航空",
      secondary_industry_code = "10005/20501", secondary_industry_name = "商业服务/快递物流" }
    local IT = { primary_industry_code = "10001/20102", primary_industry_name = "IT科技/IT软件与服务",
      secondary_industry_code = "10001/20102", secondary_industry_name = "IT科技/IT软件与服务" }
    before_each(function() gw = new_gateway() end)

    it("reads the main and the deputy industry as name pairs (as the easysdk sandbox recording)", function()
      local node = ok_v2(gw, CATEGORY, nil)
      assert.are.equal("IT科技/IT软件与服务", node.primary_category)
      assert.are.equal("IT科技/IT软件与服务", node.secondary_category)
    end)

    it("accepts the easysdk test's industry, and refuses one level per field (the old reading)", function()
      now = T0 + 31 * 86400
      ok_v2(new_gateway{ seed = seed_table(function(s) s.industry.modified_at = T0 end) }, INDUSTRY_MODIFY, IT)
      local split = { primary_industry_code = "10001", primary_industry_name = "IT科技",
        secondary_industry_code = "20102", secondary_industry_name = "IT软件与服务" }
      assert.matches("primary_industry_code", biz_fail(gw, INDUSTRY_MODIFY, split, "PUB.ILLEGAL_BIZ_PARAMS").sub_msg)
    end)

    it("changes the industry once in 30 days (3002 otherwise)", function()
      ok_v2(gw, INDUSTRY_MODIFY, AIRLINE)
      assert.are.equal("商业服务/快递物流", ok_v2(gw, CATEGORY, nil).secondary_category)
      ok_v2(gw, TEMPLATE_GET, { template_id = "TM000000301" })
      biz_fail(gw, TEMPLATE_GET, { template_id = "TM000000225" }, "TEMPLATE_MESSAGE_ID_INVAILD")
      now = T0 + 29 * 86400
      biz_fail(gw, INDUSTRY_MODIFY, IT, "3002")
      now = T0 + 30 * 86400
      ok_v2(gw, INDUSTRY_MODIFY, IT)
    end)

    it("counts from the seed's modified_at", function()
      local recent = new_gateway{ seed = seed_table(function(s) s.industry.modified_at = T0 - 86400 end) }
      biz_fail(recent, INDUSTRY_MODIFY, AIRLINE, "3002")
    end)

    it("requires the four fields of an industry of the catalogue", function()
      local missing = {}
      for k, v in pairs(AIRLINE) do missing[k] = v end
      missing.secondary_industry_name = nil
      assert.matches("secondary_industry_name",
        biz_fail(gw, INDUSTRY_MODIFY, missing, "PUB.ILLEGAL_BIZ_PARAMS").sub_msg)
      local mismatched = {}
      for k, v in pairs(AIRLINE) do mismatched[k] = v end
      mismatched.primary_industry_name = "IT科技"
      biz_fail(gw, INDUSTRY_MODIFY, mismatched, "PUB.ILLEGAL_BIZ_PARAMS")
      local unknown = {}
      for k, v in pairs(AIRLINE) do unknown[k] = v end
      unknown.secondary_industry_code = "10009/29999"
      biz_fail(gw, INDUSTRY_MODIFY, unknown, "PUB.ILLEGAL_BIZ_PARAMS")
    end)
  end)

  describe("alipay.open.public.message.single.send", function()
    local gw
    before_each(function() gw = new_gateway() end)

    it("accepts a send to a follower and records the delivery", function()
      local biz = single_send()
      local node = ok_v2(gw, SEND, biz)
      assert.are.same({ code = "10000", msg = "Success" }, node)
      local d = gw:deliveries()
      assert.are.equal(1, #d)
      assert.are.same({ seq = 1, api = "v2", method = SEND, app_id = APP_ID, to_user_id = F1,
        template_id = CLAIMED, payload = biz, at = T0 }, d[1])
    end)

    it("reaches generated followers and needs neither first nor remark", function()
      ok_v2(gw, SEND, single_send({ first = false, remark = false }, GENERATED))
    end)

    it("answers MSG_SD_NOFOLLOW for a user who does not follow, and records nothing", function()
      biz_fail(gw, SEND, single_send(nil, STRANGER), "MSG_SD_NOFOLLOW")
      assert.are.equal(0, #gw:deliveries())
    end)

    it("answers MSG_TEMPLATE_NOT_EXIST for a deleted or unknown template", function()
      local biz = single_send()
      biz.template.template_id = CLAIMED_DELETED
      biz_fail(gw, SEND, biz, "MSG_TEMPLATE_NOT_EXIST")
      biz.template.template_id = ("0"):rep(32)
      biz_fail(gw, SEND, biz, "MSG_TEMPLATE_NOT_EXIST")
    end)

    it("wants exactly one recipient, of the app's id type", function()
      local both = single_send()
      both.to_open_id = F1_OPEN
      biz_fail(gw, SEND, both, "ILLEGAL_ARGUMENT_PARAMS")
      local none = single_send()
      none.to_user_id = nil
      biz_fail(gw, SEND, none, "ILLEGAL_ARGUMENT_PARAMS")
      local open = single_send()
      open.to_user_id, open.to_open_id = nil, F1_OPEN
      assert.matches("to_open_id", biz_fail(gw, SEND, open, "ILLEGAL_ARGUMENT_PARAMS").sub_msg)
    end)

    it("sends to open ids in an open_id app, and refuses user ids there", function()
      local open_gw = new_gateway{ seed = seed_table(function(s) s.id_type = "open_id" end) }
      local open = single_send()
      open.to_user_id, open.to_open_id = nil, F1_OPEN
      ok_v2(open_gw, SEND, open)
      assert.are.equal(F1_OPEN, open_gw:deliveries()[1].to_open_id)
      assert.is_nil(open_gw:deliveries()[1].to_user_id)
      assert.matches("to_user_id", biz_fail(open_gw, SEND, single_send(), "ILLEGAL_ARGUMENT_PARAMS").sub_msg)
    end)

    local cjk8, cjk9 = ("查"):rep(8), ("查"):rep(9)
    local context_cases = {
      { "head_color missing", { head_color = false }, "head_color" },
      { "url missing", { url = false }, "url" },
      { "action_name of 9 CJK", { action_name = cjk9 }, "action_name" },
      { "action_name of 17 ASCII", { action_name = ("v"):rep(17) }, "action_name" },
      { "action_name missing", { action_name = false }, "action_name" },
      { "a keyword without color", { keyword1 = { value = "HU7142" } }, "keyword1.color" },
      { "a keyword without value", { keyword1 = { color = "#000000" } }, "keyword1.value" },
      { "a keyword that is not an object", { keyword1 = "HU7142" }, "keyword1" },
      { "first without color", { first = { value = "x" } }, "first.color" },
    }
    for _, case in ipairs(context_cases) do
      it("answers ILLEGAL_ARGUMENT_PARAMS naming the field for " .. case[1], function()
        local node = biz_fail(gw, SEND, single_send(case[2]), "ILLEGAL_ARGUMENT_PARAMS")
        assert.truthy(node.sub_msg:find(case[3], 1, true), node.sub_msg)
        assert.are.equal(0, #gw:deliveries())
      end)
    end

    it("answers MSG_SINGLE_SD_OVER once the seeded quota is spent, until reset", function()
      local limited = new_gateway{ seed = seed_table(function(s) s.quotas = { single_send = 2 } end) }
      ok_v2(limited, SEND, single_send())
      ok_v2(limited, SEND, single_send())
      biz_fail(limited, SEND, single_send(), "MSG_SINGLE_SD_OVER")
      assert.are.equal(2, #limited:deliveries())
      assert(limited:reset())
      ok_v2(limited, SEND, single_send())
      for _, bad in ipairs { { single_send = -1 }, { single_send = 1.5 }, { broadcast = 1 } } do
        assert.has_error(function() new_gateway{ seed = seed_table(function(s) s.quotas = bad end) } end)
      end
    end)

    it("answers the official codes for a missing and an unknown keyword", function()
      local node = biz_fail(gw, SEND, single_send{ keyword3 = false }, "MSG_TEMPLATE_CONTEXT_LACK_KEY")
      assert.truthy(node.sub_msg:find("keyword3", 1, true), node.sub_msg)
      node = biz_fail(gw, SEND, single_send{ keyword4 = { color = "#000000", value = "x" } },
        "MSG_TEMPLATE_KEY_INVALID")
      assert.truthy(node.sub_msg:find("keyword4", 1, true), node.sub_msg)
      assert.are.equal(0, #gw:deliveries())
    end)

    it("holds action_name to its documented 8 CJK or 16 ASCII characters, counted as characters", function()
      ok_v2(gw, SEND, single_send{ action_name = cjk8 })
      ok_v2(gw, SEND, single_send{ action_name = ("v"):rep(16) })
      ok_v2(gw, SEND, single_send{ action_name = "查看details" })
    end)

    -- No source gives a limit for values, colors, url or head_color: the
    -- sandbox accepts what Alipay might accept (docs/conformance.md).
    it("enforces no undocumented limit on values, colors, url and head_color", function()
      ok_v2(gw, SEND, single_send{ keyword2 = { color = "#000000", value = ("长"):rep(600) } })
      ok_v2(gw, SEND, single_send{ url = "https://example.com/" .. ("a"):rep(1000) })
      ok_v2(gw, SEND, single_send{ head_color = "#85be5300000", first = { color = "green", value = "x" } })
      assert.are.equal(3, #gw:deliveries())
    end)

    it("requires the template and its context", function()
      biz_fail(gw, SEND, { to_user_id = F1 }, "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, SEND, { to_user_id = F1, template = { template_id = CLAIMED } }, "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, SEND, { to_user_id = F1, template = { context = context() } }, "ILLEGAL_ARGUMENT_PARAMS")
    end)
  end)

  describe("alipay.open.public.follow.batchquery", function()
    it("pages 25,000 followers by 10,000 with the next_user_id cursor", function()
      local gw = new_gateway()
      local seen, pages, cursor = {}, {}, nil
      repeat
        local node = ok_v2(gw, BATCH, { next_user_id = cursor })
        pages[#pages + 1] = node
        assert.are.equal(tostring(#node.user_id_list), node.count)
        assert.is_nil(node.open_id_list)
        for _, id in ipairs(node.user_id_list) do
          assert.is_nil(seen[id], "repeated " .. id)
          seen[id] = true
        end
        if node.next_user_id then assert.is_nil(seen[node.next_user_id]) end
        cursor = node.next_user_id
      until not cursor
      assert.are.same({ "10000", "10000", "5000" }, { pages[1].count, pages[2].count, pages[3].count })
      assert.are.equal(F1, pages[1].user_id_list[1])
      assert.are.equal(GENERATED, pages[1].user_id_list[31])
      assert.are.equal("2088000000024970", pages[3].user_id_list[5000])
      -- The cursor is the first user of the next page.
      assert.are.equal(pages[1].next_user_id, pages[2].user_id_list[1])
      -- Stable order: the same pages again.
      assert.are.same(pages[2].user_id_list, ok_v2(gw, BATCH, { next_user_id = pages[1].next_user_id }).user_id_list)
    end)

    it("nests the lists under data with legacy_follow_shape", function()
      local gw = new_gateway{ seed = seed_table(function(s) s.legacy_follow_shape = true end) }
      local node = ok_v2(gw, BATCH, {})
      assert.is_nil(node.user_id_list)
      assert.are.equal(10000, #node.data.user_id_list)
      assert.are.equal("10000", node.count)
      assert.is_string(node.next_user_id)
    end)

    it("lists open ids in an open_id app, with an open id cursor in the open_id field", function()
      local gw = new_gateway{ seed = seed_table(function(s) s.id_type = "open_id" end) }
      local node = ok_v2(gw, BATCH, {})
      assert.is_nil(node.user_id_list)
      assert.is_nil(node.next_user_id)
      assert.are.equal(F1_OPEN, node.open_id_list[1])
      local second = ok_v2(gw, BATCH, { open_id = node.open_id })
      assert.are.equal(node.open_id, second.open_id_list[1])
      assert.are.equal(46, #second.open_id_list[1])
    end)

    it("answers an empty list as [] for an account without followers", function()
      local gw = new_gateway{ seed = seed_table(function(s) s.followers = nil end) }
      local node, info = ok_v2(gw, BATCH, {})
      assert.are.equal("0", node.count)
      assert.is_nil(node.next_user_id)
      assert.truthy(info.body:find('"user_id_list":[]', 1, true))
    end)

    it("refuses a cursor it never returned", function()
      assert.matches("next_user_id", biz_fail(new_gateway(), BATCH, { next_user_id = STRANGER },
        "OPENID_INVALID").sub_msg)
    end)
  end)

  describe("alipay.open.public.user.follow.query", function()
    it("answers T for followers and F for others, by the app's id type", function()
      local gw = new_gateway()
      assert.are.equal("T", ok_v2(gw, FOLLOW_QUERY, { user_id = GENERATED }).is_follow)
      assert.are.equal("F", ok_v2(gw, FOLLOW_QUERY, { user_id = STRANGER }).is_follow)
      biz_fail(gw, FOLLOW_QUERY, { open_id = F1_OPEN }, "ILLEGAL_BIZ_PARAMS")
      local open_gw = new_gateway{ seed = seed_table(function(s) s.id_type = "open_id" end) }
      assert.are.equal("T", ok_v2(open_gw, FOLLOW_QUERY, { open_id = F1_OPEN }).is_follow)
    end)
  end)

  describe("alipay.open.app.messagetemplate.subscribe.query", function()
    local gw
    before_each(function() gw = new_gateway() end)

    it("reports the user's relations to up to 3 templates", function()
      local node = ok_v2(gw, SUB_QUERY, subscribe_query(F1, { MINI_A, MINI_C, MINI_B }))
      assert.are.equal(2, #node.subscribe_relations)
      assert.are.same({ template_id = MINI_A, subscribe_state = "1", subscribe_type = "longterm",
        keep_state = "0", show = false }, relation(node, MINI_A))
      assert.are.same({ template_id = MINI_C, subscribe_state = "1", subscribe_type = "onetime",
        keep_state = "0", show = true }, relation(node, MINI_C))
      assert.is_nil(relation(node, MINI_B))
      assert.is_true(node.show_component)
    end)

    it("leaves subscribe_relations out when the user never subscribed", function()
      local node, info = ok_v2(gw, SUB_QUERY, subscribe_query(STRANGER, { MINI_A }))
      assert.is_nil(node.subscribe_relations)
      assert.is_nil(info.body:find("subscribe_relations", 1, true))
      assert.is_true(node.show_component)
    end)

    it("reports refusals with subscribe_state 0", function()
      local node = ok_v2(gw, SUB_QUERY, subscribe_query(F4, { MINI_A }))
      assert.are.equal("0", relation(node, MINI_A).subscribe_state)
      assert.are.equal("longterm", relation(node, MINI_A).subscribe_type)
      assert.is_false(node.show_component)
      local refused = ok_v2(gw, SUB_QUERY, subscribe_query("2088285649530791", { MINI_B }))
      assert.are.same({ "0", "onetime" }, { relation(refused, MINI_B).subscribe_state,
        relation(refused, MINI_B).subscribe_type })
    end)

    it("answers the seeded subscribe_state values, and keep_state for a kept one-time answer", function()
      -- Alipay's values are undocumented; a seed can set others than the sandbox's "1"/"0".
      local seeded = new_gateway{ seed = seed_table(function(s)
        s.subscribe_states = { subscribed = "ACCEPT", not_subscribed = "REJECT" }
        s.subscriptions[#s.subscriptions + 1] = { user_id = STRANGER, template_id = MINI_B, type = "onetime",
                                                  keep = true }
      end) }
      assert.are.equal("ACCEPT", relation(ok_v2(seeded, SUB_QUERY, subscribe_query(F1, { MINI_A })), MINI_A)
        .subscribe_state)
      assert.are.equal("REJECT", relation(ok_v2(seeded, SUB_QUERY, subscribe_query(F4, { MINI_A })), MINI_A)
        .subscribe_state)
      local node = ok_v2(seeded, SUB_QUERY, subscribe_query(STRANGER, { MINI_B }))
      assert.are.same({ template_id = MINI_B, subscribe_state = "ACCEPT", subscribe_type = "onetime",
        keep_state = "1", show = false }, relation(node, MINI_B))
      assert.is_false(node.show_component)
      assert.has_error(function()
        new_gateway{ seed = seed_table(function(s) s.subscribe_states = { subscribed = 1 } end) }
      end)
    end)

    it("takes 1 to 3 template ids", function()
      biz_fail(gw, SUB_QUERY, subscribe_query(F1, { MINI_A, MINI_B, MINI_C, MINI_D }), "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, SUB_QUERY, subscribe_query(F1, {}), "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, SUB_QUERY, { user_id = F1, template_id_list = MINI_A }, "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, SUB_QUERY, subscribe_query(F1, { MINI_A, 42 }), "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, SUB_QUERY, { template_id_list = { MINI_A } }, "ILLEGAL_ARGUMENT_PARAMS")
    end)

    it("looks users up by open id in an open_id app", function()
      local open_gw = new_gateway{ seed = seed_table(function(s)
        s.id_type = "open_id"
        s.subscriptions = { { open_id = F1_OPEN, template_id = MINI_B, type = "onetime" } }
      end) }
      local node = ok_v2(open_gw, SUB_QUERY, { open_id = F1_OPEN, template_id_list = { MINI_B } })
      assert.are.equal("1", relation(node, MINI_B).subscribe_state)
      ok_v2(open_gw, MINI_SEND, { to_open_id = F1_OPEN, user_template_id = MINI_B, data = mini_data(2) })
      biz_fail(open_gw, MINI_SEND, { to_open_id = F1_OPEN, user_template_id = MINI_B, data = mini_data(2) },
        "MSG_UNSUBSCRIBED")
    end)
  end)

  describe("alipay.open.app.mini.templatemessage.send", function()
    local gw
    before_each(function() gw = new_gateway() end)

    it("sends under a long-term subscription as often as asked", function()
      ok_v2(gw, MINI_SEND, mini_send(F1))
      ok_v2(gw, MINI_SEND, mini_send(F1))
      local node = ok_v2(gw, SUB_QUERY, subscribe_query(F1, { MINI_A }))
      assert.are.equal("1", relation(node, MINI_A).subscribe_state)
      local d = gw:deliveries()
      assert.are.same({ 1, 2 }, { d[1].seq, d[2].seq })
      assert.are.equal(MINI_A, d[1].template_id)
      assert.are.equal(F1, d[1].to_user_id)
      assert.are.equal(MINI_SEND, d[1].method)
      assert.are.equal(mini_send(F1).data, d[1].payload.data)
    end)

    it("consumes a one-time subscription", function()
      ok_v2(gw, MINI_SEND, mini_send(F2))
      local node = ok_v2(gw, SUB_QUERY, subscribe_query(F2, { MINI_A }))
      assert.are.equal("0", relation(node, MINI_A).subscribe_state)
      assert.are.equal("onetime", relation(node, MINI_A).subscribe_type)
      biz_fail(gw, MINI_SEND, mini_send(F2), "MSG_UNSUBSCRIBED")
      assert.are.equal(1, #gw:deliveries())
    end)

    it("adds one-time subscriptions up", function()
      for _ = 1, 3 do ok_v2(gw, MINI_SEND, mini_send(F3)) end
      biz_fail(gw, MINI_SEND, mini_send(F3), "MSG_UNSUBSCRIBED")
    end)

    it("answers MSG_REJECTED for a refusal and MSG_UNSUBSCRIBED for strangers", function()
      biz_fail(gw, MINI_SEND, mini_send(F4), "MSG_REJECTED")
      biz_fail(gw, MINI_SEND, mini_send(STRANGER), "MSG_UNSUBSCRIBED")
      biz_fail(gw, MINI_SEND, mini_send(F1, MINI_B, mini_data(2)), "MSG_UNSUBSCRIBED")
    end)

    it("answers USER_TEMPLATE_ILLEGAL for an unknown or deleted template", function()
      biz_fail(gw, MINI_SEND, mini_send(F1, "bm8tc3VjaC10ZW1wbGF0ZQ=="), "USER_TEMPLATE_ILLEGAL")
      biz_fail(gw, MINI_SEND, mini_send(F6, MINI_D, mini_data(2)), "USER_TEMPLATE_ILLEGAL")
    end)

    it("wants data as a JSON string holding an object", function()
      local as_object = mini_send(F1)
      as_object.data = cjson.decode(as_object.data)
      assert.matches("data", biz_fail(gw, MINI_SEND, as_object, "ILLEGAL_ARGUMENT_PARAMS").sub_msg)
      biz_fail(gw, MINI_SEND, mini_send(F1, MINI_A, "{not json"), "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, MINI_SEND, mini_send(F1, MINI_A, '["a","b","c"]'), "ILLEGAL_ARGUMENT_PARAMS")
      local absent = mini_send(F1)
      absent.data = nil
      biz_fail(gw, MINI_SEND, absent, "ILLEGAL_ARGUMENT_PARAMS")
      assert.are.equal(0, #gw:deliveries())
    end)

    it("answers USER_TEMPLATE_LACK_KEYWORD when the keywords do not match the template's", function()
      biz_fail(gw, MINI_SEND, mini_send(F1, MINI_A, mini_data(2)), "USER_TEMPLATE_LACK_KEYWORD")
      biz_fail(gw, MINI_SEND, mini_send(F1, MINI_A, mini_data(4)), "USER_TEMPLATE_LACK_KEYWORD")
      local renamed = cjson.encode{ keyword1 = { value = "a" }, keyword2 = { value = "b" }, note = { value = "c" } }
      biz_fail(gw, MINI_SEND, mini_send(F1, MINI_A, renamed), "USER_TEMPLATE_LACK_KEYWORD")
    end)

    it("answers USER_KEYWORD_LENGTH_ERROR past 50 characters (not bytes)", function()
      biz_fail(gw, MINI_SEND, mini_send(F1, MINI_A, mini_data(3, ("x"):rep(51))), "USER_KEYWORD_LENGTH_ERROR")
      ok_v2(gw, MINI_SEND, mini_send(F1, MINI_A, mini_data(3, ("长"):rep(50))))
    end)

    it("limits page to 128 characters and user_template_id to 64", function()
      local long_page = mini_send(F1)
      long_page.page = "pages/" .. ("p"):rep(123)
      assert.matches("page", biz_fail(gw, MINI_SEND, long_page, "PAGE_OVER_LIMIT").sub_msg)
      biz_fail(gw, MINI_SEND, mini_send(F1, ("M"):rep(65)), "ILLEGAL_ARGUMENT_PARAMS")
    end)

    it("does not consume a one-time subscription on a refused send", function()
      biz_fail(gw, MINI_SEND, mini_send(F2, MINI_A, mini_data(2)), "USER_TEMPLATE_LACK_KEYWORD")
      ok_v2(gw, MINI_SEND, mini_send(F2))
    end)
  end)

  describe("v3", function()
    local gw
    local MINI_PATH = "/v3/alipay/open/app/mini/templatemessage/send"
    before_each(function() gw = new_gateway() end)

    it("answers a signed POST with 200, the business fields and signed headers", function()
      local res, info = ok_v3(gw, "POST", MINI_PATH, { json = mini_send(F1) })
      assert.are.same({}, res)
      assert.are.equal("{}", info.body)
      assert.are.equal(("%.0f"):format(T0 * 1000), info.headers["alipay-timestamp"])
      assert.is_nil(info.headers["alipay-sn"])
      local d = gw:deliveries()[1]
      assert.are.same({ "v3", MINI_SEND, F1 }, { d.api, d.method, d.to_user_id })
    end)

    it("claims a template with GET and the template_id in the query", function()
      local res = ok_v3(gw, "GET", "/v3/alipay/open/public/template/message/get",
        { query = "template_id=TM000000223" })
      assert.are.equal(CLAIMED, res.msg_template_id)
      assert.is_nil(res.code)
    end)

    it("pages followers with GET or POST", function()
      local first = ok_v3(gw, "GET", "/v3/alipay/open/public/follow/batchquery", {})
      assert.are.equal(10000, #first.user_id_list)
      local second = ok_v3(gw, "GET", "/v3/alipay/open/public/follow/batchquery",
        { query = "next_user_id=" .. first.next_user_id })
      assert.are.equal(first.next_user_id, second.user_id_list[1])
      local posted = ok_v3(gw, "POST", "/v3/alipay/open/public/follow/batchquery",
        { json = { next_user_id = first.next_user_id } })
      assert.are.same(second.user_id_list, posted.user_id_list)
    end)

    it("sends Life Account messages and queries subscriptions", function()
      ok_v3(gw, "POST", "/v3/alipay/open/public/message/single/send", { json = single_send() })
      local res = ok_v3(gw, "POST", "/v3/alipay/open/app/messagetemplate/subscribe/query",
        { json = subscribe_query(F1, { MINI_A }) })
      assert.are.equal("longterm", relation(res, MINI_A).subscribe_type)
      assert.are.equal("T", ok_v3(gw, "GET", "/v3/alipay/open/public/user/follow/query",
        { query = "user_id=" .. F1 }).is_follow)
    end)

    it("reads and changes the industry", function()
      assert.are.equal("IT科技/IT软件与服务", ok_v3(gw, "GET", "/v3/alipay/open/public/setting/category/query", {})
        .primary_category)
      ok_v3(gw, "POST", "/v3/alipay/open/public/template/message/industry/modify", { json = {
        primary_industry_code = "10005/20501", primary_industry_name = "商业服务/快递物流",
        secondary_industry_code = "10001/20102", secondary_industry_name = "IT科技/IT软件与服务" } })
      err_v3(gw, "POST", "/v3/alipay/open/public/template/message/industry/modify", 400, "3002", { json = {
        primary_industry_code = "10001/20102", primary_industry_name = "IT科技/IT软件与服务",
        secondary_industry_code = "10001/20102", secondary_industry_name = "IT科技/IT软件与服务" } })
      assert.are.equal("商业服务/快递物流", ok_v3(gw, "GET", "/v3/alipay/open/public/setting/category/query", {})
        .primary_category)
    end)

    it("answers business errors with 400 and the sub_code as code, signed", function()
      local _, info = err_v3(gw, "POST", MINI_PATH, 400, "USER_TEMPLATE_ILLEGAL",
        { json = mini_send(F1, MINI_D) })
      assert.is_true(info.verified)
      err_v3(gw, "POST", "/v3/alipay/open/public/message/single/send", 400, "MSG_SD_NOFOLLOW",
        { json = single_send(nil, STRANGER) })
      err_v3(gw, "POST", MINI_PATH, 400, "ILLEGAL_ARGUMENT_PARAMS", { json = mini_send(F1, MINI_A, "[]") })
      assert.are.equal(0, #gw:deliveries())
    end)

    it("answers a bad signature with 401 invalid-signature and the signed string", function()
      local res, info = err_v3(gw, "POST", MINI_PATH, 401, "invalid-signature",
        { json = mini_send(F1), key = assert(core.private_key(material()["alipay.key"])) })
      assert.is_true(info.verified)
      assert.truthy(res.message:find("\nPOST\n" .. MINI_PATH .. "\n", 1, true))
      err_v3(gw, "POST", MINI_PATH, 401, "invalid-signature", { json = mini_send(F1),
        signed_text = "app_id=" .. APP_ID .. "\nPOST\n" .. MINI_PATH .. "\n\n" })
    end)

    it("signs the query as sent", function()
      local req = v3_request("GET", "/v3/alipay/open/public/template/message/get",
        { query = "template_id=TM000000223" })
      req.query = "template_id=TM000000224"
      local res, info = read_v3(gw, gw:handle_v3(req))
      assert.are.equal(401, info.status)
      assert.are.equal("invalid-signature", res.code)
    end)

    it("checks the Authorization header", function()
      err_v3(gw, "POST", MINI_PATH, 401, "missing-signature", { json = mini_send(F1),
        headers = { authorization = false } })
      err_v3(gw, "POST", MINI_PATH, 400, "invalid-parameter", { json = mini_send(F1),
        headers = { authorization = "Bearer abc" } })
      err_v3(gw, "POST", MINI_PATH, 400, "invalid-parameter", { json = mini_send(F1),
        headers = { authorization = "ALIPAY-SHA256withRSA app_id=" .. APP_ID .. ",timestamp=1" } })
    end)

    it("answers an unknown app_id unsigned", function()
      local _, info = err_v3(gw, "POST", MINI_PATH, 400, "invalid-app-id",
        { json = mini_send(F1), app_id = "2021000000000000" })
      assert.is_false(info.signed)
    end)

    it("wants a unix-millisecond timestamp within 10 minutes", function()
      ok_v3(gw, "POST", MINI_PATH, { json = mini_send(F1), ts = ("%.0f"):format((T0 - 590) * 1000) })
      for _, ts in ipairs{ ("%.0f"):format((T0 - 660) * 1000), ("%.0f"):format((T0 + 660) * 1000),
        tostring(T0), "2024-06-07 18:41:51" } do
        err_v3(gw, "POST", MINI_PATH, 400, "invalid-timestamp", { json = mini_send(F1), ts = ts })
      end
    end)

    it("answers unknown paths with 404 and wrong methods with 405", function()
      err_v3(gw, "POST", "/v3/alipay/trade/query", 404, "invalid-method", { json = {} })
      err_v3(gw, "GET", MINI_PATH, 405, "invalid-method", {})
    end)

    it("wants a JSON object as the body", function()
      err_v3(gw, "POST", MINI_PATH, 400, "invalid-parameter", { raw_body = "not json" })
      err_v3(gw, "POST", MINI_PATH, 400, "invalid-parameter", { raw_body = "[1]" })
    end)

    it("signs the app auth token line and checks the token", function()
      local token = "202405BBa6f4b2c8d9e0f1a2b3c4d5e6f7a8X71"
      ok_v3(gw, "POST", MINI_PATH, { json = mini_send(F1), token = token })
      err_v3(gw, "POST", MINI_PATH, 401, "invalid-app-auth-token", { json = mini_send(F1), token = "202405BBnope" })
      local req = v3_request("POST", MINI_PATH, { json = mini_send(F1) })
      req.headers["alipay-app-auth-token"] = token -- not in the signed text
      local res, info = read_v3(gw, gw:handle_v3(req))
      assert.are.same({ 401, "invalid-signature" }, { info.status, res.code })
    end)

    it("decrypts AES bodies and encrypts the answer, signed over the ciphertext", function()
      local res, info = ok_v3(gw, "POST", "/v3/alipay/open/app/messagetemplate/subscribe/query",
        { json = subscribe_query(F1, { MINI_A }), aes = true })
      assert.are.equal("AES", info.headers["alipay-encrypt-type"])
      assert.is_nil(info.body:find("{", 1, true))
      assert.are.equal("1", relation(res, MINI_A).subscribe_state)
      local plain = new_gateway{ encrypt_key = false }
      err_v3(plain, "POST", MINI_PATH, 400, "missing-encrypt-key", { json = mini_send(F1), aes = true })
      err_v3(gw, "POST", MINI_PATH, 400, "decryption-error-unknown",
        { raw_body = "bm90IGEgY2lwaGVydGV4dA==", headers = { ["alipay-encrypt-type"] = "AES" } })
    end)

    it("accepts header names in any case", function()
      local req = v3_request("POST", MINI_PATH, { json = mini_send(F1) })
      req.headers.Authorization, req.headers.authorization = req.headers.authorization, nil
      local _, info = read_v3(gw, gw:handle_v3(req))
      assert.are.equal(200, info.status)
    end)
  end)

  describe("faults", function()
    local gw
    before_each(function() gw = new_gateway() end)

    it("fault_v2 answers 20000 isp.unknow-error under the method's node, signed, without sending", function()
      local req = v2_request(MINI_SEND, mini_send(F1))
      local node, info = read_v2(gw, MINI_SEND, nil, gw:fault_v2(req, "20000"))
      assert.is_true(info.verified)
      assert.are.equal("alipay_open_app_mini_templatemessage_send_response", info.node)
      assert.are.same({ "20000", "Service Currently Unavailable", "isp.unknow-error" },
        { node.code, node.msg, node.sub_code })
      assert.are.equal(0, #gw:deliveries())
    end)

    it("fault_v2 answers 40005 isv.app-call-limited", function()
      local node, info = read_v2(gw, SEND, nil, gw:fault_v2(v2_request(SEND, single_send()), "40005"))
      assert.is_true(info.verified)
      assert.are.same({ "40005", "Call Limited", "isv.app-call-limited" }, { node.code, node.msg, node.sub_code })
    end)

    it("fault_v2 signs with the request's algorithm and falls back to error_response", function()
      local req = v2_request(FOLLOW_QUERY, { user_id = F1 }, { params = { sign_type = "RSA" } })
      local _, info = read_v2(gw, FOLLOW_QUERY, "RSA", gw:fault_v2(req, "20000"))
      assert.is_true(info.verified)
      local unknown = v2_request("alipay.trade.query", {})
      local node
      node, info = read_v2(gw, "alipay.trade.query", nil, gw:fault_v2(unknown, "40005"))
      assert.are.equal("error_response", info.node)
      assert.is_true(info.verified)
      assert.are.equal("40005", node.code)
      assert.has_error(function() gw:fault_v2(req, "12345") end)
    end)

    it("fault_v3 answers 500 unknow-error and 429 app-call-limited with signed headers", function()
      local req = v3_request("POST", "/v3/alipay/open/app/mini/templatemessage/send", { json = mini_send(F1) })
      local res, info = read_v3(gw, gw:fault_v3(req, "20000"))
      assert.are.same({ 500, "unknow-error", true }, { info.status, res.code, info.verified })
      res, info = read_v3(gw, gw:fault_v3(req, "40005"))
      assert.are.same({ 429, "app-call-limited", true }, { info.status, res.code, info.verified })
      assert.are.equal(0, #gw:deliveries())
    end)

    it("bad_sign gives a normal answer whose signature does not verify (the send happened)", function()
      local req = v2_request(MINI_SEND, mini_send(F1))
      local node, info = read_v2(gw, MINI_SEND, nil, gw:handle_v2(req, { bad_sign = true }))
      assert.is_true(info.signed)
      assert.is_false(info.verified)
      assert.are.equal("10000", node.code)
      local res
      res, info = read_v3(gw, gw:handle_v3(v3_request("POST", "/v3/alipay/open/app/mini/templatemessage/send",
        { json = mini_send(F1) }), { bad_sign = true }))
      assert.are.equal(200, info.status)
      assert.is_false(info.verified)
      assert.are.same({}, res)
      assert.are.equal(2, #gw:deliveries())
    end)

    it("method_of_v2 names the method from the query or the body, else nil", function()
      local req = v2_request(SEND, single_send())
      assert.are.equal(SEND, gw:method_of_v2(req))
      assert.are.equal(SEND, gw:method_of_v2{ query = "", body = "method=" .. SEND })
      assert.is_nil(gw:method_of_v2{ query = "a=1", body = "" })
      assert.is_nil(gw:method_of_v2{ query = "method=%3Cscript%3E" })
      assert.is_nil(gw:method_of_v2{ query = "%zz" })
    end)
  end)

  describe("deliveries, state and reset", function()
    it("numbers accepted sends of both APIs and reset() brings the seed back", function()
      local gw = new_gateway()
      ok_v2(gw, MINI_SEND, mini_send(F2))                         -- consumes F2's one-time subscription
      ok_v3(gw, "POST", "/v3/alipay/open/public/message/single/send", { json = single_send() })
      biz_fail(gw, SEND, single_send(nil, STRANGER), "MSG_SD_NOFOLLOW")
      local claimed = ok_v2(gw, TEMPLATE_GET, { template_id = "TM000000225" }).msg_template_id
      now = T0 + 5
      ok_v2(gw, SEND, single_send(nil, GENERATED))
      local d = gw:deliveries()
      assert.are.same({ 1, 2, 3 }, { d[1].seq, d[2].seq, d[3].seq })
      assert.are.same({ "v2", "v3", "v2" }, { d[1].api, d[2].api, d[3].api })
      assert.are.same({ T0, T0, T0 + 5 }, { d[1].at, d[2].at, d[3].at })
      d[4] = "not theirs"
      assert.are.equal(3, #gw:deliveries())
      assert.are.equal(3, gw:state():summary().deliveries)

      gw:reset()
      assert.are.same({}, gw:deliveries())
      ok_v2(gw, MINI_SEND, mini_send(F2))
      local summary = gw:state():summary()
      assert.are.equal(2, #summary.claimed_templates)
      for _, c in ipairs(summary.claimed_templates) do assert.are_not.equal(claimed, c.msg_template_id) end
      assert.are.equal(1, gw:deliveries()[1].seq)
    end)

    it("exposes the state for admin endpoints", function()
      local gw = new_gateway()
      local st = gw:state()
      assert.is_true(st:delete_claim(CLAIMED))
      biz_fail(gw, SEND, single_send(), "MSG_TEMPLATE_NOT_EXIST")
      st:set_following("user_id", STRANGER, true)
      assert.are.equal("T", ok_v2(gw, FOLLOW_QUERY, { user_id = STRANGER }).is_follow)
      st:add_subscription{ id_type = "user_id", id = STRANGER, template_id = MINI_B, type = "onetime" }
      ok_v2(gw, MINI_SEND, mini_send(STRANGER, MINI_B, mini_data(2)))
      assert.is_true(st:delete_mini_template(MINI_A))
      biz_fail(gw, MINI_SEND, mini_send(F1), "USER_TEMPLATE_ILLEGAL")
      local summary = st:summary()
      assert.are.same({ "user_id", 25001 }, { summary.id_type, summary.followers })
      assert.are.equal("10001/20102", summary.industry.primary_industry_code)
      assert.is_string(cjson.encode(summary))
    end)
  end)
end)
