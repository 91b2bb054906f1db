-- Life Account broadcasts (docs/messaging.md §2.7): one text or image-text
-- message to every follower, to the followers a label selects, or to a user
-- group, and recalling a broadcast.
--
--   local life_broadcast = require "alipay.messaging.life_broadcast"
--   local bc = life_broadcast.new(channel)        -- an alipaylife channel (or any table with a client)
--
--   message = {text = {content =, title = (optional)}}
--           | {articles = {{desc =, url =, title =, image_url =, action_name =}, ...}}
--
--   bc:total_send(message, opts)                -> {message_id =} | nil, err, detail
--   bc:label_send(target, message, opts)        -> {} | nil, err, detail   (no message id)
--     target {label_id = id} | {label_ids = {id, ...}} (any of them) | {filter = <Alipay's filter>}
--   bc:group_send(group_id, message, opts)      -> {message_id =} | nil, err, detail
--   bc:recall(message_id, opts)                 -> true | nil, err, detail
--   bc:prepare_total / prepare_label / prepare_group(...) -> req, ctx | nil, err, detail
--   bc:finish(ctx, res, err, detail)            -> as the send (what the transport answered)
--
-- A broadcast is a send: it is never retried here (docs/messaging.md §6.4).
-- A failure with detail.unknown may have been delivered; call again only
-- knowing that followers may then get it twice. A success whose answer lacks
-- message_id is still a success (message_id nil: it cannot be recalled):
-- turning it into an error would invite a second broadcast.
-- Refusals before any call are kind "invalid" (docs/errors.md), reason
-- "data" (the message) or "request" (target, group, message id).
local sender = require "alipay.messaging.send"

local M = {}

M.METHODS = {
  total = "alipay.open.public.message.total.send",
  label = "alipay.open.public.message.label.send",
  group = "alipay.open.public.message.group.send",
  recall = "alipay.open.public.life.msg.recall",
}

-- Material.articles of label.send: "单条消息最多6个子项". No count is
-- documented for total.send or group.send: none is checked there.
M.LABEL_SEND_MAX_ARTICLES = 6

local ARTICLE_FIELDS = { title = true, desc = true, image_url = true, url = true, action_name = true }

local Broadcast = {}
Broadcast.__index = Broadcast

local invalid, call_opts = sender.invalid, sender.call_opts

function M.new(channel)
  return sender.new("life_broadcast", "alipaylife", Broadcast, channel)
end

local function str(v)
  return type(v) == "string" and v ~= ""
end

-- message -> the biz fields {msg_type, text | articles} | nil, err, detail
local function message_fields(method, message, max_articles)
  if type(message) ~= "table" then
    return invalid(method, "data", "message", "message must be {text = {...}} or {articles = {...}}")
  end
  if (message.text == nil) == (message.articles == nil) then
    return invalid(method, "data", "message", "message: give text or articles, not both and not neither")
  end
  local fields
  if message.text ~= nil then
    local t = message.text
    if type(t) ~= "table" or not str(t.content) then
      return invalid(method, "data", "text.content", "text.content is required (a non-empty string)")
    end
    if t.title ~= nil and type(t.title) ~= "string" then
      return invalid(method, "data", "text.title", "text.title must be a string")
    end
    for k in pairs(t) do
      if k ~= "title" and k ~= "content" then
        return invalid(method, "data", "text." .. tostring(k), "text: unknown field " .. tostring(k))
      end
    end
    -- easysdk's sendText sends an empty title: it is optional in practice.
    fields = { msg_type = "text", text = { title = t.title or "", content = t.content } }
  else
    local list = message.articles
    if type(list) ~= "table" or #list == 0 then
      return invalid(method, "data", "articles", "articles must be a non-empty list")
    end
    if max_articles and #list > max_articles then
      return invalid(method, "data", "articles", ("articles: at most %d, got %d"):format(max_articles, #list))
    end
    local out = {}
    for i, a in ipairs(list) do
      local path = ("articles[%d]"):format(i)
      if type(a) ~= "table" then return invalid(method, "data", path, path .. " must be a table") end
      for k, v in pairs(a) do
        if not ARTICLE_FIELDS[k] then
          return invalid(method, "data", path .. "." .. tostring(k), path .. ": unknown field " .. tostring(k))
        end
        if type(v) ~= "string" then
          return invalid(method, "data", path .. "." .. k, path .. "." .. k .. " must be a string")
        end
      end
      -- desc and url required (easysdk's Article); image_url on the first
      -- of several articles (the field docs of Article.image_url).
      for _, k in ipairs { "desc", "url" } do
        if not str(a[k]) then return invalid(method, "data", path .. "." .. k, path .. "." .. k .. " is required") end
      end
      if i == 1 and #list > 1 and not str(a.image_url) then
        return invalid(method, "data", path .. ".image_url",
          path .. ".image_url is required on the first of several articles")
      end
      local copy = {}
      for k, v in pairs(a) do copy[k] = v end
      out[i] = copy
    end
    fields = { msg_type = "image-text", articles = out }
  end
  local ok, err, detail = sender.clean(method, "data", "message", fields)
  if not ok then return nil, err, detail end
  return fields
end
M.message_fields = message_fields

local function prepare(self, method, biz, opts)
  local req, call = self.client:prepare_v2(method, biz, call_opts(opts))
  return req, { call = call, method = method }
end

function Broadcast:finish(ctx, res, err, detail)
  local node, e, d = self.client:finish_v2(ctx.call, res, err, detail)
  if not node then return nil, e, d end
  if ctx.method == M.METHODS.label then return {} end
  local id = node.message_id
  return { message_id = type(id) == "string" and id ~= "" and id or nil }
end

local function run(self, req, ctx, detail)
  if not req then return nil, ctx, detail end
  local res, err, terr = self.client:request(req)
  return self:finish(ctx, res, err, terr)
end

function Broadcast:prepare_total(message, opts)
  local fields, err, detail = message_fields(M.METHODS.total, message)
  if not fields then return nil, err, detail end
  return prepare(self, M.METHODS.total, fields, opts)
end

function Broadcast:total_send(message, opts)
  return run(self, self:prepare_total(message, opts))
end

-- The filter of a target: one label, any of several, or Alipay's own form
-- ({template = "${a}", context = {a = {column_name, op, values}}}, passed as given).
local function filter_of(method, target)
  if type(target) == "string" then target = { label_id = target } end
  if type(target) ~= "table" then
    return invalid(method, "request", "target", "target must be {label_id =}, {label_ids =} or {filter =}")
  end
  if target.filter ~= nil then
    if type(target.filter) ~= "table" then return invalid(method, "request", "filter", "filter must be a table") end
    return target.filter
  end
  local op, values = "="
  if str(target.label_id) then
    values = { target.label_id }
  elseif type(target.label_ids) == "table" and #target.label_ids > 0 then
    op, values = "in", {}
    for i, id in ipairs(target.label_ids) do
      if not str(id) then return invalid(method, "request", "label_ids", "label_ids must hold label ids") end
      values[i] = id
    end
  else
    return invalid(method, "request", "target", "target must be {label_id =}, {label_ids =} or {filter =}")
  end
  -- Merchant labels are the column label_id_list (LabelFilter.column_name's docs).
  return { template = "${a}", context = { a = { column_name = "label_id_list", op = op, values = values } } }
end

function Broadcast:prepare_label(target, message, opts)
  local method = M.METHODS.label
  local filter, ferr, fdetail = filter_of(method, target)
  if not filter then return nil, ferr, fdetail end
  local ok, cerr, cdetail = sender.clean(method, "request", "filter", filter)
  if not ok then return nil, cerr, cdetail end
  local fields, err, detail = message_fields(method, message, M.LABEL_SEND_MAX_ARTICLES)
  if not fields then return nil, err, detail end
  return prepare(self, method, { filter = filter, material = fields }, opts)
end

function Broadcast:label_send(target, message, opts)
  return run(self, self:prepare_label(target, message, opts))
end

function Broadcast:prepare_group(group_id, message, opts)
  local method = M.METHODS.group
  if not str(group_id) then return invalid(method, "request", "group_id", "group_id is required") end
  local ok, cerr, cdetail = sender.clean(method, "request", "group_id", group_id)
  if not ok then return nil, cerr, cdetail end
  local fields, err, detail = message_fields(method, message)
  if not fields then return nil, err, detail end
  fields.group_id = group_id
  return prepare(self, method, fields, opts)
end

function Broadcast:group_send(group_id, message, opts)
  return run(self, self:prepare_group(group_id, message, opts))
end

-- Recall takes the message_id of a total or group send (the field docs of
-- AlipayOpenPublicLifeMsgRecallModel); how long after sending Alipay allows
-- it is not documented. A recall changes nothing when repeated, but it is
-- not retried here either: the caller sees every answer.
function Broadcast:recall(message_id, opts)
  local method = M.METHODS.recall
  if not str(message_id) then return invalid(method, "request", "message_id", "message_id is required") end
  local ok, cerr, cdetail = sender.clean(method, "request", "message_id", message_id)
  if not ok then return nil, cerr, cdetail end
  local res, err, detail = self.client:execute(method, { message_id = message_id }, call_opts(opts))
  if not res then return nil, err, detail end
  return true
end

return M
