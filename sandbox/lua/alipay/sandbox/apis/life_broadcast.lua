-- The sandbox gateway's Life Account broadcasts (docs/messaging.md §2.7): a
-- text or image-text message to every follower (message.total.send), to the
-- followers a label filter selects (message.label.send) or to a seeded group
-- (message.group.send), and recalling one (life.msg.recall). Each accepted
-- broadcast is one delivery record (alipay.sandbox.world's header says its fields).
--
-- Codes: each method's official list (alipay-sdk-net-all and alipay-sdk-java-all
-- v3 <Method>ErrorResponseModel), PUB.MSG_BATCH_SD_OVER and PUB.RCD_MSG_NOT_EXIST
-- as alipay-easysdk recorded them, and SANDBOX_* where no official code fits.
-- Which list code answers which mistake is read off the code names: the lists
-- carry no messages (docs/conformance.md).
local support = require "alipay.sandbox.apis.support"

local fail, illegal = support.fail, support.illegal
local opt_string, opt_object = support.opt_string, support.opt_object
local is_array = support.is_array
local cjson_null = require("cjson").null

local LABEL_SEND_ARTICLES = 6   -- Material.articles: "单条消息最多6个子项" (label.send only)
local LISTED_IDS = 100          -- a delivery record lists the ids it reached up to this many

-- ---- the message: text{title, content} or articles[{title, desc, image_url, url, action_name}] ----

