-- `alipay channel add|list|remove` and `alipay doctor` (lua/alipay/workspace/channel_file.lua,
-- lua/alipay/workspace/doctor.lua, lua/alipay/cli/channel.lua, lua/alipay/cli/doctor.lua):
-- every command runs as a child process from a temporary working directory
-- with relative paths, against sandboxes on 127.0.0.1 (one in public-key
-- mode, one in certificate mode). The "different string" diagnosis runs in
-- Lua, with a transport that changes a signed parameter after signing.
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"
local channels = require "alipay.messaging.channels"
local doctor = require "alipay.workspace.doctor"

local APP_ID = "2021000122671080"
local SEED = "spec/fixtures/sandbox_seed.json"
local REPO = helpers.cwd()

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local ok, out = helpers.run(cmd)
  assert(ok, cmd .. ": " .. out)
end

local function read_json(path)
  return cjson.decode(helpers.read(path))
end

describe("alipay channel and alipay doctor", function()
  local sb, cert_sb, dir

  -- Runs bin/alipay in dir without $ALIPAY_CONFIG; -> status, stdout, stderr.
  local function run(args, env)
    local cmd = ("cd %s && env -u ALIPAY_CONFIG %s lua5.4 %s/bin/alipay %s >.stdout 2>.stderr; echo $?")
      :format(q(dir), env or "", q(REPO), args)
    local p = io.popen(cmd)
    local status = tonumber(p:read("*a"):match("(%d+)%s*$"))
    p:close()
    return status, helpers.read(dir .. "/.stdout"), helpers.read(dir .. "/.stderr")
  end

  local function run_json(args)
    local status, out, err = run(args .. " --json")
    local ok, value = pcall(cjson.decode, out)
    assert(ok, "not JSON: " .. out .. err)
    return status, value, err
  end

  local function checks_of(report)
    local by = {}
    for _, c in ipairs(report.checks) do by[(c.channel or "") .. ":" .. c.name] = c end
    return by
  end

  local CERT_ARGS = "--app-cert keys/app_cert.crt --alipay-cert keys/alipay_cert.crt "
    .. "--alipay-root-cert keys/alipay_root_cert.crt "
  local LIFE_ARGS = "--kind alipaylife --app-id " .. APP_ID .. " --private-key-file keys/app.pem "
    .. "--alipay-public-key-file keys/alipay_public.pem "

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"), seed = SEED })
    -- Certificate mode: an app certificate of the fixture key, made here.
    local certdir = helpers.tmpdir()
    helpers.write(certdir .. "/app.pem", helpers.key_text("app_private_pkcs1.pem"))
    sh(("openssl req -new -x509 -key %s/app.pem -out %s/app_cert.crt -subj /CN=lua-alipay-spec -days 2")
      :format(certdir, certdir))
    cert_sb = assert(sandbox.start { app_id = APP_ID, app_cert = helpers.read(certdir .. "/app_cert.crt"),
                                     seed = SEED })
    cert_sb.app_cert_file = certdir .. "/app_cert.crt"
  end)

  teardown(function()
    if sb then sb:stop() end
    if cert_sb then cert_sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    dir = helpers.tmpdir()
    sh("mkdir " .. q(dir .. "/keys") .. " " .. q(dir .. "/conf"))
    helpers.write(dir .. "/keys/app.pem", helpers.key_text("app_private_pkcs1.pem"))
    helpers.write(dir .. "/keys/app_public.pem", helpers.key_text("app_public.pem"))
    helpers.write(dir .. "/keys/alipay_public.pem", sb.alipay_public_key)
    helpers.write(dir .. "/keys/ca.pem", helpers.read(sb.ca_file))
    helpers.write(dir .. "/keys/app_cert.crt", helpers.read(cert_sb.app_cert_file))
    helpers.write(dir .. "/keys/alipay_cert.crt", cert_sb.alipay_cert)
    helpers.write(dir .. "/keys/alipay_root_cert.crt", cert_sb.alipay_root_cert)
  end)

  describe("channel add", function()
    it("adds a public-key channel to ./alipay.json, keeping the other channels and the store", function()
      local other = { kind = "alipaymini", app_id = "2021000122671081", private_key_env = "NOT_SET_HERE",
                      alipay_public_key_env = "NOT_SET_EITHER", id_type = "open_id" }
      helpers.write(dir .. "/alipay.json", cjson.encode { store = "state.db", channels = { other = other } })
      local status, out, err = run("channel add life " .. LIFE_ARGS .. "--gateway " .. sb.gateway)
      assert.equal(0, status, err)
      assert.matches("added channel life", out, 1, true)

      local data = read_json(dir .. "/alipay.json")
      assert.equal("state.db", data.store)
      assert.same(other, data.channels.other)
      assert.same({ kind = "alipaylife", app_id = APP_ID, private_key_file = "keys/app.pem",
                    alipay_public_key_file = "keys/alipay_public.pem", gateway = sb.gateway }, data.channels.life)
      -- Only the paths are stored, never the keys.
      assert.not_matches("BEGIN", helpers.read(dir .. "/alipay.json"), 1, true)
      -- The result loads (the other channel needs its variables).
      local set = assert(channels.load(dir .. "/alipay.json", { getenv = function(name)
        if name == "NOT_SET_HERE" then return helpers.key_text("app_private_pkcs8.pem") end
        if name == "NOT_SET_EITHER" then return sb.alipay_public_key end
      end }))
      assert.equal("alipaylife", assert(set:get("life")).kind)
      set:close()
    end)

    it("stores key paths relative to the channel file", function()
      local status, _, err = run("channel add life --config conf/alipay.json " .. LIFE_ARGS
        .. "--ca-file keys/ca.pem --gateway " .. sb.https_gateway)
      assert.equal(0, status, err)
      local spec = read_json(dir .. "/conf/alipay.json").channels.life
      assert.equal("../keys/app.pem", spec.private_key_file)
      assert.equal("../keys/alipay_public.pem", spec.alipay_public_key_file)
      assert.equal("../keys/ca.pem", spec.ca_file)
      -- Read from elsewhere (this process runs in the repository), it still loads.
      local set = assert(channels.load(dir .. "/conf/alipay.json"))
      set:close()
      -- $ALIPAY_CONFIG names the file too; an absolute path stays absolute.
      status, _, err = run("channel add abs --kind alipaylife --app-id " .. APP_ID .. " --private-key-file "
        .. q(dir .. "/keys/app.pem") .. " --alipay-public-key-file keys/alipay_public.pem --env sandbox",
        "ALIPAY_CONFIG=conf/alipay.json")
      assert.equal(0, status, err)
      spec = read_json(dir .. "/conf/alipay.json").channels.abs
      assert.equal(dir .. "/keys/app.pem", spec.private_key_file)
      assert.equal("../keys/alipay_public.pem", spec.alipay_public_key_file)
      assert.equal("sandbox", spec.env)
    end)

    it("adds a certificate-mode channel", function()
      local status, out, err = run_json("channel add mini456 --kind alipaymini --id-type open_id --app-id " .. APP_ID
        .. " --private-key-file keys/app.pem --app-cert keys/app_cert.crt --alipay-cert keys/alipay_cert.crt"
        .. " --alipay-root-cert keys/alipay_root_cert.crt --gateway " .. cert_sb.gateway)
      assert.equal(0, status, err)
      assert.equal("added", out.action)
      local spec = read_json(dir .. "/alipay.json").channels.mini456
      assert.same({ kind = "alipaymini", id_type = "open_id", app_id = APP_ID, private_key_file = "keys/app.pem",
        app_cert_file = "keys/app_cert.crt", alipay_cert_file = "keys/alipay_cert.crt",
        alipay_root_cert_file = "keys/alipay_root_cert.crt", gateway = cert_sb.gateway }, spec)
      local set = assert(channels.load(dir .. "/alipay.json"))
      assert.is_true(assert(set:get("mini456")).client.config.cert_mode)
      set:close()
    end)

    it("refuses an existing code without --update; with it only the given fields change", function()
      assert.equal(0, (run("channel add life " .. LIFE_ARGS .. "--gateway " .. sb.gateway)))
      local before = helpers.read(dir .. "/alipay.json")
      local status, _, err = run("channel add life " .. LIFE_ARGS .. "--env sandbox")
      assert.equal(1, status)
      assert.matches("channel life is already in ./alipay.json: give --update", err, 1, true)
      assert.equal(before, helpers.read(dir .. "/alipay.json"))

      local out
      status, out, err = run("channel add life --update --id-type open_id --env sandbox")
      assert.equal(0, status, err)
      assert.matches("updated channel life", out, 1, true)
      local spec = read_json(dir .. "/alipay.json").channels.life
      assert.equal("open_id", spec.id_type)
      assert.equal("sandbox", spec.env)
      assert.is_nil(spec.gateway)                   -- --env replaces --gateway
      assert.equal("keys/app.pem", spec.private_key_file)

      -- Switching to certificate mode drops the Alipay public key.
      status, _, err = run("channel add life --update --app-cert keys/app_cert.crt --alipay-cert keys/alipay_cert.crt"
        .. " --alipay-root-cert keys/alipay_root_cert.crt")
      assert.equal(0, status, err)
      spec = read_json(dir .. "/alipay.json").channels.life
      assert.is_nil(spec.alipay_public_key_file)
      assert.equal("keys/alipay_root_cert.crt", spec.alipay_root_cert_file)
    end)

    it("refuses bad keys, naming the option, and leaves the file alone", function()
      assert.equal(0, (run("channel add life " .. LIFE_ARGS .. "--gateway " .. sb.gateway)))
      local before = helpers.read(dir .. "/alipay.json")
      sh(("openssl genrsa -out %s/keys/small.pem 1024"):format(q(dir)))
      local cases = {
        { "--private-key-file keys/app_public.pem", "--private-key-file keys/app_public.pem: not a private key" },
        { "--private-key-file keys/small.pem", "--private-key-file keys/small.pem: a 1024-bit key: RSA2 needs 2048" },
        { "--private-key-file keys/nope.pem", "--private-key-file keys/nope.pem: No such file or directory" },
        { "--alipay-public-key-file keys/app.pem", "--alipay-public-key-file keys/app.pem: not a public key" },
        { "--alipay-public-key-file keys/small.pem", "--alipay-public-key-file keys/small.pem: not a public key" },
        { "--app-public-key-file keys/alipay_public.pem", "--app-public-key-file keys/alipay_public.pem is not the "
          .. "public half of --private-key-file" },
      }
      for _, case in ipairs(cases) do
        local status, out, err = run("channel add life --update " .. case[1])
        assert.equal(1, status, case[1])
        assert.equal("", out)
        assert.matches(case[2], err, 1, true)
        assert.not_matches("BEGIN", err, 1, true)
      end
      -- A new channel needs its key files, and is checked before anything is written.
      local status, _, err = run("channel add mini --kind alipaymini --app-id " .. APP_ID
        .. " --private-key-file keys/app_public.pem --alipay-public-key-file keys/alipay_public.pem --env sandbox")
      assert.equal(1, status)
      assert.matches("not a private key", err, 1, true)
      status, _, err = run("channel add mini --kind alipaymini --app-id " .. APP_ID)
      assert.equal(1, status)
      assert.matches("channel mini is new: it needs --private-key-file, --alipay-public-key-file", err, 1, true)
      assert.equal(before, helpers.read(dir .. "/alipay.json"))
      -- Conflicting options are usage errors.
      status = run("channel add mini --env sandbox --gateway " .. sb.gateway)
      assert.equal(2, status)
    end)
  end)

  describe("channel list and remove", function()
    it("lists the channels and removes one, keeping the rest", function()
      assert.equal(0, (run("channel add life " .. LIFE_ARGS .. "--gateway " .. sb.gateway)))
      assert.equal(0, (run("channel add mini --kind alipaymini --app-id " .. APP_ID
        .. " --private-key-file keys/app.pem "
        .. CERT_ARGS .. "--env sandbox --id-type open_id")))
      local status, out = run("channel list")
      assert.equal(0, status)
      assert.matches("life%s+alipaylife%s+" .. APP_ID .. "%s+user_id%s+public key", out)
      assert.matches("mini%s+alipaymini%s+" .. APP_ID .. "%s+open_id%s+certificate%s+sandbox", out)
      local value
      status, value = run_json("channel list")
      assert.equal(0, status)
      assert.equal(2, #value.channels)
      assert.equal("life", value.channels[1].code)

      local before = read_json(dir .. "/alipay.json").channels.mini
      status, out = run("channel remove life")
      assert.equal(0, status)
      assert.matches("removed channel life from ./alipay.json (1 left)", out, 1, true)
      local data = read_json(dir .. "/alipay.json")
      assert.is_nil(data.channels.life)
      assert.same(before, data.channels.mini)

      local _, err
      status, _, err = run("channel remove life")
      assert.equal(1, status)
      assert.matches("channel life is not in ./alipay.json", err, 1, true)
      status, _, err = run("channel list --config conf/none.json")
      assert.equal(1, status)
      assert.matches("conf/none.json: no such channel file", err, 1, true)
    end)
  end)

  describe("doctor", function()
    it("passes a correctly configured channel (http: a warning) and exits 0", function()
      assert.equal(0, (run("channel add life " .. LIFE_ARGS .. "--app-public-key-file keys/app_public.pem --gateway "
        .. sb.gateway)))
      assert.equal(0, (run("channel add mini --kind alipaymini " .. "--app-id " .. APP_ID .. " --private-key-file "
        .. "keys/app.pem --alipay-public-key-file keys/alipay_public.pem --app-public-key-file keys/app_public.pem "
        .. "--gateway " .. sb.https_gateway .. " --ca-file keys/ca.pem")))
      local status, report, err = run_json("doctor")
      assert.equal(0, status, err)
      assert.is_true(report.ok)
      for _, c in ipairs(report.checks) do
        assert.is_truthy(c.verdict == "pass" or c.verdict == "warn", c.name .. ": " .. tostring(c.detail))
      end
      local by = checks_of(report)
      for _, name in ipairs { "private_key_file", "alipay_public_key_file", "app_public_key_file", "key_pair",
                              "channel", "gateway", "signed_call" } do
        assert.equal("pass", by["mini:" .. name].verdict, name)
      end
      assert.matches("TLS verified", by["mini:gateway"].detail, 1, true)
      assert.equal("warn", by["life:gateway"].verdict)
      assert.matches("plain HTTP", by["life:gateway"].detail, 1, true)
      assert.matches("alipay.open.public.user.follow.query", by["life:signed_call"].detail, 1, true)
      assert.matches("subscribe.query", by["mini:signed_call"].detail, 1, true)

      local out
      status, out = run("doctor --channel life")
      assert.equal(0, status)
      assert.matches("ok   signed_call", out, 1, true)
      assert.matches("7 passed, 1 warning, 0 failed, 0 skipped", out, 1, true)
    end)

    it("passes a certificate-mode channel and shows its SNs", function()
      assert.equal(0, (run("channel add cert --kind alipaylife --app-id " .. APP_ID
        .. " --private-key-file keys/app.pem "
        .. CERT_ARGS .. "--gateway " .. cert_sb.https_gateway .. " --ca-file keys/ca.pem")))
      helpers.write(dir .. "/keys/ca.pem", helpers.read(cert_sb.ca_file))
      local status, report, err = run_json("doctor")
      assert.equal(0, status, err)
      local by = checks_of(report)
      for _, name in ipairs { "app_cert_file", "alipay_cert_file", "alipay_root_cert_file", "key_pair", "cert_sns",
                              "gateway", "signed_call" } do
        assert.equal("pass", by["cert:" .. name].verdict, name .. ": " .. tostring(by["cert:" .. name].detail))
      end
      local core = require "alipay.core"
      assert.matches("app_cert_sn " .. core.cert_sn(helpers.read(cert_sb.app_cert_file)), by["cert:cert_sns"].detail,
        1, true)
      assert.matches("alipay_root_cert_sn " .. core.root_cert_sn(cert_sb.alipay_root_cert), by["cert:cert_sns"].detail,
        1, true)
    end)

    it("diagnoses a key mismatch: the gateway verified the same string", function()
      -- A key pair of its own: consistent locally, but the sandbox holds app_public.pem.
      sh(("openssl genrsa -out %s/keys/other.pem 2048 && openssl rsa -in %s/keys/other.pem -pubout -out "
        .. "%s/keys/other_public.pem"):format(q(dir), q(dir), q(dir)))
      assert.equal(0, (run("channel add life --kind alipaylife --app-id " .. APP_ID .. " --private-key-file "
        .. "keys/other.pem --app-public-key-file keys/other_public.pem --alipay-public-key-file keys/alipay_public.pem"
        .. " --gateway " .. sb.gateway)))
      local status, report = run_json("doctor")
      assert.equal(1, status)
      assert.is_false(report.ok)
      local by = checks_of(report)
      assert.equal("pass", by["life:key_pair"].verdict)
      local call = by["life:signed_call"]
      assert.equal("fail", call.verdict)
      assert.matches("isv.invalid-signature: same string", call.detail, 1, true)
      assert.matches("key mismatch", call.detail, 1, true)
      assert.matches("upload this private key's public key", call.fix, 1, true)
      local out
      status, out = run("doctor")
      assert.equal(1, status)
      assert.matches("FAIL signed_call", out, 1, true)
    end)

    it("diagnoses a different string, naming the parameter changed after signing", function()
      assert.equal(0, (run("channel add life " .. LIFE_ARGS .. "--gateway " .. sb.gateway)))
      -- A transport that rewrites the signed biz_content on the way, as a
      -- proxy or a wrong encoding would; the gateway's answer is its own.
      local curl = assert(require("alipay.transport.curl").new {})
      local changed = 0
      local transport = { request = function(_, req)
        if req.body and req.body:find("biz_content=", 1, true) then
          local copy = {}
          for k, v in pairs(req) do copy[k] = v end
          copy.body = req.body:gsub("2088", "2099", 1)
          changed = changed + 1
          req = copy
        end
        return curl:request(req)
      end, close = function() end }
      local report = doctor.run { config = dir .. "/alipay.json", transport = transport }
      curl:close()
      assert.equal(1, changed)
      assert.is_false(report.ok)
      local call = checks_of(report)["life:signed_call"]
      assert.equal("fail", call.verdict)
      assert.matches("isv.invalid-signature: different string", call.detail, 1, true)
      assert.matches("first difference at parameter biz_content (its value differs)", call.detail, 1, true)
      assert.matches("^biz_content changed between signing and the gateway", call.fix)
    end)

    it("names a missing parameter or one the gateway has that we did not sign", function()
      local params = { app_id = "1", method = "m", sign = "x", timestamp = "t", version = "1.0" }
      assert.same({ "timestamp", "the gateway's string does not have it" },
        { doctor.first_difference(params, "app_id=1&method=m&version=1.0") })
      assert.same({ "charset", "the gateway has a parameter we did not sign" },
        { doctor.first_difference(params, "app_id=1&charset=utf-8&method=m&timestamp=t&version=1.0") })
      assert.same({ "zz", "the gateway has a parameter we did not sign" },
        { doctor.first_difference(params, "app_id=1&method=m&timestamp=t&version=1.0&zz=1") })
      assert.is_nil(doctor.first_difference(params, "app_id=1&method=m&timestamp=t&version=1.0"))
      assert.equal("same", doctor.compare_signed(params, "验签出错，网关生成的验签字符串为：app_id=1&amp;method=m"
        .. "&amp;timestamp=t&amp;version=1.0"))
      assert.equal("unknown", doctor.compare_signed(params, "验签出错"))
    end)

    it("fails on a missing key file, with the fix, and skips what depends on it", function()
      assert.equal(0, (run("channel add life " .. LIFE_ARGS .. "--gateway " .. sb.gateway)))
      os.remove(dir .. "/keys/app.pem")
      local status, report = run_json("doctor --channel life")
      assert.equal(1, status)
      local by = checks_of(report)
      assert.equal("fail", by["life:private_key_file"].verdict)
      assert.matches("keys/app.pem: No such file or directory", by["life:private_key_file"].detail, 1, true)
      assert.matches("alipay channel add life --update --private-key-file FILE", by["life:private_key_file"].fix,
        1, true)
      assert.equal("pass", by["life:alipay_public_key_file"].verdict)
      assert.equal("skip", by["life:channel"].verdict)
      assert.equal("skip", by["life:signed_call"].verdict)
    end)

    it("fails on an unreachable gateway (a closed port) and an untrusted TLS certificate", function()
      assert.equal(0, (run("channel add closed " .. LIFE_ARGS .. "--gateway http://127.0.0.1:1/gateway.do")))
      assert.equal(0, (run("channel add notrust " .. LIFE_ARGS .. "--gateway " .. sb.https_gateway)))
      local status, report = run_json("doctor")
      assert.equal(1, status)
      local by = checks_of(report)
      assert.equal("fail", by["closed:gateway"].verdict)
      assert.matches("http://127.0.0.1:1/gateway.do is not reachable", by["closed:gateway"].detail, 1, true)
      assert.matches("nothing answers at that host and port", by["closed:gateway"].fix, 1, true)
      assert.equal("skip", by["closed:signed_call"].verdict)
      assert.equal("fail", by["notrust:gateway"].verdict)
      assert.matches("--ca-file", by["notrust:gateway"].fix, 1, true)
      local _, out = run("doctor --channel nope")
      assert.matches("channel nope is not in ./alipay.json (configured: closed, notrust)", out, 1, true)
    end)

    it("reports a channel file that does not parse", function()
      helpers.write(dir .. "/alipay.json", "{ not json")
      local status, report = run_json("doctor")
      assert.equal(1, status)
      assert.equal("config_file", report.checks[1].name)
      assert.equal("fail", report.checks[1].verdict)
      status, report = run_json("doctor --config conf/missing.json")
      assert.equal(1, status)
      assert.matches("alipay channel add", report.checks[1].fix, 1, true)
    end)
  end)
end)
