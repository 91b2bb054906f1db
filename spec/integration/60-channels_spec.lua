-- Channels: one configured Alipay app per channel code, loaded from JSON, a
-- Lua data file or a table, keys from files or the environment, every client
-- built (and every mistake reported) up front. Two sandboxes stand for two
-- different apps, each with its own key pair.
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"
local channels = require "alipay.messaging.channels"

local LIFE_APP = "2021000122671080"
local MINI_APP = "2021000199990002"
local FOLLOWER = "2088857585575154" -- a follower in spec/fixtures/sandbox_seed.json
local FOLLOW_QUERY = "alipay.open.public.user.follow.query"

-- Lines of key bodies, to prove that no error ever echoes key material.
local function key_lines(pem)
  local lines = {}
  for line in pem:gmatch("[^\r\n]+") do
    if not line:find("-----", 1, true) and #line >= 16 then lines[#lines + 1] = line:sub(1, 16) end
  end
  return lines
end

local function lua_literal(v, indent)
  indent = indent or ""
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "table" then return ("%q"):format(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    out[#out + 1] = indent .. "  [" .. ("%q"):format(k) .. "] = " .. lua_literal(v[k], indent .. "  ") .. ","
  end
  return "{\n" .. table.concat(out, "\n") .. "\n" .. indent .. "}"
end

local function arrivals_of(sb, method)
  local n = 0
  for _, ev in ipairs(sb:arrivals()) do
    if ev.event == "arrive" and ev.method == method then n = n + 1 end
  end
  return n
end

describe("channels", function()
  local life_sb, mini_sb, dir, secrets, env

  local function getenv(name) return env[name] end

  setup(function()
    dir = helpers.tmpdir()
    assert(helpers.run("mkdir -p " .. dir .. "/keys " .. dir .. "/conf"))
    local ok, out = helpers.run(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s/keys/mini.pem"
      .. " && openssl pkey -in %s/keys/mini.pem -pubout -out %s/keys/mini_public.pem"):format(dir, dir, dir))
    assert(ok, out)
    helpers.write(dir .. "/keys/life.pem", helpers.key_text("app_private_pkcs8.pem"))
    life_sb = assert(sandbox.start { app_id = LIFE_APP, app_public_key = helpers.key_text("app_public.pem"),
                                     seed = "spec/fixtures/sandbox_seed.json" })
    mini_sb = assert(sandbox.start { app_id = MINI_APP, app_public_key = helpers.read(dir .. "/keys/mini_public.pem") })
    helpers.write(dir .. "/keys/life_alipay.pem", life_sb.alipay_public_key)
    secrets = { helpers.key_text("app_private_pkcs8.pem"), helpers.read(dir .. "/keys/mini.pem") }
  end)

  teardown(function()
    if life_sb then life_sb:stop() end
    if mini_sb then mini_sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    env = { MINI_KEY = helpers.read(dir .. "/keys/mini.pem"), MINI_ALIPAY_KEY = mini_sb.alipay_public_key }
  end)

  -- The reference configuration: a Life Account with file keys (relative to
  -- the file in conf/) and a mini program with keys in the environment.
  local function base_config()
    return {
      store = "data/alipay.db",
      channels = {
        life = { kind = "alipaylife", app_id = LIFE_APP, private_key_file = "../keys/life.pem",
                 alipay_public_key_file = "../keys/life_alipay.pem", gateway = life_sb.gateway,
                 timeout_ms = 5000 },
        mini = { kind = "alipaymini", id_type = "open_id", app_id = MINI_APP, private_key_env = "MINI_KEY",
                 alipay_public_key_env = "MINI_ALIPAY_KEY", gateway = mini_sb.gateway },
      },
    }
  end

  local function write_json(value, name)
    local path = dir .. "/conf/" .. (name or "channels.json")
    helpers.write(path, cjson.encode(value))
    return path
  end

  local function check_set(set)
    assert.are.equal(dir .. "/conf/data/alipay.db", set.store_path)
    local codes = {}
    for i, c in ipairs(set:list()) do codes[i] = c.code end
    assert.are.same({ "life", "mini" }, codes)
    assert.are.same({ life = { kind = "alipaylife", id_type = "user_id" },
                      mini = { kind = "alipaymini", id_type = "open_id" } }, set:channels_info())
    local life, mini = assert(set:get("life")), assert(set:get("mini"))
    assert.are.equal(LIFE_APP, life.app_id)
    assert.are.equal(MINI_APP, mini.app_id)
    assert.are_not.equal(life.client, mini.client)
    -- Each client reaches its own app's gateway with its own key: a wrong
    -- key would be answered isv.invalid-signature.
    local before_life, before_mini = arrivals_of(life_sb, FOLLOW_QUERY), arrivals_of(mini_sb, FOLLOW_QUERY)
    local res = assert(life.client:execute(FOLLOW_QUERY, { user_id = FOLLOWER }))
    assert.are.equal("T", res.is_follow)
    res = assert(mini.client:execute(FOLLOW_QUERY, { user_id = FOLLOWER }))
    assert.are.equal("F", res.is_follow) -- the mini sandbox has no followers
    assert.are.equal(before_life + 1, arrivals_of(life_sb, FOLLOW_QUERY))
    assert.are.equal(before_mini + 1, arrivals_of(mini_sb, FOLLOW_QUERY))
  end

  it("loads a JSON file: file keys relative to it, environment keys, two apps with their own clients", function()
    local set, err = channels.load(write_json(base_config()), { getenv = getenv })
    assert.is_nil(err)
    check_set(set)
    set:close()
  end)

  it("keeps a store URL as written: a URL names no file, so it is never joined to the file's directory", function()
    for _, u in ipairs { "postgresql://alipay@db.example:5432/alipay", "postgres:///alipay" } do
      local config = base_config()
      config.store = u
      local set = assert(channels.load(write_json(config), { getenv = getenv }))
      assert.are.equal(u, set.store_path)
      set:close()
    end
    -- and a path that only looks like one (no //) is a relative path
    local config = base_config()
    config.store = "pg:state.db"
    local set = assert(channels.load(write_json(config), { getenv = getenv }))
    assert.are.equal(dir .. "/conf/pg:state.db", set.store_path)
    set:close()
  end)

  it("loads a Lua data file the same way", function()
    local path = dir .. "/conf/channels.lua"
    helpers.write(path, "-- channels\nreturn " .. lua_literal(base_config()) .. "\n")
    local set, err = channels.load(path, { getenv = getenv })
    assert.is_nil(err)
    check_set(set)
    set:close()
  end)

  it("loads a table, relative paths resolved in opts.base_dir", function()
    local set, err = channels.load(base_config(), { getenv = getenv, base_dir = dir .. "/conf" })
    assert.is_nil(err)
    check_set(set)
  end)

  -- A child Lua in another working directory: the file named by a bare
  -- name, by a relative path and by ./; keys and store relative to the file.
  it("resolves keys and the store relative to a file given by a relative name, from any directory", function()
    local life = base_config().channels.life
    helpers.write(dir .. "/conf/life.json", cjson.encode { store = "data/alipay.db", channels = { life = life } })
    local root = helpers.cwd()
    helpers.write(dir .. "/relative.lua", ([[
      package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
      package.cpath = %q .. "/build/lua5.4/?.so;" .. package.cpath
      local set = assert(require("alipay.messaging.channels").load(arg[1]))
      local res = assert(assert(set:get("life")).client:execute(%q, { user_id = %q }))
      print(set.store_path, res.is_follow)
    ]]):format(root, root, root, FOLLOW_QUERY, FOLLOWER))
    for _, case in ipairs {
      { "conf", "life.json", "./data/alipay.db" },
      { "conf", "./life.json", "./data/alipay.db" },
      { ".", "conf/life.json", "conf/data/alipay.db" },
      { "keys", "../conf/life.json", "../conf/data/alipay.db" },
    } do
      local ok, out = helpers.run(("cd '%s/%s' && lua5.4 '%s/relative.lua' %s"):format(dir, case[1], dir, case[2]))
      assert.is_true(ok, case[2] .. ": " .. out)
      assert.are.equal(case[3] .. "\tT\n", out, case[2])
    end
  end)

  it("runs a Lua configuration as data: no globals, bounded, must return a table", function()
    local cases = {
      { "return { channels = { x = { app_id = os.getenv('HOME') } } }", "'os'" }, -- no globals: os is nil
      { "return 42", "must return a table" },
      { "while true do end", "runs too long" },
      { "return {", "expected" },
    }
    for i, case in ipairs(cases) do
      local path = dir .. "/conf/bad" .. i .. ".lua"
      helpers.write(path, case[1])
      local set, err, detail = channels.load(path)
      assert.is_nil(set)
      assert.are.equal("string", type(err))
      assert.are.equal("config", detail.kind)
      assert.is_truthy(detail.msg:find(case[2], 1, true), detail.msg)
    end
  end)

  it("reports a missing or malformed file", function()
    local _, err, detail = channels.load(dir .. "/conf/absent.json")
    assert.are.equal("config", detail.kind)
    assert.is_truthy(err:find("absent.json", 1, true), err)
    helpers.write(dir .. "/conf/broken.json", "{ not json")
    _, err, detail = channels.load(dir .. "/conf/broken.json")
    assert.is_truthy(detail.msg:find("not a JSON object", 1, true), detail.msg)
    assert.is_truthy(err:find("broken.json", 1, true), err)
    _, _, detail = channels.load({ channels = {} })
    assert.are.equal("channels", detail.field)
    _, _, detail = channels.load({ channels = base_config().channels, stores = "typo.db" })
    assert.are.equal("stores", detail.field)
    _, err, detail = channels.load({ channels = { ["bad code!"] = base_config().channels.life } })
    assert.is_truthy(detail.msg:find("bad code!", 1, true))
    assert.is_truthy(err:find("bad code!", 1, true))
  end)

  describe("every mistake names the channel and the field, never a key", function()
    -- {field expected in the error, what the message says, how to break the life channel}
    local cases = {
      { "kind", "alipaylife", function(c) c.kind = "wechat" end },
      { "kind", "alipaylife", function(c) c.kind = nil end },
      { "id_type", "open_id", function(c) c.id_type = "union_id" end },
      { "app_id", "numeric", function(c) c.app_id = "app-one" end },
      { "app_id", "missing", function(c) c.app_id = nil end },
      { "private_key_file", "missing", function(c) c.private_key_file = nil end },
      { "private_key_file", "No such file", function(c) c.private_key_file = "../keys/absent.pem" end },
      { "private_key_file", "not both", function(c) c.private_key_env = "MINI_KEY" end },
      { "private_key_env", "environment variable LIFE_KEY is not set",
        function(c) c.private_key_file, c.private_key_env = nil, "LIFE_KEY" end },
      { "private_key_env", "from environment variable GARBLED",
        function(c) c.private_key_file, c.private_key_env = nil, "GARBLED" end },
      { "private_key_env", "from environment variable MINI_ALIPAY_KEY", -- a public key where the private one goes
        function(c) c.private_key_file, c.private_key_env = nil, "MINI_ALIPAY_KEY" end },
      { "private_key", "never written in the configuration", function(c) c.private_key = "MIIEvQIBADANBg" end },
      { "alipay_public_key_file", "missing", function(c) c.alipay_public_key_file = nil end },
      { "alipay_public_key_file", "cannot read", function(c) c.alipay_public_key_file = "nope.pem" end },
      { "alipay_public_key_env", "environment variable NOPE is not set",
        function(c) c.alipay_public_key_file, c.alipay_public_key_env = nil, "NOPE" end },
      { "alipay_public_key_env", "from environment variable GARBLED",
        function(c) c.alipay_public_key_file, c.alipay_public_key_env = nil, "GARBLED" end },
      { "alipay_public_key", "never written", function(c) c.alipay_public_key = "MIIBIjANBgkq" end },
      { "alipay_cert_file", "certificate mode",
        function(c) c.alipay_public_key_file, c.app_cert_file = nil, "../keys/app.crt" end },
      { "alipay_public_key_file", "not both", function(c)
          c.app_cert_file, c.alipay_cert_file, c.alipay_root_cert_file = "a.crt", "b.crt", "c.crt" end },
      { "env", "not both", function(c) c.env = "sandbox" end },
      { "env", "production", function(c) c.gateway, c.env = nil, "staging" end },
      { "gateway", "URL", function(c) c.gateway = "127.0.0.1:8080" end },
      { "sign_type", "RSA2", function(c) c.sign_type = "SM2" end },
      { "timeout_ms", "whole number", function(c) c.timeout_ms = 0.5 end },
      { "timeout_ms", "number", function(c) c.timeout_ms = "5s" end },
      { "ca_file", "cannot read", function(c) c.ca_file = "missing-ca.pem" end },
      { "encrypt_key_env", "environment variable AES_KEY is not set", function(c) c.encrypt_key_env = "AES_KEY" end },
      { "encrypt_key_env", "from environment variable GARBLED", function(c) c.encrypt_key_env = "GARBLED" end },
      { "encrypt_key_file", "not both", function(c) c.encrypt_key_file, c.encrypt_key_env = "aes.txt", "AES" end },
      { "app_auth_token_env", "environment variable TOKEN is not set", function(c) c.app_auth_token_env = "TOKEN" end },
      { "app_auth_token", "app_auth_token_env", function(c) c.app_auth_token = "202405BBa6f4" end },
      { "private_key_path", "unknown field", function(c) c.private_key_path = "x" end },
      { "subscribed_states", "only a mini program", function(c) c.subscribed_states = { ["1"] = true } end },
      { "subscribed_states", "true or false",
        function(c) c.kind, c.subscribed_states = "alipaymini", { ["1"] = "yes" } end },
      { "subscribed_states", "must be a non-empty table", function(c) c.subscribed_states = "1" end },
    }
    for _, case in ipairs(cases) do
      local field, says, mutate = case[1], case[2], case[3]
      it(field .. ": " .. says, function()
        -- GARBLED holds something that looks like key material but is not a key.
        env.GARBLED = "-----BEGIN " .. "PRIVATE KEY-----\n" ..
                      "TUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFB\n"
          .. "-----END PRIVATE KEY-----\n"
        local config = base_config()
        mutate(config.channels.life)
        local set, text, err = channels.load(write_json(config), { getenv = getenv })
        assert.is_nil(set)
        assert.are.equal("string", type(text))
        assert.are.equal(tostring(err), text)
        assert.are.equal("config", err.kind)
        assert.are.equal("life", err.channel)
        assert.are.equal(field, err.field)
        assert.are.equal("channel life: " .. field .. ": ", err.msg:sub(1, #("channel life: " .. field .. ": ")))
        assert.is_truthy(err.msg:find(says, 1, true), err.msg)
        assert.is_truthy(text:find(err.msg, 1, true))
        assert.is_falsy(text:find("BEGIN", 1, true), text)
        for _, secret in ipairs { secrets[1], secrets[2], env.GARBLED, env.MINI_ALIPAY_KEY } do
          for _, line in ipairs(key_lines(secret)) do
            assert.is_falsy(text:find(line, 1, true), text)
          end
        end
      end)
    end
  end)

  it("carries a mini program's subscribed_states to its channel", function()
    local config = base_config()
    config.channels.mini.subscribed_states = { ["1"] = true, ["0"] = false }
    local set = assert(channels.load(write_json(config), { getenv = getenv }))
    assert.are.same({ ["1"] = true, ["0"] = false }, assert(set:get("mini")).subscribed_states)
    assert.is_nil(assert(set:get("life")).subscribed_states)
  end)

  it("answers an unknown channel code with the configured ones", function()
    local set = assert(channels.load(base_config(), { getenv = getenv, base_dir = dir .. "/conf" }))
    local channel, text, err = set:get("alipaylife999")
    assert.is_nil(channel)
    assert.is_truthy(text:find("alipaylife999", 1, true))
    assert.are.equal("config", err.kind)
    assert.is_truthy(err.msg:find("alipaylife999", 1, true))
    assert.is_truthy(err.msg:find("life, mini", 1, true))
  end)

  it("builds a certificate-mode channel from the three certificate files", function()
    local ok, out = helpers.run(("openssl req -x509 -new -key spec/fixtures/keys/app_private_pkcs1.pem -sha256"
      .. " -days 2 -set_serial 4242 -subj '/CN=%s' -out %s/keys/app.crt"):format(LIFE_APP, dir))
    assert(ok, out)
    local cert_sb = assert(sandbox.start { app_id = LIFE_APP, app_cert = helpers.read(dir .. "/keys/app.crt"),
                                           seed = "spec/fixtures/sandbox_seed.json" })
    local config = { channels = { life = { kind = "alipaylife", app_id = LIFE_APP,
      private_key_file = "keys/life.pem", app_cert_file = "keys/app.crt",
      alipay_cert_file = cert_sb.files.alipay_cert, alipay_root_cert_file = cert_sb.files.alipay_root_cert,
      gateway = cert_sb.gateway } } }
    local set, err = channels.load(config, { base_dir = dir })
    local res, cerr
    if set then res, cerr = set:get("life").client:execute(FOLLOW_QUERY, { user_id = FOLLOWER }) end
    cert_sb:stop()
    assert.is_nil(err)
    assert.is_nil(cerr)
    assert.are.equal("T", res.is_follow)
  end)

  describe("recipients", function()
    it("takes an explicit id type and nothing else", function()
      assert.are.same({ "user_id", "2088000000000001" }, { channels.recipient { user_id = "2088000000000001" } })
      assert.are.same({ "open_id", "2088abc" }, { channels.recipient { open_id = "2088abc" } })
      assert.are.same({ "open_id", "0Sx" }, { channels.recipient { id_type = "open_id", id = "0Sx" } })
      for _, bad in ipairs { "2088000000000001", {}, { user_id = "1", open_id = "2" }, { user_id = "" },
                             { id = "2088000000000001" }, { id_type = "union_id", id = "x" },
                             { id_type = "user_id", id = "1", user_id = "1" } } do
        local id_type, msg = channels.recipient(bad)
        assert.is_nil(id_type)
        assert.is_string(msg)
      end
    end)
  end)
end)
