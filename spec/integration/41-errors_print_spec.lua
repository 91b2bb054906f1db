-- Every error prints its message wherever Lua and OpenResty users print
-- errors (docs/errors.md): the second value is a one-line string, the typed
-- detail the third. Inside real nginx: an assert that fails in
-- init_worker_by_lua and in a content handler logs the message (not
-- "unknown error" / "unknown reason"), ngx.say/ngx.print/ngx.log take the
-- error as it is. In plain Lua: tostring, "..", assert, error.
local helpers = require "helpers"
local alipay = require "alipay"
local notify = require "alipay.inbound.notify"
local runner = require "alipay.sandbox.nginx"

local ROOT = helpers.cwd()
local BAD_APP_ID = "app_id: must be the app's numeric id"
local LINE = "config error (" .. BAD_APP_ID
local KEY = helpers.key_text("app_private_pkcs1.pem")
local ALIPAY_KEY = helpers.key_text("alipay_public_sandbox.pem")

local function good_config(extra)
  local cfg = { app_id = "2021000122671080", private_key = KEY, alipay_public_key = ALIPAY_KEY,
    gateway = "http://127.0.0.1:1/gateway.do", connect_timeout_ms = 500, timeout_ms = 1000 }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local function assert_convention(res, err, detail, kind)
  assert.is_nil(res)
  assert.is_string(err)
  assert.is_nil(err:find("\n", 1, true), "not one line: " .. err)
  assert.is_table(detail)
  assert.are.equal(kind, detail.kind)
  assert.are.equal(tostring(detail), err)
  assert.are.equal("x: " .. err, "x: " .. detail)
  assert.are.equal(err .. " :y", detail .. " :y")
end

describe("errors print in plain Lua", function()
  it("alipay.new: a config failure is a string plus a detail", function()
    local res, err, detail = alipay.new { app_id = "x" }
    assert_convention(res, err, detail, "config")
    assert.matches(BAD_APP_ID, err, 1, true)
    assert.are.equal("app_id", detail.field)
    -- Lua's own assert (busted's differs) in a child: the message itself
    local ok, out = helpers.run("lua5.4 -e \"package.path='lua/?.lua;lua/?/init.lua;'..package.path "
      .. "package.cpath='build/lua5.4/?.so;'..package.cpath assert(require('alipay').new{app_id='x'})\"")
    assert.is_false(ok)
    assert.matches("lua5.4: [^\n]*" .. LINE:gsub("%p", "%%%0"), out)
  end)

  it("client:execute: a transport failure is a string plus a detail", function()
    local client = assert(alipay.new(good_config()))
    local res, err, detail = client:execute("alipay.open.public.user.follow.query", { user_id = "2088" })
    assert_convention(res, err, detail, "transport")
    assert.are.equal("connect", detail.reason)
    assert.is_false(detail.unknown)
    client:close()
  end)

  it("notify.verify: a refusal is a string plus a detail", function()
    local client = assert(alipay.new(good_config()))
    local res, err, detail = notify.verify(client, "a=1")
    assert_convention(res, err, detail, "notify")
    assert.are.equal("unsigned", detail.reason)
  end)

  it("a message is bounded and one line, however long the input it quotes", function()
    local errors = require "alipay.errors"
    local _, err = errors.fail("input", ("界"):rep(3000) .. "\nsecond line")
    assert.is_nil(err:find("\n", 1, true))
    assert.is_true(#err < 1200, #err)
    assert.is_truthy(utf8.len(err), "cut inside a UTF-8 character")
  end)
end)

describe("a client after close, and misuse", function()
  it("<close> closes the client at the end of the scope; a closed client refuses calls", function()
    local kept
    do
      local client <close> = assert(alipay.new(good_config()))
      kept = client
    end
    assert.is_true(kept.closed)
    local ok, raised = pcall(kept.execute, kept, "alipay.open.public.user.follow.query", {})
    assert.is_false(ok)
    assert.matches("has been closed", raised, 1, true)
    ok, raised = pcall(kept.v3, kept, "GET", "/v3/alipay/x")
    assert.is_false(ok)
    assert.matches("has been closed", raised, 1, true)
    kept:close() -- twice is harmless
  end)

  it("alipay:new{} (a colon by mistake) says so", function()
    local ok, raised = pcall(function() return alipay:new(good_config()) end)
    assert.is_false(ok)
    assert.matches("with a dot", raised, 1, true)
  end)
end)

-- ---- inside nginx ----

