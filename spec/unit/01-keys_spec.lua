-- Key parsing: every format Alipay users hold, detected rather than asked
-- for, and every bad input refused with a message that names the problem
-- and never echoes the key.
local helpers = require "helpers"
local core = require "alipay.core"

local function strip_pem(text)
  return (text:gsub("%-%-%-%-%-[^-]+%-%-%-%-%-", ""):gsub("%s", ""))
end

local function rewrap(b64, width, eol)
  local lines = {}
  for i = 1, #b64, width do lines[#lines + 1] = b64:sub(i, i + width - 1) end
  return table.concat(lines, eol)
end

-- An error message must name the problem and carry no key material.
local function assert_clean_error(key, err, keytext, pattern)
  assert.is_nil(key)
  assert.is_string(err)
  assert.matches(pattern, err)
  assert.is_true(#err < 160, "error too long: " .. err)
  assert.is_nil(err:find("MII", 1, true), "error shows key material: " .. err)
  if keytext then
    local b64 = strip_pem(keytext)
    for i = 1, #b64 - 16, 16 do
      assert.is_nil(err:find(b64:sub(i, i + 15), 1, true), "error shows key material")
    end
  end
end

describe("core.private_key", function()
  local pkcs1 = helpers.key_text("app_private_pkcs1.pem")
  local pkcs8 = helpers.key_text("app_private_pkcs8.pem")

  it("reads PKCS#1 and PKCS#8 PEM and says which it found", function()
    local k1 = assert(core.private_key(pkcs1))
    local k8 = assert(core.private_key(pkcs8))
    assert.are.equal("PKCS#1", k1:format())
    assert.are.equal("PKCS#8", k8:format())
    assert.are.equal(2048, k1:bits())
    assert.are.equal(k1:public_pem(), k8:public_pem())
  end)

  it("reads bare base64 of either format, on one line or wrapped, LF or CRLF", function()
    for _, text in ipairs { pkcs1, pkcs8 } do
      local b64 = strip_pem(text)
      local expect = core.private_key(text):format()
      for _, form in ipairs { b64, rewrap(b64, 64, "\n"), rewrap(b64, 76, "\r\n") .. "\r\n",
                              "  " .. b64 .. "\n" } do
        local k, err = core.private_key(form)
        assert.is_nil(err)
        assert.are.equal(expect, k:format())
      end
    end
  end)

  it("reads PEM with CRLF line ends and any wrapping", function()
    local b64 = strip_pem(pkcs8)
    local pem = "-----BEGIN " .. "PRIVATE KEY-----\r\n" .. rewrap(b64, 40, "\r\n") ..
                "\r\n-----END PRIVATE KEY-----\r\n"
    assert.are.equal("PKCS#8", assert(core.private_key(pem)):format())
  end)

  it("gives the public half as PEM and as one line of base64", function()
    local k = assert(core.private_key(pkcs1))
    local pub = helpers.key_text("app_public.pem")
    assert.are.equal(strip_pem(pub), strip_pem(k:public_pem()))
    assert.are.equal(strip_pem(pub), k:public_base64())
  end)

  it("describes itself without key material", function()
    local k = assert(core.private_key(pkcs8))
    assert.are.equal("alipay.private_key (RSA 2048-bit, PKCS#8)", tostring(k))
  end)

  it("closes idempotently; a closed key refuses to sign", function()
    local k = assert(core.private_key(pkcs1))
    k:close()
    k:close()
    assert.matches("closed", tostring(k))
    assert.has_error(function() k:sign("x") end, "the key has been closed")
  end)

  if _VERSION == "Lua 5.4" then
    it("is closed by a to-be-closed variable", function()
      local f = assert(load([[
        local core, text = ...
        local k <close> = assert(core.private_key(text))
        return k
      ]]))
      assert.matches("closed", tostring(f(core, pkcs1)))
    end)
  end

  describe("refuses", function()
    local dir
    setup(function() dir = helpers.tmpdir() end)
    teardown(helpers.cleanup)

    local function genpkey(args)
      local path = dir .. "/k" .. math.random(1e9) .. ".pem"
      local ok, out = helpers.run("openssl genpkey " .. args .. " -out " .. path)
      assert(ok, out)
      return helpers.read(path)
    end

    it("garbage, empty input and non-base64 text", function()
      for _, text in ipairs { "garbage", "hello world!", "\0\1\2" } do
        local k, err = core.private_key(text)
        assert_clean_error(k, err, nil, "^private_key: not a PEM or base64 RSA key$")
      end
      for _, text in ipairs { "", " \r\n" } do
        local k, err = core.private_key(text)
        assert_clean_error(k, err, nil, "^private_key: the key text is empty$")
      end
    end)

    it("base64 that is not a key", function()
      local k, err = core.private_key(core.b64encode(string.rep("x", 300)))
      assert_clean_error(k, err, nil, "neither a PKCS#1 nor a PKCS#8")
    end)

    it("a public key or certificate given as private", function()
      for _, name in ipairs { "app_public.pem", "alipay_public_stable.txt", "app_cert.crt" } do
        local text = helpers.key_text(name)
        local k, err = core.private_key(text)
        assert_clean_error(k, err, text, "public key or certificate, not a private key")
      end
    end)

    it("a truncated PEM", function()
      for _, cut in ipairs { 40, 500, #pkcs1 - 10 } do
        local k, err = core.private_key(pkcs1:sub(1, cut))
        assert_clean_error(k, err, pkcs1, "^private_key: ")
      end
      local k, err = core.private_key(pkcs1:sub(1, 900))
      assert_clean_error(k, err, pkcs1, "truncated PEM")
    end)

    it("a PEM body cut short inside the base64", function()
      local lines = {}
      for line in pkcs1:gmatch("[^\n]+") do lines[#lines + 1] = line end
      local short = lines[1] .. "\n" .. lines[2]:sub(1, 200) .. "\n" .. lines[#lines] .. "\n"
      local k, err = core.private_key(short)
      assert_clean_error(k, err, pkcs1, "^private_key: ")
    end)

    it("a damaged key whose bytes still parse, wherever the damage is", function()
      -- Change one character inside each component in turn (modulus,
      -- exponents, primes, CRT values): every variant must be refused.
      local b64 = strip_pem(pkcs1)
      for pos = 60, #b64 - 60, 37 do
        local c = b64:sub(pos, pos) == "A" and "B" or "A"
        local damaged = b64:sub(1, pos - 1) .. c .. b64:sub(pos + 1)
        local k, err = core.private_key(damaged)
        assert_clean_error(k, err, pkcs1, "^private_key: ")
      end
    end)


    it("EC and DSA keys, in PKCS#8 and traditional PEM", function()
      local ec = genpkey("-algorithm EC -pkeyopt ec_paramgen_curve:P-256")
      local k, err = core.private_key(ec)
      assert_clean_error(k, err, ec, "not an RSA key")
      local ec_trad = ec:gsub("PRIVATE KEY", "EC PRIVATE KEY")
      k, err = core.private_key(ec_trad)
      assert_clean_error(k, err, ec, "not an RSA key")
      local ok, out = helpers.run("openssl genpkey -genparam -algorithm DSA -pkeyopt " ..
                                  "dsa_paramgen_bits:1024 -out " .. dir .. "/dsa_params.pem")
      assert(ok, out)
      local dsa = genpkey("-paramfile " .. dir .. "/dsa_params.pem")
      k, err = core.private_key(dsa)
      assert_clean_error(k, err, dsa, "not an RSA key")
      k, err = core.private_key(strip_pem(ec))
      assert_clean_error(k, err, ec, "not an RSA key")
    end)

    it("encrypted keys, with the way out", function()
      local enc = genpkey("-algorithm RSA -pkeyopt rsa_keygen_bits:1024 -aes128 -pass pass:secret")
      local k, err = core.private_key(enc)
      assert_clean_error(k, err, enc, "encrypted keys are not supported")
      local legacy = "-----BEGIN " .. "RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n" ..
                     "DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n" ..
                     strip_pem(pkcs1):sub(1, 64) .. "\n-----END RSA PRIVATE KEY-----\n"
      k, err = core.private_key(legacy)
      assert_clean_error(k, err, pkcs1, "encrypted keys are not supported")
    end)

    it("RSA keys shorter than 1024 bits", function()
      local small = genpkey("-algorithm RSA -pkeyopt rsa_keygen_bits:512")
      local k, err = core.private_key(small)
      assert_clean_error(k, err, small, "shorter than 1024 bits")
    end)

    it("an unknown PEM block", function()
      local k, err = core.private_key("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n")
      assert_clean_error(k, err, nil, "unexpected PEM block")
    end)

    it("arguments of the wrong type, by raising", function()
      assert.has_error(function() core.private_key() end)
      assert.has_error(function() core.private_key({}) end)
    end)
  end)
end)

describe("core.public_key", function()
  it("reads SPKI PEM, bare base64 and certificates", function()
    local expect = strip_pem(helpers.key_text("app_public.pem"))
    local cases = {
      { "app_public.pem", "SPKI" },
      { "alipay_public_stable.txt", "SPKI" },
      { "alipay_notify_public_v2.pem", "SPKI" },
      { "app_cert.crt", "X.509 certificate" },
      { "alipay_cert.crt", "X.509 certificate" },
    }
    for _, case in ipairs(cases) do
      local k = assert(core.public_key(helpers.key_text(case[1])))
      assert.are.equal(case[2], k:format())
      assert.are.equal(2048, k:bits())
    end
    assert.are.equal(expect, assert(core.public_key(expect)):public_base64())
  end)

  it("reads a certificate given as bare base64 and a PKCS#1 RSA PUBLIC KEY", function()
    local cert = helpers.key_text("app_cert.crt")
    assert.are.equal("X.509 certificate", assert(core.public_key(strip_pem(cert))):format())
    local dir = helpers.tmpdir()
    local ok, out = helpers.run("openssl rsa -pubin -in spec/fixtures/keys/app_public.pem " ..
                                "-RSAPublicKey_out -out " .. dir .. "/rsa_pub.pem")
    assert(ok, out)
    local k = assert(core.public_key(helpers.read(dir .. "/rsa_pub.pem")))
    assert.are.equal("PKCS#1", k:format())
    assert.are.equal(strip_pem(helpers.key_text("app_public.pem")), k:public_base64())
    helpers.cleanup()
  end)

  it("refuses a private key, naming the mistake and echoing nothing", function()
    for _, name in ipairs { "app_private_pkcs1.pem", "app_private_pkcs8.pem" } do
      local text = helpers.key_text(name)
      for _, form in ipairs { text, strip_pem(text) } do
        local k, err = core.public_key(form)
        assert_clean_error(k, err, text, "^public_key: this is a private key")
      end
    end
  end)

  it("refuses garbage and truncated input", function()
    local pem = helpers.key_text("alipay_cert.crt")
    for _, text in ipairs { "", "garbage", pem:sub(1, 300), strip_pem(pem):sub(1, 300) } do
      local k, err = core.public_key(text)
      assert_clean_error(k, err, nil, "^public_key: ")
    end
  end)

  it("only verifies: it has no sign method", function()
    local k = assert(core.public_key(helpers.key_text("app_public.pem")))
    assert.is_nil(k.sign)
    local priv = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem")))
    assert.is_nil(priv.verify)
  end)
end)
