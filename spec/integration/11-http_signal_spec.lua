-- core.http's engine:wait ends early when a signal that core.signals_catch
-- catches arrives (src/http.c with src/signal.c's wake-up pipe), so that a
-- campaign sees Ctrl-C at once instead of at the end of a wait; signals
-- caught before a wait do not end it. Against Debian's nginx on loopback.
local helpers = require "helpers"
local core = require "alipay.core"
local runner = require "alipay.sandbox.nginx"

local CONF = [[
server {
    listen 127.0.0.1:%d;
    location = /sleep {
      content_by_lua_block {
        ngx.sleep(tonumber(ngx.var.arg_ms) / 1000)
        ngx.print("slept")
      }
    }
}]]

local function own_pid()
  local f = assert(io.open("/proc/self/stat", "rb"))
  local pid = tonumber(f:read("l"):match("^(%d+)"))
  f:close()
  return pid
end

-- Sends this process signal `name` in about delay_s, from a background shell
-- (os.execute's system() ignores SIGINT in the caller while its child runs).
local function send_later(name, delay_s)
  assert(os.execute(("(sleep %.2f; kill -%s %d) >/dev/null 2>&1 &"):format(delay_s, name, own_pid())))
end

-- fn() -> its results, then the milliseconds it took
local function timed(fn)
  local t0 = core.monotonic_ms()
  local result = fn()
  return result, core.monotonic_ms() - t0
end

describe("core.http wait and signals", function()
  local srv, base

  lazy_setup(function()
    local err
    srv, err = runner.start { conf = function(port) return CONF:format(port) end, lua = true }
    assert(srv, err)
    base = "http://127.0.0.1:" .. srv.port
  end)

  lazy_teardown(function()
    core.signals_restore()
    runner.stop_all()
    helpers.cleanup()
  end)

  after_each(function() core.signals_restore() end)

  it("ends a wait when a caught signal arrives, and keeps the transfer", function()
    local e = assert(core.http())
    assert(e:submit { url = base .. "/sleep?ms=2000" })
    assert(core.signals_catch { "INT", "TERM" })
    send_later("INT", 0.3)
    local done, ms = timed(function() return e:wait(10000) end)
    assert.same({}, done)
    assert.is_true(ms < 1500 * helpers.time_scale, ("the wait took %.0f ms"):format(ms))
    assert.are.equal("INT", (core.signal_caught()))
    assert.are.equal(1, e:pending())
    -- That signal was caught before the next wait: it waits for the answer.
    done, ms = timed(function() return e:wait(10000) end)
    assert.are.equal(1, #done)
    assert.are.equal("slept", done[1].res.body)
    assert.is_true(ms > 300, ("the second wait returned after %.0f ms"):format(ms))
    e:close()
  end)

  it("ends a wait without a timeout too, and on SIGTERM", function()
    local e = assert(core.http())
    assert(e:submit { url = base .. "/sleep?ms=3000" })
    assert(core.signals_catch { "TERM" })
    send_later("TERM", 0.3)
    local done, ms = timed(function() return e:wait() end)
    assert.same({}, done)
    assert.is_true(ms < 2000 * helpers.time_scale, ("the wait took %.0f ms"):format(ms))
    assert.are.equal("TERM", (core.signal_caught()))
    e:close()
  end)

  it("waits as before when no signal is caught", function()
    local e = assert(core.http())
    assert(e:submit { url = base .. "/sleep?ms=500" })
    assert(core.signals_catch { "INT" })
    local done, ms = timed(function() return e:wait(5000) end)
    assert.are.equal(1, #done)
    assert.is_true(ms >= 400, ("the wait returned after %.0f ms"):format(ms))
    e:close()
  end)
end)
