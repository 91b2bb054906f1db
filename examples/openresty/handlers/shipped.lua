-- POST /orders/shipped {"user_id": "2088...", "order_id": "...", "carrier": "...",
-- "tracking_no": "..."}: the shop's own event. Sends the buyer a Life Account
-- template message (alipay.open.public.message.single.send) with the
-- "order status" template (keywords: order number, status, time).
--
-- Answers 200 {"sent": true}, or {"sent": false, "error": {...}} with 502
-- when a retry may succeed (the caller should retry later) and 422 when
-- it cannot (the user does not follow the account, the template is gone).
local cjson = require "cjson.safe"
local app = require "handlers.client"

local M = {}

local SEND = "alipay.open.public.message.single.send"
local GREEN, GREY = "#85be53", "#999999"

local function reply(status, doc)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode(doc))
end

local function bad_request(why)
  return reply(400, { sent = false, error = { kind = "request", msg = why } })
end

-- "yyyy-mm-dd hh:mm" in Beijing time (UTC+8), what the buyer reads.
local function beijing_minute()
  return os.date("!%Y-%m-%d %H:%M", ngx.time() + 8 * 3600)
end

local function message(event, settings)
  local status = "已发货"
  if type(event.carrier) == "string" and event.carrier ~= "" then
    status = status .. "（" .. event.carrier .. (event.tracking_no and (" " .. tostring(event.tracking_no)) or "") .. "）"
  end
  return {
    to_user_id = event.user_id,
    template = {
      template_id = settings.shipped_template_id,
      context = {
        head_color = GREEN,
        url = (settings.order_url or "https://shop.example.com/orders/") .. ngx.escape_uri(event.order_id),
        action_name = "查看订单",
        first = { color = GREEN, value = "您的订单已发货" },
        keyword1 = { color = GREEN, value = event.order_id }, -- 订单号
        keyword2 = { color = GREEN, value = status },         -- 订单状态
        keyword3 = { color = GREEN, value = beijing_minute() }, -- 更新时间
        remark = { color = GREY, value = "感谢您的惠顾" },
      },
    },
  }
end

function M.serve()
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return reply(405, { sent = false, error = { kind = "request", msg = "POST a JSON order-shipped event" } })
  end
  ngx.req.read_body()
  local event = cjson.decode(ngx.req.get_body_data() or "")
  if type(event) ~= "table" then return bad_request("the body is not a JSON object") end
  if type(event.user_id) ~= "string" or not event.user_id:find("^2088%d%d%d%d%d%d%d%d%d%d%d%d$") then
    return bad_request("user_id must be an Alipay user id (16 digits starting with 2088)")
  end
  if type(event.order_id) ~= "string" or event.order_id == "" or #event.order_id > 64 then
    return bad_request("order_id must be a non-empty string of at most 64 characters")
  end
  local client = app.client()
  if not client then return app.unavailable() end
  local settings = app.example()
  if not settings.shipped_template_id then
    return reply(503, { sent = false, error = { kind = "config", msg = "example.shipped_template_id is not set" } })
  end
  local res, err, detail = client:execute(SEND, message(event, settings))
  if res then return reply(200, { sent = true, order_id = event.order_id }) end
  ngx.log(ngx.WARN, "order shipped message not sent: ", err)
  return reply(detail.retryable and 502 or 422, { sent = false, error = {
    kind = detail.kind, code = detail.code, sub_code = detail.sub_code, msg = detail.sub_msg or detail.msg,
    retryable = detail.retryable, trace_id = detail.trace_id } })
end

return M
