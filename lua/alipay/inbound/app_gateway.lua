-- The app gateway (docs/protocol.md §3.4, §3.5): the URL Alipay posts app messages to.
-- It answers the gateway check (alipay.service.check / verifygw) with the
-- signed XML envelope, dispatches Life Account events
-- (alipay.mobile.public.message.notify, biz_content in XML) and other
-- gateway messages (service-market orders, message-service pushes) to
-- handlers, and stays idempotent under Alipay's retries.
--
--   gateway.handle(client, body, handlers, opts) -> reply_body, info
--     body      the raw form body (or a decoded table), as for notify.verify
--     handlers  { [event] = function(event, info) ... end, default = ... }
--               A Life Account message dispatches on its EventType (follow,
--               unfollow, click, enter, ...) or, without one, its MsgType
--               (text, image, ...); `event` is the biz_content XML as a
--               table keyed by Alipay's element names (AppId, FromUserId,
--               FromAlipayUserId, CreateTime, MsgType, EventType,
--               ActionParam, AgreementId, AccountNo, ...). Other messages
--               dispatch on msg_method, method or notify_type; `event` is a
--               copy of the parameters, plus `biz` when biz_content is a
--               JSON object. A handler that raises or returns false fails
--               the message: the reply is "fail", so Alipay retries.
--     opts.seen a replay store (notify.memory_store, notify.shared_dict_store;
--               it needs :add and :delete); opts.ttl; opts.log =
--               function(level, msg) with level "error" | "warn" | "info"
--               (default ngx.log in nginx, stderr elsewhere); opts.ngx
--     info      { service =, event =, ["repeat"] = bool, verified = bool,
--                 error = the one-line message | nil, detail = the typed error | nil,
--                 params = verified params,
--                 content_type = the reply's Content-Type }
--
--   gateway.serve_ngx(client, handlers, opts) -> info: the whole
--   content_by_lua handler (read the body, handle, send the reply).
local cjson = require("cjson").new()
local lxp = require "lxp"
local errors = require "alipay.errors"
local runtime = require "alipay.runtime"
local notify = require "alipay.inbound.notify"

local gateway = {}

local CHECK = "alipay.service.check"
local MESSAGE = "alipay.mobile.public.message.notify"
local XML_TYPE = "text/xml; charset=utf-8"
local TEXT_TYPE = "text/plain; charset=utf-8"
local MAX_XML_DEPTH = 8

local loggable = notify.loggable

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

-- ---- biz_content XML ----

-- Parses the biz_content of a gateway message into a table: the children
-- of the root element by name, each a string (its text; CDATA verbatim)
-- or, if it has child elements, a table of the same shape. Strict: a
-- document expat refuses, a DOCTYPE (no entities, no external anything), a
-- repeated element or nesting deeper than MAX_XML_DEPTH is an error.
-- `text` is UTF-8 whatever its declaration says (notify converted it).
local function parse_xml(text)
  local stack, root, failure = {}, nil, nil
  local in_cdata = false
  local parser
  local function fail(why)
    failure = failure or why
    parser:stop()
  end
  local callbacks = {
    StartDoctypeDecl = function() fail("a DOCTYPE is not allowed") end,
    StartElement = function(_, name)
      if #stack >= MAX_XML_DEPTH then return fail("elements nested too deeply") end
      stack[#stack + 1] = { name = name, parts = {} }
    end,
    StartCdataSection = function()
      in_cdata = true
      stack[#stack].has_cdata = true
    end,
    EndCdataSection = function() in_cdata = false end,
    CharacterData = function(_, s)
      local parts = stack[#stack].parts
      parts[#parts + 1] = { s, in_cdata }
    end,
    EndElement = function()
      local node = table.remove(stack)
      local value = node.children
      if not value then
        -- With a CDATA section, the layout whitespace around it is not
        -- part of the value; without one, the text is the value.
        local out = {}
        for _, part in ipairs(node.parts) do
          if part[2] or not node.has_cdata or part[1]:find("%S") then out[#out + 1] = part[1] end
        end
        value = table.concat(out)
      end
      local parent = stack[#stack]
      if not parent then
        root = value
        return
      end
      parent.children = parent.children or {}
      if parent.children[node.name] ~= nil then return fail("element " .. loggable(node.name) .. " is repeated") end
      parent.children[node.name] = value
    end,
  }
  parser = lxp.new(callbacks)
  -- Expat knows no GBK: the text is UTF-8 now, whatever the declaration
  -- says, and setencoding makes expat ignore the declared encoding.
  parser:setencoding("UTF-8")
  local ok, err = parser:parse(text)
  if ok then ok, err = parser:parse() end
  -- close() frees the parser, then raises if the document was incomplete
  -- (already reported by parse): the error is not news.
  pcall(parser.close, parser)
  if failure then return nil, "biz_content: " .. failure end
  if not ok then return nil, "biz_content is not well-formed XML (" .. tostring(err) .. ")" end
  if type(root) ~= "table" then return nil, "biz_content has no fields" end
  return root
end
gateway.parse_xml = parse_xml

-- ---- replies ----

-- The signed XML envelope of the gateway check: INNER is signed with the
-- app private key, and carries the app public key on one line.
function gateway.check_reply(client, success)
  local cfg = client.config
  local public_key = "<biz_content>" .. cfg.private_key:public_base64() .. "</biz_content>"
  local inner = success and ("<success>true</success>" .. public_key)
    or ("<success>false</success><error_code>VERIFY_FAILED</error_code>" .. public_key)
  return '<?xml version="1.0" encoding="UTF-8"?><alipay><response>' .. inner .. "</response><sign>" ..
    cfg.private_key:sign(inner, cfg.sign_type) .. "</sign><sign_type>" .. cfg.sign_type .. "</sign_type></alipay>"
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
  if info.service == CHECK then
    info.content_type = XML_TYPE
    return gateway.check_reply(client, false), info
  end
  return "fail", info
end

-- ---- dispatch ----

-- The replay key of a message: its notify_id, or for Life Account messages
-- (which carry none) the user, time and kind of the event.
local function message_key(params, event)
  local key = notify.replay_key(params)
  if key or not event then return key end
  local user = event.FromUserId or event.FromAlipayUserId or event.UserId
  local kind = event.EventType or event.MsgType
  if type(user) == "string" and type(event.CreateTime) == "string" and type(kind) == "string" then
    return "gateway:" .. user .. ":" .. event.CreateTime .. ":" .. kind
  end
  return nil
end

-- Calls the handler at most once per message: the seen-mark is set before
-- the call (so two deliveries racing in two workers dispatch once) and
-- removed when the handler fails (so Alipay's retry dispatches again).
local function dispatch(handlers, event, info, key, opts, log)
  local seen = opts.seen
  if seen and key then
    local fresh, serr = seen:add(key, opts.ttl or notify.DEFAULT_TTL)
    if fresh == nil then
      fail_info(info, errors.new("notify", { reason = "store", verified = true, retryable = true,
                                             msg = "the replay store failed: " .. tostring(serr) }))
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

local function handle_check(client, params, info, log)
  info.content_type = XML_TYPE
  local event, xerr = parse_xml(params.biz_content or "")
  if event then info.event = event.EventType end
  if not event or info.event ~= "verifygw" then
    return refuse(client, info, errors.new("notify", { reason = "malformed", verified = true,
      msg = xerr or "the gateway check is not a verifygw event" }), log, params)
  end
  return gateway.check_reply(client, true), info
end

local function handle_message(client, params, handlers, info, opts, log)
  local event, xerr = parse_xml(params.biz_content or "")
  if not event then
    return refuse(client, info, errors.new("notify", { reason = "malformed", verified = true, msg = xerr }),
                  log, params)
  end
  if event.AppId ~= nil and event.AppId ~= client.config.app_id then
    return refuse(client, info, errors.new("notify", { reason = "foreign_app", verified = true,
      msg = "biz_content AppId " .. loggable(event.AppId) .. " is not this client's" }), log, params)
  end
  info.event = event.EventType or event.MsgType
  return dispatch(handlers, event, info, message_key(params, event), opts, log)
end

local function handle_other(params, handlers, info, opts, log)
  local event = {}
  for k, v in pairs(params) do event[k] = v end
  if (params.biz_content or ""):find("^%s*{") then
    local ok, biz = pcall(cjson.decode, params.biz_content)
    if ok and type(biz) == "table" then event.biz = biz end
  end
  info.event = params.msg_method or params.method or params.notify_type or params.service
  return dispatch(handlers, event, info, message_key(params), opts, log)
end

function gateway.handle(client, body, handlers, opts)
  opts = opts or {}
  handlers = handlers or {}
  local seen = opts.seen
  if seen and (type(seen.add) ~= "function" or type(seen.delete) ~= "function") then
    error("gateway.handle: opts.seen must be a store with :add and :delete", 2)
  end
  local log = log_of(opts, opts.ngx)
  local info = { verified = false, ["repeat"] = false, content_type = TEXT_TYPE }
  local raw, _, detail = notify.decode(body)
  if not raw then return refuse(client, info, detail, log) end
  info.service = raw.service or raw.msg_method or raw.method
  local params
  params, _, detail = notify.verify(client, raw, { rule = "V2" })
  if not params then return refuse(client, info, detail, log, raw) end
  info.verified, info.params = true, params
  if params.service == CHECK then return handle_check(client, params, info, log) end
  if params.service == MESSAGE then return handle_message(client, params, handlers, info, opts, log) end
  return handle_other(params, handlers, info, opts, log)
end

function gateway.serve_ngx(client, handlers, opts)
  opts = opts or {}
  local ngx = opts.ngx or runtime.ngx()
  local body, _, detail = notify.read_ngx_body(ngx)
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
