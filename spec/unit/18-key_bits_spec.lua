-- RSA2 keys under 2048 bits are refused at alipay.new (issue 13 §5), by the
-- rule alipay.keyfiles applies for `alipay channel add` and `alipay doctor`:
-- a config error naming the key's field, whichever key is short: the app
-- private key, Alipay's public key, or Alipay's certificate in certificate
-- mode. "RSA" (SHA1withRSA, legacy) keeps accepting them.
local helpers = require "helpers"
local alipay = require "alipay"

local KEYS = helpers.fixtures .. "/keys/"

describe("alipay.new and the bits of RSA2 keys", function()
  local dir

  setup(function()
    dir = helpers.tmpdir()
    local function sh(cmd) assert(helpers.run(cmd .. " 2>/dev/null")) end
    sh(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out %s/small.pem"):format(dir))
    sh(("openssl pkey -in %s/small.pem -pubout -out %s/small_pub.pem"):format(dir, dir))
    sh(("openssl req -x509 -new -key %s/small.pem -subj /CN=small -days 2 -out %s/small_cert.crt"):format(dir, dir))
    sh(("openssl req -x509 -new -key %sapp_private_pkcs8.pem -subj /CN=app -days 2 -out %s/app_cert.crt")
      :format(KEYS, dir))
  end)

  teardown(function() helpers.cleanup() end)

  local function config(fields)
    local cfg = { app_id = "2021000122671080", private_key_file = KEYS .. "app_private_pkcs8.pem",
                  alipay_public_key_file = KEYS .. "alipay_public_sandbox.pem" }
    for k, v in pairs(fields) do cfg[k] = v end
    for k, v in pairs(cfg) do if v == false then cfg[k] = nil end end
    return cfg
  end

  local function refused(cfg, field, what)
    local client, err, detail = alipay.new(cfg)
    assert.is_nil(client)
    assert.are.equal("config", detail.kind, err)
    assert.are.equal(field, detail.field)
    assert.are.equal(field .. ": " .. what .. " is a 1024-bit RSA key: RSA2 needs 2048 bits or more", detail.msg)
  end

  it("accepts the 2048-bit fixtures", function()
    assert(alipay.new(config {}))
  end)

  it("refuses a 1024-bit app private key, from a file or inline", function()
    refused(config { private_key_file = dir .. "/small.pem" }, "private_key_file", "the app private key")
    refused(config { private_key_file = false, private_key = helpers.read(dir .. "/small.pem") }, "private_key",
      "the app private key")
  end)

  it("refuses a 1024-bit Alipay public key", function()
    refused(config { alipay_public_key_file = dir .. "/small_pub.pem" }, "alipay_public_key_file",
      "Alipay's public key")
    refused(config { alipay_public_key_file = false, alipay_public_key = helpers.read(dir .. "/small_pub.pem") },
      "alipay_public_key", "Alipay's public key")
  end)

  it("refuses a 1024-bit key in Alipay's certificate (certificate mode)", function()
    local cert_mode = { alipay_public_key_file = false, app_cert_file = dir .. "/app_cert.crt",
                        alipay_root_cert_file = KEYS .. "alipay_root_cert.crt" }
    cert_mode.alipay_cert_file = KEYS .. "alipay_cert.crt"
    assert(alipay.new(config(cert_mode)))
    cert_mode.alipay_cert_file = dir .. "/small_cert.crt"
    refused(config(cert_mode), "alipay_cert_file", "Alipay's public key")
  end)

  it("keeps accepting short keys for sign_type RSA", function()
    assert(alipay.new(config { sign_type = "RSA", private_key_file = dir .. "/small.pem",
                               alipay_public_key_file = dir .. "/small_pub.pem" }))
  end)
end)
