-- What a sender should do about an error (docs/messaging.md §4). Runs on Lua 5.4
-- and LuaJIT.
--
-- The one retry policy of the library (docs/errors.md): alipay.errors
-- derives each error's `retryable` from the class given here, and the
-- campaign engine (campaign.outcome, campaign.dispatch) acts on the class;
-- no rule is written anywhere else.
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
--           "kind transport", "kind transport reason too_large", "default"
--
-- err is a typed error of alipay.errors: v2 answers carry code ("40004") and
-- sub_code ("isv.invalid-signature", "USER_TEMPLATE_ILLEGAL"); v3 answers
-- carry code = the HTTP status ("400", "429") and sub_code = the v3 code
-- ("app-call-limited", "unknow-error", "USER_TEMPLATE_ILLEGAL").
--
-- The rules are data (classify.rules) and are tried in this order:
--   0. when Alipay did not answer (a kind not in rules.answered: transport,
--      http, decode, config, signature, and the local kinds),
--      rules.reason[kind][reason], then rules.kind[kind], decide alone;
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
-- classify.rules.code / .kind / .reason can be edited the same way, and
-- alipay.errors follows (a new rule changes `retryable` too).
local classify = {}

classify.classes = {
  transient = true, throttled = true, template = true, recipient = true, configuration = true,
}

