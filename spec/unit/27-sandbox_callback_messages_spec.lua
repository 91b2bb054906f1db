-- What the sandbox sends as Alipay (alipay.sandbox.callback_messages),
-- built and signed without a network: each message is checked against a
-- string to sign this spec builds itself, and accepted by the client's own
-- receivers (alipay.inbound.notify, alipay.inbound.app_gateway) configured
-- with the sandbox key's public half. A fixture key acts as the sandbox's
-- "Alipay" key.
local helpers = require "helpers"
local alipay = require "alipay"
local core = alipay.core
local notify = require "alipay.inbound.notify"
local gateway = require "alipay.inbound.app_gateway"
local xml = require "alipay.inbound.xml"
local beijing_time = require "alipay.util.beijing_time"
local messages = require "alipay.sandbox.callback_messages"
local callback = require "alipay.sandbox.callback"
local sender = require "alipay.sandbox.callback_sender"

local APP_ID = "2021000122671080"
local NOW = 1715593765 -- 2024-05-13 17:49:25 in Beijing
local signer = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem")))
local signer_pub = assert(core.public_key(signer:public_pem()))
local NO_TRANSPORT = { request = function() error("the receivers make no calls") end }

-- The client of the endpoint under test: Alipay's public key is the
-- sandbox's; the app's own key signs the gateway check reply.
local client = assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
  alipay_public_key = signer:public_pem(), transport = NO_TRANSPORT })

local function at(now) return function() return now end end

