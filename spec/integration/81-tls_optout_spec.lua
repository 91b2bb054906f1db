-- TLS verification cannot be switched off silently (SECURITY.md). The only
-- way off is the loudly named client option insecure_skip_tls_verify = true
-- (core.http's insecure_skip_verify = true; cosockets sslhandshake(..., false)):
--   * without it, a gateway whose certificate comes from an unknown CA fails
--     with a transport error of reason "tls";
--   * with it, the same call succeeds and a warning is emitted through
--     alipay.config.warn (stderr by default) every time a client is created;
--   * it is refused unless it is the boolean true, refused with the
--     production gateway, and no default anywhere turns it on.
local helpers = require "helpers"
local alipay = require "alipay"
local config = require "alipay.config"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local FOLLOW = "alipay.open.public.user.follow.query"
local SUBSCRIBE_PATH = "/v3/alipay/open/app/messagetemplate/subscribe/query"
local OPTION = "insecure_skip_tls_verify"
local UNKNOWN_CA = "spec/fixtures/keys/alipay_root_cert.crt" -- did not sign the sandbox's certificate

describe("the TLS verification opt-out", function()
  local sb
  local warnings
  local real_warn

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = "spec/fixtures/sandbox_seed.json" })
    real_warn = config.warn
  end)

  teardown(function()
    config.warn = real_warn
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    warnings = {}
    config.warn = function(msg) warnings[#warnings + 1] = msg end
  end)

  after_each(function() config.warn = real_warn end)

  local function cfg(extra)
    local c = { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs8.pem"),
                alipay_public_key = sb.alipay_public_key, gateway = sb.https_gateway, timeout_ms = 5000,
                transport = "curl" }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  it("exists as a documented hook (alipay.config.warn)", function()
    assert.is_function(real_warn, "alipay.config.warn is missing: the TLS opt-out patch is not applied")
  end)

  it("without the option, an unknown CA fails with reason tls (v2 and v3), and nothing is warned", function()
    for _, extra in ipairs { {}, { ca_file = UNKNOWN_CA }, { [OPTION] = false, ca_file = UNKNOWN_CA } } do
      local c = assert(alipay.new(cfg(extra)))
      local res, _, err = c:execute(FOLLOW, { user_id = "2088000000000001" })
      assert.is_nil(res)
      assert.are.equal("transport", err.kind)
      assert.are.equal("tls", err.reason, tostring(err))
      res, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = "2088000000000001", template_id_list = { "x" } })
      assert.is_nil(res)
      assert.are.equal("tls", err.reason, tostring(err))
      assert.is_nil(c.config[OPTION])
      c:close()
    end
    assert.are.same({}, warnings)
  end)

  it("with the option, the call succeeds and a warning is emitted at every client creation", function()
    for i = 1, 2 do
      local c = assert(alipay.new(cfg { [OPTION] = true, ca_file = UNKNOWN_CA }))
      assert.are.equal(i, #warnings)
      assert.matches("insecure_skip_tls_verify", warnings[i], 1, true)
      assert.matches("NOT verified", warnings[i], 1, true)
      assert.matches(APP_ID, warnings[i], 1, true)
      local res, _, err = c:execute(FOLLOW, { user_id = "2088000000000001" })
      assert.is_nil(err)
      assert.are.equal("10000", res.code)
      res, _, err = c:v3("POST", SUBSCRIBE_PATH, { user_id = "2088000000000001", template_id_list = { "x" } })
      assert.is_nil(err)
      assert.is_table(res)
      c:close()
    end
    -- the response signature is still checked: only the channel is unverified
    local c = assert(alipay.new(cfg { [OPTION] = true, alipay_public_key = helpers.key_text("app_public.pem") }))
    local _, _, err = c:execute(FOLLOW, { user_id = "2088000000000001" })
    assert.are.equal("signature", err.kind)
    c:close()
  end)

  it("warns on stderr by default (a child process)", function()
    local script = helpers.tmpdir() .. "/insecure.lua"
    helpers.write(script, ([[
      package.cpath = 'build/lua5.4/?.so;' .. package.cpath
      package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path
      local f = io.open('spec/fixtures/keys/app_private_pkcs8.pem'); local key = f:read('a'); f:close()
      local c = assert(require('alipay').new{ app_id = '%s', private_key = key, alipay_public_key = %q,
        gateway = '%s', insecure_skip_tls_verify = true, transport = 'curl' })
      local res, _, err = c:execute('%s', { user_id = '2088000000000001' })
      io.stdout:write('result=', res and res.code or tostring(err), '\n')
    ]]):format(APP_ID, sb.alipay_public_key, sb.https_gateway, FOLLOW))
    local ok, out = helpers.run("lua5.4 " .. script .. " 2>" .. script .. ".err")
    assert(ok, out)
    assert.matches("result=10000", out, 1, true)
    local err_text = helpers.read(script .. ".err")
    assert.matches("WARNING: insecure_skip_tls_verify", err_text, 1, true)
  end)

  it("is refused unless it is the boolean true, and refused with the production gateway", function()
    for _, v in ipairs { "true", 1, "yes", {} } do
      local c, _, err = alipay.new(cfg { [OPTION] = v })
      assert.is_nil(c)
      assert.are.equal("config", err.kind)
      assert.are.equal(OPTION, err.field)
    end
    for _, extra in ipairs { { gateway = false, env = "production" }, { gateway = false },
                             { gateway = "https://openapi.alipay.com/gateway.do" } } do
      local c_cfg = cfg(extra)
      c_cfg[OPTION] = true
      for k, v in pairs(c_cfg) do if v == false then c_cfg[k] = nil end end
      local c, _, err = alipay.new(c_cfg)
      assert.is_nil(c)
      assert.are.equal(OPTION, err.field)
      assert.matches("production", err.msg, 1, true)
    end
    assert.are.same({}, warnings)
  end)

  it("core.http refuses anything but a boolean, and verifies by default", function()
    local core = alipay.core
    assert.has_error(function() core.http { insecure_skip_verify = "false" } end)
    assert.has_error(function() core.http { insecure_skip_verify = 0 } end)
    local engine = assert(core.http { ca_file = UNKNOWN_CA })
    local res, _, reason = engine:request { method = "GET", url = sb.https_base_url .. "/", timeout_ms = 5000 }
    assert.is_nil(res)
    assert.are.equal("tls", reason)
    engine:close()
    engine = assert(core.http { ca_file = UNKNOWN_CA, insecure_skip_verify = true })
    res = engine:request { method = "GET", url = sb.https_base_url .. "/", timeout_ms = 5000 }
    assert.is_table(res)
    engine:close()
  end)

  it("is a default nowhere: no source file turns it on, and no default table holds it", function()
    local p = io.popen("grep -rnE '(insecure_skip_tls_verify|insecure_skip_verify)[[:space:]]*=[[:space:]]*(true|1)'"
                       .. " lua src bin examples 2>/dev/null")
    local hits = {}
    for line in p:lines() do
      -- comments do not count, nor the one conditional assignment of alipay.config
      local code = line:gsub("^[^:]*:%d+:", ""):gsub("/%*.-%*/", ""):gsub("%-%-.*$", "")
      local on = code:find("insecure_skip[%w_]*%s*=%s*true") or code:find("insecure_skip[%w_]*%s*=%s*1")
      if on and not code:match("^%s*out%.insecure_skip_tls_verify = true%s*$") then
        hits[#hits + 1] = line
      end
    end
    p:close()
    assert.are.same({}, hits, "a source file turns TLS verification off")
    local p2 = io.popen("grep -rnE 'SSL_VERIFY(PEER|HOST), *0' src 2>/dev/null")
    local hits2 = p2:read("a")
    p2:close()
    assert.are.equal("", hits2, "src turns verification off unconditionally:\n" .. hits2)
    local c = assert(alipay.new(cfg()))
    assert.is_nil(c.config[OPTION])
    c:close()
    assert.are.same({}, warnings)
  end)
end)
