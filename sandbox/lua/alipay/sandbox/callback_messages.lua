-- The messages the sandbox sends as Alipay (docs/protocol.md §3): built
-- and signed here, delivered by alipay.sandbox.callback_sender. Pure Lua
-- 5.4 / LuaJIT 2.1 over alipay.core: no ngx, no sockets, so that
-- spec/unit can build and check every message without a network.
--
--   messages.notification(signer, app_id, params, opts) -> message | nil, err
--       an asynchronous notification for notify_url, rule V1: sign and
--       sign_type are left out of the string to sign
--   messages.gateway_check(signer, app_id, opts)         -> message | nil, err
--       alipay.service.check (EventType verifygw), rule V2
--   messages.life_event(signer, app_id, event, opts)     -> message | nil, err
--       a Life Account event (follow, unfollow, click, enter) for the app
--       gateway, rule V2, the event as Alipay's XML in biz_content
--
-- signer is an alipay.core private key (the sandbox's "Alipay" key);
-- opts.now (Unix seconds, default os.time()), opts.now_ms (default now *
-- 1000), opts.notify_id, opts.sign_type ("RSA2", the default, or "RSA").
-- A message is {kind =, rule =, fields = {the form fields, sign included},
-- body = the form-encoded body, content = the string that was signed,
-- event = the event's type (gateway messages)}.
--
-- Errors name the offending field and never echo its value beyond a short
-- token: the caller's input may be anything.
local core = require "alipay.core"
local beijing_time = require "alipay.util.beijing_time"

local M = {}

M.NOTIFY_DEFAULTS = {
  notify_type = "trade_status_sync", charset = "utf-8", version = "1.0",
}
M.CHECK_SERVICE = "alipay.service.check"
M.LIFE_SERVICE = "alipay.mobile.public.message.notify"
-- The events of a Life Account the sandbox can send (docs/protocol.md §3.5).
M.EVENTS = { follow = true, unfollow = true, click = true, enter = true }

local SIGN_TYPES = { RSA2 = true, RSA = true }
local MAX_VALUE_BYTES = 16 * 1024
local MAX_FIELDS = 100

local V1 = { exclude = { "sign_type" } }
-- What the receiver takes (alipay.inbound.form), and what a record may hold.
M.MAX_BODY_BYTES = 64 * 1024

local function short(text)
  text = tostring(text)
  if #text > 40 or text:find("[^%w%._%-]") then return "(" .. #text .. " bytes)" end
  return text
end

local function sign_type_of(opts)
  local t = opts.sign_type or "RSA2"
  if not SIGN_TYPES[t] then return nil, "sign_type: expected RSA2 or RSA, got " .. short(t) end
  return t
end

local function now_of(opts)
  local now = opts.now or os.time()
  if type(now) ~= "number" then return nil, "now: expected Unix seconds" end
  return now
end

-- A 32-hex-digit id, different for every message of a run. Alipay's
-- notify_id is an opaque token; its exact format is not documented.
local id_seq = 0
function M.new_notify_id(now)
  id_seq = id_seq + 1
  local t = math.floor((now or os.time()))
  return ("%08x%08x%08x%08x"):format(t % 4294967296, id_seq % 4294967296,
    math.random(0, 2147483646), math.random(0, 2147483646))
end

local function finish(kind, rule, fields, signer, sign_type)
  local content = core.sign_content(fields, rule == "V1" and V1 or nil)
  local sign, err = signer:sign(content, sign_type)
  if not sign then return nil, "signing failed: " .. tostring(err) end
  fields.sign = sign
  local body = core.form_encode(fields)
  if #body > M.MAX_BODY_BYTES then
    return nil, "the message would be " .. #body .. " bytes, over the " .. M.MAX_BODY_BYTES .. " an endpoint takes"
  end
  return { kind = kind, rule = rule, fields = fields, content = content, body = body }
end

-- ---- notify_url ----

-- The caller's params over the defaults. Values are strings (numbers are
-- written as text); sign is always the sandbox's own.
local function merge_params(params)
  if params == nil then return {} end
  if type(params) ~= "table" then return nil, "params: expected a table of name = value" end
  local out, n = {}, 0
  for k, v in pairs(params) do
    n = n + 1
    if type(k) ~= "string" or not k:match("^[%w_%.%-]+$") or #k > 64 then
      return nil, "params: a field name must be letters, digits, '_', '.' or '-' (at most 64)"
    end
    if type(v) == "number" then
      v = (v == math.floor(v) and math.abs(v) < 2 ^ 53) and ("%d"):format(v) or tostring(v)
    end
    if type(v) ~= "string" then return nil, "params." .. k .. ": expected a string" end
    if #v > MAX_VALUE_BYTES then return nil, "params." .. k .. ": longer than " .. MAX_VALUE_BYTES .. " bytes" end
    if k == "sign" then return nil, "params.sign: the sandbox signs the message itself" end
    out[k] = v
  end
  if n > MAX_FIELDS then return nil, "params: more than " .. MAX_FIELDS .. " fields" end
  return out
end

function M.notification(signer, app_id, params, opts)
  opts = opts or {}
  local given, err = merge_params(params)
  if not given then return nil, err end
  local sign_type
  sign_type, err = sign_type_of(opts)
  if not sign_type then return nil, err end
  local now
  now, err = now_of(opts)
  if not now then return nil, err end
  local fields = {
    notify_id = opts.notify_id or M.new_notify_id(now),
    notify_time = beijing_time.format(now),
    app_id = app_id,
  }
  for k, v in pairs(M.NOTIFY_DEFAULTS) do fields[k] = v end
  for k, v in pairs(given) do fields[k] = v end
  -- sign_type is the one the message is signed with, whatever params say.
  fields.sign_type = sign_type
  return finish("notify", "V1", fields, signer, sign_type)
end

-- ---- the app gateway ----

-- A CDATA section holds anything but "]]>": split it across two sections.
local function cdata(value)
  return "<![CDATA[" .. value:gsub("%]%]>", "]]]]><![CDATA[>") .. "]]>"
end

-- <XML> with the fields in order: {name, value[, plain]}; plain values
-- (digits only) are written without CDATA, as Alipay writes CreateTime.
local function xml_document(fields)
  local out = { "<XML>" }
  for _, f in ipairs(fields) do
    local name, value, plain = f[1], f[2], f[3]
    out[#out + 1] = "<" .. name .. ">" .. (plain and value or cdata(value)) .. "</" .. name .. ">"
  end
  out[#out + 1] = "</XML>"
  return table.concat(out)
end

local function gateway_message(kind, service, signer, app_id, xml_fields, opts, with_app_id)
  local sign_type, err = sign_type_of(opts)
  if not sign_type then return nil, err end
  local fields = { service = service, charset = "UTF-8", sign_type = sign_type,
    biz_content = xml_document(xml_fields) }
  -- The gateway check signs only biz_content, charset, service and
  -- sign_type (its XML names the app); Life Account messages carry app_id.
  if with_app_id then fields.app_id = app_id end
  return finish(kind, "V2", fields, signer, sign_type)
end

local function ms_of(opts, now)
  local ms = opts.now_ms or now * 1000
  return ("%d"):format(math.floor(ms))
end

local function opt_text(t, key, path)
  local v = t[key]
  if v == nil then return "" end
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then return nil, path .. "." .. key .. ": expected a string" end
  if #v > 1024 then return nil, path .. "." .. key .. ": longer than 1024 bytes" end
  return v
end

function M.gateway_check(signer, app_id, opts)
  opts = opts or {}
  local now, err = now_of(opts)
  if not now then return nil, err end
  local msg
  msg, err = gateway_message("check", M.CHECK_SERVICE, signer, app_id, {
    { "AppId", app_id }, { "CreateTime", ms_of(opts, now), true }, { "MsgType", "event" },
    { "EventType", "verifygw" }, { "ActionParam", "" }, { "AgreementId", "" }, { "AccountNo", "" },
  }, opts, false)
  if msg then msg.event = "verifygw" end
  return msg, err
end

-- event = {type = "follow" | "unfollow" | "click" | "enter", user_id = the
-- user's id in the app's id type, action_param =, agreement_id =,
-- account_no = (optional text)}.
function M.life_event(signer, app_id, event, opts)
  opts = opts or {}
  if type(event) ~= "table" then return nil, "event: expected a table {type =, user_id =}" end
  if not M.EVENTS[event.type] then
    return nil, "event.type: expected follow, unfollow, click or enter, got " .. short(event.type)
  end
  local user = event.user_id
  if type(user) ~= "string" or not user:match("^[%w_%-]+$") or #user > 64 then
    return nil, "event.user_id: expected the user's id (letters, digits, '_' or '-', at most 64)"
  end
  local now, err = now_of(opts)
  if not now then return nil, err end
  local extra = {}
  for _, key in ipairs { "action_param", "agreement_id", "account_no" } do
    extra[key], err = opt_text(event, key, "event")
    if not extra[key] then return nil, err end
  end
  local msg
  msg, err = gateway_message("event", M.LIFE_SERVICE, signer, app_id, {
    { "AppId", app_id }, { "FromUserId", user }, { "FromAlipayUserId", user },
    { "CreateTime", ms_of(opts, now), true }, { "MsgType", "event" }, { "EventType", event.type },
    { "ActionParam", extra.action_param }, { "AgreementId", extra.agreement_id },
    { "AccountNo", extra.account_no },
  }, opts, true)
  if msg then msg.event = event.type end
  return msg, err
end

return M
