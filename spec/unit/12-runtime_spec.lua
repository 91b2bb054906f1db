-- alipay.runtime: the one module that knows whether the code runs inside
-- nginx. Here nginx is simulated by a stand-in `ngx` table, given to
-- runtime.detect or put in _G (where the real one lives), which the
-- runtime reads at every call; the real nginx is in spec/integration/40-42.
local helpers = require "helpers"
local core = require "alipay.core"
local runtime = require "alipay.runtime"

-- A stand-in for lua-nginx-module's ngx: the given phase (or a function
-- raising, like a stub without get_phase), a clock at `now` seconds, and a
-- record of every sleep and log line.
local function fake_ngx(phase, now)
  local ngx = {
    ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8,
    slept = {}, logged = {}, updates = 0, t = now or 1700000000.25,
    socket = { tcp = function() error("no network in unit specs") end },
  }
  if type(phase) == "function" then
    ngx.get_phase = phase
  else
    ngx.get_phase = function() return phase end
  end
  function ngx.update_time() ngx.updates = ngx.updates + 1 end
  function ngx.now() return ngx.t end
  function ngx.sleep(s) ngx.slept[#ngx.slept + 1] = s end
  function ngx.log(level, msg) ngx.logged[#ngx.logged + 1] = { level, msg } end
  return ngx
end

-- Runs fn with _G.ngx set to `ngx`, and puts the previous value back even
-- when fn fails (a stray ngx would change every later spec).
local function inside(ngx, fn)
  local saved = rawget(_G, "ngx")
  rawset(_G, "ngx", ngx)
  local ok, err = pcall(fn)
  rawset(_G, "ngx", saved)
  if not ok then error(err, 0) end
end

describe("alipay.runtime", function()
  it("is plain Lua when there is no ngx", function()
    assert.is_nil(rawget(_G, "ngx"))
    assert.are.same({ nginx = false, cosockets = false, clock = "core", sleep = "core", log = "stderr" },
      runtime.detect())
    assert.is_nil(runtime.ngx())
    assert.is_false(runtime.in_nginx())
    assert.is_nil(runtime.phase())
    assert.is_false(runtime.cosockets())
  end)

  it("reads the core's clock and sleeps with the core outside nginx", function()
    local before = core.now_ms()
    local now = runtime.now_ms()
    assert.is_true(now >= before and now - before < 1000)
    local t0 = core.monotonic_ms()
    runtime.sleep_ms(30)
    assert.is_true(core.monotonic_ms() - t0 >= 29)
    assert.has_error(function() runtime.sleep_ms(-1) end)
  end)

  it("allows cosockets and ngx.sleep in exactly the README's phases", function()
    local yes = { "rewrite", "access", "content", "timer", "ssl_cert", "ssl_session_fetch", "ssl_client_hello" }
    local no = { "init", "init_worker", "set", "header_filter", "body_filter", "log", "balancer", "exit_worker" }
    for _, phase in ipairs(yes) do
      local d = runtime.detect { ngx = fake_ngx(phase) }
      assert.are.same({ nginx = true, phase = phase, cosockets = true, clock = "ngx", sleep = "ngx", log = "ngx" },
        d, phase)
    end
    for _, phase in ipairs(no) do
      local d = runtime.detect { ngx = fake_ngx(phase) }
      assert.are.same({ nginx = true, phase = phase, cosockets = false, clock = "ngx", sleep = "core", log = "ngx" },
        d, phase)
    end
    -- The README's table and the runtime's agree, phase for phase.
    local readme = helpers.read("README.md")
    local row = readme:match("\n|([^\n]*)| cosockets | yes, non%-blocking |")
    assert.truthy(row, "the README's phase table")
    local listed = {}
    for phase in row:gmatch("`([%w_]+)`") do listed[phase] = true end
    listed["ngx"] = nil
    listed["timer"] = true -- the README says "ngx.timer.at callbacks"
    assert.are.same(listed, runtime.COSOCKET_PHASES)
  end)

  it("treats a get_phase that raises, or none, as no cosockets", function()
    local d = runtime.detect { ngx = fake_ngx(function() error("not in a request") end) }
    assert.are.same({ true, nil, false, "core" }, { d.nginx, d.phase, d.cosockets, d.sleep })
    local bare = fake_ngx("content")
    bare.get_phase = nil
    assert.is_false(runtime.detect({ ngx = bare }).cosockets)
    assert.is_false(runtime.detect({ ngx = false }).nginx)
    assert.has_error(function() runtime.detect("content") end,
      "runtime.detect: env must be a table, e.g. { ngx = fake_ngx }")
  end)

  it("reads ngx at every call, not when it was loaded", function()
    local ngx = fake_ngx("content", 1700000000.5)
    inside(ngx, function()
      assert.are.equal(ngx, runtime.ngx())
      assert.is_true(runtime.in_nginx())
      assert.are.equal("content", runtime.phase())
      assert.is_true(runtime.cosockets())
      -- the clock: ngx.now, refreshed first (a loop that never yields would
      -- otherwise see the time stand still)
      assert.are.equal(1700000000500, runtime.now_ms())
      assert.are.equal(1, ngx.updates)
      -- a yielding sleep, in seconds
      runtime.sleep_ms(250)
      assert.are.same({ 0.25 }, ngx.slept)
    end)
    assert.is_nil(runtime.ngx())
    assert.is_false(runtime.cosockets())
  end)

  it("sleeps with the core in a phase where ngx.sleep would be refused", function()
    local ngx = fake_ngx("init_worker")
    inside(ngx, function()
      local t0 = core.monotonic_ms()
      runtime.sleep_ms(20)
      assert.is_true(core.monotonic_ms() - t0 >= 19)
      assert.are.same({}, ngx.slept)
      assert.is_false(runtime.cosockets())
    end)
  end)

  it("logs into nginx's error log at nginx's levels", function()
    local ngx = fake_ngx("content")
    inside(ngx, function()
      runtime.log("error", "e")
      runtime.log("warn", "w", true)
      runtime.log("notice", "n")
      runtime.log("info", "i")
      runtime.log("debug", "d")
      runtime.log("shout", "s")
    end)
    assert.are.same({ { 4, "e" }, { 5, "w" }, { 6, "n" }, { 7, "i" }, { 8, "d" }, { 6, "s" } }, ngx.logged)
  end)

  it("logs to stderr outside nginx, [level] first unless the message names its level", function()
    local ok, out = helpers.run([[lua5.4 -e 'package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = "build/lua5.4/?.so;" .. package.cpath
      local runtime = require "alipay.runtime"
      runtime.log("warn", "first")
      runtime.log("warn", "alipay: WARNING: second", true)' 2>&1 >/dev/null]])
    assert(ok, out)
    assert.are.equal("[warn] first\nalipay: WARNING: second\n", out)
  end)

  it("gives the caller's log callback, else a sink into the given or the running nginx", function()
    local function mine() end
    assert.are.equal(mine, runtime.logger(mine))
    assert.are.equal(runtime.log, runtime.logger(nil))
    assert.are.equal(runtime.log, runtime.logger(false))
    local handler_ngx = fake_ngx("content")
    runtime.logger(nil, handler_ngx)("warn", "to the handler's ngx")
    assert.are.same({ { 5, "to the handler's ngx" } }, handler_ngx.logged)
  end)

  describe("is what the rest of the library asks", function()
    it("for the campaign clock", function()
      local clock = require "alipay.campaign.clock"
      assert.are.equal("core", clock.source)
      inside(fake_ngx("timer", 1700000001), function()
        assert.are.equal("ngx", clock.source)
        assert.are.equal(1700000001000, clock.now_ms())
      end)
      assert.are.equal("core", clock.source)
    end)

    it("for the auto transport's choice", function()
      local auto = require "alipay.transport.auto"
      assert.are.equal("curl", auto.wanted())
      inside(fake_ngx("content"), function() assert.are.equal("ngx", auto.wanted()) end)
      inside(fake_ngx("init_worker"), function() assert.are.equal("curl", auto.wanted()) end)
      inside(fake_ngx("content"), function()
        local t, _, err = auto.new { proxy = "http://proxy.example:3128" }
        assert.is_nil(t)
        assert.are.same({ "config", "proxy" }, { err.kind, err.field })
      end)
    end)

    it("for the ngx transport's phase check", function()
      local ngx_transport = require "alipay.transport.ngx"
      assert.is_nil((ngx_transport.new {}))
      inside(fake_ngx("log"), function()
        local t = assert(ngx_transport.new { timeout_ms = 1000 })
        local res, msg, err = t:request { url = "http://127.0.0.1:1/" }
        assert.is_nil(res)
        assert.are.same({ "transport", "other", false }, { err.kind, err.reason, err.retryable })
        assert.matches("cosockets are not available in nginx's log phase", msg, 1, true)
      end)
    end)

    it("for config.warn", function()
      local config = require "alipay.config"
      local ngx = fake_ngx("init_worker")
      inside(ngx, function() config.warn("alipay: WARNING: test") end)
      assert.are.same({ { 5, "alipay: WARNING: test" } }, ngx.logged)
    end)

    it("for the app gateway's default log", function()
      local gateway = require "alipay.inbound.app_gateway"
      local client = assert(require("alipay.client").new {
        app_id = "2021000122671080", private_key = helpers.key_text("app_private_pkcs1.pem"),
        alipay_public_key = helpers.key_text("app_public.pem"), gateway = "http://127.0.0.1:1/gateway.do",
        transport = { request = function() error("no call expected") end } })
      local ngx = fake_ngx("content")
      inside(ngx, function() gateway.handle(client, "not a form", {}) end)
      assert.are.equal(1, #ngx.logged)
      assert.are.equal(5, ngx.logged[1][1])
    end)

    -- Nothing else looks for nginx: a new `rawget(_G, "ngx")` or ngx.now
    -- elsewhere would make the choice in two places again. The sandbox is
    -- its own rock (a gateway that runs in nginx by design), and the ngx
    -- transport keeps its socket and light-thread calls.
    it("and no other module looks for nginx itself", function()
      local ok, out = helpers.run("cd lua && find alipay -name '*.lua' | sort")
      assert(ok, out)
      local patterns = { 'rawget%s*%(%s*_G%s*,%s*"ngx"', "ngx%.get_phase", "ngx%.now", "ngx%.update_time",
                         "ngx%.sleep", "ngx%.log%s*%(", "ngx%.WARN", "_G%.ngx" }
      local checked = 0
      for path in out:gmatch("[^\n]+") do
        if path ~= "alipay/runtime.lua" and not path:find("^alipay/sandbox/") then
          local text = helpers.read("lua/" .. path):gsub("%-%-%[(=*)%[.-%]%1%]", ""):gsub("%-%-[^\n]*", "")
          for _, pattern in ipairs(patterns) do
            assert.is_nil(text:find(pattern), path .. " looks for nginx itself (" .. pattern .. "): ask alipay.runtime")
          end
          checked = checked + 1
        end
      end
      assert.is_true(checked > 40, checked .. " files")
    end)
  end)
end)
