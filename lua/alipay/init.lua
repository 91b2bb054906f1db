-- The public entry point: `require "alipay"`. Nothing here is global.
--   alipay.new(config)  -> client (client:execute for v2, client:v3 for v3)
--   alipay.errors       -> typed errors
--   alipay.core         -> the C core
local core = require "alipay.core"
local client = require "alipay.client"
local errors = require "alipay.errors"

return {
  core = core,
  errors = errors,
  new = client.new,
  beijing_timestamp = client.beijing_timestamp,
  VERSION = core._VERSION,
}
