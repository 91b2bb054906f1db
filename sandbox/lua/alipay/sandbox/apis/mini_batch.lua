-- The sandbox gateway's mini-program batch send (docs/messaging.md §3.5),
-- alipay.open.app.mini.templatemessage.batchsend: one template message to
-- the template's subscribers, or to those of them in a crowd (crowd_code),
-- now or at schedule_send_time. Fields are the v2 model's (alipay/alipay-sdk-java-all
-- AlipayOpenAppMiniTemplatemessageBatchsendModel and its response, batch_msg_id).
-- No official code list exists for the method, so its refusals carry the
-- sandbox's own SANDBOX_ codes; the v3 path is derived from the method name.
-- A batch send is one delivery record (sb:deliveries()) naming every recipient.
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"
local support = require "alipay.sandbox.apis.support"
local utf8_text = require "alipay.util.utf8"

local fail, illegal = support.fail, support.illegal
local opt_string, req_string = support.opt_string, support.req_string
local is_array, keyword_keys, sorted_keys = support.is_array, support.keyword_keys, support.sorted_keys
local null = cjson.null
local chars = utf8_text.chars

local METHOD = "alipay.open.app.mini.templatemessage.batchsend"

-- The data of the template: a JSON object text with exactly its keywords.
local function check_data(biz, template)
  local raw = biz.data
  if raw == nil or raw == null or raw == "" then illegal("data is required") end
  if type(raw) ~= "string" then illegal("data must be a JSON string (an object encoded as text)") end
  local data = raw:match("^%s*{") and cjson_safe.decode(raw)
  if type(data) ~= "table" or is_array(data) then illegal("data is not the text of a JSON object") end
  local expected = keyword_keys(#template.keywords)
  local ok = #sorted_keys(data) == #expected
  for _, key in ipairs(expected) do
    local entry = data[key]
    ok = ok and type(entry) == "table" and type(entry.value) == "string"
  end
  if not ok then
    fail("SANDBOX_DATA_KEYWORD_MISMATCH", ("data must hold keyword1..keyword%d, each {\"value\": \"...\"}")
      :format(#expected))
  end
end

local function batchsend(state, biz, ctx)
  local template_id = req_string(biz, "template_id", nil, 64)
  local template = state:mini_template(template_id)
  if not template or template.deleted then
    fail("SANDBOX_TEMPLATE_NOT_EXIST", "模板不存在或已删除：" .. template_id)
  end
  check_data(biz, template)
  local page = opt_string(biz, "page")
  if page and chars(page) > 128 then illegal("page is longer than 128 characters") end
  -- The Java SDK models schedule_send_time as a Date, which it writes as
  -- "yyyy-MM-dd HH:mm:ss" in GMT+8 (AlipayConstants); other forms: unknown.
  local at = opt_string(biz, "schedule_send_time")
  if at and not at:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$") then
    illegal("schedule_send_time must be yyyy-MM-dd HH:mm:ss")
  end
  local crowd_code, crowd = opt_string(biz, "crowd_code"), nil
  if crowd_code then
    crowd = state:crowd(crowd_code) or fail("SANDBOX_CROWD_NOT_EXIST", "人群不存在：" .. crowd_code)
  end
  local recipients = state:mini_subscribers(template_id, crowd)
  local id = state:record_batch_send{ template_id = template_id, crowd_code = crowd_code,
    schedule_send_time = at, recipients = recipients }
  state:record_delivery{ api = ctx.api, method = ctx.method or METHOD, app_id = ctx.app_id,
    template_id = template_id, batch_msg_id = id, crowd_code = crowd_code, schedule_send_time = at,
    id_type = state.id_type, recipients = recipients, payload = biz, at = ctx.now }
  return { batch_msg_id = id }
end

return {
  [METHOD] = { handler = batchsend, invalid_code = "SANDBOX_INVALID_PARAMETER",
    path = "/v3/alipay/open/app/mini/templatemessage/batchsend", verbs = { POST = true } },
}
