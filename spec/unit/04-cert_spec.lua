-- core.cert_sn / core.root_cert_sn: the SNs of public-key-certificate mode
-- (docs/protocol.md §4), checked against the vectors and against SNs computed
-- independently with the openssl CLI for generated certificates.
local helpers = require "helpers"
local core = require "alipay.core"

local vectors = helpers.vectors()
local KEYS = helpers.fixtures .. "/keys/"

local function certificate_blocks(text)
  local blocks = {}
  for block in text:gmatch("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-") do
    blocks[#blocks + 1] = block
  end
  return blocks
end

local function with_crlf(text)
  return (text:gsub("\r?\n", "\r\n"))
end

-- Each block as BEGIN line, the whole body on one line, END line.
local function body_on_one_line(text)
  return (text:gsub("(%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-)(.-)(%-%-%-%-%-END CERTIFICATE%-%-%-%-%-)",
    function(first, body, last) return first .. "\n" .. body:gsub("%s", "") .. "\n" .. last end))
end

-- The whole file as one line, markers and bodies run together.
local function single_line(text)
  return (text:gsub("%s", ""):gsub("%-%-%-%-%-BEGINCERTIFICATE", "-----BEGIN CERTIFICATE")
    :gsub("%-%-%-%-%-ENDCERTIFICATE", "-----END CERTIFICATE"))
end

-- Hex serial (as `openssl x509 -serial` prints it) to decimal, by hand so
-- that serials of any size work on LuaJIT's doubles too.
local function hex_to_decimal(hex)
  local digits = { 0 } -- little-endian base 10
  for h in hex:gmatch("%x") do
    local carry = tonumber(h, 16)
    for i = 1, #digits do
      local v = digits[i] * 16 + carry
      digits[i] = v % 10
      carry = math.floor(v / 10)
    end
    while carry > 0 do
      digits[#digits + 1] = carry % 10
      carry = math.floor(carry / 10)
    end
  end
  local out = {}
  for i = #digits, 1, -1 do out[#out + 1] = tostring(digits[i]) end
  return table.concat(out)
end

local function reverse_rdns(dn)
  local rdns = {}
  for rdn in dn:gmatch("[^,]+") do table.insert(rdns, 1, rdn) end
  return table.concat(rdns, ",")
end

local function openssl(args)
  local ok, out = helpers.run("openssl " .. args)
  assert(ok, out)
  return out
end

-- The SN by the book, without the core: the issuer printed by the CLI in
-- encoded order with raw UTF-8 and '+' inside multi-valued RDNs (values
-- must not contain ','), RDNs reversed, decimal serial, MD5.
local function expected_sn(dir, cert_path)
  local serial = openssl("x509 -in '" .. cert_path .. "' -noout -serial"):match("serial=(%x+)")
  local issuer = openssl("x509 -in '" .. cert_path .. "' -noout -issuer -nameopt utf8,sep_comma_plus,sname")
    :match("issuer=([^\n]*)")
  local input = dir .. "/sn-input"
  helpers.write(input, reverse_rdns(issuer) .. hex_to_decimal(serial))
  return (openssl("dgst -md5 -r '" .. input .. "'"):match("^(%x+)"))
end

local function self_signed(dir, name, subject, serial, extra)
  local path = dir .. "/" .. name .. ".pem"
  openssl("req -x509 -new -key '" .. KEYS .. "app_private_pkcs8.pem' -utf8 -days 1"
    .. " -subj '" .. subject .. "' -set_serial " .. serial .. " " .. (extra or "")
    .. " -out '" .. path .. "'")
  return path
end

local function vector(file)
  for _, v in ipairs(vectors.cert_sn) do
    if v.file == file then return v end
  end
  error("no cert_sn vector for " .. file)
end

teardown(function()
  helpers.cleanup()
end)

describe("cert_sn", function()
  for _, v in ipairs(vectors.cert_sn) do
    if v.sn then
      describe(v.file, function()
        local text = helpers.key_text(v.file)

        it("matches the vector", function()
          assert.are.equal(v.sn, core.cert_sn(text))
        end)

        it("reads CRLF line ends", function()
          assert.are.equal(v.sn, core.cert_sn(with_crlf(text)))
        end)

        it("reads the body on one long line", function()
          assert.are.equal(v.sn, core.cert_sn(body_on_one_line(text)))
        end)

        it("reads the whole PEM on a single line", function()
          assert.are.equal(v.sn, core.cert_sn(single_line(text)))
        end)

        it("agrees with the SN computed by the openssl CLI", function()
          local dir = helpers.tmpdir()
          local path = dir .. "/cert.pem"
          helpers.write(path, text)
          assert.are.equal(v.sn, expected_sn(dir, path))
        end)
      end)
    end
  end

  it("takes the first certificate of a bundle, even an SM2-signed one", function()
    local dir = helpers.tmpdir()
    local bundle = helpers.key_text("alipay_root_cert.crt")
    local first = dir .. "/first.pem"
    helpers.write(first, certificate_blocks(bundle)[1])
    assert.are.equal(expected_sn(dir, first), core.cert_sn(bundle))
  end)

  it("skips blocks that are not certificates", function()
    local text = helpers.key_text("app_private_pkcs1.pem") .. helpers.key_text("app_cert.crt")
    assert.are.equal(vector("app_cert.crt").sn, core.cert_sn(text))
  end)

  it("left-pads an SN whose MD5 starts with zeros", function()
    local dir = helpers.tmpdir()
    -- md5("CN=lua-alipay zero pad,O=lua-alipay,C=CN1605") starts with "00".
    local path = self_signed(dir, "zero", "/C=CN/O=lua-alipay/CN=lua-alipay zero pad", "1605")
    local sn = core.cert_sn(helpers.read(path))
    assert.are.equal("00e82df07a5ade447f1de0044ee6d386", sn)
    assert.are.equal(expected_sn(dir, path), sn)
  end)

  it("formats UTF-8, multi-valued RDNs and a 20-byte serial like RFC 2253", function()
    local dir = helpers.tmpdir()
    local path = self_signed(dir, "multi",
      "/C=CN/ST=浙江/O=支付宝（测试）/OU=Team A+CN=多值 RDN+UID=42/emailAddress=a@b.c",
      "0x7fabcdef0123456789abcdef0123456789abcdef")
    assert.are.equal(expected_sn(dir, path), core.cert_sn(helpers.read(path)))
  end)

  it("converts BMPString values to UTF-8", function()
    local dir = helpers.tmpdir()
    local config = dir .. "/bmp.cnf"
    -- string_mask=default encodes non-ASCII values as BMPString.
    helpers.write(config, "[req]\ndistinguished_name=dn\nstring_mask=default\n[dn]\n")
    local path = self_signed(dir, "bmp", "/C=CN/O=蚂蚁金服/CN=BMP 测试", "3", "-config '" .. config .. "'")
    assert.truthy(openssl("asn1parse -in '" .. path .. "'"):find("BMPSTRING", 1, true))
    local sn = core.cert_sn(helpers.read(path))
    assert.are.equal(expected_sn(dir, path), sn)
    -- Written out, so the CLI's own UTF-8 handling is not the only check.
    local input = dir .. "/by-hand"
    helpers.write(input, "CN=BMP 测试,O=蚂蚁金服,C=CN3")
    assert.are.equal(openssl("dgst -md5 -r '" .. input .. "'"):match("^(%x+)"), sn)
  end)

  describe("fails clearly", function()
    local cert = helpers.key_text("app_cert.crt")

    it("on input without a certificate", function()
      local sn, err = core.cert_sn("garbage SECRET-INPUT")
      assert.is_nil(sn)
      assert.are.equal("cert_sn: no CERTIFICATE block in the input", err)
      assert.is_nil(core.cert_sn(""))
    end)

    it("on a private key given instead", function()
      for _, name in ipairs({ "app_private_pkcs1.pem", "app_private_pkcs8.pem" }) do
        local sn, err = core.cert_sn(helpers.key_text(name))
        assert.is_nil(sn)
        assert.are.equal("cert_sn: the input is a private key, not a certificate", err)
      end
    end)

    it("on a public key given instead", function()
      local sn, err = core.cert_sn(helpers.key_text("app_public.pem"))
      assert.is_nil(sn)
      assert.are.equal("cert_sn: no CERTIFICATE block in the input", err)
    end)

    it("on a truncated PEM", function()
      local sn, err = core.cert_sn(cert:sub(1, math.floor(#cert / 2)))
      assert.is_nil(sn)
      assert.matches("^cert_sn: truncated PEM", err)
    end)

    it("on a body that is not base64", function()
      local sn, err = core.cert_sn("-----BEGIN CERTIFICATE-----\nMII*SECRET*\n-----END CERTIFICATE-----\n")
      assert.is_nil(sn)
      assert.are.equal("cert_sn: the CERTIFICATE block is not valid base64", err)
    end)

    it("on base64 that is not a certificate", function()
      local pem = "-----BEGIN CERTIFICATE-----\n" .. core.b64encode("SECRET-INPUT, not DER")
        .. "\n-----END CERTIFICATE-----\n"
      local sn, err = core.cert_sn(pem)
      assert.is_nil(sn)
      assert.are.equal("cert_sn: not a valid X.509 certificate", err)
    end)

    it("on a certificate with bytes after it", function()
      local der = core.b64decode(certificate_blocks(cert)[1]:match("%-\n(.-)\n%-"))
      local pem = "-----BEGIN CERTIFICATE-----\n" .. core.b64encode(der .. "\0\0")
        .. "\n-----END CERTIFICATE-----\n"
      local sn, err = core.cert_sn(pem)
      assert.is_nil(sn)
      assert.are.equal("cert_sn: not a valid X.509 certificate", err)
    end)

    it("on a certificate cut short inside its DER", function()
      local body = certificate_blocks(cert)[1]:match("%-\n(.-)\n%-"):gsub("%s", "")
      local pem = "-----BEGIN CERTIFICATE-----\n" .. body:sub(1, 400)
        .. "\n-----END CERTIFICATE-----\n"
      local sn, err = core.cert_sn(pem)
      assert.is_nil(sn)
      assert.are.equal("cert_sn: not a valid X.509 certificate", err)
    end)

    it("raises on a non-string argument", function()
      assert.has_error(function() core.cert_sn() end)
      assert.has_error(function() core.cert_sn({}) end)
    end)
  end)
end)

describe("root_cert_sn", function()
  local v = vector("alipay_root_cert.crt")
  local bundle = helpers.key_text(v.file)

  it("matches the vector, skipping the SM2 and ECDSA roots", function()
    assert.are.equal(v.root_sn, core.root_cert_sn(bundle))
  end)

  it("reads CRLF line ends, one-line bodies and a single-line file", function()
    assert.are.equal(v.root_sn, core.root_cert_sn(with_crlf(bundle)))
    assert.are.equal(v.root_sn, core.root_cert_sn(body_on_one_line(bundle)))
    assert.are.equal(v.root_sn, core.root_cert_sn(single_line(bundle)))
  end)

  it("joins the cert_sn of each RSA root in file order", function()
    local blocks = certificate_blocks(bundle)
    local rsa = {}
    for i = 2, #blocks, 2 do rsa[#rsa + 1] = core.cert_sn(blocks[i]) end
    assert.are.equal(table.concat(rsa, "_"), core.root_cert_sn(bundle))
    assert.are.equal(rsa[2] .. "_" .. rsa[1], core.root_cert_sn(blocks[4] .. blocks[1] .. blocks[2]))
  end)

  it("gives a single SN for a single RSA certificate", function()
    assert.are.equal(vector("app_cert.crt").sn, core.root_cert_sn(helpers.key_text("app_cert.crt")))
  end)

  it("fails when no certificate is signed with RSA", function()
    local blocks = certificate_blocks(bundle)
    local sn, err = core.root_cert_sn(blocks[1] .. "\n" .. blocks[3] .. "\n")
    assert.is_nil(sn)
    assert.are.equal("root_cert_sn: none of the 2 certificates is signed with RSA", err)
  end)

  it("fails on input without a certificate", function()
    local sn, err = core.root_cert_sn("garbage")
    assert.is_nil(sn)
    assert.are.equal("root_cert_sn: no CERTIFICATE block in the input", err)
    sn, err = core.root_cert_sn(helpers.key_text("app_private_pkcs8.pem"))
    assert.is_nil(sn)
    assert.are.equal("root_cert_sn: the input is a private key, not a certificate", err)
  end)

  it("fails on a truncated bundle", function()
    local sn, err = core.root_cert_sn(bundle:sub(1, #bundle - 40))
    assert.is_nil(sn)
    assert.matches("^root_cert_sn: truncated PEM", err)
  end)

  it("names the certificate that is not valid", function()
    local blocks = certificate_blocks(bundle)
    local junk = "-----BEGIN CERTIFICATE-----\n" .. core.b64encode("not DER")
      .. "\n-----END CERTIFICATE-----\n"
    local sn, err = core.root_cert_sn(blocks[1] .. "\n" .. junk .. blocks[2])
    assert.is_nil(sn)
    assert.are.equal("root_cert_sn: certificate 2 is not a valid X.509 certificate", err)
    sn, err = core.root_cert_sn(blocks[2] .. "\n-----BEGIN CERTIFICATE-----\n@@\n-----END CERTIFICATE-----\n")
    assert.is_nil(sn)
    assert.are.equal("root_cert_sn: CERTIFICATE block 2 is not valid base64", err)
  end)
end)
