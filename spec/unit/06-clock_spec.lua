-- core.now_ms / monotonic_ms / sleep_ms: plain Lua has only whole seconds
-- and no sleep; rate limits and backoffs need milliseconds.
require "helpers"
local core = require "alipay.core"

describe("core clocks", function()
  it("now_ms is the wall clock in milliseconds", function()
    local ms = core.now_ms()
    assert.is_true(math.abs(ms / 1000 - os.time()) < 2)
  end)

  it("sleep_ms sleeps at least as long as asked, measured on the monotonic clock", function()
    local t0 = core.monotonic_ms()
    core.sleep_ms(30)
    local slept = core.monotonic_ms() - t0
    assert.is_true(slept >= 30, "slept " .. slept .. " ms")
    t0 = core.monotonic_ms()
    core.sleep_ms(0)
    assert.is_true(core.monotonic_ms() >= t0)
  end)

  it("raises on a negative or absurd duration, or a non-number", function()
    assert.has_error(function() core.sleep_ms(-1) end)
    assert.has_error(function() core.sleep_ms(1e12) end)
    assert.has_error(function() core.sleep_ms("soon") end)
  end)
end)
