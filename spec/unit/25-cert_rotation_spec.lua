-- Certificate mode when Alipay rotates its certificate (docs/protocol.md §4.4):
-- an answer under an unknown SN makes the client download that certificate
-- once, check it against the root bundle, and verify with it; anything
-- that cannot be trusted is a signature error naming the SN. A scripted
-- transport plays Alipay with throw-away certificates (spec/support/certs.lua).
local helpers = require "helpers"
local alipay = require "alipay"
local alipaycert = require "alipay.alipaycert"
local certs = require "support.certs"
local cjson = require "cjson"
local core = alipay.core

local APP_ID = "2021000122671080"
local METHOD = "alipay.open.public.setting.category.query"
local DOWNLOAD = "alipay.open.app.alipaycert.download"

local function node_of(method) return (method:gsub("%.", "_")) .. "_response" end

local function v2_body(method, content, leaf)
  return ('{"%s":%s,"alipay_cert_sn":"%s","sign":"%s"}'):format(node_of(method), content, leaf.sn,
    leaf.signer:sign(content))
end

local made

-- "Alipay" signs under `current`; the download serves served[sn] (a leaf),
-- or refuses. Records every request's method.
local function gateway(current, served)
  local g = { calls = {} }
  function g.request(_, req)
    if req.url:find("/v3/", 1, true) then
      g.calls[#g.calls + 1] = "v3"
      local b, ts, nonce = '{"ok":true}', "1700000000000", "abc"
      local sig = current.signer:sign(ts .. "\n" .. nonce .. "\n" .. b .. "\n")
      return { status = 200, body = b, headers = { ["alipay-signature"] = sig,
        ["alipay-timestamp"] = ts, ["alipay-nonce"] = nonce, ["alipay-sn"] = current.sn } }
    end
    local q = core.form_decode(req.url:match("%?(.*)$"))
    g.calls[#g.calls + 1] = q.method
    if q.method == DOWNLOAD then
      local biz = cjson.decode(core.form_decode(req.body).biz_content)
      g.asked = biz.alipay_cert_sn
      local leaf = served[biz.alipay_cert_sn]
      local content = leaf
        and cjson.encode { code = "10000", msg = "Success", alipay_cert_content = core.b64encode(leaf.pem) }
        or '{"code":"40004","msg":"Business Failed","sub_code":"CERT_NOT_EXIST","sub_msg":"x"}'
      return { status = 200, headers = {}, body = v2_body(DOWNLOAD, content, current) }
    end
    return { status = 200, headers = {}, body = v2_body(q.method, '{"code":"10000","msg":"Success"}', current) }
  end
  return g
end

local function count(list, what)
  local n = 0
  for _, v in ipairs(list) do if v == what then n = n + 1 end end
  return n
end

local function client_for(t)
  return assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
    app_cert = made.app_cert, alipay_cert = made.alipay.pem, alipay_root_cert = made.root,
    gateway = "http://127.0.0.1:1/gateway.do", transport = t })
end

local function refused(res, err, detail, sn)
  assert.is_nil(res)
  assert.are.equal("signature", detail.kind)
  assert.truthy(err:find(sn, 1, true), err)
  assert.is_nil(err:find("BEGIN", 1, true))
  assert.is_nil(err:find("MII", 1, true))
end

