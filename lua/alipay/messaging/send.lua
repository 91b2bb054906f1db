-- What sending a template message has in common on a Life Account
-- (alipay.messaging.lifeaccount) and a mini program (alipay.messaging.mini): the channel
-- check, local refusals as typed "invalid" errors, the registry's verdict
-- on the template, and learning from Alipay's answer that a template is
-- gone. The API-specific parts (the biz content) stay in those modules.
local errors = require "alipay.errors"
local control_chars = require "alipay.util.control_chars"

local sender = {}

-- UTF-8 characters of s (Alipay's limits count characters, not bytes).
sender.chars = require("alipay.util.utf8").chars

-- A send refused locally, before any call -> nil, err, detail (kind
-- "invalid"; detail.reason is "recipient", "template", "data" or "request").
-- The refusal certainly did not execute anything.
function sender.invalid(method, reason, field, msg, extra)
  local fields = { method = method, reason = reason, field = field, msg = msg, retryable = false,
                   unknown = false }
  for k, v in pairs(extra or {}) do fields[k] = v end
  return errors.fail("invalid", fields)
end

-- Control characters (alipay.util.control_chars) in what a call carries are
-- refused, naming the field: -> true | nil, err, detail (kind "invalid").
function sender.clean(method, reason, field, value, extra)
  local ok, msg, where = control_chars.check(field, value)
  if ok then return true end
  return sender.invalid(method, reason, where, msg, extra)
end

-- A send's recipient id, template id and content (a Life Account context,
-- mini-program data), free of control characters -> true | nil, err, detail.
function sender.clean_send(method, id_type, id, template_id, field, content)
  local ok, err, detail = sender.clean(method, "recipient", "recipient." .. id_type, id)
  if ok then ok, err, detail = sender.clean(method, "request", "template", template_id) end
  if ok and content ~= nil then
    ok, err, detail = sender.clean(method, "data", field, content, { template_id = template_id })
  end
  if not ok then return nil, err, detail end
  return true
end

-- Only the options client:execute understands travel with a call.
function sender.call_opts(opts)
  if not opts then return nil end
  return { app_auth_token = opts.app_auth_token, timeout_ms = opts.timeout_ms }
end

-- A registry record, {id=, keywords=}, or a bare id -> the record | nil, msg
function sender.template_arg(template, id_name)
  if type(template) == "string" then template = { id = template } end
  if type(template) ~= "table" or type(template.id) ~= "string" or template.id == "" then
    return nil, "template must be a template record, {id=, keywords=}, or a " .. id_name
  end
  return template
end

-- sender.new(module_name, kind, class, channel, registry) -> the object
function sender.new(module_name, kind, class, channel, registry)
  if type(channel) ~= "table" or type(channel.client) ~= "table" then
    error(module_name .. ".new: expected a channel with a client", 3)
  end
  if channel.kind ~= nil and channel.kind ~= kind then
    error(("%s.new: channel %s is a %s channel, not %s"):format(
      module_name, tostring(channel.code), tostring(channel.kind), kind), 3)
  end
  return setmetatable({ channel = channel, client = channel.client, registry = registry,
                        code = channel.code }, class)
end

-- The registry's template, when there is a registry: a template known to be
-- invalid is refused before any call, since every send with it would fail
-- the same way. -> template (or true without a registry) | nil, err, detail
function sender.usable(self, method, tpl)
  if not self.registry then return true end
  local usable, why, detail = self.registry:usable(self.code, tpl.id)
  if not usable then
    -- The registry's own detail (state: not imported or marked invalid;
    -- store: the database failed) stays reachable as detail.cause.
    return sender.invalid(method, "template", "template",
      why or ("template " .. tpl.id .. " is not usable"),
      { template_id = tpl.id, cause = detail })
  end
  return usable
end

-- The request of a send with its biz content, and the context finish needs.
function sender.prepare(self, method, biz, tpl, opts)
  local req, call = self.client:prepare_v2(method, biz, sender.call_opts(opts))
  return req, { call = call, template_id = tpl.id }
end

-- The result of a send -> node | nil, err, detail. Alipay offers no API
-- that lists claimed Life Account templates: a failed send is how a deleted
-- one is discovered, so the registry learns it here and later sends refuse
-- it without a call. (res, err, detail) are what the transport answered.
function sender.finish_send(self, ctx, res, err, detail)
  local node, e, d = self.client:finish_v2(ctx.call, res, err, detail)
  if node then return node end
  -- The refusal of a send that carried a form_id: alipay.classify reads it.
  if ctx.form_id and type(d) == "table" then d.form_id = true end
  if self.registry and d and d.kind == "business" and errors.classify(d) == "template" then
    self.registry:mark_invalid(self.code, ctx.template_id, d.sub_code or d.code)
  end
  return nil, e, d
end

-- prepare, request, finish: one blocking send.
function sender.send(self, recipient, template, data, opts)
  local req, ctx, detail = self:prepare_send(recipient, template, data, opts)
  if not req then return nil, ctx, detail end
  local res, err, terr = self.client:request(req)
  return self:finish_send(ctx, res, err, terr)
end

return sender