-- The string to sign, built here from the fields as sent: sorted by name,
-- sign left out, sign_type too under rule V1, empty values left out.
local function string_to_sign(fields, rule)
  local names = {}
  for k, v in pairs(fields) do
    if k ~= "sign" and not (rule == "V1" and k == "sign_type") and v ~= "" then names[#names + 1] = k end
  end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. fields[k] end
  return table.concat(parts, "&")
end

describe("sandbox callbacks: notifications (rule V1)", function()
  local params = { out_trade_no = "SO-1001", trade_no = "2024051322001400001", trade_status = "TRADE_SUCCESS",
    total_amount = "88.00", subject = "shoes & socks" }

  it("carries Alipay's common fields, notify_time in Beijing time, and the caller's fields", function()
    local msg = assert(messages.notification(signer, APP_ID, params, { now = NOW }))
    local f = msg.fields
    assert.are.equal("notify", msg.kind)
    assert.are.equal("V1", msg.rule)
    assert.are.equal(APP_ID, f.app_id)
    assert.are.equal("2024-05-13 17:49:25", f.notify_time)
    assert.are.equal(beijing_time.format(NOW), f.notify_time)
    assert.are.equal("trade_status_sync", f.notify_type)
    assert.are.equal("utf-8", f.charset)
    assert.are.equal("1.0", f.version)
    assert.are.equal("RSA2", f.sign_type)
    assert.matches("^%x+$", f.notify_id)
    for k, v in pairs(params) do assert.are.equal(v, f[k]) end
    assert.are.same(f, core.form_decode(msg.body))
  end)

  it("is signed with the sandbox key over the string this spec builds (sign and sign_type left out)", function()
    local msg = assert(messages.notification(signer, APP_ID, params, { now = NOW }))
    local content = string_to_sign(msg.fields, "V1")
    assert.are.equal(content, msg.content)
    assert.is_nil(content:find("sign_type=", 1, true))
    assert.is_true(signer_pub:verify(content, msg.fields.sign, "RSA2"))
    -- Under rule V2 the same signature does not verify: the rule is V1.
    assert.is_not_true(signer_pub:verify(string_to_sign(msg.fields, "V2"), msg.fields.sign, "RSA2"))
  end)

  it("passes the client's own notify.verify, once (a repeat is a replay)", function()
    local msg = assert(messages.notification(signer, APP_ID, params, { now = NOW }))
    local seen = notify.memory_store()
    local got, err = notify.verify(client, msg.body, { seen = seen, clock = at(NOW + 60) })
    assert.is_table(got, err)
    assert.are.equal("SO-1001", got.out_trade_no)
    assert.are.equal("shoes & socks", got.subject)
    local again, _, detail = notify.verify(client, msg.body, { seen = seen, clock = at(NOW + 300) })
    assert.is_nil(again)
    assert.are.equal("replay", detail.reason)
  end)

  it("lets the caller override the defaults (notify_type, app_id) but signs with its own sign_type", function()
    local msg = assert(messages.notification(signer, APP_ID, { notify_type = "fund_auth", sign_type = "RSA" },
      { now = NOW, notify_id = "n-1" }))
    assert.are.equal("fund_auth", msg.fields.notify_type)
    assert.are.equal("n-1", msg.fields.notify_id)
    assert.are.equal("RSA2", msg.fields.sign_type)
    local rsa = assert(messages.notification(signer, APP_ID, {}, { now = NOW, sign_type = "RSA" }))
    assert.are.equal("RSA", rsa.fields.sign_type)
    assert.is_true(signer_pub:verify(string_to_sign(rsa.fields, "V1"), rsa.fields.sign, "RSA"))
    local foreign = assert(messages.notification(signer, APP_ID, { app_id = "2021000000000000" }, { now = NOW }))
    local got, _, detail = notify.verify(client, foreign.body, { clock = at(NOW) })
    assert.is_nil(got)
    assert.are.equal("foreign_app", detail.reason)
  end)

  it("gives every message its own notify_id", function()
    local a = assert(messages.notification(signer, APP_ID, {}, { now = NOW }))
    local b = assert(messages.notification(signer, APP_ID, {}, { now = NOW }))
    assert.are_not.equal(a.fields.notify_id, b.fields.notify_id)
  end)

  it("refuses bad input with the field's name, never its (long) value", function()
    local long = ("x"):rep(300)
    local cases = {
      { { sign = "forged" }, "params.sign" },
      { { ["bad name"] = "1" }, "field name" },
      { { [long] = "1" }, "field name" },
      { { amount = {} }, "params.amount" },
      { { big = ("y"):rep(17 * 1024) }, "params.big" },
    }
    for _, case in ipairs(cases) do
      local msg, err = messages.notification(signer, APP_ID, case[1], { now = NOW })
      assert.is_nil(msg)
      assert.matches(case[2], err, 1, true)
      assert.is_nil(err:find(long, 1, true))
      assert.is_true(#err < 200)
    end
    assert.is_nil((messages.notification(signer, APP_ID, "a=b")))
    local fields = {}
    for i = 1, 10 do fields["f" .. i] = ("v"):rep(8000) end
    local big, berr = messages.notification(signer, APP_ID, fields, { now = NOW })
    assert.is_nil(big)
    assert.matches("over the 65536", berr)
    local msg, err = messages.notification(signer, APP_ID, {}, { sign_type = "MD5" })
    assert.is_nil(msg)
    assert.matches("sign_type", err)
  end)
end)

describe("sandbox callbacks: app-gateway messages (rule V2)", function()
  it("sends the gateway check as verifygw XML, signed with sign_type, without app_id", function()
    local msg = assert(messages.gateway_check(signer, APP_ID, { now = NOW }))
    local f = msg.fields
    assert.are.equal("alipay.service.check", f.service)
    assert.is_nil(f.app_id)
    assert.are.equal(string_to_sign(f, "V2"), msg.content)
    assert.truthy(msg.content:find("sign_type=RSA2", 1, true))
    assert.is_true(signer_pub:verify(msg.content, f.sign, "RSA2"))
    local doc = assert(xml.parse(f.biz_content))
    assert.are.equal("verifygw", doc.EventType)
    assert.are.equal(APP_ID, doc.AppId)
    local reply, info = gateway.handle(client, msg.body, {}, { clock = at(NOW) })
    assert.are.equal("check", info.kind)
    assert.is_nil(info.error)
    assert.are.equal(gateway.check_reply(client, true), reply)
  end)

  for _, kind in ipairs { "follow", "unfollow", "click", "enter" } do
    it("sends a " .. kind .. " event the client's gateway dispatches to its " .. kind .. " handler", function()
      local msg = assert(messages.life_event(signer, APP_ID, { type = kind, user_id = "2088102122485786",
        action_param = kind == "click" and "menu_1" or nil }, { now = NOW, now_ms = NOW * 1000 + 123 }))
      local f = msg.fields
      assert.are.equal("alipay.mobile.public.message.notify", f.service)
      assert.are.equal(APP_ID, f.app_id)
      assert.are.equal("V2", msg.rule)
      assert.is_true(signer_pub:verify(string_to_sign(f, "V2"), f.sign, "RSA2"))
      local got
      local reply, info = gateway.handle(client, msg.body, { [kind] = function(event) got = event end },
        { clock = at(NOW + 1), seen = notify.memory_store() })
      assert.are.equal("success", reply, info.error)
      assert.are.equal(kind, info.event)
      assert.are.equal("2088102122485786", got.FromUserId)
      assert.are.equal("2088102122485786", got.FromAlipayUserId)
      assert.are.equal(tostring(NOW * 1000 + 123), got.CreateTime)
      assert.are.equal("event", got.MsgType)
      assert.are.equal(kind, got.EventType)
      assert.are.equal(APP_ID, got.AppId)
      if kind == "click" then assert.are.equal("menu_1", got.ActionParam) end
    end)
  end

  it("keeps any text in CDATA, \"]]>\" and markup included", function()
    local text = "a]]><b>&amp;</b>]]>z"
    local msg = assert(messages.life_event(signer, APP_ID, { type = "click", user_id = "2088", action_param = text },
      { now = NOW }))
    assert.are.equal(text, assert(xml.parse(msg.fields.biz_content)).ActionParam)
  end)

  it("refuses an unknown event type or a bad user id, without echoing it", function()
    local long = ("z"):rep(500)
    for _, event in ipairs { { type = "subscribe", user_id = "1" }, { type = long, user_id = "1" },
      { type = "follow" }, { type = "follow", user_id = "<x>" }, { type = "follow", user_id = long },
      { type = "click", user_id = "1", action_param = ("p"):rep(2000) } } do
      local msg, err = messages.life_event(signer, APP_ID, event, { now = NOW })
      assert.is_nil(msg)
      assert.matches("^event%.", err)
      assert.is_nil(err:find(long, 1, true))
    end
    assert.is_nil((messages.life_event(signer, APP_ID, "follow")))
  end)
end)

describe("sandbox callbacks: schedule and URLs", function()
  it("retries on Alipay's schedule: 4m, 10m, 10m, 1h, 2h, 6h, 15h (8 attempts, about 25 hours)", function()
    assert.are.same({ 240, 600, 600, 3600, 7200, 21600, 54000 }, callback.SCHEDULE_S)
    local total = 0
    for _, d in ipairs(callback.SCHEDULE_S) do total = total + d end
    assert.are.equal(24 * 3600 + 24 * 60, total)
  end)

  it("delivers over plain http to an IP address or localhost only", function()
    assert.are.same({ host = "127.0.0.1", port = 8080, path = "/alipay/notify?x=1", authority = "127.0.0.1:8080" },
      sender.parse_url("http://127.0.0.1:8080/alipay/notify?x=1"))
    assert.are.same({ host = "127.0.0.1", port = 80, path = "/", authority = "localhost" },
      sender.parse_url("http://localhost"))
    for _, bad in ipairs { "https://127.0.0.1/n", "http://example.com/n", "http://127.0.0.1:0/", "ftp://1.2.3.4/",
      "http://127.0.0.1/a b", "http://999.0.0.1/", "127.0.0.1:8080/n", "" } do
      local target, err = sender.parse_url(bad)
      assert.is_nil(target, bad)
      assert.matches("^url: ", err)
    end
  end)
end)
