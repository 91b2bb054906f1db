-- Milliseconds and sleeping for the send loop: rate limits and backoffs
-- need a clock finer than os.time(). Inside nginx (OpenResty) ngx.now and
-- ngx.sleep, which never block the worker; elsewhere the C core's clock.
--
--   local clock = require "alipay.campaign.clock"
--   clock.now_ms() -> Unix milliseconds (a float)
--   clock.sleep_ms(ms)
--   clock.source -> "ngx" | "core"
local core = require "alipay.core"

local M = {}

local ngx = rawget(_G, "ngx")
if type(ngx) == "table" and type(ngx.now) == "function" and type(ngx.sleep) == "function" then
  M.source = "ngx"
  function M.now_ms()
    ngx.update_time()
    return ngx.now() * 1000
  end
  function M.sleep_ms(ms) ngx.sleep(ms / 1000) end
else
  M.source = "core"
  M.now_ms, M.sleep_ms = core.now_ms, core.sleep_ms
end

return M
