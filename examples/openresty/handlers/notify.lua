-- notify_url: Alipay's asynchronous notifications (rule V1). Verified with
-- the Alipay public key (RSA2 only), checked to be for this app and inside
-- the replay window, deduplicated across workers by notify_id, and
-- answered with the body "success" only once the business side has done
-- its part; anything else makes Alipay retry. App-gateway messages posted
-- here are refused (reason misdirected).
local notify = require "alipay.inbound.notify"
local app = require "handlers.client"

local M = {}

local seen -- the replay store, over lua_shared_dict alipay_notify_seen (this endpoint only)

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain"
  ngx.print(body)
end

-- The business side, e.g. mark the order paid. It must be idempotent:
-- Alipay repeats a notification whose "success" it did not receive. The
-- signature says Alipay sent these values, not that they are the ones the
-- order expects: compare out_trade_no, total_amount and trade_status with
-- the shop's own record of the order before acting (a signed subject may
-- even contain "&total_amount=..."; it is still one field, the subject).
local PAID = { TRADE_SUCCESS = true, TRADE_FINISHED = true }

local function process(params)
  ngx.log(ngx.NOTICE, "alipay notify: ", notify.loggable(params.notify_type), " order ",
    notify.loggable(params.out_trade_no), " ", notify.loggable(params.trade_status))
  if params.notify_type == "trade_status_sync" and PAID[params.trade_status] then
    -- here: load the order by params.out_trade_no, check that
    -- params.total_amount equals its amount, then mark it paid once
    return true
  end
  return true -- other notifications: acknowledged
end

-- The HTTP status of a refusal (Alipay reads only the body: anything but
-- "success" is retried). 503 for what may pass on a retry.
local STATUS = { too_large = 413, store = 503 }

function M.serve()
  local client = app.client()
  if not client then return app.unavailable() end
  seen = seen or notify.shared_dict_store(ngx.shared.alipay_notify_seen)
  local params, err, detail = notify.read_ngx(client, { seen = seen })
  if not params then
    -- Already accepted: Alipay lost our first "success"; say it again.
    -- A replay was processed the first time: answer success, or Alipay
    -- retries it for a day.
    if detail.reason == "replay" then return answer(200, "success") end
    -- err is one log-safe line: no body, no signature, no key.
    -- stale (older than the replay window), sign_type (not RSA2),
    -- misdirected (a gateway message), forged, ...: never processed.
    ngx.log(ngx.WARN, "alipay notify refused: ", err)
    return answer(STATUS[detail.reason] or (detail.retryable and 503 or 400), "fail")
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