describe("certificate rotation", function()
  setup(function() made = certs.make() end)
  teardown(helpers.cleanup)

  it("downloads a rotated certificate once, checks it and verifies v2 answers with it", function()
    local t = gateway(made.rotated, { [made.rotated.sn] = made.rotated })
    local client = client_for(t)
    assert.are.equal("10000", assert(client:execute(METHOD, {})).code)
    assert.are.equal(made.rotated.sn, t.asked)
    assert.are.same({ METHOD, DOWNLOAD }, t.calls)
    assert.are.equal("10000", assert(client:execute(METHOD, {})).code)
    assert.are.same({ METHOD, DOWNLOAD, METHOD }, t.calls)
  end)

  it("does the same for v3 answers under the alipay-sn header", function()
    local t = gateway(made.rotated, { [made.rotated.sn] = made.rotated })
    local client = client_for(t)
    assert.is_true(assert(client:v3("POST", "/v3/alipay/open/x", {})).ok)
    assert.is_true(assert(client:v3("POST", "/v3/alipay/open/x", {})).ok)
    assert.are.same({ "v3", DOWNLOAD, "v3" }, t.calls)
  end)

  it("refuses a rotated certificate that does not chain to the root bundle", function()
    local t = gateway(made.untrusted, { [made.untrusted.sn] = made.untrusted })
    local res, err, detail = client_for(t):execute(METHOD, {})
    refused(res, err, detail, made.untrusted.sn)
    assert.matches("does not chain to alipay_root_cert", err)
    res, err, detail = client_for(t):v3("POST", "/v3/alipay/open/x", {})
    refused(res, err, detail, made.untrusted.sn)
  end)

  it("refuses a downloaded certificate whose SN is not the one the answer named", function()
    local t = gateway(made.rotated, { [made.rotated.sn] = made.rotated2 })
    local res, err, detail = client_for(t):execute(METHOD, {})
    refused(res, err, detail, made.rotated.sn)
    assert.truthy(err:find("SN is " .. made.rotated2.sn, 1, true), err)
  end)

  it("refuses when the download is refused, and downloads only once per call", function()
    local t = gateway(made.rotated, {})
    local res, err, detail = client_for(t):execute(METHOD, {})
    refused(res, err, detail, made.rotated.sn)
    assert.matches("CERT_NOT_EXIST", err)
    assert.are.equal(1, count(t.calls, DOWNLOAD))
  end)

  it("refuses an answer under the rotated SN that its key did not sign", function()
    local forged = { sn = made.rotated.sn, signer = made.untrusted.signer, pem = made.rotated.pem }
    local t = gateway(forged, { [made.rotated.sn] = made.rotated })
    local res, err, detail = client_for(t):execute(METHOD, {})
    assert.is_nil(res)
    assert.are.equal("signature", detail.kind)
    assert.matches("not Alipay's", err)
  end)

  it("refuses an answer naming something that is not an SN, without a download", function()
    local bad = { sn = "../x\n", signer = made.rotated.signer }
    local t = gateway(bad, {})
    local res, err, detail = client_for(t):execute(METHOD, {})
    assert.is_nil(res)
    assert.are.equal("signature", detail.kind)
    assert.matches("not a certificate SN", err)
    assert.is_nil(err:find("../x", 1, true))
    assert.are.same({ METHOD }, t.calls)
  end)

  it("keeps answers under the configured SN verified without any download", function()
    local t = gateway(made.alipay, {})
    assert(client_for(t):execute(METHOD, {}))
    assert.are.same({ METHOD }, t.calls)
  end)

  it("keeps a bounded number of adopted keys, never dropping the configured one", function()
    local keys = alipaycert.new("configured", assert(core.public_key(made.alipay.pem)))
    for i = 1, alipaycert.MAX_ADOPTED + 3 do keys:put("sn" .. i, assert(core.public_key(made.rotated.pem))) end
    assert.are.equal(1 + alipaycert.MAX_ADOPTED, keys:count())
    assert.truthy(keys:get("configured"))
    assert.is_nil(keys:get("sn1"))
    assert.truthy(keys:get("sn" .. (alipaycert.MAX_ADOPTED + 3)))
  end)
end)