-- Where each rule comes from. The official SDKs name codes and show the
-- answers they come in; none of them says whether a retry helps, so the
-- class of a rule is this library's reading of the code's meaning:
--   [v3]   alipay/alipay-sdk-java-all v3/src/main/java/com/alipay/v3/model/CommonErrorType.java:
--          the v3 gateway codes (names only)
--   [life] alipay/alipay-easysdk java/src/test/java/com/alipay/easysdk/marketing/openlife/ClientTest.java:
--          Life Account answers (40004 with PUB.MSG_BATCH_SD_OVER "批量发送消息频率超限", a batch send
--          over its rate; MSG_TEMPLATE_NOT_EXIST "消息模板不存在")
--   [mini] alipay/alipay-easysdk java/src/test/java/com/alipay/easysdk/marketing/templatemessage/ClientTest.java:
--          40004 USER_TEMPLATE_ILLEGAL "模板非法"
--   [auth] alipay/alipay-easysdk java/src/test/java/com/alipay/easysdk/util/generic/ClientTest.java:
--          20001 "Insufficient Token Permissions" with aop.invalid-app-auth-token
--   [node] alipay/alipay-sdk-nodejs-all src/alipay.ts (40002 "Invalid Arguments" with
--          isv.invalid-signature) and test/alipay.exec.test.ts (40003 "Insufficient Conditions" with
--          isv.decryption-error-unknown, after a request the gateway could not decrypt)
--   [none] no official SDK source found: the rule is kept as this library had it
--   [local] not Alipay's: a fact of this library (a kind, a transport reason)
classify.rules = {
  sub_code = {
    -- transient: the platform failed; the same request may succeed later
    ["isp.unknow-error"] = "transient",      -- [none] v2 spelling of [v3] unknow-error
    ["aop.unknow-error"] = "transient",      -- [none] the same, raised by the gateway itself
    ["unknow-error"] = "transient",          -- [v3]
    ["BUSINESS_ERROR"] = "transient",        -- [none]
    ["isv.upload-fail"] = "transient",       -- [none] v2 spelling of [v3] upload-fail
    -- [node] meets it after a request the gateway could not decrypt, which
    -- reads as a key mismatch (configuration); kept transient as before
    -- until an answer shows that a retry never passes. [v3] decryption-error-unknown
    ["isv.decryption-error-unknown"] = "transient",
    ["isv.invalid-encrypt"] = "transient",   -- [none] v2 spelling of [v3] invalid-encrypt

    -- throttled
    ["isv.app-call-limited"] = "throttled",  -- [none] v2 spelling of [v3] app-call-limited
    ["isv.method-call-limited"] = "throttled", -- [none] v2 spelling of [v3] method-call-limited
    ["app-call-limited"] = "throttled",      -- [v3]
    ["method-call-limited"] = "throttled",   -- [v3]
    -- [life] a batch send over its rate: slowing down is the fix. (alipay.errors
    -- once called it not retryable; the SDK's message says it is a rate.)
    ["PUB.MSG_BATCH_SD_OVER"] = "throttled",
    ["MSG_BATCH_SD_OVER"] = "throttled",     -- [none] the same without its prefix (v3)

    -- template: the template is gone or does not fit
    ["MSG_TEMPLATE_NOT_EXIST"] = "template", -- [life]
    ["USER_TEMPLATE_ILLEGAL"] = "template",  -- [mini]
    ["USER_TEMPLATE_LACK_KEYWORD"] = "template", -- [none]
    ["TEMPLATE_MESSAGE_ID_INVAILD"] = "template", -- [none] sic: Alipay's spelling

    -- recipient: this message to this user
    ["USER_KEYWORD_LENGTH_ERROR"] = "recipient", -- [none]
    ["FORM_ID_NOT_MATCH_APPID"] = "recipient",   -- [none]
    ["FORM_ID_OVER_TIME"] = "recipient",         -- [none]
    ["TRADE_NO_NOT_MATCH_USERID"] = "recipient", -- [none]
    ["PUB.MSG_SD_NOFOLLOW"] = "recipient",   -- [none] the user does not follow the Life Account
    ["MSG_SD_NOFOLLOW"] = "recipient",       -- [none] the same without its prefix (v3)
    ["USER_NOT_SUBSCRIBED"] = "recipient",   -- [local] the sandbox's code for "not subscribed"
    ["ILLEGAL_BIZ_PARAMS"] = "recipient",    -- [none] a single send's parameters for this user

    -- configuration: the app, its keys or its Life Account need a human
    ["isv.invalid-signature"] = "configuration", -- [node]; [v3] invalid-signature
    ["isv.invalid-app-id"] = "configuration",    -- [none] v2 spelling of [v3] invalid-app-id
    ["isv.missing-signature"] = "configuration", -- [none] v2 spelling of [v3] missing-signature
    ["isv.invalid-app-cert-sn"] = "configuration", -- [none]
    ["isv.invalid-alipay-root-cert-sn"] = "configuration", -- [none] v2 spelling of [v3] invalid-alipay-root-cert-sn
    ["aop.invalid-app-auth-token"] = "configuration", -- [auth]
    ["invalid-signature"] = "configuration",  -- [v3]
    ["missing-signature"] = "configuration",  -- [v3]
    ["invalid-app-auth-token"] = "configuration", -- [v3]
    ["NEED_SELECT_INDUSTRY"] = "configuration",   -- [none]
    ["EXCEED_MAX_TEMPLATE_NUM"] = "configuration", -- [none]
    ["APPINFO_NOT_EXIST"] = "configuration",  -- [none]
    ["PUBLIC_NOT_ONLINE"] = "configuration",  -- [none]
  },
  code = {
    ["20000"] = "transient",     -- [none] service unavailable
    ["40005"] = "throttled",     -- [none] call limited
    ["20001"] = "configuration", -- [auth] insufficient token permissions
    ["40001"] = "configuration", -- [none] missing required arguments
    ["40002"] = "configuration", -- [node] invalid arguments (signature, app id, ...)
    ["40003"] = "configuration", -- [node] insufficient conditions
    ["40006"] = "configuration", -- [none] insufficient permissions
    ["40004"] = "recipient",     -- [life] business failed, sub_code not listed above
    -- v3: the HTTP status when the sub_code is not listed [local: HTTP's meaning]
    ["429"] = "throttled",
    ["500"] = "transient", ["502"] = "transient", ["503"] = "transient", ["504"] = "transient",
    ["401"] = "configuration", ["403"] = "configuration", ["404"] = "configuration",
  },
  -- [local] every kind alipay.errors produces for a call, and the local ones.
  kind = {
    transport = "transient", -- no answer (the request may or may not have been executed)
    http = "transient",      -- an HTTP status other than 200 without an Alipay error body
    decode = "transient",    -- a truncated or garbled body
    config = "configuration",
    signature = "configuration", -- an answer that is not Alipay's: its codes cannot be trusted
    business = "recipient",  -- v3 business errors (v2 ones have code 40004)
    gateway = "configuration",
    -- Failures here, not at Alipay (the caller's data, the database, a file,
    -- the current state): repeating the same call does not change them.
    input = "configuration", store = "configuration", io = "configuration", state = "configuration",
  },
  -- [local] A reason of a kind decides before the kind: kind -> {reason -> class}.
  reason = {
    -- An answer over max_response_bytes will be over it again: the cap is
    -- the client's configuration.
    transport = { too_large = "configuration" },
  },
  -- [local] Refused locally before any call (kind "invalid", from lifeaccount/mini):
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
    local by_reason = lookup(rules.reason, err.kind)
    local class = by_reason and lookup(by_reason, err.reason)
    if class then return class, ("kind %s reason %s"):format(tostring(err.kind), tostring(err.reason)) end
    class = lookup(rules.kind, err.kind)
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
