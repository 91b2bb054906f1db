-- notify_url: Alipay's asynchronous notifications (rule V1). Verified with
-- the Alipay public key, checked to be for this app, deduplicated across
-- workers by notify_id, and answered with the body "success" only once
-- the business side has done its part; anything else makes Alipay retry.
local notify = require "alipay.inbound.notify"
local app = require "handlers.client"

local M = {}

local seen -- the replay store, over lua_shared_dict alipay_notify

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain"
  ngx.print(body)
end

-- The business side, e.g. mark the order paid. It must be idempotent:
-- Alipay repeats a notification whose "success" it did not receive.
local function process(params)
  ngx.log(ngx.NOTICE, "alipay notify: ", notify.loggable(params.notify_type), " order ",
    notify.loggable(params.out_trade_no), " ", notify.loggable(params.trade_status))
  return true
end

function M.serve()
  local client = app.client()
  if not client then return app.unavailable() end
  seen = seen or notify.shared_dict_store(ngx.shared.alipay_notify)
  local params, err, detail = notify.read_ngx(client, { seen = seen })
  if not params then
    -- Already accepted: Alipay lost our first "success"; say it again.
    -- A replay was processed the first time: answer success, or Alipay
    -- retries it for a day.
    if detail.reason == "replay" then return answer(200, "success") end
    -- err is one log-safe line: no body, no signature, no key.
    ngx.log(ngx.WARN, "alipay notify refused: ", err)
    return answer(detail.retryable and 503 or 400, "fail")
  end
  local ok, perr = pcall(process, params)
  if not ok or not perr then
    -- Forget it, so that Alipay's next attempt is processed again.
    seen:delete(notify.replay_key(params))
    ngx.log(ngx.ERR, "alipay notify: processing failed: ", tostring(perr))
    return answer(500, "fail")
  end
  answer(200, "success")
end

return M
