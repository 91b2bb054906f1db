-- The sandbox gateway's mini-program methods (docs/messaging.md §3):
-- subscription queries and subscription-message sends, as entries of the
-- table alipay.sandbox.apis routes (see alipay.sandbox.apis.life).
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"
local support = require "alipay.sandbox.apis.support"
local utf8_text = require "alipay.util.utf8"

local fail, illegal = support.fail, support.illegal
local opt_string, req_string, opt_object = support.opt_string, support.req_string, support.opt_object
local recipient, keyword_keys, sorted_keys = support.recipient, support.keyword_keys, support.sorted_keys
local is_array = support.is_array
local null = cjson.null
local chars = utf8_text.chars

-- ---- mini program: subscriptions ----

-- One relation as subscribe.query reports it. Field names are the v3
-- model's (SubscribeRelation); their values are not documented anywhere
-- public. subscribe_state takes the world's subscribe_states (the sandbox's
-- own "1"/"0" unless seeded). keep_state and show follow the front end's
-- my.requestSubscribeMessage, whose answer has keep ("always keep this
-- choice") and show (whether the panel appeared): a long-term answer or a
-- kept one-time answer is not prompted for again.
local function relation_of(state, template_id, rel)
  local values = state.subscribe_states
  local r = { template_id = template_id, keep_state = rel.keep and "1" or "0" }
  local subscribed
  if rel.longterm then
    r.subscribe_type, subscribed, r.show = "longterm", rel.longterm == "accepted", false
  else
    r.subscribe_type, subscribed, r.show = "onetime", rel.onetime > 0, not rel.keep
  end
  r.subscribe_state = subscribed and values.subscribed or values.not_subscribed
  return r
end

local function subscribe_query(state, biz)
  local id_type, id = recipient(state, biz, "user_id", "open_id")
  local ids = biz.template_id_list
  if type(ids) ~= "table" or not is_array(ids) or #ids == 0 then
    illegal("template_id_list must be an array of 1 to 3 template ids")
  end
  if #ids > 3 then illegal("template_id_list holds more than 3 template ids") end
  local relations, show = {}, false
  for i, template_id in ipairs(ids) do
    if type(template_id) ~= "string" or template_id == "" then
      illegal(("template_id_list[%d] must be a template id"):format(i))
    end
    local rel = state:subscription(id_type, id, template_id)
    if rel then
      relations[#relations + 1] = relation_of(state, template_id, rel)
      show = show or relations[#relations].show
    else
      show = true
    end
  end
  return { show_component = show, subscribe_relations = #relations > 0 and relations or nil }
end

-- ---- mini program: sending ----

local function mini_data(biz, template)
  local raw = biz.data
  if raw == nil or raw == null or raw == "" then illegal("data is required") end
  if type(raw) ~= "string" then illegal("data must be a JSON string (an object encoded as text)") end
  -- Whether Alipay's 2048 counts characters or bytes is not documented
  -- (alipay.messaging.mini_limits): the sandbox takes the lenient reading, so
  -- the client's own stricter check in bytes is what decides in specs.
  if chars(raw) > 2048 then illegal("data is longer than 2048 characters") end
  local data = raw:match("^%s*{") and cjson_safe.decode(raw)
  if type(data) ~= "table" or is_array(data) then illegal("data is not the text of a JSON object") end
  local expected = keyword_keys(#template.keywords)
  local count = #sorted_keys(data)
  local missing
  for _, key in ipairs(expected) do
    if data[key] == nil then missing = missing or key end
  end
  if count ~= #expected or missing then
    fail("USER_TEMPLATE_LACK_KEYWORD", ("模板关键字个数不匹配：模板有%d个，data有%d个%s"):format(
      #expected, count, missing and ("，缺少" .. missing) or ""))
  end
  for _, key in ipairs(expected) do
    local entry = opt_object(data, key, "data." .. key) or illegal("data." .. key .. " must be an object")
    local value = req_string(entry, "value", "data." .. key .. ".value")
    if chars(value) > 50 then
      fail("USER_KEYWORD_LENGTH_ERROR", ("data.%s.value 超过50个字符"):format(key))
    end
  end
end

local function mini_templatemessage_send(state, biz, ctx)
  local id_type, id, key = recipient(state, biz, "to_user_id", "to_open_id")
  local template_id = req_string(biz, "user_template_id", nil, 64)
  local template = state:mini_template(template_id)
  if not template or template.deleted then
    fail("USER_TEMPLATE_ILLEGAL", "模板不存在或已删除：" .. template_id)
  end
  mini_data(biz, template)
  local page = opt_string(biz, "page")
  -- PAGE_OVER_LIMIT is the method's code; 128 is this sandbox's bound (the
  -- limit Alipay applies is not documented).
  if page and chars(page) > 128 then fail("PAGE_OVER_LIMIT", "page is longer than 128 characters") end
  -- The method's official codes include MSG_UNSUBSCRIBED and MSG_REJECTED;
  -- which one Alipay answers to which situation is not documented
  -- (docs/conformance.md): the sandbox reads them by their names. A
  -- long-term subscription stays; a one-time one is consumed by this send.
  local usable, why = state:use_subscription(id_type, id, template_id)
  if not usable then
    if why == "refused" then fail("MSG_REJECTED", "用户拒绝接收该消息模板") end
    fail("MSG_UNSUBSCRIBED", "用户未订阅该消息模板")
  end
  state:record_delivery{ api = ctx.api, method = ctx.method, app_id = ctx.app_id, [key] = id,
    template_id = template_id, payload = biz, at = ctx.now }
  return {}
end

-- alipay.open.app.alipaycert.download: the certificate of an SN the
-- gateway has signed under, as base64 of its PEM text (alipay_cert_content,
-- as the SDKs read it). No official error code for an unknown SN is known
-- (none in the code lists researched for this project), so the sandbox
-- answers the generic 40004 with a sub code of its own,
-- SANDBOX_ALIPAY_CERT_NOT_EXIST: it is not an Alipay code.
return {
  ["alipay.open.app.messagetemplate.subscribe.query"] = { handler = subscribe_query,
    invalid_code = "ILLEGAL_ARGUMENT_PARAMS",
    path = "/v3/alipay/open/app/messagetemplate/subscribe/query", verbs = { POST = true } },
  ["alipay.open.app.mini.templatemessage.send"] = { handler = mini_templatemessage_send,
    invalid_code = "ILLEGAL_ARGUMENT_PARAMS",
    path = "/v3/alipay/open/app/mini/templatemessage/send", verbs = { POST = true } },
}
