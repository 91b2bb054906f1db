-- The sandbox gateway's Life Account methods (docs/messaging.md §2): the
-- template library and industry, single sends and the followers. Each
-- entry of the returned table is a method: its handler, the code its bad
-- arguments get (invalid_code, from the method's official list), and its
-- v3 path and verbs (GET calls carry their fields in the query string).
local support = require "alipay.sandbox.apis.support"
local world = require "alipay.sandbox.world"

local fail, illegal = support.fail, support.illegal
local opt_string, req_string, opt_object = support.opt_string, support.req_string, support.opt_object
local recipient, keyword_keys, sorted_keys = support.recipient, support.keyword_keys, support.sorted_keys
local array, encode, width = support.array, support.encode, support.width

local MAX_CLAIMED = 20              -- claimed Life Account templates per account
local INDUSTRY_CHANGE_S = 30 * 86400 -- the template industry changes once a month
local FOLLOW_PAGE = 10000           -- followers per follow.batchquery page

-- ---- Life Account: templates and industry ----

local function template_text(lib)
  local keywords = {}
  for i, label in ipairs(lib.keywords) do keywords[i] = { key = "keyword" .. i, name = label } end
  return encode{ template_id = lib.template_id, name = lib.name, industry = lib.industry,
    keywords = array(keywords), optional = array{ "first", "remark" } }
end

local function template_message_get(state, biz)
  local template_id = req_string(biz, "template_id", nil, 20)
  if state.life_account == "absent" then fail("APPINFO_NOT_EXIST", "应用信息不存在") end
  if state.life_account == "offline" then fail("PUBLIC_NOT_ONLINE", "生活号未上线") end
  if not state:industry() then fail("NEED_SELECT_INDUSTRY", "请先设置模板消息所属行业") end
  local lib = state:library_template(template_id)
  if not lib or not state:in_current_industry(lib) then
    fail("TEMPLATE_MESSAGE_ID_INVAILD", "模板ID无效或不属于当前行业：" .. template_id)
  end
  -- Claiming a template already claimed returns the same id; only a new
  -- claim counts against the limit.
  local claim = state:live_claim_of(template_id)
  if not claim then
    if state:live_claim_count() >= MAX_CLAIMED then
      fail("EXCEED_MAX_TEMPLATE_NUM", "已领取的模板数量超过上限（20个）")
    end
    claim = state:claim(template_id)
  end
  return { msg_template_id = claim.msg_template_id, template = template_text(lib) }
end

-- industry.modify sets the main industry (primary_*) and the deputy one
-- (secondary_*), each a level-1/level-2 pair of codes and of names
-- ("10001/20102", "IT科技/IT软件与服务"; the Java model's field docs and
-- alipay-easysdk's openlife test). Its error codes carry the PUB. prefix
-- (the v3 error model of the method); 3002 is what a real sandbox answered
-- to a second change within a month (alipay-easysdk's testSetIndustry).
local function industry_of(state, biz, role)
  local code_key, name_key = role .. "_industry_code", role .. "_industry_name"
  local code, name = opt_string(biz, code_key), opt_string(biz, name_key)
  if not code then illegal(code_key .. " is required") end
  if not name then illegal(name_key .. " is required") end
  if not world.is_industry_pair(code) then
    illegal(code_key .. " must be a level-1/level-2 pair such as 10001/20102")
  end
  local entry = state:find_industry(code)
  if not entry then illegal(("%s: unknown industry %s"):format(code_key, code)) end
  if entry.name ~= name then illegal(name_key .. " does not match " .. code_key) end
  return entry
end

local function industry_modify(state, biz, ctx)
  local primary = industry_of(state, biz, "primary")
  local secondary = industry_of(state, biz, "secondary")
  local cur = state:industry()
  if cur and cur.modified_at and ctx.now - cur.modified_at < INDUSTRY_CHANGE_S then
    fail("3002", "模板消息行业一月只能修改一次")
  end
  state:set_industry(primary, secondary, ctx.now)
  return {}
end

-- Answered as the easysdk sandbox recording shows it: the name pair of the
-- main industry and of the deputy one. (The field docs call them the
-- level-1 and level-2 category names; docs/conformance.md keeps both.)
local function category_query(state)
  local cur = state:industry()
  if not cur then return {} end
  return { primary_category = cur.primary.name, secondary_category = cur.secondary.name }
end

-- ---- Life Account: sending ----

local CONTEXT_FIELDS = { head_color = true, url = true, action_name = true }
local OPTIONAL_KEYWORDS = { first = true, remark = true }

-- A keyword's value and color are both required (the SDK models' field
-- docs); no source gives a length limit for either, so none is enforced.
local function check_keyword(context, key)
  local path = "template.context." .. key
  local kw = opt_object(context, key, path)
  if not kw then
    -- the code name of the official list; its message is the sandbox's
    fail("MSG_TEMPLATE_CONTEXT_LACK_KEY", ("模板消息缺少关键字：%s"):format(path))
  end
  req_string(kw, "value", path .. ".value")
  req_string(kw, "color", path .. ".color")
end

-- The context must fill exactly the template's keywords (first and remark
-- are optional). head_color, url and action_name are required (easysdk's
-- model); the one documented limit is action_name's 8 CJK or 16 Latin
-- characters, and the sandbox enforces nothing else (docs/conformance.md).
local function check_context(context, lib)
  req_string(context, "head_color", "template.context.head_color")
  req_string(context, "url", "template.context.url")
  local action = req_string(context, "action_name", "template.context.action_name")
  if width(action) > 16 then
    illegal("template.context.action_name is longer than 8 CJK or 16 ASCII characters")
  end
  local required = {}
  for _, key in ipairs(keyword_keys(#lib.keywords)) do
    required[key] = true
    check_keyword(context, key)
  end
  for _, key in ipairs(sorted_keys(context)) do
    if OPTIONAL_KEYWORDS[key] then
      check_keyword(context, key)
    elseif not required[key] and not CONTEXT_FIELDS[key] then
      fail("MSG_TEMPLATE_KEY_INVALID", ("template.context.%s 不是模板 %s 的字段"):format(key, lib.template_id))
    end
  end
end

local function message_single_send(state, biz, ctx)
  local id_type, id, key = recipient(state, biz, "to_user_id", "to_open_id")
  local template = opt_object(biz, "template") or illegal("template is required")
  local msg_template_id = req_string(template, "template_id", "template.template_id")
  local claim = state:claimed_template(msg_template_id)
  if not claim or claim.deleted then
    fail("MSG_TEMPLATE_NOT_EXIST", "消息模板不存在：" .. msg_template_id)
  end
  local context = opt_object(template, "context", "template.context")
    or illegal("template.context is required")
  check_context(context, claim.template)
  -- What the real gateway answers when the user does not follow the account.
  -- MSG_SD_NOFOLLOW is in the method's official code list (the client
  -- also reads it with the PUB. prefix other Life Account codes carry).
  if not state:follows(id_type, id) then fail("MSG_SD_NOFOLLOW", "用户未关注该生活号") end
  -- The seed's quota (world.quotas); the message is the sandbox's own.
  if not state:use_quota("single_send") then fail("MSG_SINGLE_SD_OVER", "单发消息超过限额") end
  state:record_delivery{ api = ctx.api, method = ctx.method, app_id = ctx.app_id, [key] = id,
    template_id = msg_template_id, payload = biz, at = ctx.now }
  return {}
end

-- ---- Life Account: followers ----

-- The cursor of an open-id app travels in open_id (request and answer
-- both have that field besides next_user_id); that this is how Alipay
-- pages an open-id app is this sandbox's reading, not documented
-- (docs/conformance.md). A user-id app pages with next_user_id.
local function follow_batchquery(state, biz)
  local cursor_field = state.id_type == "open_id" and "open_id" or "next_user_id"
  local cursor = opt_string(biz, cursor_field)
  local ids, next_cursor = state:followers_page(cursor, FOLLOW_PAGE)
  if not ids then illegal(cursor_field .. " is not a cursor this account returned") end
  local list_key = state.id_type == "open_id" and "open_id_list" or "user_id_list"
  local fields = { count = tostring(#ids), [cursor_field] = next_cursor }
  if state.legacy_follow_shape then
    fields.data = { [list_key] = array(ids) }
  else
    fields[list_key] = array(ids)
  end
  return fields
end

local function user_follow_query(state, biz)
  local id_type, id = recipient(state, biz, "user_id", "open_id")
  return { is_follow = state:follows(id_type, id) and "T" or "F" }
end

return {
  ["alipay.open.public.template.message.get"] = { handler = template_message_get, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/template/message/get", verbs = { GET = true } },
  ["alipay.open.public.template.message.industry.modify"] = { handler = industry_modify,
    invalid_code = "PUB.ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/template/message/industry/modify", verbs = { POST = true } },
  ["alipay.open.public.setting.category.query"] = { handler = category_query,
    path = "/v3/alipay/open/public/setting/category/query", verbs = { GET = true, POST = true } },
  ["alipay.open.public.message.single.send"] = { handler = message_single_send,
    invalid_code = "ILLEGAL_ARGUMENT_PARAMS",
    path = "/v3/alipay/open/public/message/single/send", verbs = { POST = true } },
  -- follow.batchquery's official list has no arguments code; a cursor it
  -- did not hand out is answered OPENID_INVALID, the one code of the list
  -- about an id (docs/conformance.md: the situation is not documented).
  ["alipay.open.public.follow.batchquery"] = { handler = follow_batchquery, invalid_code = "OPENID_INVALID",
    path = "/v3/alipay/open/public/follow/batchquery", verbs = { GET = true, POST = true } },
  ["alipay.open.public.user.follow.query"] = { handler = user_follow_query, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/user/follow/query", verbs = { GET = true, POST = true } },
}
