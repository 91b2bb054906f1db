-- v2 answers whose signed content holds \/ (docs/protocol.md §2.2): when the
-- signature does not fit the content as sent, it is checked once more with
-- every \/ replaced by /, as the Java and .NET SDKs do, and nothing else is
-- tried. Public-key mode with the fixture keys, certificate mode with
-- throw-away certificates (spec/support/certs.lua).
local helpers = require "helpers"
local alipay = require "alipay"
local certs = require "support.certs"
local core = alipay.core

local APP_ID = "2021000122671080"
local METHOD = "alipay.open.public.setting.category.query"
local NODE = "alipay_open_public_setting_category_query_response"
local app_key_text = helpers.key_text("app_private_pkcs1.pem")

-- A transport that answers every request with the body body_of() makes.
local function client_with(cfg, body_of)
  cfg.app_id, cfg.private_key = APP_ID, app_key_text
  cfg.gateway = "http://127.0.0.1:1/gateway.do"
  cfg.transport = { request = function() return { status = 200, headers = {}, body = body_of() } end }
  return assert(alipay.new(cfg))
end

-- The node as sent (escaped), signed over `signed`.
local function body(signer, sent, signed, sn)
  return ('{"%s":%s,%s"sign":"%s"}'):format(NODE, sent,
    sn and ('"alipay_cert_sn":"' .. sn .. '",') or "", signer:sign(signed))
end

local ESCAPED = '{"code":"10000","msg":"Success","url":"https:\\/\\/shop.example\\/a\\/b"}'
local PLAIN = '{"code":"10000","msg":"Success","url":"https://shop.example/a/b"}'
local UNICODE = '{"code":"10000","msg":"Success","url":"https:\\u002f\\u002fshop.example\\u002fa\\u002fb"}'

local function behaves(mode)
  local signer, cfg_of, sn
  setup(function()
    signer, cfg_of, sn = mode()
  end)

  it("accepts an answer signed over the unescaped form and sent with \\/", function()
    local client = client_with(cfg_of(), function() return body(signer, ESCAPED, PLAIN, sn) end)
    local res, err = client:execute(METHOD, {})
    assert.is_nil(err)
    assert.are.equal("https://shop.example/a/b", res.url)
  end)

  it("still accepts an answer signed over the bytes as sent", function()
    local client = client_with(cfg_of(), function() return body(signer, ESCAPED, ESCAPED, sn) end)
    assert.are.equal("10000", assert(client:execute(METHOD, {})).code)
  end)

  it("refuses an answer with \\/ whose signature fits neither form", function()
    local other = '{"code":"10000","msg":"Success","url":"https://shop.example/a/c"}'
    local client = client_with(cfg_of(), function() return body(signer, ESCAPED, other, sn) end)
    local res, err, detail = client:execute(METHOD, {})
    assert.is_nil(res)
    assert.are.equal("signature", detail.kind)
    assert.matches("not Alipay's", err)
  end)

  it("tries no other unescaping: \\u002f sent for a signed / is refused", function()
    local client = client_with(cfg_of(), function() return body(signer, UNICODE, PLAIN, sn) end)
    local res, _, detail = client:execute(METHOD, {})
    assert.is_nil(res)
    assert.are.equal("signature", detail.kind)
  end)

  it("replaces only \\/: other escapes in the same content stay as sent", function()
    -- The signed form keeps \" and \\n; only \/ became /.
    local sent = '{"code":"10000","msg":"Success","note":"a \\"b\\"\\n\\/c"}'
    local signed = '{"code":"10000","msg":"Success","note":"a \\"b\\"\\n/c"}'
    local client = client_with(cfg_of(), function() return body(signer, sent, signed, sn) end)
    assert.are.equal('a "b"\n/c', assert(client:execute(METHOD, {})).note)
    local decoded = '{"code":"10000","msg":"Success","note":"a "b"\n/c"}'
    client = client_with(cfg_of(), function() return body(signer, sent, decoded, sn) end)
    local res, _, detail = client:execute(METHOD, {})
    assert.is_nil(res)
    assert.are.equal("signature", detail.kind)
  end)
end

describe("v2 answers with \\/, public-key mode", function()
  behaves(function()
    -- "Alipay" signs with the app's key pair here, as in spec/unit/11.
    return assert(core.private_key(app_key_text)), function()
      return { alipay_public_key = helpers.key_text("app_public.pem") }
    end
  end)
end)

describe("v2 answers with \\/, certificate mode", function()
  behaves(function()
    local made = certs.make()
    return made.alipay.signer, function()
      return { app_cert = made.app_cert, alipay_cert = made.alipay.pem, alipay_root_cert = made.root }
    end, made.alipay.sn
  end)
  teardown(helpers.cleanup)
end)
