-- The public entry point: `require "alipay"`. The C core is reachable as
-- alipay.core; the client, notifications and messaging layers are added
-- here as they land, and nothing is ever made global.
local core = require "alipay.core"

return {
  core = core,
  VERSION = core._VERSION,
}
