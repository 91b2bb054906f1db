-- The facade: `require "alipay"` documents the whole public API and loads
-- each part on first use, so that a handler which only signs calls never
-- loads the store, the campaign engine or the XML parser. Nothing is global.
-- Inside the library no module requires this one (spec/unit/07-layers_spec.lua):
-- they require the layer they need, and only the command line uses it.
--
--   alipay.new(config)   -> client | nil, err, detail     one signed call (v2 execute, v3)
--   alipay.errors        typed errors: errors.kind, errors.fields (docs/errors.md)
--   alipay.notify        inbound notifications: verify, decode, read_ngx, replay stores
--   alipay.app_gateway   the app gateway (Life Account events): needs lxp
--   alipay.channels      channel files: load, one client per channel
--   alipay.lifeaccount   Life Account templates, sends, followers, broadcasts
--   alipay.mini          mini program subscription messages
--   alipay.templates     the template registry (store-backed)
--   alipay.users         user bindings (store-backed)
--   alipay.store         the store interface: store.open(path) (SQLite)
--   alipay.campaign      send campaigns, exactly once per recipient
--   alipay.workspace     channels + store + registry + users from one channel file
--   alipay.core          the C core
--   alipay.VERSION, alipay.beijing_timestamp()
local core = require "alipay.core"
local client = require "alipay.client"

local LAZY = {
  errors = "alipay.errors",
  notify = "alipay.inbound.notify",
  app_gateway = "alipay.inbound.app_gateway",
  channels = "alipay.messaging.channels",
  lifeaccount = "alipay.messaging.lifeaccount",
  mini = "alipay.messaging.mini",
  templates = "alipay.messaging.templates",
  users = "alipay.messaging.users",
  store = "alipay.store",
  campaign = "alipay.campaign",
  workspace = "alipay.workspace",
}

local M = {
  core = core,
  new = client.new,
  beijing_timestamp = client.beijing_timestamp,
  VERSION = core._VERSION,
}

return setmetatable(M, {
  __index = function(t, key)
    local name = LAZY[key]
    if not name then return nil end
    local module = require(name)
    rawset(t, key, module)
    return module
  end,
})
