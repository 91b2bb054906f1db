-- Which endpoint a message belongs to. The app gateway receives a closed
-- set of kinds (docs/protocol.md §3.4–§3.7); everything else Alipay posts
-- (payment and other asynchronous notifications) goes to notify_url, and
-- return_url redirects come back through the buyer's browser. Each
-- endpoint refuses the other's messages before checking any signature.
local message_kind = {}

message_kind.CHECK_SERVICE = "alipay.service.check"
message_kind.LIFE_ACCOUNT_SERVICE = "alipay.mobile.public.message.notify"
message_kind.MARKET_NOTIFY_TYPE = "servicemarket_order_notify"

-- The gateway kinds, each with the field that names it to a handler:
--   check           service alipay.service.check (the gateway check)
--   life_account    service alipay.mobile.public.message.notify (events and
--                   messages of a Life Account, biz_content XML)
--   message_service msg_method (a push of the open platform's message
--                   service, biz_content JSON)
--   service_market  notify_type servicemarket_order_notify (an order of
--                   the app in Alipay's service market)
-- message_kind.gateway(raw) -> kind | nil (not a gateway message).
function message_kind.gateway(raw)
  local service = raw.service
  if service == message_kind.CHECK_SERVICE then return "check" end
  if service == message_kind.LIFE_ACCOUNT_SERVICE then return "life_account" end
  if service == nil then
    if raw.msg_method ~= nil then return "message_service" end
    if raw.notify_type == message_kind.MARKET_NOTIFY_TYPE then return "service_market" end
  end
  return nil
end

-- The rule each gateway kind is signed under (docs/protocol.md §3.2),
-- read off real signed messages in the official SDKs' tests and docs:
-- the gateway check, Life Account messages and service-market orders sign
-- every field but sign (V2); message-service pushes sign every field but
-- sign and sign_type (V1), as notifications do.
message_kind.RULE = {
  check = "V2", life_account = "V2", service_market = "V2", message_service = "V1",
}

-- message_kind.claims_gateway(raw) -> true when the gateway would take it, or
-- anything that claims a gateway kind (a `service` or `msg_method` field):
-- notify_url refuses those, whatever their value.
function message_kind.claims_gateway(raw)
  return message_kind.gateway(raw) ~= nil or raw.service ~= nil or raw.msg_method ~= nil
end

return message_kind
