-- The public entry point: `require "alipay"`. Nothing here is global.
--   alipay.new(config)  -> client (client:execute for v2, client:v3 for v3)
--   alipay.errors       -> typed errors
--   alipay.inbound.notify       -> inbound notifications (verified, decoded once)
--   alipay.core         -> the C core
-- The app gateway (alipay.inbound.app_gateway) is required on its own: it needs lxp.
local core = require "alipay.core"
local client = require "alipay.client"
local errors = require "alipay.errors"
local notify = require "alipay.inbound.notify"

return {
  core = core,
  errors = errors,
  notify = notify,
  new = client.new,
  beijing_timestamp = client.beijing_timestamp,
  VERSION = core._VERSION,
}
