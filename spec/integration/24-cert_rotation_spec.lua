-- Certificate mode against the sandbox when Alipay rotates its certificate
-- (docs/protocol.md §4.4): after sb:rotate_cert() the gateway signs under a
-- new SN, and a client configured with the old certificate downloads the
-- new one once, checks it against the root bundle and goes on; a rotation
-- to a certificate outside the bundle makes every call a signature error.
local helpers = require "helpers"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local FOLLOW = "alipay.open.public.user.follow.query"
local SUBSCRIBE_PATH = "/v3/alipay/open/app/messagetemplate/subscribe/query"
local DOWNLOAD = "alipay.open.app.alipaycert.download"

describe("certificate rotation against the sandbox", function()
  local sb, app_cert

  local function start()
    if sb then sb:stop() end
    sb = assert(sandbox.start { app_id = APP_ID, app_cert = app_cert, seed = "spec/fixtures/sandbox_seed.json" })
  end

  setup(function()
    local dir = helpers.tmpdir()
    local ok, out = helpers.run(("openssl req -x509 -new -key spec/fixtures/keys/app_private_pkcs1.pem -sha256"
      .. " -days 2 -set_serial 4243 -subj '/CN=%s' -out %s/app.crt"):format(APP_ID, dir))
    assert(ok, out)
    app_cert = helpers.read(dir .. "/app.crt")
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  local function client()
    return assert(alipay.new {
      app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"), app_cert = app_cert,
      alipay_cert = sb.alipay_cert, alipay_root_cert = sb.alipay_root_cert,
      gateway = sb.gateway, timeout_ms = 5000,
    })
  end

  local function follow(c) return c:execute(FOLLOW, { user_id = "2088000000000001" }) end
  local function subscribe(c)
    return c:v3("POST", SUBSCRIBE_PATH, { user_id = "2088000000000001", template_id_list = { "x" } })
  end

  local function downloads()
    local n = 0
    for _, e in ipairs(assert(sb:arrivals())) do
      if e.event == "arrive" and e.method == DOWNLOAD then n = n + 1 end
    end
    return n
  end

  it("goes on after a rotation: one download, then the cached key, for v2 and v3", function()
    start()
    local c = client()
    assert.are.equal("T", assert(follow(c)).is_follow)
    local sn = assert(sb:rotate_cert())
    assert.are_not.equal(c.config.alipay_cert_sn, sn)
    local res, err = follow(c)
    assert.is_nil(err)
    assert.are.equal("T", res.is_follow)
    assert.are.equal(1, downloads())
    res, err = subscribe(c)
    assert.is_nil(err)
    assert.is_boolean(res.show_component)
    assert.are.equal("T", assert(follow(c)).is_follow)
    assert.are.equal(1, downloads())
    -- A new client learns it on its first v3 call just the same.
    local fresh = client()
    res, err = subscribe(fresh)
    assert.is_nil(err)
    assert.is_boolean(res.show_component)
    assert(follow(fresh))
    assert.are.equal(2, downloads())
  end)

  it("refuses a rotated certificate that does not chain to the root bundle", function()
    start()
    local c = client()
    assert(follow(c))
    local sn = assert(sb:rotate_cert { untrusted = true })
    local res, err, detail = follow(c)
    assert.is_nil(res)
    assert.are.equal("signature", detail.kind)
    assert.truthy(err:find(sn, 1, true), err)
    assert.matches("does not chain to alipay_root_cert", err)
    assert.is_nil(err:find("BEGIN", 1, true))
    res, err, detail = subscribe(c)
    assert.is_nil(res)
    assert.are.equal("signature", detail.kind)
    assert.truthy(err:find(sn, 1, true), err)
  end)

  it("answers the download of an unknown SN with a business failure", function()
    start()
    local res, _, detail = client():execute(DOWNLOAD, { alipay_cert_sn = "0123456789abcdef0123456789abcdef" })
    assert.is_nil(res)
    assert.are.equal("business", detail.kind)
    assert.are.equal("SANDBOX_ALIPAY_CERT_NOT_EXIST", detail.sub_code)
    assert.is_true(detail.verified)
  end)
end)