-- Inbound messages name their certificate too (alipay_cert_sn). They are
-- verified with the configured or an adopted certificate only: a forged
-- message can name any SN, so none triggers a download.
describe("certificate rotation: notifications", function()
  local notify = require "alipay.inbound.notify"
  local beijing_time = require "alipay.util.beijing_time"

  setup(function() made = certs.make() end)
  teardown(helpers.cleanup)

  local function notification(leaf)
    local p = { app_id = APP_ID, charset = "utf-8", notify_id = "2024051300222174920064109999999999",
      notify_time = "2024-05-13 17:49:25", notify_type = "trade_status_sync", out_trade_no = "42",
      total_amount = "0.10", trade_status = "TRADE_SUCCESS", version = "1.0", sign_type = "RSA2",
      alipay_cert_sn = leaf.sn }
    p.sign = leaf.signer:sign(core.sign_content(p, { exclude = { "sign_type" } }), "RSA2")
    return core.form_encode(p)
  end

  local function verify(client, body)
    local sent = beijing_time.parse("2024-05-13 17:49:26")
    return notify.verify(client, body, { clock = function() return sent end })
  end

  it("refuses an unknown SN without a download, and accepts it once adopted", function()
    local t = gateway(made.alipay, { [made.rotated.sn] = made.rotated })
    local client = client_for(t)
    local params, _, err = verify(client, notification(made.rotated))
    assert.is_nil(params)
    assert.are.equal("cert_sn", err.reason)
    assert.truthy(err.msg:find(made.rotated.sn, 1, true), err.msg)
    assert.matches("adopt_alipay_cert", err.msg)
    assert.are.same({}, t.calls)
    assert.is_true(assert(client:adopt_alipay_cert(made.rotated.sn)))
    assert.are.same({ DOWNLOAD }, t.calls)
    assert.are.equal("42", assert(verify(client, notification(made.rotated))).out_trade_no)
    -- the configured certificate still verifies
    assert.is_table(verify(client, notification(made.alipay)))
    assert.are.same({ DOWNLOAD }, t.calls)
  end)

  it("accepts an SN the client adopted from an answer", function()
    local client = client_for(gateway(made.rotated, { [made.rotated.sn] = made.rotated }))
    assert(client:execute(METHOD, {}))
    assert.is_table(verify(client, notification(made.rotated)))
  end)

  it("refuses a message under an adopted SN that its key did not sign", function()
    local client = client_for(gateway(made.alipay, { [made.rotated.sn] = made.rotated }))
    assert(client:adopt_alipay_cert(made.rotated.sn))
    local forged = { sn = made.rotated.sn, signer = made.untrusted.signer }
    local _, _, err = verify(client, notification(forged))
    assert.are.equal("forged", err.reason)
  end)

  it("adopts nothing that does not chain to the root bundle", function()
    local t = gateway(made.alipay, { [made.untrusted.sn] = made.untrusted })
    local client = client_for(t)
    local ok, err, detail = client:adopt_alipay_cert(made.untrusted.sn)
    assert.is_nil(ok)
    assert.are.equal("signature", detail.kind)
    assert.matches("does not chain to alipay_root_cert", err)
    local _, _, verr = verify(client, notification(made.untrusted))
    assert.are.equal("cert_sn", verr.reason)
    assert.has_error(function() client:adopt_alipay_cert(nil) end)
  end)
end)

describe("core.cert_verify", function()
  setup(function() made = made or certs.make() end)

  it("accepts a leaf of the bundle's root and refuses one of another root", function()
    assert.is_true(core.cert_verify(made.rotated.pem, made.root))
    local ok, err = core.cert_verify(made.untrusted.pem, made.root)
    assert.is_nil(ok)
    assert.matches("unable to get local issuer certificate", err)
  end)

  it("refuses a certificate outside its validity", function()
    local ok, err = core.cert_verify(made.rotated.pem, made.root, os.time() + 400 * 86400)
    assert.is_nil(ok)
    assert.matches("expired", err)
    ok, err = core.cert_verify(made.rotated.pem, made.root, os.time() - 86400)
    assert.is_nil(ok)
    assert.matches("not yet valid", err)
  end)

  it("says what is wrong with its input, never quoting it", function()
    local cases = {
      { "", made.root, "no CERTIFICATE block" },
      { made.rotated.pem, "x", "no CERTIFICATE block in the root bundle" },
      { helpers.key_text("app_private_pkcs1.pem"), made.root, "private key" },
      { made.rotated.pem:sub(1, 200), made.root, "truncated" },
    }
    for _, c in ipairs(cases) do
      local ok, err = core.cert_verify(c[1], c[2])
      assert.is_nil(ok)
      assert.matches(c[3], err)
      assert.is_nil(err:find("MII", 1, true))
    end
    assert.has_error(function() core.cert_verify(nil, made.root) end)
  end)
end)
