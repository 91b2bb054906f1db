-- What a sender should do about an error (docs/messaging.md §4). Runs on Lua 5.4
-- and LuaJIT.
--
--   local classify = require "alipay.classify"
--   local class, reason = classify.classify(err)   -- also errors.classify(err)
--
--   class   "transient"      retry with exponential backoff and jitter, bounded
--           "throttled"      lower the send rate, then retry
--           "template"       mark the template invalid, stop sending with it
--           "recipient"      record the failure against this recipient, go on
--           "configuration"  stop: every further call would fail the same way
--   reason  which rule decided, for logs: "sub_code MSG_TEMPLATE_NOT_EXIST", "code 40005",
--           "kind transport", "default"
--
-- err is a typed error of alipay.errors: v2 answers carry code ("40004") and
-- sub_code ("isv.invalid-signature", "USER_TEMPLATE_ILLEGAL"); v3 answers
-- carry code = the HTTP status ("400", "429") and sub_code = the v3 code
-- ("app-call-limited", "unknow-error", "USER_TEMPLATE_ILLEGAL").
--
-- The rules are data (classify.rules) and are tried in this order:
--   0. when Alipay did not answer (a kind not in rules.answered: transport,
--      http, decode, config, signature), rules.kind[kind] decides alone;
--   1. rules.sub_code[sub_code], then the same with a dotted prefix removed
--      ("isv.app-call-limited" -> "app-call-limited"), so the v2 and v3
--      spellings of one code share an entry when only one is listed;
--   2. rules.code[code]: v2 result codes, and HTTP statuses for v3;
--   3. rules.kind[kind];
--   4. rules.default.
-- Defaults, chosen so that nothing unknown is retried forever or sent on
-- blindly: an unknown sub_code of a business failure (v2 40004, kind
-- "business" in v3) is about this request's content or recipient, so it
-- is "recipient" (recorded, the campaign goes on); anything else unknown
-- (a gateway code, a non-error value) is "configuration": stop and let a
-- human look.
--
-- classify.add(sub_code, class) adds or changes a sub_code rule;
-- classify.rules.code / .kind can be edited the same way.
local classify = {}

classify.classes = {
  transient = true, throttled = true, template = true, recipient = true, configuration = true,
}

