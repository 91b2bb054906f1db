-- The app gateway: the gateway check reply (against the protocol vector),
-- Life Account events parsed and dispatched once under Alipay's retries,
-- and refusals that log without secrets. Messages are signed here (rule
-- V2) by a fixture key acting as "Alipay".
local helpers = require "helpers"
local alipay = require "alipay"
local notify = require "alipay.inbound.notify"
local gateway = require "alipay.inbound.app_gateway"
local beijing_time = require "alipay.util.beijing_time"
local core = alipay.core

local APP_ID = "2021000122671080"
local app_key_text = helpers.key_text("app_private_pkcs1.pem")
local app_pub_text = helpers.key_text("app_public.pem")
local alipay_key = assert(core.private_key(app_key_text)) -- "Alipay" in these specs
local app_pub = assert(core.public_key(app_pub_text))
local NO_TRANSPORT = { request = function() error("the gateway makes no calls") end }

local function new_client(app_id, alipay_public_key)
  return assert(alipay.new { app_id = app_id or APP_ID, private_key = app_key_text,
                             alipay_public_key = alipay_public_key or app_pub_text, transport = NO_TRANSPORT })
end

-- A biz_content document as Alipay writes it: CDATA fields under <XML>.
local function biz_xml(fields, declaration)
  local out = { declaration or "", "<XML>" }
  for _, kv in ipairs(fields) do
    out[#out + 1] = ("<%s><![CDATA[%s]]></%s>"):format(kv[1], kv[2], kv[1])
  end
  out[#out + 1] = "</XML>"
  return table.concat(out)
end

local function event_xml(event_type, extra)
  local fields = {
    { "AppId", APP_ID }, { "FromUserId", "2088102122485786" }, { "FromAlipayUserId", "2088102122485786" },
    { "CreateTime", "1715593765123" }, { "MsgType", "event" }, { "EventType", event_type },
    { "ActionParam", "" }, { "AgreementId", "" }, { "AccountNo", "" },
  }
  for _, kv in ipairs(extra or {}) do
    local replaced = false
    for _, f in ipairs(fields) do
      if f[1] == kv[1] then f[2], replaced = kv[2], true end
    end
    if not replaced then fields[#fields + 1] = kv end
  end
  return biz_xml(fields)
end

-- A gateway message signed under rule V2 (sign_type kept in the string).
local function message(service, biz_content, extra)
  local p = { app_id = APP_ID, service = service, charset = "UTF-8", sign_type = "RSA2",
              biz_content = biz_content }
  for k, v in pairs(extra or {}) do p[k] = v or nil end
  p.sign = alipay_key:sign(core.sign_content(p), p.sign_type)
  return p
end

local function form(p) return core.form_encode(p) end

-- The fixtures are dated CreateTime 1715593765123 (ms): these specs
-- handle them a minute later. Freshness itself is spec/unit/33.
local FIXTURE_NOW = 1715593765 + 60
local function at(now, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.clock = o.clock or function() return now end
  return o
end
local function handle(client, body, handlers, opts)
  return gateway.handle(client, body, handlers, at(FIXTURE_NOW, opts))
end

-- Alipay's gateway check signs only biz_content, charset, service and
-- sign_type: it carries no app_id field (its XML names the app).
local function check_body(extra, xml_app_id)
  local extra_params = { app_id = false }
  for k, v in pairs(extra or {}) do extra_params[k] = v end
  return form(message("alipay.service.check", biz_xml {
    { "AppId", xml_app_id or APP_ID }, { "CreateTime", "1715593765123" }, { "MsgType", "event" },
    { "EventType", "verifygw" }, { "ActionParam", "" }, { "AgreementId", "" }, { "AccountNo", "" },
    { "FromUserId", "2088102122485786" },
  }, extra_params))
end

local function event_body(event_type, extra_fields, extra_params)
  return form(message("alipay.mobile.public.message.notify", event_xml(event_type, extra_fields), extra_params))
end

-- Collects log lines.
local function log_capture()
  local lines = {}
  return lines, function(level, msg) lines[#lines + 1] = { level = level, msg = msg } end
end

-- The inner <response> and <sign> of a check reply, and whether the
-- signature verifies with the app public key over exactly INNER.
local function open_envelope(reply)
  local inner, sign, sign_type =
    reply:match('^<%?xml version="1.0" encoding="UTF%-8"%?><alipay><response>(.*)</response>' ..
                "<sign>([^<]*)</sign><sign_type>([^<]*)</sign_type></alipay>$")
  assert(inner, "not a check envelope: " .. reply)
  return inner, sign, sign_type, app_pub:verify(inner, sign, sign_type)
end

describe("gateway: alipay.service.check", function()
  local client = new_client()

  it("answers with the signed envelope of the protocol vector", function()
    local v = helpers.vectors().gateway_verify_reply
    assert.are.equal("app_private_pkcs1.pem", v.key)
    local reply, info = handle(client, check_body(), {}, { log = function() end })
    assert.are.equal('<?xml version="1.0" encoding="UTF-8"?><alipay><response>' .. v.response_inner ..
                     "</response><sign>" .. v.sign .. "</sign><sign_type>RSA2</sign_type></alipay>", reply)
    local inner, _, sign_type, ok = open_envelope(reply)
    assert.are.equal(v.response_inner, inner)
    assert.are.equal("RSA2", sign_type)
    assert.is_true(ok)
    assert.are.equal("alipay.service.check", info.service)
    assert.are.equal("verifygw", info.event)
    assert.is_true(info.verified)
    assert.is_nil(info.error)
    assert.matches("^text/xml", info.content_type)
  end)

  it("builds the same reply through gateway.check_reply", function()
    local reply = gateway.check_reply(client, true)
    assert.are.equal(handle(client, check_body(), {}, { log = function() end }), reply)
  end)

  it("answers a forged check with the signed VERIFY_FAILED envelope", function()
    local p = core.form_decode(check_body())
    p.biz_content = p.biz_content:gsub("1715593765123", "1715593765124")
    local lines, log = log_capture()
    local reply, info = handle(client, form(p), {}, { log = log })
    local inner, _, _, ok = open_envelope(reply)
    assert.is_true(ok)
    assert.are.equal("<success>false</success><error_code>VERIFY_FAILED</error_code><biz_content>" ..
                     client.config.private_key:public_base64() .. "</biz_content>", inner)
    assert.is_false(info.verified)
    assert.are.equal("forged", info.detail.reason)
    assert.matches("^text/xml", info.content_type)
    assert.are.equal(1, #lines)
    assert.matches("reason=forged service=alipay.service.check app_id=%?", lines[1].msg)
  end)

  it("answers VERIFY_FAILED to an unsigned check, a foreign one, and one that is not verifygw", function()
    local unsigned = core.form_decode(check_body())
    unsigned.sign = nil
    local bodies = {
      unsigned = form(unsigned),
      foreign_app = check_body { app_id = "2021000000000001" },
      foreign_xml = check_body(nil, "2021000000000001"),
      malformed = form(message("alipay.service.check", event_xml("follow"))),
    }
    for reason, body in pairs(bodies) do
      local reply, info = handle(client, body, {}, { log = function() end })
      local inner, _, _, ok = open_envelope(reply)
      assert.is_true(ok)
      assert.matches("<error_code>VERIFY_FAILED</error_code>", inner)
      assert.are.equal(reason == "foreign_xml" and "foreign_app" or reason, info.detail.reason)
    end
  end)

  it("is answered every time (no replay store involved)", function()
    local seen = notify.memory_store(10)
    local body = check_body()
    local first = handle(client, body, {}, { seen = seen })
    local second, info = handle(client, body, {}, { seen = seen })
    assert.are.equal(first, second)
    assert.is_false(info["repeat"])
  end)
end)

describe("gateway: Life Account events", function()
  local client = new_client()

  local function recorder()
    local calls = {}
    local function record(event, info) calls[#calls + 1] = { event = event, info = info } end
    return calls, { follow = record, unfollow = record, click = record, enter = record }
  end

  for _, event_type in ipairs { "follow", "unfollow", "click", "enter" } do
    it("parses and dispatches " .. event_type, function()
      local calls, handlers = recorder()
      local extra = event_type == "click" and { { "ActionParam", '{"scene":"menu_1"}' } }
        or event_type == "enter" and { { "ActionParam", '{"scene":{"sceneId":"1234"}}' } } or nil
      local reply, info = handle(client, event_body(event_type, extra), handlers, { log = function() end })
      assert.are.equal("success", reply)
      assert.are.equal(1, #calls)
      local event = calls[1].event
      assert.are.equal(event_type, event.EventType)
      assert.are.equal(APP_ID, event.AppId)
      assert.are.equal("2088102122485786", event.FromUserId)
      assert.are.equal("2088102122485786", event.FromAlipayUserId)
      assert.are.equal("1715593765123", event.CreateTime)
      assert.are.equal("event", event.MsgType)
      assert.are.equal("", event.AgreementId)
      if extra then assert.are.equal(extra[1][2], event.ActionParam) end
      assert.are.equal(info, calls[1].info)
      assert.are.equal(event_type, info.event)
      assert.are.equal("alipay.mobile.public.message.notify", info.service)
      assert.is_true(info.verified)
      assert.is_false(info["repeat"])
      assert.are.equal(APP_ID, info.params.app_id)
      assert.matches("^text/plain", info.content_type)
    end)
  end

  it("falls back to handlers.default, and acknowledges events nobody handles", function()
    local got
    local reply = handle(client, event_body("unfollow"), { default = function(e) got = e end },
                                 { log = function() end })
    assert.are.equal("success", reply)
    assert.are.equal("unfollow", got.EventType)
    local lines, log = log_capture()
    assert.are.equal("success", handle(client, event_body("follow"), {}, { log = log }))
    assert.matches("no handler for follow", lines[1].msg)
  end)

  it("dispatches messages without EventType on MsgType", function()
    local got
    local xml = biz_xml { { "AppId", APP_ID }, { "FromUserId", "2088102122485786" },
                          { "CreateTime", "1715593765999" }, { "MsgType", "text" }, { "Text", "你好 <&>" } }
    local body = form(message("alipay.mobile.public.message.notify", xml))
    assert.are.equal("success", handle(client, body, { text = function(e) got = e end }))
    assert.are.equal("你好 <&>", got.Text)
  end)

  it("reads plain text, layout whitespace around CDATA, entities and nested elements", function()
    local xml = '<?xml version="1.0" encoding="UTF-8"?>\n<XML>\n  <AppId>' .. APP_ID .. '</AppId>\n' ..
      "  <FromUserId>\n    <![CDATA[2088102122485786]]>\n  </FromUserId>\n" ..
      "  <CreateTime>1715593765123</CreateTime><MsgType>event</MsgType><EventType>click</EventType>\n" ..
      "  <ActionParam>a &amp; b &lt;c&gt;</ActionParam>\n" ..
      "  <UserInfo><Name><![CDATA[ 张三 ]]></Name><Level>3</Level></UserInfo>\n</XML>\n"
    local got
    local reply = handle(client, form(message("alipay.mobile.public.message.notify", xml)),
                                 { click = function(e) got = e end })
    assert.are.equal("success", reply)
    assert.are.equal(APP_ID, got.AppId)
    assert.are.equal("2088102122485786", got.FromUserId)
    assert.are.equal("a & b <c>", got.ActionParam)
    assert.are.same({ Name = " 张三 ", Level = "3" }, got.UserInfo)
  end)

  it("handles GBK messages: verified over GBK bytes, XML declared GBK, handler sees UTF-8", function()
    local function gbk(s) return assert(core.iconv("UTF-8", "GBK", s)) end
    local xml = gbk('<?xml version="1.0" encoding="GBK"?>' ..
                    event_xml("click", { { "ActionParam", '{"name":"菜单一"}' } }))
    local p = { app_id = APP_ID, service = "alipay.mobile.public.message.notify", charset = "GBK",
                sign_type = "RSA2", biz_content = xml }
    p.sign = alipay_key:sign(core.sign_content(p))
    local got
    local reply, info = handle(client, form(p), { click = function(e) got = e end })
    assert.are.equal("success", reply, info.error and tostring(info.error))
    assert.are.equal('{"name":"菜单一"}', got.ActionParam)
  end)

  it("refuses an event whose biz_content names another AppId", function()
    local lines, log = log_capture()
    local called = false
    local reply, info = handle(client, event_body("follow", { { "AppId", "2021000000000001" } }),
                                       { follow = function() called = true end }, { log = log })
    assert.are.equal("fail", reply)
    assert.are.equal("foreign_app", info.detail.reason)
    assert.is_false(called)
    assert.matches("reason=foreign_app", lines[1].msg)
  end)
end)

-- The one public sample of an Alipay Life Account message has no app_id
-- field and MsgType/EventType the other way round from our docs: either
-- form must be understood, and the app still checked.
describe("gateway: Life Account messages as the public sample has them", function()
  local client = new_client()

  it("accepts a message without app_id whose signed XML names this app", function()
    local got
    local reply, info = handle(client, event_body("follow", nil, { app_id = false }),
                               { follow = function(e) got = e end })
    assert.are.equal("success", reply, info.detail and tostring(info.detail.msg))
    assert.are.equal(APP_ID, got.AppId)
  end)

  it("refuses one without app_id whose XML names another app, or none", function()
    local quiet = { log = function() end }
    local reply, info = handle(client, event_body("follow", { { "AppId", "2021000000000001" } }, { app_id = false }),
                               {}, quiet)
    assert.are.equal("fail", reply)
    assert.are.equal("foreign_app", info.detail.reason)
    local xml = biz_xml { { "FromUserId", "2088102122485786" }, { "CreateTime", "1715593765123" },
                          { "MsgType", "event" }, { "EventType", "follow" } }
    reply, info = handle(client, form(message("alipay.mobile.public.message.notify", xml, { app_id = false })), {},
                         quiet)
    assert.are.equal("fail", reply)
    assert.are.equal("foreign_app", info.detail.reason)
    assert.matches("names no app", info.detail.msg)
  end)

  it("reads the event whichever of MsgType and EventType carries it", function()
    local got
    local body = event_body("event", { { "MsgType", "click" }, { "ActionParam", "menu" } }, { app_id = false })
    local reply, info = handle(client, body, { click = function(e) got = e end })
    assert.are.equal("success", reply, info.detail and tostring(info.detail.msg))
    assert.are.equal("click", info.event)
    assert.are.equal("menu", got.ActionParam)
  end)
end)

describe("gateway: retries and repeats", function()
  local client = new_client()

  it("reports a repeated message, answers success, and does not dispatch it again", function()
    local seen = notify.memory_store(100)
    local n = 0
    local handlers = { follow = function() n = n + 1 end }
    local body = event_body("follow")
    local reply, info = handle(client, body, handlers, { seen = seen, log = function() end })
    assert.are.equal("success", reply)
    assert.is_false(info["repeat"])
    reply, info = handle(client, body, handlers, { seen = seen, log = function() end })
    assert.are.equal("success", reply)
    assert.is_true(info["repeat"])
    assert.are.equal(1, n)
    -- another event of the same user at another time is new
    handle(client, event_body("follow", { { "CreateTime", "1715593765999" } }), handlers, { seen = seen })
    assert.are.equal(2, n)
  end)

  it("keys Life Account events by user, time and event, in the gateway's own namespace", function()
    local keys = {}
    local store = { add = function(_, key) keys[#keys + 1] = key return true end, delete = function() end }
    handle(client, event_body("follow", nil, { notify_id = "n-1" }), {}, { seen = store, log = function() end })
    handle(client, event_body("click"), {}, { seen = store, log = function() end })
    assert.are.same({ "gateway:life_account:2088102122485786:1715593765123:follow",
                      "gateway:life_account:2088102122485786:1715593765123:click" }, keys)
  end)

  it("answers fail when a handler raises, forgets the message, and dispatches Alipay's retry", function()
    local seen = notify.memory_store(100)
    local lines, log = log_capture()
    local attempts = 0
    local handlers = {
      follow = function()
        attempts = attempts + 1
        if attempts == 1 then error("database unavailable\nstack...") end
      end,
    }
    local body = event_body("follow")
    local reply, info = handle(client, body, handlers, { seen = seen, log = log })
    assert.are.equal("fail", reply)
    assert.are.equal("handler", info.detail.reason)
    assert.is_true(info.detail.retryable)
    assert.are.equal("error", lines[1].level)
    assert.matches("follow handler failed: .*database unavailable", lines[1].msg)
    assert.is_nil(lines[1].msg:find("\n", 1, true))
    reply, info = handle(client, body, handlers, { seen = seen, log = log })
    assert.are.equal("success", reply)
    assert.is_false(info["repeat"])
    assert.are.equal(2, attempts)
    reply, info = handle(client, body, handlers, { seen = seen, log = log })
    assert.are.equal("success", reply)
    assert.is_true(info["repeat"])
    assert.are.equal(2, attempts)
  end)

  it("treats a handler returning false as a failure", function()
    local seen = notify.memory_store(100)
    local reply, info = handle(client, event_body("click"), { click = function() return false, "busy" end },
                                       { seen = seen, log = function() end })
    assert.are.equal("fail", reply)
    assert.matches("busy", info.detail.msg)
    assert.is_true(seen:add("gateway:life_account:2088102122485786:1715593765123:click", 60))
  end)

  it("answers fail when the replay store fails", function()
    local store = { add = function() return nil, "no memory" end, delete = function() end }
    local called = false
    local reply, info = handle(client, event_body("follow"), { follow = function() called = true end },
                                       { seen = store, log = function() end })
    assert.are.equal("fail", reply)
    assert.are.equal("store", info.detail.reason)
    assert.is_false(called)
  end)

  it("requires a store that can forget (misuse raises)", function()
    assert.has_error(function()
      handle(client, event_body("follow"), {}, { seen = { add = function() return true end } })
    end)
  end)

  it("never lets a forged message mark the store", function()
    local seen = notify.memory_store(100)
    local p = core.form_decode(event_body("follow"))
    p.sign = alipay_key:sign("something else")
    local reply = handle(client, form(p), {}, { seen = seen, log = function() end })
    assert.are.equal("fail", reply)
    assert.are.equal(0, seen.count)
  end)
end)

describe("gateway: refusals", function()
  local client = new_client()

  -- Every refusal answers fail, calls no handler and logs one line with
  -- the reason and no signature, key or body.
  local function assert_refused(body, reason)
    local lines, log = log_capture()
    local called = false
    local handlers = { default = function() called = true end }
    local reply, info = handle(client, body, handlers, { log = log })
    assert.are.equal("fail", reply)
    assert.are.equal(reason, info.detail.reason, tostring(info.error))
    assert.is_false(called)
    assert.are.equal(1, #lines)
    local line = lines[1].msg
    assert.are.equal("warn", lines[1].level)
    assert.matches("reason=" .. reason, line)
    assert.is_nil(line:find("\n", 1, true), line)
    assert.is_nil(line:find("MII", 1, true), line)
    assert.is_nil(line:find("SECRET", 1, true), line)
    assert.is_nil(line:find("CDATA", 1, true), line)
    local sign = (type(body) == "string" and core.form_decode(body) or {}).sign
    if sign and #sign > 20 then assert.is_nil(line:find(sign:sub(1, 20), 1, true), line) end
    return info, line
  end

  it("refuses forged messages", function()
    local p = core.form_decode(event_body("follow", { { "ActionParam", "SECRET" } }))
    p.biz_content = p.biz_content:gsub("follow", "unfollow")
    local info, line = assert_refused(form(p), "forged")
    assert.is_false(info.verified)
    assert.matches("service=alipay.mobile.public.message.notify app_id=" .. APP_ID, line)
  end)

  it("refuses unsigned messages", function()
    local p = core.form_decode(event_body("follow", { { "ActionParam", "SECRET" } }))
    p.sign = nil
    assert_refused(form(p), "unsigned")
  end)

  it("refuses messages for another app", function()
    local _, line = assert_refused(event_body("follow", { { "ActionParam", "SECRET" } },
                                              { app_id = "2021000000000001" }), "foreign_app")
    assert.matches("app_id=2021000000000001", line)
  end)

  it("refuses a V1-signed message (sign_type left out of the signed string)", function()
    local p = { app_id = APP_ID, service = "alipay.mobile.public.message.notify", charset = "UTF-8",
                sign_type = "RSA2", biz_content = event_xml("follow") }
    p.sign = alipay_key:sign(core.sign_content(p, { exclude = { "sign_type" } }))
    assert_refused(form(p), "forged")
  end)

  it("refuses malformed bodies", function()
    assert_refused("", "malformed")
    assert_refused("a=%zz", "malformed")
    assert_refused(event_body("follow") .. "&service=again", "malformed")
  end)

  it("refuses malformed or hostile XML", function()
    local docs = {
      "<XML><AppId>" .. APP_ID .. "</AppId><EventType>follow</XML>",
      "<XML><AppId>" .. APP_ID .. "</AppId></XML><XML/>",
      "not xml at all SECRET",
      "",
      "<XML><AppId>1</AppId><AppId>" .. APP_ID .. "</AppId></XML>",
      '<!DOCTYPE XML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><XML><E>&b;</E></XML>',
      '<!DOCTYPE XML SYSTEM "file:///etc/passwd"><XML><E>x</E></XML>',
      "<XML>" .. ("<a>"):rep(20) .. ("</a>"):rep(20) .. "</XML>",
      "<XML>plain text</XML>",
      "<XML><EventType>follow\xff\xfe</EventType></XML>",
    }
    for _, xml in ipairs(docs) do
      local info = assert_refused(form(message("alipay.mobile.public.message.notify", xml)), "malformed")
      assert.is_true(info.verified)
    end
  end)
end)

describe("gateway: other gateway messages", function()
  it("verifies the V2 vector (a service-market order) and dispatches it on its method", function()
    local v = helpers.vectors().notify[2]
    local client = new_client(v.params.app_id, helpers.key_text(v.alipay_public_key))
    local got
    local handlers = { ["alipay.open.servicemarket.order.notify"] = function(e) got = e end }
    local sent = beijing_time.parse(v.params.notify_time)
    local reply, info = handle(client, form(v.params), handlers, { log = function() end,
                                                                  clock = function() return sent + 1 end })
    assert.are.equal("success", reply, info.error and tostring(info.error))
    assert.are.equal("麦禾商城模版", got.title)
    assert.are.equal("alipay.open.servicemarket.order.notify", info.event)
  end)

  -- A message-service push is signed as notifications are (rule V1):
  -- app_id, biz_content, charset, msg_method, notify_id, utc_timestamp
  -- and version are signed, sign_type is sent but not signed.
  local function push(rule)
    local p = { app_id = APP_ID, msg_method = "alipay.open.mini.messagetemplate.subscribe.changed",
                notify_id = "m-1", charset = "UTF-8", sign_type = "RSA2", version = "1.1",
                utc_timestamp = "1715593765123",
                biz_content = '{"user_id":"2088102122485786","status":"unsubscribe"}' }
    p.sign = alipay_key:sign(core.sign_content(p, rule == "V1" and { exclude = { "sign_type" } } or nil))
    return p
  end

  it("refuses a message-service push signed under rule V2", function()
    local reply, info = handle(new_client(), form(push("V2")), {}, { log = function() end })
    assert.are.equal("fail", reply)
    assert.are.equal("forged", info.detail.reason)
  end)

  it("dispatches message-service pushes (rule V1) on msg_method, with a JSON biz_content decoded", function()
    local client = new_client()
    local p = push("V1")
    local got
    local handlers = { [p.msg_method] = function(e) got = e end }
    local seen = notify.memory_store(10)
    assert.are.equal("success", handle(client, form(p), handlers, { seen = seen, log = function() end }))
    assert.are.equal("unsubscribe", got.biz.status)
    assert.are.equal(p.biz_content, got.biz_content)
    local _, info = handle(client, form(p), handlers, { seen = seen, log = function() end })
    assert.is_true(info["repeat"])
    assert.are.equal("message_service", info.kind)
    assert.is_false(seen:add("gateway:message_service:m-1", 60))
  end)
end)

describe("gateway.serve_ngx", function()
  local client = new_client()

  local function fake_ngx(req)
    local ngx = {
      ERR = 4, WARN = 5, INFO = 7, NOTICE = 6,
      var = { content_type = req.content_type or "application/x-www-form-urlencoded; charset=utf-8" },
      header = {}, printed = {}, logged = {},
      req = {
        get_method = function() return req.method or "POST" end,
        read_body = function() end,
        get_body_data = function() return req.data end,
        get_body_file = function() return nil end,
      },
    }
    function ngx.print(s) ngx.printed[#ngx.printed + 1] = s end
    function ngx.log(level, msg) ngx.logged[#ngx.logged + 1] = { level, msg } end
    return ngx
  end

  it("sends the check envelope as XML with status 200", function()
    local ngx = fake_ngx { data = check_body() }
    local info = gateway.serve_ngx(client, {}, at(FIXTURE_NOW, { ngx = ngx }))
    assert.are.equal(200, ngx.status)
    assert.matches("^text/xml", ngx.header["Content-Type"])
    assert.are.equal(gateway.check_reply(client, true), table.concat(ngx.printed))
    assert.are.equal("verifygw", info.event)
  end)

  it("sends success as text/plain", function()
    local ngx = fake_ngx { data = event_body("follow") }
    gateway.serve_ngx(client, { follow = function() end }, at(FIXTURE_NOW, { ngx = ngx }))
    assert.are.equal(200, ngx.status)
    assert.matches("^text/plain", ngx.header["Content-Type"])
    assert.are.equal("success", table.concat(ngx.printed))
  end)

  it("answers fail to a GET and logs through ngx.log", function()
    local ngx = fake_ngx { method = "GET" }
    local info = gateway.serve_ngx(client, {}, { ngx = ngx })
    assert.are.equal("fail", table.concat(ngx.printed))
    assert.are.equal("malformed", info.detail.reason)
    assert.are.equal(ngx.WARN, ngx.logged[1][1])
    assert.matches("reason=malformed", ngx.logged[1][2])
  end)
end)
