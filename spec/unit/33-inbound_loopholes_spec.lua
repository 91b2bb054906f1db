-- The inbound loopholes, one group per item of the hardening issue, each
-- played as an attacker (or an unlucky operator) would: a genuine message
-- moved to the other endpoint, stripped or re-cut; an old one replayed; a
-- downgraded sign type; unsigned empty fields; bodies that cost before
-- they are checked. Only the public API is used (notify.verify,
-- app_gateway.handle, the stores), with real clocks unless a test needs
-- another, so that each test states a behaviour, not an implementation.
local helpers = require "helpers"
local alipay = require "alipay"
local notify = require "alipay.inbound.notify"
local gateway = require "alipay.inbound.app_gateway"
local core = alipay.core

local APP_ID = "2021000122671080"
local app_key_text = helpers.key_text("app_private_pkcs1.pem")
local app_pub_text = helpers.key_text("app_public.pem")
local alipay_key = assert(core.private_key(app_key_text)) -- "Alipay" in these specs
local NO_TRANSPORT = { request = function() error("inbound makes no calls") end }
local QUIET = function() end

local function new_client()
  return assert(alipay.new { app_id = APP_ID, private_key = app_key_text, alipay_public_key = app_pub_text,
                             transport = NO_TRANSPORT })
end

-- Beijing wall-clock time of Unix seconds `t`, as Alipay writes notify_time.
local function beijing(t) return os.date("!%Y-%m-%d %H:%M:%S", t + 8 * 3600) end

local function copy(t, extra)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v or nil end
  return out
end

local function payment(extra)
  return copy({
    app_id = APP_ID, charset = "utf-8", notify_id = core.random_hex(16), notify_time = beijing(os.time() - 10),
    notify_type = "trade_status_sync", out_trade_no = "SO-" .. core.random_hex(4), total_amount = "88.00",
    trade_status = "TRADE_SUCCESS", subject = "shoes", version = "1.0", sign_type = "RSA2",
  }, extra)
end

-- Signed as Alipay signs under `rule` (V1: sign_type left out of the string).
local function signed(params, rule, alg)
  local p = copy(params)
  local content = core.sign_content(p, rule == "V1" and { exclude = { "sign_type" } } or nil)
  p.sign = alipay_key:sign(content, alg or p.sign_type or "RSA2")
  return p
end

local function form(p) return core.form_encode(p) end

local function event(event_type, created_ms, user)
  local xml = ("<XML><AppId><![CDATA[%s]]></AppId><FromUserId><![CDATA[%s]]></FromUserId>" ..
    "<CreateTime><![CDATA[%s]]></CreateTime><MsgType><![CDATA[event]]></MsgType>" ..
    "<EventType><![CDATA[%s]]></EventType></XML>"):format(APP_ID, user or "2088102122485786",
    created_ms or tostring(os.time() * 1000 - 5000), event_type)
  return { app_id = APP_ID, service = "alipay.mobile.public.message.notify", charset = "UTF-8",
           sign_type = "RSA2", biz_content = xml }
end

-- The reason of a refusal from notify.verify, or "accepted".
local function verdict(client, body, opts)
  local params, _, detail = notify.verify(client, body, opts)
  if params then return "accepted" end
  return detail and detail.reason
end

