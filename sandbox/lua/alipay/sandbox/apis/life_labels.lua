-- The sandbox gateway's Life Account labels (docs/messaging.md §2.8): custom
-- labels (life.label.create, batchquery, modify, delete) and labelling users
-- (matchuser.label.create, delete). Codes from each method's official list
-- (alipay-sdk-net-all / alipay-sdk-java-all v3 <Method>ErrorResponseModel);
-- which code answers which mistake is read off the code names.
local support = require "alipay.sandbox.apis.support"

local fail, illegal = support.fail, support.illegal
local opt_string = support.opt_string
local array, is_array = support.array, support.is_array

local MAX_LABELS = 100   -- "每个生活号最多创建 100 个自定义标签" (label.create's label_name)
local MAX_MATCHERS = 10  -- "支付宝用户匹配器列表，最多传入10条"

-- A label name: codes for an empty one, a space, a comma. No length limit
-- is documented (LABEL_NAME_TOO_LONG exists): the sandbox enforces none.
local function label_name(biz, empty_code)
  local name = opt_string(biz, "label_name")
  if not name then fail(empty_code, "label_name is required") end
  if name:find("%s") then fail("LABEL_NAME_HAS_SPACE", "标签名不能包含空格") end
  if name:find(",", 1, true) or name:find("，", 1, true) then
    fail("LABEL_NAME_HAS_COMMA", "标签名不能包含逗号")
  end
  return name
end

local function label_create(state, biz)
  local name = label_name(biz, "ADD_LABEL_NAME_IS_EMPTY")
  -- "目前只支持 string（字符串类型）"
  local data_type = opt_string(biz, "data_type") or "string"
  if data_type ~= "string" then fail("DATA_TYPE_INVALID", "data_type: only string is supported") end
  if state:label_named(name) then fail("LABEL_NAME_ALREADY_EXISTS", "标签名已存在：" .. name) end
  if #state:label_list() >= MAX_LABELS then fail("LABEL_COUNT_LIMIT", "自定义标签数量已达上限（100个）") end
  return { label_id = state:create_label(name, data_type).label_id }
end

-- Every field the answer carries is in LifeLabel's model; the sandbox has
-- custom labels only (type "custom").
local function label_batchquery(state)
  local labels = {}
  for i, l in ipairs(state:label_list()) do
    labels[i] = { label_id = l.label_id, label_name = l.label_name, data_type = l.data_type, type = "custom" }
  end
  return { labels = array(labels) }
end

local function existing(state, biz, empty_code)
  local id = opt_string(biz, "label_id")
  if not id then fail(empty_code, "label_id is required") end
  local label = state:label(id)
  if not label then fail("LABEL_NOT_EXISTS", "标签不存在：" .. id) end
  return label
end

local function label_modify(state, biz)
  local label = existing(state, biz, "MOD_LABEL_ID_IS_EMPTY")
  local name = label_name(biz, "MOD_LABEL_NAME_IS_EMPTY")
  local other = state:label_named(name)
  if other and other ~= label then fail("LABEL_NAME_ALREADY_EXISTS", "标签名已存在：" .. name) end
  label.label_name = name
  return {}
end

-- LABEL_IS_USED read as "users still carry it": the sandbox's reading.
local function label_delete(state, biz)
  local label = existing(state, biz, "DEL_LABEL_ID_IS_EMPTY")
  if #state:label_member_ids(label.label_id) > 0 then fail("LABEL_IS_USED", "标签已被使用") end
  state:delete_label(label.label_id)
  return {}
end

-- ---- labelling users ----

-- The matchers of a call: at most 10. A matcher names a user by user_id or
-- open_id (of the app's id type), or by mobile_no / identity_card, which the
-- sandbox cannot resolve. -> list of {matcher =, id = | error =}
local function read_matchers(state, biz)
  local matchers = biz.matchers
  if type(matchers) ~= "table" or next(matchers) == nil then
    fail("MATCHER_PARAMS_IS_EMPTY", "matchers is required")
  end
  if not is_array(matchers) then illegal("matchers must be a JSON array") end
  if #matchers > MAX_MATCHERS then illegal(("matchers: at most %d, got %d"):format(MAX_MATCHERS, #matchers)) end
  local out = {}
  for i, m in ipairs(matchers) do
    local path = ("matchers[%d]"):format(i)
    if type(m) ~= "table" or is_array(m) then fail("MSG_MATCHER_INVALID", path .. " must be a JSON object") end
    local entry = { matcher = m }
    local id = opt_string(m, state.id_type, path .. "." .. state.id_type)
    local other = state.id_type == "user_id" and "open_id" or "user_id"
    if id then
      -- The sandbox's own texts: error_msg is free text in the model.
      if not state:follows(state.id_type, id) then entry.error = "SANDBOX: not a follower of this account" end
      entry.id = id
    elseif opt_string(m, other, path .. "." .. other) then
      entry.error = "SANDBOX: this app identifies users by " .. state.id_type
    elseif opt_string(m, "mobile_no", path) or opt_string(m, "identity_card", path) then
      entry.error = "SANDBOX: mobile_no and identity_card are not modelled"
    else
      fail("MSG_MATCHER_INVALID", path .. ": user_id, open_id, mobile_no or identity_card is required")
    end
    out[i] = entry
  end
  return out
end

local function answer(entries)
  local errs = {}
  for _, e in ipairs(entries) do
    if e.error then errs[#errs + 1] = { matcher = e.matcher, error_msg = e.error } end
  end
  return { error_count = #errs, error_matchers = array(errs) }
end

local function matchuser_create(state, biz)
  local label = existing(state, biz, "LABEL_ID_IS_EMPTY")
  local value = opt_string(biz, "label_value")
  if not value then fail("LABEL_VALUE_IS_EMPTY", "label_value is required") end
  local entries = read_matchers(state, biz)
  for _, e in ipairs(entries) do
    if not e.error then state:tag_user(label.label_id, e.id, value) end
  end
  return answer(entries)
end

local function matchuser_delete(state, biz)
  local label = existing(state, biz, "LABEL_ID_IS_EMPTY")
  local entries = read_matchers(state, biz)
  for _, e in ipairs(entries) do
    if not e.error and not state:untag_user(label.label_id, e.id) then
      e.error = "SANDBOX: the user does not carry this label"
    end
  end
  return answer(entries)
end

return {
  ["alipay.open.public.life.label.create"] = { handler = label_create, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/life/label/create", verbs = { POST = true } },
  -- batchquery's list has SYSTEM_ERROR only; it takes no arguments.
  ["alipay.open.public.life.label.batchquery"] = { handler = label_batchquery,
    invalid_code = "SANDBOX_ILLEGAL_ARGUMENT",
    path = "/v3/alipay/open/public/life/label/batchquery", verbs = { POST = true } },
  ["alipay.open.public.life.label.modify"] = { handler = label_modify, invalid_code = "SANDBOX_ILLEGAL_ARGUMENT",
    path = "/v3/alipay/open/public/life/label/modify", verbs = { POST = true } },
  -- v3 DELETE: the official call carries label_id in the query string; the
  -- sandbox's v3 layer reads a DELETE's fields from its JSON body.
  ["alipay.open.public.life.label.delete"] = { handler = label_delete, invalid_code = "SANDBOX_ILLEGAL_ARGUMENT",
    path = "/v3/alipay/open/public/life/label/delete", verbs = { DELETE = true } },
  ["alipay.open.public.matchuser.label.create"] = { handler = matchuser_create, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/matchuser/label/create", verbs = { POST = true } },
  ["alipay.open.public.matchuser.label.delete"] = { handler = matchuser_delete, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/matchuser/label/delete", verbs = { POST = true } },
}
