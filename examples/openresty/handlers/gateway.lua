-- The app gateway: answers Alipay's gateway check (verifygw) with the
-- envelope signed by the app key (built once, not per request), and
-- handles Life Account events. The replay store makes each event act once
-- even though Alipay retries; events older than the replay window are
-- refused. Payment notifications posted here are refused (misdirected):
-- they belong at /alipay/notify.
local gateway = require "alipay.inbound.app_gateway"
local notify = require "alipay.inbound.notify"
local app = require "handlers.client"

local M = {}

local seen -- shared by every worker: lua_shared_dict alipay_gateway_seen (this endpoint only)

-- The example's "database" of followers: lua_shared_dict alipay_followers,
-- user id -> "follow" | "unfollow". A real shop writes to its own store.
local function remember(event, state)
  local user = event.FromUserId or event.FromAlipayUserId
  if type(user) ~= "string" or user == "" then return false, "the event names no user" end
  local ok, err = ngx.shared.alipay_followers:set(user, state)
  if not ok then return false, err end
  ngx.log(ngx.NOTICE, "life account: ", notify.loggable(user), " ", state)
  return true
end

local handlers = {
  follow = function(event) return remember(event, "follow") end,
  unfollow = function(event) return remember(event, "unfollow") end,
  -- click, enter, text, ...: acknowledged without a handler.
}

function M.serve()
  local client = app.client()
  if not client then return app.unavailable() end
  seen = seen or notify.shared_dict_store(ngx.shared.alipay_gateway_seen)
  gateway.serve_ngx(client, handlers, { seen = seen })
end

return M