describe("1. one rule per endpoint", function()
  local client = new_client()

  it("a payment notification stripped of sign_type is refused at the app gateway; Alipay's own post " ..
     "to notify_url is then processed, even with one store for both", function()
    local seen = notify.memory_store(100)
    local genuine = signed(payment(), "V1")
    local stripped = copy(genuine, { sign_type = false }) -- rule V1 never signed it
    local dispatched = false
    local reply = gateway.handle(client, form(stripped), { default = function() dispatched = true end },
                                 { seen = seen, log = QUIET })
    assert.are.equal("fail", reply)
    assert.is_false(dispatched)
    assert.are.equal("accepted", verdict(client, form(genuine), { seen = seen }))
  end)

  it("a buyer's return_url parameters, stripped of sign_type, never reach a gateway handler", function()
    local ret = signed({ app_id = APP_ID, charset = "utf-8", method = "alipay.trade.page.pay.return",
      out_trade_no = "SO-1", total_amount = "88.00", trade_no = "2024051322001", seller_id = "2088101117955611",
      timestamp = beijing(os.time() - 5), version = "1.0", sign_type = "RSA2" }, "V1")
    ret.sign_type = nil
    local dispatched = false
    local reply = gateway.handle(client, form(ret), { default = function() dispatched = true end },
                                 { log = QUIET })
    assert.are.equal("fail", reply)
    assert.is_false(dispatched)
  end)

  it("the app gateway requires sign_type: a Life Account event without it is refused", function()
    local p = event("follow")
    p.sign_type = nil
    p = signed(p, "V2", "RSA2")
    local called = false
    local reply, info = gateway.handle(client, form(p), { follow = function() called = true end }, { log = QUIET })
    assert.are.equal("fail", reply)
    assert.is_false(called)
    assert.are.equal("unsigned", info.detail.reason)
  end)

  it("a gateway message re-cut for rule V1 (sign_type moved into a value) is refused at notify_url", function()
    local v2 = signed({ app_id = APP_ID, charset = "UTF-8", service = "alipay.mobile.public.message.notify",
                        sign_type = "RSA2", biz_content = "<XML/>" }, "V2")
    -- V1 leaves the sign_type field out, so this string to sign is the V2 one
    local recut = copy(v2, { service = v2.service .. "&sign_type=RSA2" })
    assert.are.equal(core.sign_content(v2), core.sign_content(recut, { exclude = { "sign_type" } }))
    assert.are_not.equal("accepted", verdict(client, form(recut)))
  end)

  it("any value holding '&sign_type=' is refused: the signed string would read as the other rule's", function()
    -- A V2 signature over payment fields passed off as V1 by moving
    -- sign_type into the value before it (seller_id sorts just before)
    local v2 = signed(payment { seller_id = "2088101117955611" }, "V2")
    local recut = copy(v2, { seller_id = v2.seller_id .. "&sign_type=RSA2" })
    assert.are.equal(core.sign_content(v2), core.sign_content(recut, { exclude = { "sign_type" } }))
    assert.are.equal("ambiguous", verdict(client, form(recut)))
  end)

  it("replay keys are per endpoint and kind: a gateway push never answers for a notification", function()
    local seen = notify.memory_store(100)
    local id = core.random_hex(16)
    local push = { app_id = APP_ID, msg_method = "alipay.open.mini.messagetemplate.subscribe.changed",
                   notify_id = id, charset = "UTF-8", version = "1.1", sign_type = "RSA2",
                   utc_timestamp = tostring(os.time() * 1000 - 3000), biz_content = "{}" }
    local reply = gateway.handle(client, form(signed(push, "V1")), {}, { seen = seen, log = QUIET })
    assert.are.equal("success", reply)
    assert.are.equal("accepted", verdict(client, form(signed(payment { notify_id = id }, "V1")), { seen = seen }))
    assert.are_not.equal("notify:" .. id, notify.replay_key(payment { notify_id = id }))
  end)
end)

describe("2. fresh messages only", function()
  local client = new_client()

  it("refuses a genuine notification sent in 2001", function()
    local old = signed(payment { notify_time = "2001-09-09 09:46:40" }, "V1")
    assert.are.equal("stale", verdict(client, form(old), { seen = notify.memory_store(10) }))
  end)

  it("refuses a notification replayed after the store forgot it (its TTL passed, or it was evicted)", function()
    local forgetful = { add = function() return true end, delete = function() return true end }
    local three_days_ago = signed(payment { notify_time = beijing(os.time() - 3 * 24 * 3600) }, "V1")
    assert.are.equal("stale", verdict(client, form(three_days_ago), { seen = forgetful }))
  end)

  it("refuses notify_time too far in the future, and a missing or unreadable one", function()
    assert.are.equal("stale", verdict(client, form(signed(payment { notify_time = beijing(os.time() + 3600) }, "V1"))))
    assert.are.equal("malformed", verdict(client, form(signed(payment { notify_time = false }, "V1"))))
    assert.are.equal("malformed", verdict(client, form(signed(payment { notify_time = "yesterday" }, "V1"))))
  end)

  it("keeps the replay window inside the store's TTL, and accepts a window that fits", function()
    assert.has_error(function() notify.verify(client, form(signed(payment(), "V1")), { ttl = 3600, window = 7200 }) end)
    assert.are.equal("accepted", verdict(client, form(signed(payment(), "V1")), { ttl = 3600, window = 600 }))
  end)

  it("a full memory store refuses a new message instead of forgetting a live one", function()
    local seen = notify.memory_store(2)
    local first = form(signed(payment(), "V1"))
    assert.are.equal("accepted", verdict(client, first, { seen = seen }))
    assert.are.equal("accepted", verdict(client, form(signed(payment(), "V1")), { seen = seen }))
    assert.are.equal("store", verdict(client, form(signed(payment(), "V1")), { seen = seen }))
    assert.are.equal("replay", verdict(client, first, { seen = seen }))
  end)

  it("a full shared dict refuses (safe_add), it does not evict (add)", function()
    local dict = {
      add = function() return true end, -- what an evicting add would say
      safe_add = function() return false, "no memory" end,
      delete = function() end,
    }
    local reason = verdict(client, form(signed(payment(), "V1")), { seen = notify.shared_dict_store(dict) })
    assert.are.equal("store", reason)
  end)

  it("refuses a notification without notify_id unless the caller opts in", function()
    local p = form(signed(payment { notify_id = false }, "V1"))
    assert.are.equal("no_notify_id", verdict(client, p, { seen = notify.memory_store(10) }))
    assert.are.equal("accepted", verdict(client, p, { allow_no_notify_id = true }))
  end)

  it("refuses a Life Account event older than the replay window", function()
    local old = signed(event("follow", tostring((os.time() - 3 * 24 * 3600) * 1000)), "V2")
    local called = false
    local reply, info = gateway.handle(client, form(old), { follow = function() called = true end },
                                       { seen = notify.memory_store(10), log = QUIET })
    assert.are.equal("fail", reply)
    assert.is_false(called)
    assert.are.equal("stale", info.detail.reason)
  end)
end)

