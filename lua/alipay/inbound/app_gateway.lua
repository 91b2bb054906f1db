-- The app gateway (docs/protocol.md §3.4–§3.7): the URL Alipay posts app
-- messages to. One rule, V2 (only sign is left out of the string to sign,
-- and sign_type is required), and a closed set of kinds
-- (alipay.inbound.message_kind): the gateway check, Life Account
-- messages, message-service pushes and service-market orders. Anything
-- else, a payment notification above all, is refused: it belongs at
-- notify_url, and accepting it here would mark it seen for nobody.
--
--   gateway.handle(client, body, handlers, opts) -> reply_body, info
--     body      the raw form body (or a decoded table)
--     handlers  { [event] = function(event, info) ... end, default = ... }
--               A Life Account message dispatches on its EventType (follow,
--               unfollow, click, enter, ...) or, without one, its MsgType
--               (text, image, ...); `event` is the biz_content XML as a
--               table keyed by Alipay's element names (AppId, FromUserId,
--               FromAlipayUserId, CreateTime, MsgType, EventType,
--               ActionParam, AgreementId, AccountNo, ...). A
--               message-service push dispatches on msg_method, a
--               service-market order on method (else notify_type); `event`
--               is a copy of the parameters, plus `biz` when biz_content is
--               a JSON object. A handler that raises or returns false fails
--               the message: the reply is "fail", so Alipay retries.
--     opts.seen a replay store (notify.memory_store, notify.shared_dict_store;
--               it needs :add and :delete); opts.ttl
--     opts.window, opts.skew, opts.clock, opts.sign_types,
--     opts.allow_no_notify_id, opts.max_body_bytes, opts.max_fields
--               as for notify.verify (alipay.inbound.notify)
--     opts.log  function(level, msg) with level "error" | "warn" | "info"
--               (default ngx.log in nginx, stderr elsewhere); opts.ngx
--     info      { service =, kind =, event =, ["repeat"] = bool, verified = bool,
--                 error = the one-line message | nil, detail = the typed error | nil,
--                 params = verified params,
--                 content_type = the reply's Content-Type }
--
--   gateway.serve_ngx(client, handlers, opts) -> info: the whole
--   content_by_lua handler (read the body, handle, send the reply).
local cjson = require("cjson").new()
local errors = require "alipay.errors"
local runtime = require "alipay.runtime"
local form = require "alipay.inbound.form"
local freshness = require "alipay.inbound.freshness"
local message_kind = require "alipay.inbound.message_kind"
local policy = require "alipay.inbound.policy"
local refusal = require "alipay.inbound.refusal"
local replay = require "alipay.inbound.replay"
local signature = require "alipay.inbound.signature"
local values = require "alipay.inbound.values"
local xml = require "alipay.inbound.xml"

local gateway = {}

local XML_TYPE = "text/xml; charset=utf-8"
local TEXT_TYPE = "text/plain; charset=utf-8"

local loggable = refusal.loggable

gateway.parse_xml = xml.parse

-- ---- logging ----

-- opts.log, else alipay.runtime's sink: the error log of opts.ngx when
-- given, of nginx inside nginx, else stderr.
local function log_of(opts, ngx)
  return runtime.logger(opts.log, ngx)
end

-- One line of at most 200 characters: a handler's error message is the
-- application's text, but a log line must stay a line.
local function one_line(text)
  text = tostring(text):gsub("[%c]+", " ")
  if #text > 200 then text = text:sub(1, 200) .. "..." end
  return text
end

-- ---- replies ----

-- The signed XML envelope of the gateway check: INNER is signed with the
-- app private key, and carries the app public key on one line. Both
-- envelopes are built once per client configuration: an RSA PKCS#1 v1.5
-- signature of the same bytes is always the same, and signing per request
-- would let anyone make the gateway spend a private-key operation on each
-- forged check it posts.
local replies = setmetatable({}, { __mode = "k" })

local function build_check_reply(cfg, success)
  local public_key = "<biz_content>" .. cfg.private_key:public_base64() .. "</biz_content>"
  local inner = success and ("<success>true</success>" .. public_key)
    or ("<success>false</success><error_code>VERIFY_FAILED</error_code>" .. public_key)
  return '<?xml version="1.0" encoding="UTF-8"?><alipay><response>' .. inner .. "</response><sign>" ..
    cfg.private_key:sign(inner, cfg.sign_type) .. "</sign><sign_type>" .. cfg.sign_type .. "</sign_type></alipay>"
end

function gateway.check_reply(client, success)
  local cfg = client.config
  local cached = replies[cfg]
  if not cached then
    cached = {}
    replies[cfg] = cached
  end
  local which = success and "success" or "failure"
  local reply = cached[which]
  if not reply then
    reply = build_check_reply(cfg, success)
    cached[which] = reply
  end
  return reply
end

-- A refused message: the error envelope for a check, "fail" otherwise,
-- and one log line with the reason, service and app_id (from the request,
-- so reduced to loggable tokens) and the log-safe message.
-- info.error is the one line (docs/errors.md), info.detail the typed error.
local function fail_info(info, detail)
  info.detail, info.error = detail, tostring(detail)
end

local function refuse(client, info, detail, log, raw)
  fail_info(info, detail)
  log("warn", ("alipay gateway: refused a message: reason=%s service=%s app_id=%s: %s"):format(
    tostring(detail.reason), loggable(info.service), loggable(raw and raw.app_id), tostring(detail.msg)))
  if info.kind == "check" then
    info.content_type = XML_TYPE
    return gateway.check_reply(client, false), info
  end
  return "fail", info
end

-- ---- dispatch ----

-- Calls the handler at most once per message: the seen-mark is set before
-- the call (so two deliveries racing in two workers dispatch once) and
-- removed when the handler fails (so Alipay's retry dispatches again).
local function dispatch(handlers, event, info, key, ctx)
  local seen, log = ctx.opts.seen, ctx.log
  if seen and key then
    local fresh, store_detail = replay.mark(seen, key, ctx.ttl)
    if fresh == nil then
      fail_info(info, store_detail)
      log("error", "alipay gateway: " .. info.detail.msg .. " (event " .. loggable(info.event) .. ")")
      return "fail", info
    end
    if not fresh then
      info["repeat"] = true
      log("info", "alipay gateway: repeated " .. loggable(info.event) .. " message acknowledged again")
      return "success", info
    end
  end
  local handler = handlers[info.event] or handlers.default
  if not handler then
    log("info", "alipay gateway: no handler for " .. loggable(info.event) .. " (" .. loggable(info.service) ..
      "): acknowledged")
    return "success", info
  end
  local ok, result, herr = pcall(handler, event, info)
  if ok and result ~= false then return "success", info end
  local why = ok and (herr or "the handler returned false") or result
  if seen and key then seen:delete(key) end
  fail_info(info, errors.new("notify", { reason = "handler", verified = true, retryable = true,
    msg = "the " .. loggable(info.event) .. " handler failed: " .. one_line(why) }))
  log("error", "alipay gateway: " .. info.detail.msg .. "; answering fail so that Alipay retries")
  return "fail", info
end

-- The app named in a biz_content XML (AppId), when it names one. A message
-- whose form carries no app_id (the check always; Life Account messages
-- perhaps: the one public sample of Alipay's has none, docs/conformance.md)
-- must name this app there, inside the signed text.
local function check_xml_app_id(client, event, params)
  if event.AppId ~= nil and event.AppId ~= client.config.app_id then
    return refusal.new("foreign_app", "biz_content AppId " .. loggable(event.AppId) .. " is not this client's (" ..
      client.config.app_id .. ")", { verified = true })
  end
  if event.AppId == nil and params.app_id == nil then
    return refusal.new("foreign_app", "the message names no app: neither an app_id field nor an AppId in " ..
      "biz_content", { verified = true })
  end
end

-- The event of a Life Account message: EventType under MsgType "event",
-- as our docs have it (docs/protocol.md §3.5); the one public sample of
-- Alipay's has the two the other way round (MsgType "click", EventType
-- "event"), so whichever of the two is not "event" names it.
local function event_name(event)
  local msg_type, event_type = event.MsgType, event.EventType
  if event_type ~= nil and event_type ~= "event" then return event_type end
  if msg_type ~= nil and msg_type ~= "event" then return msg_type end
  return event_type or msg_type
end

-- The check is answered, never dispatched: no replay store, no age (it
-- changes nothing, and its reply is the same every time).
local function handle_check(client, params, info, ctx)
  info.content_type = XML_TYPE
  local event, xerr = xml.parse(params.biz_content or "")
  if event then info.event = event.EventType end
  local detail
  if not event or info.event ~= "verifygw" then
    detail = refusal.new("malformed", xerr or "the gateway check is not a verifygw event", { verified = true })
  else
    detail = check_xml_app_id(client, event, params)
  end
  if detail then return refuse(client, info, detail, ctx.log, params) end
  return gateway.check_reply(client, true), info
end

-- Life Account messages carry no notify_id: the user, the time and the
-- kind of the event identify a repeat. CreateTime is in milliseconds.
local function handle_life_account(client, params, handlers, info, ctx)
  local event, xerr = xml.parse(params.biz_content or "")
  local detail
  if not event then
    detail = refusal.new("malformed", xerr, { verified = true })
  else
    detail = check_xml_app_id(client, event, params)
  end
  if not detail then
    local created = type(event.CreateTime) == "string" and event.CreateTime or nil
    detail = freshness.check(ctx.fresh, freshness.millis(created), "CreateTime", created)
  end
  if detail then return refuse(client, info, detail, ctx.log, params) end
  info.event = event_name(event)
  local user = event.FromUserId or event.FromAlipayUserId or event.UserId
  local key = replay.key("gateway", "life_account", (type(user) == "string" and user or "-") .. ":" ..
    event.CreateTime .. ":" .. tostring(info.event))
  return dispatch(handlers, event, info, key, ctx)
end

-- Message-service pushes and service-market orders: keyed by notify_id,
-- dated by utc_timestamp (milliseconds) and notify_time respectively.
local DATED_BY = {
  message_service = { field = "utc_timestamp", parse = freshness.millis },
  service_market = { field = "notify_time", parse = freshness.beijing },
}

local function handle_notification(client, params, handlers, info, ctx)
  local dated = DATED_BY[info.kind]
  local sent = params[dated.field]
  local detail = freshness.check(ctx.fresh, dated.parse(sent), dated.field, sent)
  local id = params.notify_id
  if not detail and id == nil and not ctx.opts.allow_no_notify_id then
    detail = refusal.new("no_notify_id", "the " .. info.kind .. " message carries no notify_id, so a replay " ..
      "could not be recognised", { verified = true })
  end
  if detail then return refuse(client, info, detail, ctx.log, params) end
  local event = {}
  for k, v in pairs(params) do event[k] = v end
  if (params.biz_content or ""):find("^%s*{") then
    local ok, biz = pcall(cjson.decode, params.biz_content)
    if ok and type(biz) == "table" then event.biz = biz end
  end
  info.event = params.msg_method or params.method or params.notify_type
  return dispatch(handlers, event, info, id and replay.key("gateway", info.kind, id), ctx)
end

local function context(client, opts)
  local ctx = policy.of(client, opts, "gateway.handle", true)
  ctx.opts, ctx.log = opts, log_of(opts, opts.ngx)
  return ctx
end

function gateway.handle(client, body, handlers, opts)
  opts = opts or {}
  handlers = handlers or {}
  if type(body) ~= "string" and type(body) ~= "table" then
    error("gateway.handle: body must be a string or a table of parameters, got a " .. type(body), 2)
  end
  local ctx = context(client, opts)
  local info = { verified = false, ["repeat"] = false, content_type = TEXT_TYPE }
  local raw, _, detail = form.decode(body, opts)
  if not raw then return refuse(client, info, detail, ctx.log) end
  info.service = raw.service or raw.msg_method or raw.method or raw.notify_type
  info.kind = message_kind.gateway(raw)
  if not info.kind then
    return refuse(client, info, refusal.new("misdirected", "the app gateway does not take this message (" ..
      loggable(info.service) .. "): a notification goes to notify_url"), ctx.log, raw)
  end
  -- app_id may be absent from the check and from Life Account messages:
  -- their signed XML names the app (check_xml_app_id).
  detail = signature.check(client, raw, message_kind.RULE[info.kind], ctx.accepted, ctx.names,
                           info.kind == "check" or info.kind == "life_account")
  if detail then return refuse(client, info, detail, ctx.log, raw) end
  local params
  params, _, detail = values.of(raw)
  if not params then return refuse(client, info, detail, ctx.log, raw) end
  info.verified, info.params = true, params
  if info.kind == "check" then return handle_check(client, params, info, ctx) end
  if info.kind == "life_account" then return handle_life_account(client, params, handlers, info, ctx) end
  return handle_notification(client, params, handlers, info, ctx)
end

function gateway.serve_ngx(client, handlers, opts)
  opts = opts or {}
  local ngx = opts.ngx or runtime.ngx()
  local body, _, detail = form.read_ngx_body(ngx, opts)
  local reply, info
  if body then
    reply, info = gateway.handle(client, body, handlers, opts)
  else
    reply, info = refuse(client, { verified = false, ["repeat"] = false, content_type = TEXT_TYPE }, detail,
                         log_of(opts, ngx))
  end
  ngx.status = 200
  ngx.header["Content-Type"] = info.content_type
  ngx.print(reply)
  return info
end

return gateway
