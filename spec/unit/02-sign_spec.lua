-- Signing and verification: the protocol vectors byte for byte, the
-- string-to-sign rules, and properties checked against the openssl CLI.
local helpers = require "helpers"
local core = require "alipay.core"

local V = helpers.vectors()

local function private(name) return assert(core.private_key(helpers.key_text(name))) end
local function public(name) return assert(core.public_key(helpers.key_text(name))) end

describe("request signing vectors", function()
  for _, v in ipairs(V.request_sign) do
    it(v.name, function()
      local content = core.sign_content(v.params)
      assert.are.equal(v.content, content)
      assert.are.equal(v.sign, private(v.key):sign(content, v.alg))
      assert.are.equal(344, #v.sign)
      assert.is_true(public("app_public.pem"):verify(content, v.sign, v.alg))
    end)
  end

  it("drops an empty parameter before signing", function()
    local v = V.request_sign[1]
    local params = {}
    for k, val in pairs(v.params) do params[k] = val end
    params.notify_url = ""
    assert.are.equal(v.content, core.sign_content(params))
  end)
end)

describe("v3 signing vectors", function()
  for _, v in ipairs(V.v3_sign) do
    it(v.name, function()
      local sig = private(v.key):sign(v.signed_text)
      assert.are.equal(v.sign, sig)
      if v.authorization then
        local auth_string = v.signed_text:match("^([^\n]*)\n")
        assert.are.equal(v.authorization,
          "ALIPAY-SHA256withRSA " .. auth_string .. ",sign=" .. sig)
      end
    end)
  end
end)

describe("the app gateway check reply", function()
  it("signs exactly the inner response with the app key", function()
    local v = V.gateway_verify_reply
    local key = private(v.key)
    assert.are.equal(v.sign, key:sign(v.response_inner))
    assert.are.equal("<success>true</success><biz_content>" .. key:public_base64() ..
                     "</biz_content>", v.response_inner)
  end)
end)

describe("response verification vectors", function()
  for _, v in ipairs(V.response_verify) do
    it(v.name, function()
      local node = assert(core.extract(v.body, v.method))
      if v.signed_content then assert.are.equal(v.signed_content, node.content) end
      local ok, reason = public(v.alipay_public_key):verify(node.content, node.sign)
      if v.valid then
        assert.is_true(ok)
      else
        assert.is_false(ok)
        assert.are.equal("signature does not match", reason)
      end
    end)
  end
end)

describe("notification rules", function()
  for _, v in ipairs(V.notify) do
    it(v.name, function()
      local opts = v.rule == "V1" and { exclude = { "sign_type" } } or nil
      local content = core.sign_content(v.params, opts)
      if v.content then assert.are.equal(v.content, content) end
      local ok = public(v.alipay_public_key):verify(content, v.params.sign, v.params.sign_type)
      assert.are.equal(v.valid, ok)
    end)
  end

  it("accepts exclude as a set as well as a list", function()
    local v = V.notify[1]
    assert.are.equal(v.content, core.sign_content(v.params, { exclude = { sign_type = true } }))
  end)
end)

describe("core.sign_content", function()
  it("sorts by byte order, skips sign and empty values, keeps values raw", function()
    local s = core.sign_content {
      b = "2", a = "x&y=z", B = "upper", sign = "drop", empty = "", ["a_b"] = "中 文+%20",
    }
    assert.are.equal("B=upper&a=x&y=z&a_b=中 文+%20&b=2", s)
  end)

  it("keeps sign_type unless excluded", function()
    assert.are.equal("a=1&sign_type=RSA2", core.sign_content { a = "1", sign_type = "RSA2" })
    assert.are.equal("a=1", core.sign_content({ a = "1", sign_type = "RSA2" },
                                                  { exclude = { "sign_type" } }))
  end)

  it("gives an empty string for nothing to sign", function()
    assert.are.equal("", core.sign_content {})
    assert.are.equal("", core.sign_content { sign = "x", a = "" })
  end)

  it("accepts numbers without changing the caller's table", function()
    local params = { n = 10, a = "1" }
    assert.are.equal("a=1&n=10", core.sign_content(params))
    assert.are.equal("number", type(params.n))
  end)

  it("raises on misuse, naming the parameter", function()
    assert.has_error(function() core.sign_content { a = true } end,
      "sign_content: parameter 'a' is a boolean, expected a string")
    assert.has_error(function() core.sign_content { a = {} } end)
    assert.has_error(function() core.sign_content { [1] = "x" } end)
    assert.has_error(function() core.sign_content("a=1") end)
  end)
end)

describe("key:verify", function()
  local pub = public("app_public.pem")
  local sig = private("app_private_pkcs1.pem"):sign("hello")

  it("is false with a reason for a mismatch, never an error", function()
    local ok, reason = pub:verify("hellO", sig)
    assert.is_false(ok)
    assert.are.equal("signature does not match", reason)
  end)

  it("is false for a signature that is not base64 or has the wrong length", function()
    local ok, reason = pub:verify("hello", "***")
    assert.is_false(ok)
    assert.matches("not valid base64", reason)
    ok, reason = pub:verify("hello", sig:sub(5))
    assert.is_false(ok)
    assert.matches("wrong length", reason)
    ok, reason = pub:verify("hello", "")
    assert.is_false(ok)
    assert.matches("wrong length", reason)
    ok = pub:verify("hello", string.rep("A", 100000))
    assert.is_false(ok)
  end)

  it("does not accept an RSA (SHA-1) signature as RSA2", function()
    local sha1 = private("app_private_pkcs1.pem"):sign("hello", "RSA")
    assert.is_true(pub:verify("hello", sha1, "RSA"))
    assert.is_false(pub:verify("hello", sha1, "RSA2"))
  end)

  it("raises on an unknown algorithm", function()
    assert.has_error(function() pub:verify("hello", sig, "MD5") end)
    assert.has_error(function() private("app_private_pkcs1.pem"):sign("x", "SM2") end)
  end)
end)

-- Random parameter sets full of the characters that break naive signers.
local ALPHABET = { "a", "Z", "9", "_", "&", "=", "+", "%", " ", "中", "文", "é", "/", "\"",
                   "\\", "%2B", "{", "}", "\n", "" }

local function random_params(rng)
  local params = {}
  for _ = 1, rng(1, 12) do
    local key = ""
    for _ = 1, rng(1, 10) do key = key .. string.char(rng(97, 122)) end
    if rng(1, 4) == 1 then key = key .. "_" .. string.char(rng(65, 90)) end
    local parts = {}
    for i = 1, rng(0, 20) do parts[i] = ALPHABET[rng(1, #ALPHABET)] end
    params[key] = table.concat(parts)
  end
  return params
end

-- The reference rule, written independently in Lua.
local function reference_content(params)
  local keys = {}
  for k, v in pairs(params) do
    if k ~= "sign" and v ~= "" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = k .. "=" .. params[k] end
  return table.concat(out, "&")
end

describe("properties against the openssl CLI", function()
  local dir, rng
  local N = 200
  local KEYS = "spec/fixtures/keys/"

  setup(function()
    dir = helpers.tmpdir()
    math.randomseed(tonumber(os.getenv("ALIPAY_SEED") or "") or 20261122)
    rng = math.random
  end)
  teardown(helpers.cleanup)

  -- Runs a generated shell script that checks case i and prints "i rc".
  local function run_openssl(lines)
    local script = dir .. "/check.sh"
    helpers.write(script, table.concat(lines, "\n") .. "\n")
    local p = io.popen("sh " .. script .. " 2>/dev/null")
    local results = {}
    for line in p:lines() do
      local i, rc = line:match("^(%d+) (%d+)$")
      if i then results[tonumber(i)] = tonumber(rc) end
    end
    p:close()
    return results
  end

  it("core signatures of random parameter sets verify with openssl dgst", function()
    local key = private("app_private_pkcs8.pem")
    local lines = {}
    for i = 1, N do
      local params = random_params(rng)
      local content = core.sign_content(params)
      assert.are.equal(reference_content(params), content)
      local alg = i % 5 == 0 and "RSA" or "RSA2"
      local digest = alg == "RSA" and "-sha1" or "-sha256"
      helpers.write(("%s/c%d"):format(dir, i), content)
      helpers.write(("%s/s%d"):format(dir, i), core.b64decode(key:sign(content, alg)))
      lines[#lines + 1] = ("openssl dgst %s -verify %sapp_public.pem -signature %s/s%d %s/c%d" ..
        " >/dev/null; echo %d $?"):format(digest, KEYS, dir, i, dir, i, i)
    end
    local results = run_openssl(lines)
    for i = 1, N do assert.are.equal(0, results[i], "case " .. i) end
  end)

  it("openssl signatures verify with the core, and fail on one changed byte", function()
    local pub = public("app_public.pem")
    local lines, contents = {}, {}
    for i = 1, N do
      contents[i] = core.sign_content(random_params(rng))
      helpers.write(("%s/c%d"):format(dir, i), contents[i])
      lines[#lines + 1] = ("openssl dgst -sha256 -sign %sapp_private_pkcs1.pem -out %s/o%d %s/c%d;" ..
        " echo %d $?"):format(KEYS, dir, i, dir, i, i)
    end
    local results = run_openssl(lines)
    for i = 1, N do
      assert.are.equal(0, results[i])
      local sig = core.b64encode(helpers.read(("%s/o%d"):format(dir, i)))
      assert.is_true(pub:verify(contents[i], sig), "case " .. i)
      local tampered = contents[i] .. "x"
      assert.is_false(pub:verify(tampered, sig))
    end
  end)
end)