describe("3. strict sign types", function()
  local client = new_client() -- configured for RSA2

  it("refuses an RSA (SHA-1) notification unless RSA is listed for a migration window", function()
    local rsa = form(signed(payment { sign_type = "RSA" }, "V1", "RSA"))
    assert.are.equal("sign_type", verdict(client, rsa))
    assert.are.equal("accepted", verdict(client, rsa, { sign_types = { "RSA2", "RSA" } }))
  end)

  it("refuses an RSA (SHA-1) gateway message unless RSA is listed", function()
    local p = event("follow")
    p.sign_type = "RSA"
    local body = form(signed(p, "V2", "RSA"))
    local reply, info = gateway.handle(client, body, {}, { log = QUIET })
    assert.are.equal("fail", reply)
    assert.are.equal("sign_type", info.detail.reason)
    assert.are.equal("success", (gateway.handle(client, body, {}, { log = QUIET, sign_types = { "RSA", "RSA2" } })))
  end)
end)

describe("4. what the handler sees", function()
  local client = new_client()

  it("drops empty values, which no signature covers", function()
    local p = signed(payment { refund_fee = "" }, "V1")
    local body = form(p) .. "&out_biz_no"
    local params, raw = notify.verify(client, body)
    assert.is_table(params, tostring(raw))
    assert.is_nil(params.refund_fee)
    assert.is_nil(params.out_biz_no)
    assert.are.equal("88.00", params.total_amount)
  end)

  it("keeps '&' and '=' inside a signed value as that one value", function()
    local p = signed(payment { subject = "shoes&total_amount=0.01" }, "V1")
    local params = assert(notify.verify(client, form(p)))
    assert.are.equal("shoes&total_amount=0.01", params.subject)
    assert.are.equal("88.00", params.total_amount)
  end)
end)

describe("5. bounded cost before the signature check", function()
  local client = new_client()

  it("refuses a 1 MiB body and a million-field body before decoding them", function()
    assert.are.equal("too_large", verdict(client, ("x"):rep(1024 * 1024)))
    assert.are.equal("too_large", verdict(client, ("a&"):rep(500000)))
    local reply, info = gateway.handle(client, ("a=1&"):rep(300000), {}, { log = QUIET })
    assert.are.equal("fail", reply)
    assert.are.equal("too_large", info.detail.reason)
  end)

  it("caps the field count at 200 by default, and both caps are options", function()
    local p = signed(payment(), "V1")
    local padded = {}
    for i = 1, 250 do padded["x" .. i] = "1" end
    local wide = signed(copy(payment(), padded), "V1")
    assert.are.equal("too_large", verdict(client, form(wide)))
    assert.are.equal("accepted", verdict(client, form(wide), { max_fields = 300 }))
    assert.are.equal("too_large", verdict(client, form(p), { max_body_bytes = 100 }))
  end)

  it("refuses an oversized body by its Content-Length, without reading it", function()
    local read = false
    local fake = {
      var = { content_type = "application/x-www-form-urlencoded", content_length = tostring(10 * 1024 * 1024) },
      req = {
        get_method = function() return "POST" end,
        read_body = function() read = true end,
        get_body_data = function() read = true return "" end,
        get_body_file = function() return nil end,
      },
    }
    local params, _, detail = notify.read_ngx(client, { ngx = fake })
    assert.is_nil(params)
    assert.are.equal("too_large", detail.reason)
    assert.is_false(read)
  end)

  it("answers forged gateway checks without a private-key operation per request", function()
    local c = new_client()
    local real = c.config.private_key
    local signs = 0
    c.config.private_key = setmetatable({
      sign = function(_, ...) signs = signs + 1 return real:sign(...) end,
    }, { __index = function(_, name) return function(_, ...) return real[name](real, ...) end end })
    local check = { charset = "UTF-8", service = "alipay.service.check", sign_type = "RSA2",
                    biz_content = "<XML><EventType>verifygw</EventType></XML>", sign = alipay_key:sign("not it") }
    local first = gateway.handle(c, form(check), {}, { log = QUIET })
    for _ = 1, 50 do assert.are.equal(first, (gateway.handle(c, form(check), {}, { log = QUIET }))) end
    assert.matches("VERIFY_FAILED", first)
    assert.is_true(signs <= 1, signs .. " signatures for 51 forged checks")
  end)
end)
