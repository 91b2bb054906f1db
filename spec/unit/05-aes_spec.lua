-- core.aes_encrypt / core.aes_decrypt: AES-CBC, zero IV, PKCS#7, base64
-- (docs/protocol.md §5), against the vectors and the openssl CLI.
local helpers = require "helpers"
local core = require "alipay.core"

local vectors = helpers.vectors()

local KEY_128 = vectors.aes[1].key
local KEY_192 = core.b64encode("0123456789abcdef01234567")
local KEY_256 = core.b64encode("lua-alipay AES-256 test key 32 B")

local function to_hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- All 256 byte values, so binary data and NULs are covered.
local function binary(n)
  local bytes = {}
  for i = 1, 256 do bytes[i] = string.char(i - 1) end
  local all = table.concat(bytes)
  return string.rep(all, math.floor(n / 256)) .. all:sub(1, n % 256)
end

-- Encrypts with `openssl enc`; returns the base64 ciphertext.
local function openssl_encrypt(key_b64, plain)
  local raw_key = core.b64decode(key_b64)
  local dir = helpers.tmpdir()
  local input = dir .. "/plain"
  helpers.write(input, plain)
  local ok, out = helpers.run(string.format(
    "openssl enc -aes-%d-cbc -K %s -iv %s -base64 -A -in '%s'",
    #raw_key * 8, to_hex(raw_key), string.rep("0", 32), input))
  assert(ok, out)
  return (out:gsub("%s", ""))
end

local function assert_fails(expected, plain_or_nil, err, key)
  assert.is_nil(plain_or_nil)
  assert.are.equal(expected, err)
  if key ~= "" then assert.is_nil(err:find(key, 1, true)) end
end

teardown(function()
  helpers.cleanup()
end)

describe("aes vectors", function()
  for i, v in ipairs(vectors.aes) do
    it("#" .. i .. " encrypts", function()
      assert.are.equal(v.cipher, core.aes_encrypt(v.key, v.plain))
    end)

    it("#" .. i .. " decrypts", function()
      assert.are.equal(v.plain, core.aes_decrypt(v.key, v.cipher))
    end)
  end

  it("reproduces the encrypted biz_content of the request_sign vector", function()
    local found = 0
    for _, v in ipairs(vectors.request_sign) do
      if v.aes_key then
        found = found + 1
        assert.are.equal(v.params.biz_content, core.aes_encrypt(v.aes_key, v.plain_biz_content))
        assert.are.equal(v.plain_biz_content, core.aes_decrypt(v.aes_key, v.params.biz_content))
      end
    end
    assert.is_true(found > 0)
  end)

  it("accepts ciphertext base64 broken over lines", function()
    local v = vectors.aes[3]
    local wrapped = v.cipher:sub(1, 40) .. "\r\n" .. v.cipher:sub(41)
    assert.are.equal(v.plain, core.aes_decrypt(v.key, wrapped))
  end)
end)

describe("aes round trips", function()
  for _, key in ipairs({ KEY_128, KEY_192, KEY_256 }) do
    local bits = #core.b64decode(key) * 8

    describe("AES-" .. bits, function()
      it("of the empty string is one block of padding", function()
        local cipher = core.aes_encrypt(key, "")
        assert.are.equal(16, #core.b64decode(cipher))
        assert.are.equal("", core.aes_decrypt(key, cipher))
      end)

      it("of 1 to 64 bytes", function()
        for n = 1, 64 do
          local plain = binary(n)
          local cipher = core.aes_encrypt(key, plain)
          -- PKCS#7 always adds 1..16 bytes.
          assert.are.equal((math.floor(n / 16) + 1) * 16, #core.b64decode(cipher))
          assert.are.equal(plain, core.aes_decrypt(key, cipher))
        end
      end)

      it("of 1 MiB and a few bytes", function()
        local plain = binary(1024 * 1024 + 5)
        local cipher = core.aes_encrypt(key, plain)
        assert.are.equal(plain, core.aes_decrypt(key, cipher))
      end)

      it("matches openssl enc", function()
        for _, plain in ipairs({ "", "x", binary(16), vectors.aes[2].plain, binary(1000) }) do
          local cipher = openssl_encrypt(key, plain)
          assert.are.equal(cipher, core.aes_encrypt(key, plain))
          assert.are.equal(plain, core.aes_decrypt(key, cipher))
        end
      end)
    end)
  end

  it("gives different ciphertexts under different key sizes", function()
    local plain = vectors.aes[1].plain
    local a, b, c = core.aes_encrypt(KEY_128, plain), core.aes_encrypt(KEY_192, plain),
      core.aes_encrypt(KEY_256, plain)
    assert.are_not.equal(a, b)
    assert.are_not.equal(b, c)
  end)
end)

describe("aes failures", function()
  local v = vectors.aes[1]
  local other_key = vectors.aes[3].key

  it("reports a wrong key as bad padding", function()
    local plain, err = core.aes_decrypt(other_key, v.cipher)
    assert_fails("aes_decrypt: bad padding (wrong key or corrupted data)", plain, err, other_key)
  end)

  it("reports a corrupted last block as bad padding", function()
    local raw = core.b64decode(vectors.aes[2].cipher)
    local last = raw:sub(-1):byte()
    local corrupted = core.b64encode(raw:sub(1, -2) .. string.char((last + 1) % 256))
    local plain, err = core.aes_decrypt(vectors.aes[2].key, corrupted)
    assert_fails("aes_decrypt: bad padding (wrong key or corrupted data)", plain, err, v.key)
  end)

  it("rejects a key that is not base64", function()
    local key = "not*a*key!SECRET"
    local out, err = core.aes_encrypt(key, "data")
    assert_fails("aes key: not valid base64", out, err, key)
    out, err = core.aes_decrypt(key, v.cipher)
    assert_fails("aes key: not valid base64", out, err, key)
  end)

  it("rejects a key of the wrong length", function()
    local key = core.b64encode("0123456789")
    local out, err = core.aes_encrypt(key, "data")
    assert_fails("aes key: 10 bytes, expected 16, 24 or 32", out, err, key)
    out, err = core.aes_decrypt(key, v.cipher)
    assert_fails("aes key: 10 bytes, expected 16, 24 or 32", out, err, key)
    out, err = core.aes_encrypt("", "data")
    assert_fails("aes key: 0 bytes, expected 16, 24 or 32", out, err, "")
    local long = core.b64encode(string.rep("k", 33))
    out, err = core.aes_encrypt(long, "data")
    assert_fails("aes key: 33 bytes, expected 16, 24 or 32", out, err, long)
  end)

  it("rejects ciphertext that is not base64", function()
    local out, err = core.aes_decrypt(v.key, "%%%%")
    assert_fails("aes_decrypt: ciphertext is not valid base64", out, err, v.key)
  end)

  it("rejects truncated ciphertext", function()
    local cipher = vectors.aes[3].cipher -- 64 bytes
    local truncated = core.b64encode(core.b64decode(cipher):sub(1, 40))
    local out, err = core.aes_decrypt(vectors.aes[3].key, truncated)
    assert_fails("aes_decrypt: ciphertext length is not a multiple of 16", out, err, vectors.aes[3].key)
    out, err = core.aes_decrypt(vectors.aes[3].key, cipher:sub(1, 20))
    assert_fails("aes_decrypt: ciphertext length is not a multiple of 16", out, err, vectors.aes[3].key)
  end)

  it("rejects empty ciphertext", function()
    local out, err = core.aes_decrypt(v.key, "")
    assert_fails("aes_decrypt: ciphertext is empty", out, err, v.key)
  end)

  it("raises on arguments that are not strings", function()
    assert.has_error(function() core.aes_encrypt(v.key) end)
    assert.has_error(function() core.aes_encrypt(nil, "x") end)
    assert.has_error(function() core.aes_decrypt(v.key, {}) end)
  end)
end)