-- codes: {type =, empty =, incomplete =} the sub codes of this method for a
-- msg_type that is not one, a message with no content, an article without
-- what it needs (nil: the method's invalid code).
local function read_message(holder, codes, max_articles)
  local msg_type = opt_string(holder, "msg_type")
  if msg_type ~= "text" and msg_type ~= "image-text" then
    fail(codes.type or support.INVALID, "msg_type must be text or image-text")
  end
  if msg_type == "text" then
    local text = opt_object(holder, "text") or fail(codes.empty or support.INVALID, "text is required")
    opt_string(text, "title", "text.title")   -- may be empty: easysdk's sendText sends ""
    if not opt_string(text, "content", "text.content") then
      fail(codes.empty or support.INVALID, "text.content is required")
    end
    return msg_type
  end
  local articles = holder.articles
  if articles == nil or articles == cjson_null or (type(articles) == "table" and next(articles) == nil) then
    fail(codes.empty or support.INVALID, "articles is required for image-text")
  end
  if type(articles) ~= "table" or not is_array(articles) then illegal("articles must be a JSON array") end
  if max_articles and #articles > max_articles then
    illegal(("articles: at most %d, got %d"):format(max_articles, #articles))
  end
  for i, a in ipairs(articles) do
    local path = ("articles[%d]"):format(i)
    if type(a) ~= "table" or is_array(a) then illegal(path .. " must be a JSON object") end
    for _, key in ipairs { "title", "image_url", "action_name" } do opt_string(a, key, path .. "." .. key) end
    -- desc and url are required (easysdk's Article); image_url on the
    -- first of several articles (the field docs).
    for _, key in ipairs { "desc", "url" } do
      if not opt_string(a, key, path .. "." .. key) then
        fail(codes.incomplete or support.INVALID, path .. "." .. key .. " is required")
      end
    end
    if i == 1 and #articles > 1 and not opt_string(a, "image_url") then
      fail(codes.incomplete or support.INVALID, path .. ".image_url is required on the first of several articles")
    end
  end
  return msg_type
end

local function listed(ids)
  if #ids > LISTED_IDS then return nil end
  return support.array(ids)
end

-- ---- message.total.send ----

local TOTAL_CODES = { type = "MSG_TYPE_ILLEGAL" }

local function total_send(state, biz, ctx)
  local msg_type = read_message(biz, TOTAL_CODES)
  -- easysdk recorded this answer on v2; its frequency is not documented.
  if not state:use_quota("total_send") then fail("PUB.MSG_BATCH_SD_OVER", "批量发送消息频率超限") end
  local d = state:record_broadcast({ api = ctx.api, method = ctx.method, app_id = ctx.app_id, audience = "all",
    recipients = state:follower_count(), msg_type = msg_type, payload = biz, at = ctx.now }, true)
  return { message_id = d.message_id }
end

-- ---- message.group.send ----

local GROUP_CODES = { empty = "MESSAGE_IS_EMPTY", incomplete = "MESSAGE_IS_INCOMPLETE" }

local function group_send(state, biz, ctx)
  local group_id = opt_string(biz, "group_id") or illegal("group_id is required")
  -- "image" is documented as not supported yet (暂时不支持).
  if biz.msg_type == "image" then illegal("msg_type image is not supported") end
  local msg_type = read_message(biz, GROUP_CODES)
  local group = state:group(group_id)
  if not group then fail("SANDBOX_GROUP_NOT_EXIST", "分组不存在：" .. group_id) end
  local ids = {}
  for _, id in ipairs(group.members) do
    if state:follows(state.id_type, id) then ids[#ids + 1] = id end
  end
  if #ids == 0 then fail("GROUP_EMPTY_ERROR", "分组中没有关注者：" .. group_id) end
  if not state:use_quota("group_send") then fail("MSG_BATCH_SD_OVER", "批量发送消息频率超限") end
  local d = state:record_broadcast({ api = ctx.api, method = ctx.method, app_id = ctx.app_id, audience = "group",
    group_id = group_id, recipients = #ids, ids = listed(ids), msg_type = msg_type, payload = biz,
    at = ctx.now }, true)
  return { message_id = d.message_id }
end

-- ---- message.label.send ----

-- filter = {template = "${a}" (at most two variables joined by and / or),
--           context = {a = {column_name = "label_id_list", op = "=" | "!=" | "in", values = [label ids]}}}
-- Only the merchant's own labels (column label_id_list) are modelled; Alipay's
-- open labels (other column names) answer SANDBOX_COLUMN_UNSUPPORTED.
local function read_condition(state, context, name)
  local item = opt_object(context, name, "filter.context." .. name)
  if not item then fail("LABEL_GROUP_ITEM_EMPTY", "filter.context." .. name .. " is required") end
  local path = "filter.context." .. name
  local column = opt_string(item, "column_name", path .. ".column_name")
  if not column then fail("LABEL_GROUP_KEY_EMPTY", path .. ".column_name is required") end
  if column ~= "label_id_list" then
    fail("SANDBOX_COLUMN_UNSUPPORTED", path .. ".column_name: the sandbox models label_id_list only")
  end
  local op = opt_string(item, "op", path .. ".op")
  if op ~= "=" and op ~= "!=" and op ~= "in" then illegal(path .. ".op must be =, != or in") end
  local values = item.values
  if type(values) ~= "table" or next(values) == nil then
    fail("LABEL_GROUP_VALUES_EMPTY", path .. ".values is empty")
  end
  if not is_array(values) then illegal(path .. ".values must be a JSON array") end
  if op ~= "in" and #values ~= 1 then illegal(path .. ".values: " .. op .. " takes one label id") end
  local members = {}
  for i, v in ipairs(values) do
    if type(v) ~= "string" then illegal(("%s.values[%d] must be a string"):format(path, i)) end
    local ids = state:label_member_ids(v)
    if not ids then fail("LABEL_GROUP_LABEL_NOT_EXISTS", "标签不存在：" .. v) end
    for _, id in ipairs(ids) do members[id] = true end
  end
  return { negate = op == "!=", members = members }
end

local function matches(cond, id)
  local has = cond.members[id] == true
  if cond.negate then return not has end
  return has
end

local function label_audience(state, biz)
  local filter = opt_object(biz, "filter") or fail("LABEL_GROUP_FILTER_EMPTY", "filter is required")
  local template = opt_string(filter, "template", "filter.template")
  if not template then fail("LABEL_GROUP_TPL_EMPTY", "filter.template is required") end
  local context = opt_object(filter, "context", "filter.context")
  if not context then fail("LABEL_GROUP_NO_CONDITION", "filter.context is required") end
  local a, joiner, b = template:match("^%s*%${(%w+)}%s*$"), nil, nil
  if not a then a, joiner, b = template:match("^%s*%${(%w+)}%s+(%a+)%s+%${(%w+)}%s*$") end
  if not a or (joiner and joiner ~= "and" and joiner ~= "or") then
    -- "template最多支持两个参数，支持and及or连接符" (Filter.template)
    fail("LABEL_GROUP_LABEL_OVER_LIMIT", "filter.template: at most two variables joined by and / or")
  end
  local ca = read_condition(state, context, a)
  local cb = b and read_condition(state, context, b)
  local ids = {}
  for i = 1, state:follower_count() do
    local id = state:follower_id(i, state.id_type)
    local hit = matches(ca, id)
    if cb then
      if joiner == "and" then hit = hit and matches(cb, id) else hit = hit or matches(cb, id) end
    end
    if hit then ids[#ids + 1] = id end
  end
  return ids
end

local function label_send(state, biz, ctx)
  local ids = label_audience(state, biz)
  local material = opt_object(biz, "material") or illegal("material is required")
  local msg_type = read_message(material, { type = "MSG_TYPE_ILLEGAL" }, LABEL_SEND_ARTICLES)
  -- The answer has no message id (no field in the official models), so a
  -- label send cannot be recalled.
  state:record_broadcast({ api = ctx.api, method = ctx.method, app_id = ctx.app_id, audience = "label",
    recipients = #ids, ids = listed(ids), msg_type = msg_type, payload = biz, at = ctx.now }, false)
  return {}
end

-- ---- life.msg.recall ----

local function recall(state, biz, ctx)
  local message_id = opt_string(biz, "message_id") or illegal("message_id is required")
  local d = state:broadcast(message_id)
  -- alipay-easysdk's recording of an unknown id.
  if not d then fail("PUB.RCD_MSG_NOT_EXIST", "撤回的消息不存在") end
  -- What Alipay answers to a second recall, and how long after sending a
  -- recall is allowed, are unknown: the sandbox refuses the second with its
  -- own code and allows any age.
  if d.recalled_at then fail("SANDBOX_MSG_ALREADY_RECALLED", "消息已撤回：" .. message_id) end
  d.recalled_at = ctx.now
  return {}
end

return {
  ["alipay.open.public.message.total.send"] = { handler = total_send, invalid_code = "ILLEGAL_ARGUMENT_PARAMS",
    path = "/v3/alipay/open/public/message/total/send", verbs = { POST = true } },
  ["alipay.open.public.message.group.send"] = { handler = group_send, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/message/group/send", verbs = { POST = true } },
  ["alipay.open.public.message.label.send"] = { handler = label_send, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/message/label/send", verbs = { POST = true } },
  -- The official list of life.msg.recall is empty: bad arguments get the sandbox's code.
  ["alipay.open.public.life.msg.recall"] = { handler = recall, invalid_code = "SANDBOX_ILLEGAL_ARGUMENT",
    path = "/v3/alipay/open/public/life/msg/recall", verbs = { POST = true } },
}