classify.rules = {
  sub_code = {
    -- transient: the platform failed; the same request may succeed later
    ["isp.unknow-error"] = "transient",
    ["aop.unknow-error"] = "transient",
    ["unknow-error"] = "transient",          -- v3
    ["BUSINESS_ERROR"] = "transient",
    -- alipay.errors counts these as retryable; kept in step with it
    ["isv.upload-fail"] = "transient",
    ["isv.decryption-error-unknown"] = "transient",
    ["isv.invalid-encrypt"] = "transient",

    -- throttled
    ["isv.app-call-limited"] = "throttled",
    ["isv.method-call-limited"] = "throttled",
    ["app-call-limited"] = "throttled",      -- v3
    ["method-call-limited"] = "throttled",   -- v3
    ["PUB.MSG_BATCH_SD_OVER"] = "throttled", -- broadcast rate exceeded
    ["MSG_BATCH_SD_OVER"] = "throttled",     -- the same without its prefix (v3)

    -- template: the template is gone or does not fit
    ["MSG_TEMPLATE_NOT_EXIST"] = "template",
    ["USER_TEMPLATE_ILLEGAL"] = "template",
    ["USER_TEMPLATE_LACK_KEYWORD"] = "template",
    ["TEMPLATE_MESSAGE_ID_INVAILD"] = "template", -- sic: Alipay's spelling

    -- recipient: this message to this user
    ["USER_KEYWORD_LENGTH_ERROR"] = "recipient",
    ["FORM_ID_NOT_MATCH_APPID"] = "recipient",
    ["FORM_ID_OVER_TIME"] = "recipient",
    ["TRADE_NO_NOT_MATCH_USERID"] = "recipient",
    ["PUB.MSG_SD_NOFOLLOW"] = "recipient",   -- the user does not follow the Life Account
    ["MSG_SD_NOFOLLOW"] = "recipient",       -- the same without its prefix (v3)
    ["USER_NOT_SUBSCRIBED"] = "recipient",   -- the sandbox's code for "not subscribed"
    ["ILLEGAL_BIZ_PARAMS"] = "recipient",    -- a single send's parameters for this user

    -- configuration: the app, its keys or its Life Account need a human
    ["isv.invalid-signature"] = "configuration",
    ["isv.invalid-app-id"] = "configuration",
    ["isv.missing-signature"] = "configuration",
    ["isv.invalid-app-cert-sn"] = "configuration",
    ["isv.invalid-alipay-root-cert-sn"] = "configuration",
    ["aop.invalid-app-auth-token"] = "configuration",
    ["invalid-signature"] = "configuration",  -- v3
    ["missing-signature"] = "configuration",  -- v3
    ["invalid-app-auth-token"] = "configuration", -- v3
    ["NEED_SELECT_INDUSTRY"] = "configuration",
    ["EXCEED_MAX_TEMPLATE_NUM"] = "configuration",
    ["APPINFO_NOT_EXIST"] = "configuration",
    ["PUBLIC_NOT_ONLINE"] = "configuration",
  },
  code = {
    ["20000"] = "transient",     -- service unavailable
    ["40005"] = "throttled",     -- call limited
    ["20001"] = "configuration", -- insufficient token permissions
    ["40001"] = "configuration", -- missing required arguments
    ["40002"] = "configuration", -- invalid arguments (signature, app id, ...)
    ["40003"] = "configuration", -- insufficient conditions
    ["40006"] = "configuration", -- insufficient permissions
    ["40004"] = "recipient",     -- business failed, sub_code not listed above
    -- v3: the HTTP status when the sub_code is not listed
    ["429"] = "throttled",
    ["500"] = "transient", ["502"] = "transient", ["503"] = "transient", ["504"] = "transient",
    ["401"] = "configuration", ["403"] = "configuration", ["404"] = "configuration",
  },
  kind = {
    transport = "transient", -- no answer (the request may or may not have been executed)
    http = "transient",      -- an HTTP status other than 200 without an Alipay error body
    decode = "transient",    -- a truncated or garbled body
    config = "configuration",
    signature = "configuration",
    business = "recipient",  -- v3 business errors (v2 ones have code 40004)
    gateway = "configuration",
  },
  -- Refused locally before any call (kind "invalid", from lifeaccount/mini):
  -- err.reason says what was wrong; a bad row must not stop a campaign.
  invalid = {
    recipient = "recipient", data = "recipient", request = "recipient",
    template = "template",
  },
  -- Kinds of errors that carry Alipay's answer, where its codes decide.
  answered = { gateway = true, business = true },
  default = "configuration",
}

local function check_class(class)
  if not classify.classes[class] then
    error(("classify: unknown class %q (transient, throttled, template, recipient, configuration)")
      :format(tostring(class)), 3)
  end
end

function classify.add(sub_code, class)
  if type(sub_code) ~= "string" or sub_code == "" then error("classify.add: sub_code must be a string", 2) end
  check_class(class)
  classify.rules.sub_code[sub_code] = class
end

local function lookup(map, key)
  if key == nil then return nil end
  return map[tostring(key)]
end

function classify.classify(err)
  local rules = classify.rules
  if type(err) ~= "table" then return rules.default, "default" end
  if err.kind == "invalid" then
    return rules.invalid[err.reason] or "recipient", "invalid " .. tostring(err.reason)
  end
  if not rules.answered[err.kind] then
    local class = lookup(rules.kind, err.kind)
    if class then return class, "kind " .. tostring(err.kind) end
  end
  local sub_code = err.sub_code
  if type(sub_code) == "string" and sub_code ~= "" then
    local class = rules.sub_code[sub_code]
    if class then return class, "sub_code " .. sub_code end
    local bare = sub_code:match("^%a+%.(.+)$")
    class = bare and rules.sub_code[bare]
    if class then return class, "sub_code " .. sub_code end
  end
  local class = lookup(rules.code, err.code)
  if class then return class, "code " .. tostring(err.code) end
  class = lookup(rules.kind, err.kind)
  if class then return class, "kind " .. tostring(err.kind) end
  return rules.default, "default"
end

return classify