local APP = [==[
local alipay = require "alipay"
local notify = require "alipay.inbound.notify"
local M = {}

function M.init_worker()
  -- The README's pattern, failing: the error log must show why.
  assert(alipay.new { app_id = "not-a-number" })
end

local function good()
  return assert(alipay.new { app_id = "2021000122671080", private_key = M.key, alipay_public_key = M.alipay_key,
    gateway = "http://127.0.0.1:1/gateway.do", connect_timeout_ms = 500, timeout_ms = 1000 })
end

function M.say()
  local _, err = alipay.new { app_id = "not-a-number" }
  ngx.say("failed: ", err)
  ngx.print("print: ", err, "\n")
  ngx.log(ngx.ERR, "logged: ", err)
  ngx.say("concat: " .. err)
end

function M.assert()
  assert(alipay.new { app_id = "not-a-number" })
end

function M.call()
  local client = good()
  local _, err, detail = client:execute("alipay.open.public.user.follow.query", { user_id = "2088" })
  ngx.say("call failed: ", err, " kind=", detail.kind, " reason=", detail.reason)
  local _, nerr, ndetail = notify.verify(client, "a=1")
  ngx.say("notify refused: ", nerr, " reason=", ndetail.reason)
  client:close()
end

return M
]==]

local function nginx_string(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

describe("errors print inside nginx", function()
  local srv, base
  local http = assert(require("alipay.core").http { timeout_ms = 20000 })

  setup(function()
    local err
    srv, err = runner.start {
      lua = true,
      conf = function(port, _, prefix)
        helpers.write(prefix .. "/t41_app.lua", APP)
        helpers.write(prefix .. "/t41_keys.lua", ("return { key = %q, alipay_key = %q }"):format(KEY, ALIPAY_KEY))
        local lua_path = table.concat({ ROOT .. "/lua/?.lua", ROOT .. "/lua/?/init.lua", prefix .. "/?.lua" }, ";")
          .. ";;"
        local app = "require('t41_app')"
        return table.concat({
          "  lua_package_path " .. nginx_string(lua_path) .. ";",
          "  lua_package_cpath " .. nginx_string(helpers.nginx_lua_cpath()) .. ";",
          "  lua_socket_log_errors off;",
          "  init_by_lua_block { local k = require('t41_keys') local m = " .. app
            .. " m.key, m.alipay_key = k.key, k.alipay_key }",
          "  init_worker_by_lua_block { " .. app .. ".init_worker() }",
          "  server {",
          ("    listen 127.0.0.1:%d;"):format(port),
          "    location = /say { content_by_lua_block { " .. app .. ".say() } }",
          "    location = /assert { content_by_lua_block { " .. app .. ".assert() } }",
          "    location = /call { content_by_lua_block { " .. app .. ".call() } }",
          "  }",
        }, "\n")
      end,
    }
    assert(srv, err)
    base = "http://127.0.0.1:" .. srv.port
  end)

  teardown(function()
    if srv then srv:stop() end
    helpers.cleanup()
  end)

  local function get(path)
    local res = assert(http:request { method = "GET", url = base .. path })
    return res
  end

  it("a failed assert in init_worker_by_lua logs the message", function()
    get("/say") -- the worker has run init_worker by the time it answers
    local log = srv:error_log()
    assert.matches("init_worker_by_lua", log, 1, true)
    assert.matches(BAD_APP_ID, log, 1, true)
    assert.is_nil(log:find("unknown error", 1, true), log)
  end)

  it("ngx.say, ngx.print, ngx.log and .. take the error as it is", function()
    local res = get("/say")
    assert.are.equal(200, res.status)
    assert.matches("failed: " .. LINE, res.body, 1, true)
    assert.matches("print: " .. LINE, res.body, 1, true)
    assert.matches("concat: " .. LINE, res.body, 1, true)
    assert.matches("logged: " .. LINE, srv:error_log(), 1, true)
  end)

  it("a failed assert in a content handler logs the message", function()
    local res = get("/assert")
    assert.are.equal(500, res.status)
    local log = srv:error_log()
    assert.matches("runtime error: .*" .. BAD_APP_ID:gsub("%p", "%%%0"), log)
    assert.is_nil(log:find("unknown reason", 1, true), log)
  end)

  it("a failed call and a refused notification print with their detail beside them", function()
    local res = get("/call")
    assert.are.equal(200, res.status, res.body)
    assert.matches("call failed: [^\n]*transport error[^\n]* kind=transport reason=connect", res.body)
    assert.matches("notify refused: [^\n]*no sign[^\n]* reason=unsigned", res.body)
  end)
end)



