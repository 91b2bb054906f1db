-- The sandbox gateway's mini-program template methods (docs/messaging.md §3.4):
-- the templates the mini program applied for (template.batchquery), the
-- template library (templatelib.batchquery) and applying for one of its
-- entries (template.apply), as entries of the table alipay.sandbox.apis routes.
--
-- Fields are those of the v2 models (alipay/alipay-sdk-java-all
-- AlipayOpenMiniMessageTemplate{Batchquery,Apply}Model, ...TemplatelibBatchqueryModel,
-- their responses, MerchantMsgTemplateVO, MerchantMsgTemplateLibVO, MsgApplyKeyword).
-- No official code list exists for these methods (no v3 ErrorResponseModel), so
-- every refusal here carries a code of the sandbox's own, prefixed SANDBOX_.
-- No v3 model exists either: the v3 paths are derived from the method names.
local cjson = require "cjson"
local support = require "alipay.sandbox.apis.support"

local fail, illegal = support.fail, support.illegal
local opt_string, req_string = support.opt_string, support.req_string
local array, is_array = support.array, support.is_array
local null = cjson.null

local INVALID = "SANDBOX_INVALID_PARAMETER"
-- "分页大小，目前上限为10" (both request models).
local PAGE_MAX = 10
-- "需要传入2到5个关键词" (the apply model's keyword_list).
local APPLY_MIN, APPLY_MAX = 2, 5
local SCENE_RULES = { one_time_subscribe = true, long_term_subscribe = true }

-- A whole number given as a number or a numeric string (page_size is a
-- String in the batchquery model, a Long elsewhere), or the default.
local function whole(biz, key, default, max)
  local v = biz[key]
  if v == nil or v == null or v == "" then return default end
  local n = tonumber(v)
  if not n or n % 1 ~= 0 or n < 1 then illegal(key .. " must be a whole number >= 1") end
  if max and n > max then illegal(("%s is larger than %d"):format(key, max)) end
  return math.floor(n)
end

local function string_set(biz, key)
  local v = biz[key]
  if v == nil or v == null then return nil end
  if type(v) ~= "table" or (next(v) ~= nil and not is_array(v)) then illegal(key .. " must be an array") end
  local set = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" then illegal(("%s[%d] must be a string"):format(key, i)) end
    set[s] = true
  end
  return set
end

local function scene_rule_of(biz)
  local rule = opt_string(biz, "scene_rule")
  if rule and not SCENE_RULES[rule] then illegal("scene_rule must be one_time_subscribe or long_term_subscribe") end
  return rule
end

-- Items first..first+size-1 of list.
local function page_of(list, num, size)
  local out = array()
  for i = (num - 1) * size + 1, math.min(num * size, #list) do out[#out + 1] = list[i] end
  return out
end

-- ---- alipay.open.mini.message.template.batchquery ----

local function template_batchquery(state, biz)
  -- "消息类型，目前仅支持查询订阅消息，biz_type:sub_msg" (the .NET model's field doc).
  local biz_type = opt_string(biz, "biz_type")
  if biz_type and biz_type ~= "sub_msg" then illegal("biz_type: only sub_msg is supported") end
  local num, size = whole(biz, "page_num", 1), whole(biz, "page_size", PAGE_MAX, PAGE_MAX)
  local statuses = string_set(biz, "status_list")
  local rows = {}
  for _, t in ipairs(state:mini_template_list()) do
    if not statuses or next(statuses) == nil or statuses[t.status] then
      -- "消息模板关键词列表，关键词之间用逗号隔开"
      rows[#rows + 1] = { template_id = t.template_id, name = t.name,
        keyword_desc = table.concat(t.keywords, ","), status = t.status, scene_rule = t.scene_rule }
    end
  end
  -- page_num and page_size are Strings in this response, total_count a Long.
  return { page_num = tostring(num), page_size = tostring(size), total_count = #rows,
           template_list = page_of(rows, num, size) }
end

-- ---- alipay.open.mini.message.templatelib.batchquery ----

local function templatelib_batchquery(state, biz)
  local num, size = whole(biz, "page_num", 1), whole(biz, "page_size", PAGE_MAX, PAGE_MAX)
  local industry, scenario = opt_string(biz, "industry_code"), opt_string(biz, "industry_scenario")
  local rule = scene_rule_of(biz)
  local push = biz.has_push
  if push == null then push = nil end
  if push ~= nil and type(push) ~= "boolean" then illegal("has_push must be true or false") end
  local rows = {}
  for _, e in ipairs(state:mini_library_list()) do
    if (not industry or e.industry_code == industry) and (not scenario or e.industry_scenario == scenario)
      and (not rule or e.scene_rule == rule) and (push == nil or e.has_push == push) then
      rows[#rows + 1] = { code = e.code, name = e.name, keyword_desc = table.concat(e.keywords, ","),
        scene_rule = e.scene_rule, industry_code = e.industry_code, industry_scenario = e.industry_scenario,
        has_push = e.has_push, selectable = e.selectable }
    end
  end
  return { page_num = num, page_size = size, total_count = #rows, template_lib_list = page_of(rows, num, size) }
end

-- ---- alipay.open.mini.message.template.apply ----

local function template_apply(state, biz)
  local code = req_string(biz, "lib_code")
  local list = biz.keyword_list
  if type(list) ~= "table" or not is_array(list) then
    illegal("keyword_list must be an array of {\"name\": ...}")
  end
  if #list < APPLY_MIN or #list > APPLY_MAX then
    illegal(("keyword_list must hold %d to %d keywords, not %d"):format(APPLY_MIN, APPLY_MAX, #list))
  end
  local rule = scene_rule_of(biz)
  local lib = state:mini_library_entry(code)
  if not lib then fail("SANDBOX_LIB_CODE_NOT_EXIST", "模板库不存在：" .. code) end
  if not lib.selectable then fail("SANDBOX_LIB_NOT_SELECTABLE", "该模板不可申领：" .. code) end
  local known, names, seen = {}, {}, {}
  for _, k in ipairs(lib.keywords) do known[k] = true end
  for i, item in ipairs(list) do
    local name = type(item) == "table" and opt_string(item, "name", ("keyword_list[%d].name"):format(i))
    if not name then illegal(("keyword_list[%d] must be {\"name\": ...}"):format(i)) end
    -- "关键词内容需要与对应母板关键词对应"
    if not known[name] then fail("SANDBOX_KEYWORD_NOT_IN_LIB", "关键词不属于该模板库：" .. name) end
    if seen[name] then illegal("keyword_list names " .. name .. " twice") end
    seen[name] = true
    names[i] = name
  end
  return { template_id = state:apply_mini_template(lib, names, rule).template_id }
end

return {
  ["alipay.open.mini.message.template.batchquery"] = { handler = template_batchquery, invalid_code = INVALID,
    path = "/v3/alipay/open/mini/message/template/batchquery", verbs = { POST = true } },
  ["alipay.open.mini.message.templatelib.batchquery"] = { handler = templatelib_batchquery,
    invalid_code = INVALID, path = "/v3/alipay/open/mini/message/templatelib/batchquery", verbs = { POST = true } },
  ["alipay.open.mini.message.template.apply"] = { handler = template_apply, invalid_code = INVALID,
    path = "/v3/alipay/open/mini/message/template/apply", verbs = { POST = true } },
}
