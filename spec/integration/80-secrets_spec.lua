-- No secret leaks through an error path (docs/protocol.md §7, SECURITY.md):
-- every error path this spec can reach runs with real-looking keys (the
-- fixture keys and keys generated here with the openssl CLI), and the
-- texts that end up in logs are scanned for
--   * key material: any 16-character run of the base64 body of a private
--     key, of a public key, or of the AES key (the AES key whole too);
--   * a signed query string: `sign=` followed by a signature, or the whole
--     `app_id=…&…&sign_type=…` string the client signs;
--   * a notification body (the form body, or its signature).
-- Scanned: tostring(err), err.msg (and err.sub_msg, except Alipay's own
-- echo of the string it signed in isv.invalid-signature, which is kept in
-- err.sub_msg on purpose and checked for keys and signatures only), the log
-- callbacks of alipay.inbound.app_gateway and alipay.campaign, the sandbox's nginx
-- error.log, and the output of bin/alipay run as a child process.
-- Every assertion message names the path that leaked.
local helpers = require "helpers"
local alipay = require "alipay"
local core = alipay.core
local sandbox = require "alipay.sandbox"
local notify = require "alipay.inbound.notify"
local gateway = require "alipay.inbound.app_gateway"
local channels = require "alipay.messaging.channels"

local APP_ID = "2021000122671080"
local FOLLOW = "alipay.open.public.user.follow.query"
local SEND = "alipay.open.public.message.single.send"
local SUBSCRIBE_PATH = "/v3/alipay/open/app/messagetemplate/subscribe/query"
local TEMPLATE = "14330d60f0ab4516853a0900827cee35"
local SEED = "spec/fixtures/sandbox_seed.json"
local USER = "2088000000000001"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- ---- what must never appear ----

local WINDOW = 16
local windows = {}     -- 16-character run -> the name of the secret it comes from
local whole = {}       -- { name, text } searched as a whole (short secrets, bodies, signatures)

local function b64_body(text)
  -- the base64 of a PEM (headers dropped) or of a bare base64 key
  local body = text:gsub("%-%-%-%-%-[^\n]-%-%-%-%-%-", ""):gsub("%s+", "")
  return body
end

