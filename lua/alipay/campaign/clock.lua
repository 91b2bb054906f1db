-- Milliseconds and sleeping for the send loop: rate limits and backoffs
-- need a clock finer than os.time(). alipay.runtime decides how: inside
-- nginx ngx.now, and ngx.sleep where it yields (never blocking the
-- worker); elsewhere the C core's clock and sleep.
--
--   local clock = require "alipay.campaign.clock"
--   clock.now_ms() -> Unix milliseconds (a float)
--   clock.sleep_ms(ms)
--   clock.source -> "ngx" | "core"   the clock now_ms reads, asked when read
local runtime = require "alipay.runtime"

local M = {
  now_ms = runtime.now_ms,
  sleep_ms = runtime.sleep_ms,
}

-- source is asked when read: the module may be loaded outside the phase
-- (or the process) that uses it.
return setmetatable(M, {
  __index = function(_, key)
    if key == "source" then return runtime.detect().clock end
  end,
})