local function forbid_runs(name, b64)
  assert(#b64 >= WINDOW, name .. " is too short to scan")
  for i = 1, #b64 - WINDOW + 1 do
    local run = b64:sub(i, i + WINDOW - 1)
    windows[run] = windows[run] or name
  end
end

local function forbid_whole(name, text)
  whole[#whole + 1] = { name, text }
end

-- A private key: its base64 (as given, PKCS#1 and PKCS#8 forms), and its
-- public half (SPKI base64).
-- The public half goes first: runs of the modulus shared by both forms are
-- then named as the public body (the check envelope may carry it).
local function forbid_private(name, text)
  local key = assert(core.private_key(text))
  forbid_runs(name .. " (public key body)", key:public_base64())
  forbid_runs(name .. " (private key)", b64_body(text))
  return key
end

-- Returns the name of what leaked into text, or nil.
local SIGNED_QUERY = {
  { "sign=[%w%%+/]" .. ("[%w%%+/]"):rep(19), "a signature after sign=" },
  { "app_id=%d+&.-sign_type=", "the signed query string (app_id=…&…&sign_type=)" },
  { "app_id=%d+%%26.-sign_type", "the signed query string, form-encoded" },
}
local function leak_in(text, opts)
  if type(text) ~= "string" or text == "" then return nil end
  for i = 1, #text - WINDOW + 1 do
    local hit = windows[text:sub(i, i + WINDOW - 1)]
    if hit and not (opts and opts.public_ok and hit:find("(public key body)", 1, true)) then
      return hit .. " at byte " .. i
    end
  end
  for _, w in ipairs(whole) do
    if text:find(w[2], 1, true) then return w[1] end
  end
  if not (opts and opts.alipay_echo) then
    for _, p in ipairs(SIGNED_QUERY) do
      if text:find(p[1]) then return p[2] end
    end
  else
    -- Alipay's echo of the string it signed never holds a signature
    if text:find(SIGNED_QUERY[1][1]) then return SIGNED_QUERY[1][2] end
  end
  return nil
end

local function assert_clean(path, where, text, opts)
  local hit = leak_in(text, opts)
  assert(hit == nil, ("%s: %s leaked into %s: %s"):format(path, tostring(hit), where,
                                                          -- show the context, never the whole text
                                                          hit and "(" .. #text .. " bytes)" or ""))
end

-- Is err.sub_msg Alipay's echo of its string to sign (isv.invalid-signature)?
local function is_alipay_echo(err)
  return err.sub_code == "isv.invalid-signature"
end

-- Checks every text of an error.
local function assert_error_clean(path, err)
  assert(err ~= nil, path .. ": expected an error")
  if type(err) ~= "table" then
    assert_clean(path, "the error string", tostring(err))
    return
  end
  assert_clean(path, "err.msg", err.msg)
  local echo = is_alipay_echo(err)
  assert_clean(path, "err.sub_msg", err.sub_msg, { alipay_echo = echo })
  assert_clean(path, "err.field", err.field)
  assert_clean(path, "tostring(err)", tostring(err))
end

-- ---- keys ----

local key_dir, fixture = nil, {}
local gen = {}         -- generated with openssl: other (a wrong app key), pkcs1, spki, aes

local function openssl(cmd)
  local ok, out = helpers.run("openssl " .. cmd)
  assert(ok, out)
  return out
end

setup(function()
  key_dir = helpers.tmpdir()
  for _, name in ipairs { "app_private_pkcs1.pem", "app_private_pkcs8.pem" } do
    fixture[name] = helpers.key_text(name)
    forbid_private("fixture " .. name, fixture[name])
  end
  fixture.public = helpers.key_text("app_public.pem")
  forbid_runs("fixture app_public.pem (public key body)", b64_body(fixture.public))
  openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. key_dir .. "/other.pem")
  openssl("rsa -in " .. key_dir .. "/other.pem -traditional -out " .. key_dir .. "/other_pkcs1.pem")
  openssl("pkey -in " .. key_dir .. "/other.pem -pubout -out " .. key_dir .. "/other_pub.pem")
  openssl("rand -base64 16 > " .. key_dir .. "/aes.txt")
  gen.other = helpers.read(key_dir .. "/other.pem")
  gen.pkcs1 = helpers.read(key_dir .. "/other_pkcs1.pem")
  gen.spki = helpers.read(key_dir .. "/other_pub.pem")
  gen.aes = helpers.read(key_dir .. "/aes.txt"):gsub("%s+", "")
  forbid_private("generated key", gen.other)
  forbid_runs("generated key (PKCS#1 form)", b64_body(gen.pkcs1))
  forbid_runs("generated AES key", gen.aes)
  forbid_whole("generated AES key", gen.aes)
  local aes_raw = assert(core.b64decode(gen.aes))
  forbid_whole("generated AES key (raw bytes)", aes_raw)
end)

teardown(function() helpers.cleanup() end)

describe("the scanner", function()
  it("catches each kind of leak it looks for", function()
    local body = b64_body(gen.other)
    local aes_raw = assert(core.b64decode(gen.aes))
    for what, text in pairs {
      ["a run of the private key"] = "x" .. body:sub(400, 415) .. "y",
      ["a run of the public key"] = gen.spki:sub(60, 90),
      ["the AES key"] = "key " .. gen.aes,
      ["the raw AES key"] = "key " .. aes_raw,
      ["a signature"] = "url?sign=" .. ("AbC+/%2B"):rep(6),
      ["the signed query"] = "app_id=2021000122671080&biz_content=x&sign_type=RSA2",
    } do
      assert(leak_in(text) ~= nil, "the scanner misses " .. what)
    end
    assert.is_nil(leak_in("alipay.open.public.user.follow.query: gateway error 40002 isv.invalid-signature"))
  end)
end)

-- ---- config errors ----

describe("configuration errors never echo a key", function()
  local function base(extra)
    local cfg = { app_id = APP_ID, private_key = gen.other, alipay_public_key = gen.spki,
                  gateway = "http://127.0.0.1:9/gateway.do" }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return cfg
  end

  local function mangled(text)
    local body = b64_body(text)
    return {
      garbage = "-----BEGIN " .. "PRIVATE KEY-----\n" .. body:sub(1, 200):reverse() .. "\n-----END PRIVATE KEY-----\n",
      truncated = text:sub(1, math.floor(#text / 2)),
      bare_truncated = body:sub(1, #body - 40),
      bad_b64 = body:sub(1, 100) .. "!*" .. body:sub(101),
      crlf_garbage = (text:gsub("\n", "\r\n")):gsub("M", "%%"),
    }
  end

  it("for every key field, with garbage, truncated and wrong-kind keys", function()
    local cases = {}
    for what, text in pairs(mangled(gen.other)) do
      cases[#cases + 1] = { "private_key " .. what, { private_key = text } }
      cases[#cases + 1] = { "alipay_public_key from a private key " .. what, { alipay_public_key = text } }
    end
    for what, text in pairs(mangled(gen.spki)) do
      cases[#cases + 1] = { "alipay_public_key " .. what, { alipay_public_key = text } }
    end
    cases[#cases + 1] = { "public key as private_key", { private_key = gen.spki } }
    cases[#cases + 1] = { "fixture public key as private_key", { private_key = fixture.public } }
    cases[#cases + 1] = { "private key as alipay_public_key", { alipay_public_key = gen.other } }
    cases[#cases + 1] = { "PKCS#1 private key as alipay_public_key", { alipay_public_key = gen.pkcs1 } }
    cases[#cases + 1] = { "fixture PKCS#8 as alipay_public_key",
                          { alipay_public_key = fixture["app_private_pkcs8.pem"] } }
    cases[#cases + 1] = { "private key as app_cert", { app_cert = gen.other, alipay_cert = gen.other,
                                                       alipay_root_cert = gen.other, alipay_public_key = false } }
    cases[#cases + 1] = { "public key as alipay_cert", { app_cert = helpers.key_text("app_cert.crt"),
      private_key = fixture["app_private_pkcs1.pem"], alipay_cert = gen.spki,
      alipay_root_cert = helpers.key_text("alipay_root_cert.crt"), alipay_public_key = false } }
    cases[#cases + 1] = { "app_cert not matching private_key", { app_cert = helpers.key_text("app_cert.crt"),
      alipay_cert = helpers.key_text("alipay_cert.crt"),
      alipay_root_cert = helpers.key_text("alipay_root_cert.crt"), alipay_public_key = false } }
    cases[#cases + 1] = { "private key as alipay_root_cert", { app_cert = helpers.key_text("app_cert.crt"),
      private_key = fixture["app_private_pkcs1.pem"], alipay_cert = helpers.key_text("alipay_cert.crt"),
      alipay_root_cert = fixture["app_private_pkcs8.pem"], alipay_public_key = false } }
    cases[#cases + 1] = { "both private_key and private_key_file", { private_key_file = key_dir .. "/other.pem" } }
    cases[#cases + 1] = { "AES key too short", { encrypt_key = gen.aes:sub(1, 20) } }
    cases[#cases + 1] = { "AES key not base64", { encrypt_key = gen.aes:sub(1, 10) .. "!!" .. gen.aes:sub(13) } }
    cases[#cases + 1] = { "private key as AES key", { encrypt_key = gen.other } }
    cases[#cases + 1] = { "AES key as private key", { private_key = gen.aes } }
    cases[#cases + 1] = { "AES key as alipay_public_key", { alipay_public_key = gen.aes } }
    cases[#cases + 1] = { "AES key in an unknown field", { aes_key = gen.aes } }
    cases[#cases + 1] = { "private key in an unknown field", { privatekey = gen.other } }
    cases[#cases + 1] = { "private key in a mistyped field", { private_key = { gen.other } } }
    cases[#cases + 1] = { "private key as app_id", { app_id = gen.other } }
    cases[#cases + 1] = { "private key as gateway", { gateway = gen.other } }
    cases[#cases + 1] = { "AES key as sign_type", { sign_type = gen.aes } }
    for _, case in ipairs(cases) do
      local cfg = base(case[2])
      for k, v in pairs(cfg) do if v == false then cfg[k] = nil end end
      local c, _, err = alipay.new(cfg)
      assert(c == nil, "config " .. case[1] .. ": accepted")
      assert_error_clean("config " .. case[1], err)
    end
  end)

  it("with keys in files (garbage and wrong kind)", function()
    local files = {
      garbage = mangled(gen.other).garbage, truncated = mangled(gen.other).truncated,
      spki = gen.spki, aes = gen.aes, private = gen.other,
    }
    for name, text in pairs(files) do helpers.write(key_dir .. "/f_" .. name, text) end
    local cases = {
      { "private_key_file garbage", { private_key = false, private_key_file = key_dir .. "/f_garbage" } },
      { "private_key_file truncated", { private_key = false, private_key_file = key_dir .. "/f_truncated" } },
      { "private_key_file a public key", { private_key = false, private_key_file = key_dir .. "/f_spki" } },
      { "alipay_public_key_file a private key",
        { alipay_public_key = false, alipay_public_key_file = key_dir .. "/f_private" } },
      { "encrypt_key_file a private key", { encrypt_key_file = key_dir .. "/f_private" } },
      { "encrypt_key_file truncated AES", { encrypt_key_file = key_dir .. "/f_truncated" } },
    }
    for _, case in ipairs(cases) do
      local cfg = base(case[2])
      for k, v in pairs(cfg) do if v == false then cfg[k] = nil end end
      local c, _, err = alipay.new(cfg)
      assert(c == nil, "config " .. case[1] .. ": accepted")
      assert_error_clean("config " .. case[1], err)
    end
  end)

  it("through alipay.messaging.channels, with keys in environment variables", function()
    local env = {
      BAD_KEY = mangled(gen.other).garbage, PUB_AS_PRIV = gen.spki, PRIV = gen.other,
      TRUNC = mangled(gen.other).bare_truncated, AES_BAD = gen.aes:sub(1, 18), PRIV_AS_AES = gen.other,
      AES = gen.aes,
    }
    local function getenv(name) return env[name] end
    local cases = {
      { "private_key_env garbage", { private_key_env = "BAD_KEY", alipay_public_key_env = "PRIV_AS_AES" } },
      { "private_key_env a public key", { private_key_env = "PUB_AS_PRIV", alipay_public_key_env = "PUB_AS_PRIV" } },
      { "private_key_env truncated", { private_key_env = "TRUNC", alipay_public_key_env = "PUB_AS_PRIV" } },
      { "alipay_public_key_env a private key", { private_key_env = "PRIV", alipay_public_key_env = "PRIV" } },
      { "encrypt_key_env too short",
        { private_key_env = "PRIV", alipay_public_key_env = "PUB_AS_PRIV", encrypt_key_env = "AES_BAD" } },
      { "encrypt_key_env a private key",
        { private_key_env = "PRIV", alipay_public_key_env = "PUB_AS_PRIV", encrypt_key_env = "PRIV_AS_AES" } },
      { "private_key_env unset", { private_key_env = "NOPE", alipay_public_key_env = "PUB_AS_PRIV" } },
      { "private_key inline (refused in a channel file)",
        { private_key = gen.other, alipay_public_key_env = "PUB_AS_PRIV" } },
      { "encrypt_key inline (refused in a channel file)",
        { private_key_env = "PRIV", alipay_public_key_env = "PUB_AS_PRIV", encrypt_key = gen.aes } },
    }
    for _, case in ipairs(cases) do
      local spec = { kind = "alipaylife", app_id = APP_ID, gateway = "http://127.0.0.1:9/gateway.do" }
      for k, v in pairs(case[2]) do spec[k] = v end
      local set, err = channels.load({ channels = { life = spec } }, { getenv = getenv })
      if set then
        local ch
        ch, err = set:get("life")
        assert(ch == nil or err ~= nil, "channels " .. case[1] .. ": accepted")
      end
      assert_error_clean("channels " .. case[1], err)
    end
  end)
end)

-- ---- the client against the sandbox ----

describe("client errors against the sandbox", function()
  local sb, aes_sb

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = fixture.public, seed = SEED })
    aes_sb = assert(sandbox.start { app_id = APP_ID, app_public_key = fixture.public, seed = SEED,
                                    encrypt_key = gen.aes })
  end)

  teardown(function()
    for _, s in ipairs { sb, aes_sb } do if s then s:stop() end end
  end)

  before_each(function()
    assert(sb:reset())
    assert(aes_sb:reset())
  end)

  local function client(s, extra)
    local cfg = { app_id = APP_ID, private_key = fixture["app_private_pkcs8.pem"],
                  alipay_public_key = s.alipay_public_key, gateway = s.gateway, timeout_ms = 3000 }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return assert(alipay.new(cfg))
  end

  local function error_log_clean(s, path)
    assert_clean(path, "the sandbox's nginx error.log", s:error_log())
  end

  local FAULTS = {
    { "reset", { reset = 1 } }, { "http_502", { http_502 = 1 } }, { "truncate", { truncate = 1 } },
    { "bad_sign", { bad_sign = 1 } }, { "error_rate", { error_rate = 1 } },
    { "throttle_qps", { throttle_qps = 1 } },
  }

  for _, f in ipairs(FAULTS) do
    it("fault " .. f[1] .. " (v2, v3, plain and encrypted)", function()
      for _, target in ipairs { { sb, "plain" }, { aes_sb, "AES" } } do
        local s = target[1]
        assert(s:faults(f[2]))
        local c = client(s, target[2] == "AES" and { encrypt_key = gen.aes } or nil)
        local seen_error = false
        for i = 1, 3 do
          local path = ("v2 %s (%s) call %d"):format(f[1], target[2], i)
          local res, _, err = c:execute(FOLLOW, { user_id = USER })
          if err then seen_error = true assert_error_clean(path, err) else assert.is_table(res) end
          path = ("v3 %s (%s) call %d"):format(f[1], target[2], i)
          res, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = USER, template_id_list = { "nonexistent" } },
                          target[2] == "AES" and { encrypt = true } or nil)
          if err then seen_error = true assert_error_clean(path, err) else assert.is_table(res) end
        end
        assert(seen_error, "fault " .. f[1] .. " produced no error")
        assert(s:faults {})
        c:close()
        error_log_clean(s, "fault " .. f[1] .. " (" .. target[2] .. ")")
      end
    end)
  end

  it("isv.invalid-signature from a wrong app key (v2 and v3)", function()
    for _, key in ipairs { gen.other, gen.pkcs1 } do
      local c = client(sb, { private_key = key })
      local _, _, err = c:execute(FOLLOW, { user_id = USER })
      assert.are.equal("isv.invalid-signature", err.sub_code)
      assert_error_clean("v2 isv.invalid-signature", err)
      _, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = USER, template_id_list = { "x" } })
      assert_error_clean("v3 with a wrong key", err)
      c:close()
    end
    -- with an AES key the sandbox does not know
    local c = client(aes_sb, { private_key = gen.other, encrypt_key = gen.aes })
    local _, _, err = c:execute(FOLLOW, { user_id = USER })
    assert_error_clean("v2 encrypted with a wrong key", err)
    c:close()
    error_log_clean(sb, "isv.invalid-signature")
    error_log_clean(aes_sb, "isv.invalid-signature (AES)")
  end)

  it("a wrong Alipay public key, a wrong AES key, and an unreachable gateway", function()
    local c = client(sb, { alipay_public_key = gen.spki })
    local _, _, err = c:execute(FOLLOW, { user_id = USER })
    assert.are.equal("signature", err.kind)
    assert_error_clean("v2 response signed by another key", err)
    _, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = USER, template_id_list = { "x" } })
    assert_error_clean("v3 response signed by another key", err)
    local other_aes = assert(core.b64encode(("k"):rep(16)))
    c = client(aes_sb, { encrypt_key = other_aes })
    _, _, err = c:execute(FOLLOW, { user_id = USER })
    assert_error_clean("v2 with an AES key the gateway does not share", err)
    c = client(sb, { gateway = "http://127.0.0.1:9/gateway.do", connect_timeout_ms = 500 })
    _, _, err = c:execute(FOLLOW, { user_id = USER })
    assert.are.equal("transport", err.kind)
    assert_error_clean("v2 connection refused", err)
    c = client(sb, { gateway = sb.https_gateway, ca_file = "spec/fixtures/keys/alipay_root_cert.crt" })
    _, _, err = c:execute(FOLLOW, { user_id = USER })
    assert.are.equal("tls", err.reason)
    assert_error_clean("v2 unknown CA", err)
    error_log_clean(sb, "wrong keys")
  end)
end)

-- ---- notifications and the app gateway ----

describe("notification and gateway refusals never log the body", function()
  local alipay_key, app_client
  local logged

  setup(function()
    alipay_key = assert(core.private_key(gen.other)) -- "Alipay" here
    app_client = assert(alipay.new { app_id = APP_ID, private_key = fixture["app_private_pkcs1.pem"],
                                     alipay_public_key = gen.spki,
                                     transport = { request = function() error("no calls") end } })
  end)

  local function sign(p, rule)
    local out = {}
    for k, v in pairs(p) do out[k] = v end
    local exclude = rule == "V1" and { exclude = { "sign_type" } } or nil
    out.sign = alipay_key:sign(core.sign_content(out, exclude), "RSA2")
    return out
  end

  local function payment(extra)
    local p = { app_id = APP_ID, charset = "utf-8", notify_id = "2024051300222174920064101234567890",
                notify_time = "2024-05-13 17:49:25", notify_type = "trade_status_sync",
                out_trade_no = "SECRET-ORDER-7d1f", total_amount = "0.10", trade_status = "TRADE_SUCCESS",
                subject = "body marker 8c2e", buyer_logon_id = "buyer-marker@example.com",
                version = "1.0", sign_type = "RSA2" }
    for k, v in pairs(extra or {}) do p[k] = v or nil end
    return p
  end

  local function gbk(s) return assert(core.iconv("UTF-8", "GBK", s)) end

  -- The fixtures' own dates, a minute later: notify_time 2024-05-13
  -- 17:49:25 Beijing, CreateTime 1715593765000 ms.
  local function notify_now() return 1715593765 + 60 end
  local gateway_now = notify_now

  local function event(extra, xml_extra)
    local xml = "<XML><AppId>" .. APP_ID .. "</AppId><FromUserId>" .. USER .. "</FromUserId>" ..
      "<CreateTime>1715593765000</CreateTime><MsgType>event</MsgType><EventType>follow</EventType>" ..
      "<ActionParam>body-marker-xml-41</ActionParam>" .. (xml_extra or "") .. "</XML>"
    local p = { app_id = APP_ID, service = "alipay.mobile.public.message.notify", charset = "utf-8",
                sign_type = "RSA2", biz_content = xml, notify_id = "gw-notify-0001" }
    for k, v in pairs(extra or {}) do p[k] = v end
    return p
  end

  -- Every body below is forbidden whole, with its signature.
  local function body_of(params)
    local body = core.form_encode(params)
    forbid_whole("a notification body", body)
    if params.sign then forbid_whole("a notification signature", params.sign) end
    return body
  end

  local function check(path, err, info)
    if err ~= nil or not (info and info["repeat"]) then assert_error_clean(path, err) end
    for _, line in ipairs(logged) do assert_clean(path, "a gateway log line", line) end
    if info then assert_clean(path, "the gateway reply info", info.error and tostring(info.error)) end
    logged = {}
  end

  before_each(function() logged = {} end)
  local function log(level, msg) logged[#logged + 1] = level .. " " .. msg end

  it("notify.verify: forged, unsigned, replayed, foreign app id, malformed, GBK", function()
    local seen = notify.memory_store(100)
    local good = sign(payment(), "V1")
    local forged = sign(payment()); forged.total_amount = "999.00"
    local foreign = sign(payment { app_id = "2021000999999999" }, "V1")
    local v2_signed = sign(payment(), "V2")
    local unsigned = payment(); unsigned.sign = nil
    local bad_type = sign(payment { sign_type = gen.aes }, "V1")
    local gbk_bad = sign(payment { charset = "GBK", subject = "\xff\xfe body marker" }, "V1")
    local cases = {
      { "forged (amount changed)", body_of(forged) },
      { "signed under V2, checked under V1", body_of(v2_signed) },
      { "foreign app id", body_of(foreign) },
      { "unsigned", body_of(unsigned) },
      { "sign_type holds the AES key", body_of(bad_type) },
      { "GBK with invalid bytes", body_of(gbk_bad) },
      { "malformed escape", body_of(good) .. "&x=%zz" },
      { "repeated field", body_of(good) .. "&sign=" .. core.form_encode(good.sign) },
      { "repeated field holding a key", body_of(good) .. "&k=" .. core.form_encode(gen.other) ..
                                        "&k=" .. core.form_encode(gen.other) },
      { "field named by a key", body_of(good) .. "&" .. core.form_encode(gen.aes) .. "=1&" ..
                                core.form_encode(gen.aes) .. "=2" },
      { "sign is a private key",
        (body_of(good):gsub("sign=[^&]*", function() return "sign=" .. core.form_encode(gen.other) end)) },
      { "not a form", gen.other },
      { "a gateway message at notify_url", body_of(sign(payment { service = "alipay.service.check" }, "V2")) },
      { "signed long ago", body_of(sign(payment { notify_time = "2001-01-01 00:00:00" }, "V1")) },
      { "a downgrade to RSA", body_of(sign(payment { sign_type = "RSA" }, "V1")) },
      { "a value that hides a sign_type", body_of(sign(payment { subject = "x&sign_type=RSA2" }, "V1")) },
      { "too many fields", body_of(good) .. ("&" .. core.form_encode(gen.aes) .. "=1"):rep(250) },
      { "no notify_id", body_of(sign(payment { notify_id = false }, "V1")) },
    }
    for _, case in ipairs(cases) do
      local params, _, err = notify.verify(app_client, case[2], { seen = seen, clock = notify_now })
      assert(params == nil, "notify " .. case[1] .. ": accepted")
      check("notify " .. case[1], err)
    end
    assert(notify.verify(app_client, body_of(good), { seen = seen, clock = notify_now }))
    local params, _, err = notify.verify(app_client, body_of(good), { seen = seen, clock = notify_now })
    assert(params == nil, "notify replay: accepted")
    check("notify replayed", err)
  end)

  it("gateway.handle: forged, replayed, foreign app id, malformed, GBK, failing handler", function()
    local seen = notify.memory_store(100)
    local good = sign(event(), "V2")
    local forged = sign(event()); forged.biz_content = forged.biz_content:gsub("follow", "unfollow")
    local foreign_xml = sign(event { biz_content = (event().biz_content:gsub(APP_ID, "2021000999999999")) }, "V2")
    local foreign = sign(event { app_id = "2021000999999999" }, "V2")
    local bad_xml = sign(event { biz_content = "<XML><AppId>" .. gen.aes .. "</XML" }, "V2")
    local gbk_event = sign(event { charset = "GBK", biz_content = gbk('<?xml version="1.0" encoding="GBK"?>' ..
      event().biz_content:gsub("body%-marker%-xml%-41", "关注 body-marker-gbk") ) }, "V2")
    local gbk_broken = sign(event { charset = "GBK", biz_content = "\x81\x20<XML>" .. gen.aes .. "</XML>" }, "V2")
    local check_forged = sign({ app_id = APP_ID, service = "alipay.service.check", charset = "utf-8",
                                sign_type = "RSA2", biz_content = "<XML><EventType>verifygw</EventType></XML>" })
    check_forged.sign = sign(event(), "V2").sign
    local cases = {
      { "forged event", body_of(forged) },
      { "event signed under V1", body_of(sign(event(), "V1")) },
      { "foreign app_id", body_of(foreign) },
      { "foreign AppId in biz_content", body_of(foreign_xml) },
      { "malformed XML holding the AES key", body_of(bad_xml) },
      { "GBK event with invalid bytes", body_of(gbk_broken) },
      { "forged gateway check", body_of(check_forged) },
      { "malformed form", body_of(good) .. "&%zz" },
      { "a private key as the body", gen.other },
      { "a payment notification stripped of sign_type", body_of((function()
          local p = sign(payment(), "V1"); p.sign_type = nil; return p end)()) },
      { "an event from long ago", body_of(sign(event { biz_content = (event().biz_content:gsub(
          "1715593765000", "1000000000000")) }, "V2")) },
    }
    for _, case in ipairs(cases) do
      local reply, info = gateway.handle(app_client, case[2], {}, { seen = seen, log = log, clock = gateway_now })
      assert(reply ~= "success", "gateway " .. case[1] .. ": answered success")
      -- the check envelope carries the app's public key by design (docs/protocol.md §3.4)
      assert_clean("gateway " .. case[1], "the reply", reply, { public_ok = true })
      check("gateway " .. case[1], info.detail, info)
    end
    -- a handler failing with a message that holds the body and a key
    local reply = gateway.handle(app_client, body_of(good), {
      follow = function() error("handler saw " .. body_of(good) .. " and " .. gen.other) end,
    }, { seen = seen, log = log, clock = gateway_now })
    local info
    assert.are_not.equal("success", reply)
    -- the handler's own text is the application's: only our part is checked
    for _, line in ipairs(logged) do
      assert.is_nil(line:find("\n", 1, true), "gateway failing handler: a multi-line log line")
    end
    logged = {}
    -- accepted once, then a replay
    assert.are.equal("success", (gateway.handle(app_client, body_of(good), { follow = function() end },
                                                { seen = seen, log = log, clock = gateway_now })))
    reply, info = gateway.handle(app_client, body_of(good), { follow = function() end },
                                 { seen = seen, log = log, clock = gateway_now })
    assert.are.equal("success", reply)
    assert.is_true(info["repeat"])
    check("gateway replayed event", info.detail, info)
    -- a GBK event, accepted, then replayed
    gateway.handle(app_client, body_of(gbk_event), { follow = function() end },
                   { seen = seen, log = log, clock = gateway_now })
    reply, info = gateway.handle(app_client, body_of(gbk_event), { follow = function() end },
                                 { seen = seen, log = log, clock = gateway_now })
    assert.are.equal("success", reply)
    check("gateway replayed GBK event", info.detail, info)
  end)
end)

-- ---- a campaign with failures and a stop ----

describe("a campaign with failures and a stop", function()
  local sb

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = fixture.public, seed = SEED })
  end)

  teardown(function() if sb then sb:stop() end end)

  it("logs no key, no signed query and no body", function()
    local campaign = require "alipay.campaign"
    local pub_file = key_dir .. "/sandbox_alipay_public.pem"
    helpers.write(pub_file, sb.alipay_public_key)
    local ws = assert(require("alipay.workspace").open { store = helpers.tmpdir() .. "/state.db",
      config = { channels = { life = {
        kind = "alipaylife", app_id = APP_ID, private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
        alipay_public_key_file = pub_file, gateway = sb.gateway, timeout_ms = 3000 } } } })
    assert(ws.registry:import { { channel = "life", kind = "alipaylife", id = TEMPLATE, name = "订单状态提醒",
                                  keywords = { "订单号", "订单状态", "更新时间" } } })
    local logged = {}
    local ctx = assert(ws:campaign_ctx { log = function(level, msg) logged[#logged + 1] = level .. " " .. msg end })
    local data = { head_color = "#85be53", url = "https://example.com/x", action_name = "查看详情",
                   keyword1 = { value = "K1", color = "#85be53" }, keyword2 = { value = "K2", color = "#85be53" },
                   keyword3 = { value = "K3", color = "#85be53" } }
    local ids = {}
    for i = 1, 40 do ids[i] = { user_id = ("20880000%08d"):format(i) } end
    ids[#ids + 1] = { user_id = "2088999999999999" } -- not a follower: failed
    local c = assert(campaign.create(ctx, { channel = "life", template = TEMPLATE, audience = { recipients = ids },
                                            data = data, policy = { in_flight = 4, max_attempts = 2 } }))
    assert(sb:faults { error_rate = 0.3, throttle_qps = 50, reset = 0.05, truncate = 0.05, methods = { SEND } })
    local summary = assert(c:run())
    assert(sb:faults { bad_sign = 1, count = 1, methods = { SEND } })
    local c2 = assert(campaign.create(ctx, { channel = "life", template = TEMPLATE,
                                             audience = { recipients = { { user_id = ("20880000%08d"):format(99) },
                                                                         { user_id = ("20880000%08d"):format(98) } } },
                                             data = data, policy = { in_flight = 1 } }))
    local stopped = assert(c2:run())
    assert(sb:faults {})
    assert.are.equal("stopped", stopped.status)
    for _, s in ipairs { summary, stopped } do
      assert_clean("campaign", "stop_reason", s.stop_reason)
    end
    for _, line in ipairs(logged) do assert_clean("campaign", "a ctx.log line", line) end
    local dir = helpers.tmpdir()
    for _, camp in ipairs { c, c2 } do
      camp:export(dir .. "/r.csv", "csv")
      assert_clean("campaign", "the results export", helpers.read(dir .. "/r.csv"))
      local status = camp:status()
      for code in pairs(status.by_code or {}) do assert_clean("campaign", "status by_code", tostring(code)) end
    end
    assert_clean("campaign", "the sandbox's nginx error.log", sb:error_log())
    ws:close()
  end)
end)

-- ---- the command line ----

describe("bin/alipay with bad keys and configs", function()
  local sb

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = fixture.public, seed = SEED })
  end)

  teardown(function() if sb then sb:stop() end end)

  local function run_cli(path, env, args)
    local ok, out = helpers.run(env .. " bin/alipay " .. args)
    assert(not ok, path .. ": succeeded")
    assert_clean(path, "the CLI output (stdout+stderr)", out)
    return out
  end

  it("prints no key material, signed query or body", function()
    local dir = helpers.tmpdir()
    local pub_file = dir .. "/alipay_pub.pem"
    helpers.write(pub_file, sb.alipay_public_key)
    helpers.write(dir .. "/garbage.pem", "-----BEGIN " .. "PRIVATE KEY-----\n" .. b64_body(gen.other):sub(1, 300) ..
                  "\n-----END PRIVATE KEY-----\n")
    local function conf(name, spec)
      local s = { kind = "alipaylife", app_id = APP_ID, gateway = sb.gateway, timeout_ms = 3000 }
      for k, v in pairs(spec) do s[k] = v end
      local file = dir .. "/" .. name .. ".json"
      helpers.write(file, require("cjson").encode { store = dir .. "/" .. name .. ".db", channels = { life = s } })
      return file
    end
    local env = "ALIPAY_K_PRIV=" .. q(gen.other) .. " ALIPAY_K_PUB=" .. q(gen.spki) ..
                " ALIPAY_K_AES=" .. q(gen.aes:sub(1, 18)) .. " ALIPAY_K_GOOD=" .. q(fixture["app_private_pkcs8.pem"])
    local call = " call " .. FOLLOW .. " " .. q('{"user_id":"' .. USER .. '"}')
    local cases = {
      { "garbage private_key_file", conf("garbage", { private_key_file = dir .. "/garbage.pem",
                                                      alipay_public_key_file = pub_file }) },
      { "public key as private_key_env", conf("pubpriv", { private_key_env = "ALIPAY_K_PUB",
                                                           alipay_public_key_file = pub_file }) },
      { "private key as alipay_public_key_env", conf("privpub", { private_key_env = "ALIPAY_K_GOOD",
                                                                  alipay_public_key_env = "ALIPAY_K_PRIV" }) },
      { "bad AES key in encrypt_key_env", conf("aes", { private_key_env = "ALIPAY_K_GOOD",
        alipay_public_key_file = pub_file, encrypt_key_env = "ALIPAY_K_AES" }) },
      { "wrong app key (isv.invalid-signature)", conf("wrong", { private_key_env = "ALIPAY_K_PRIV",
                                                                 alipay_public_key_file = pub_file }) },
      { "wrong Alipay public key (bad response signature)", conf("wrongpub", {
        private_key_env = "ALIPAY_K_GOOD", alipay_public_key_env = "ALIPAY_K_PUB" }) },
    }
    for _, case in ipairs(cases) do
      run_cli("CLI call, " .. case[1], env, "--config " .. q(case[2]) .. call)
      run_cli("CLI call --json, " .. case[1], env, "--config " .. q(case[2]) .. " --json" .. call)
      run_cli("CLI v3, " .. case[1], env, "--config " .. q(case[2]) .. " call --v3 POST " .. SUBSCRIBE_PATH ..
              " " .. q('{"user_id":"' .. USER .. '","template_id_list":["x"]}'))
    end
    -- a key given where a file name is expected, and a key as a config file
    helpers.write(dir .. "/key_as_config.json", gen.other)
    run_cli("CLI a private key as the config file", env, "--config " .. q(dir .. "/key_as_config.json") .. call)
    run_cli("CLI ALIPAY_CONFIG pointing at a key", "ALIPAY_CONFIG=" .. q(key_dir .. "/other.pem") .. " " .. env, call)
    run_cli("CLI sandbox start with a private key as the app key", env,
            "sandbox start --app-id " .. APP_ID .. " --app-public-key " .. q(key_dir .. "/other_pkcs1.pem") ..
            " --json --seed /nonexistent/seed.json")
    for _, f in ipairs { { reset = 1 }, { bad_sign = 1 }, { http_502 = 1 }, { truncate = 1 } } do
      assert(sb:faults(f))
      local name, _ = next(f)
      run_cli("CLI call under fault " .. name, env, "--config " .. q(conf("fault", {
        private_key_env = "ALIPAY_K_GOOD", alipay_public_key_file = pub_file })) .. call)
    end
    assert(sb:faults {})
    assert_clean("CLI calls", "the sandbox's nginx error.log", sb:error_log())
  end)
end)
