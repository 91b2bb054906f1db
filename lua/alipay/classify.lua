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
--           "quota"          a sending quota is spent: stop, leave everyone left
--                            pending, resume when it resets
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
  transient = true, throttled = true, template = true, recipient = true, quota = true, configuration = true,
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
--   [enum] alipay/alipay-sdk-java-all v3/src/main/java/com/alipay/v3/model/<Method>ErrorResponseModel.java:
--          the official code list of each method we call (names only, no messages);
--          docs/conformance.md names the file of each method and the class of every code
--   [enet] alipay/alipay-sdk-net-all v3/src/AlipaySDKNet.OpenAPI/Model/<Method>ErrorResponseModel.cs: the
--          same generated lists for the Life Account broadcast, label and content methods
--          (total.send, label.send, group.send, life.label.*, matchuser.label.*, content.*);
--          label.send's and life.msg.recall's (empty) were checked in [enum] too
--   [recall] alipay/alipay-easysdk openlife ClientTest.java testRecallMessage: 40004
--          PUB.RCD_MSG_NOT_EXIST "撤回的消息不存在"
--   [faq]  AlipayDocs/open-docs support/支付宝小程序/常见问题/<CODE>（...）.md: the page on the code
--   [none] no official SDK source found: the rule is kept as this library had it
--   [local] not Alipay's: a fact of this library (a kind, a transport reason)
classify.rules = {
  sub_code = {
    -- transient: the platform failed; the same request may succeed later
    ["isp.unknow-error"] = "transient",      -- [none] v2 spelling of [v3] unknow-error
    ["aop.unknow-error"] = "transient",      -- [none] the same, raised by the gateway itself
    ["unknow-error"] = "transient",          -- [v3]
    ["BUSINESS_ERROR"] = "transient",        -- [enum] template.message.get, user.follow.query
    ["SYSTEM_ERROR"] = "transient",          -- [enum] every method we call
    ["MSG_SEND_ERROR"] = "transient",        -- [enum] mini send (ambiguous; retries are bounded)
    ["QUERY_CONSUMER_REQEUST_ERROR"] = "transient", -- [enum] mini send (sic)
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

    -- template: the template is gone, not started, or the payload does not
    -- fit it: the same for every recipient, so the template is marked invalid
    ["MSG_TEMPLATE_NOT_EXIST"] = "template", -- [life] [enum] single.send, subscribe.query
    ["MSG_TEMPLATE_INVALID"] = "template",   -- [enum] single.send, subscribe.query
    ["MSG_TEMPLATE_ID_INVALID"] = "template", -- [enum] single.send
    ["MSG_TEMPLATE_ID_VALID"] = "template",  -- [enum] mini send (sic: it means invalid)
    ["MSG_TEMPLATE_KEY_INVALID"] = "template", -- [enum] single.send
    ["MSG_TEMPLATE_CONTEXT_LACK_KEY"] = "template", -- [enum] single.send
    ["MSG_TEMPLATE_NOT_STARTED"] = "template", -- [enum] single.send
    ["MSG_SEND_ILLEGAL"] = "template",       -- [enum] single.send; content refused (ambiguous: the
                                             -- same content fails for everyone; stopping is safe)
    -- [mini] [enum] [faq]: the template id does not match or was deleted, or
    -- the form_id is of the wrong kind for the template; a send that carried
    -- a form_id is "recipient" instead (rules.with_form_id)
    ["USER_TEMPLATE_ILLEGAL"] = "template",
    ["USER_TEMPLATE_STATUS_ILLEGAL"] = "template", -- [enum] mini send: the applied template's status
    ["TEMPLATE_ILLEGAL"] = "template",       -- [enum] mini send
    ["MESSAGE_TEMPLATE_KEYWORD_ILLEGAL"] = "template", -- [enum] mini send
    ["USER_TEMPLATE_LACK_KEYWORD"] = "template", -- [enum] [faq] keywords differ from the template's
    ["PAGE_OVER_LIMIT"] = "template",        -- [enum] mini send: the page is the campaign's
    ["DATA_CONTENT_FORMAT_ERROR"] = "template", -- [enum] mini send
    ["DATA_IS_EMPTY"] = "template",          -- [enum] mini send
    ["DATA_SENSITIVE"] = "template",         -- [enum] mini send (ambiguous, as MSG_SEND_ILLEGAL)
    ["TEMPLATE_MESSAGE_ID_INVAILD"] = "template", -- [enum] template.message.get (sic: Alipay's spelling)

    -- recipient: this message to this user
    ["OPENID_INVALID"] = "recipient",        -- [enum] single.send, subscribe.query
    ["USER_ID_INVALID"] = "recipient",       -- [enum] mini send
    ["FORM_ID_INVALID"] = "recipient",       -- [enum] mini send
    ["FORM_ID_NOT_MATCH_APPID"] = "recipient", -- [enum] [faq]
    ["FORM_ID_OVER_TIME"] = "recipient",     -- [enum] [faq] older than 7 days
    ["FORM_ID_SEND_LIMIT"] = "recipient",    -- [enum] a form_id serves three sends (form component docs)
    ["TRADE_NO_NOT_MATCH_USERID"] = "recipient", -- [enum] [faq] a trade_no reaches its payer only
    ["MSG_SD_NOFOLLOW"] = "recipient",       -- [enum] single.send: the user does not follow the account
    ["UNFOLLOW_REFUSE_RECOMMONED"] = "recipient", -- [enum] single.send (sic)
    ["TYPEATEMPLATE_SWITCH_UNSUBSCRIBED"] = "recipient", -- [enum] single.send (sic): the user switched it off
    -- mini send, the user's answer to the subscription: which one Alipay
    -- sends for "never subscribed" is not documented; all four are per user
    ["MSG_UNSUBSCRIBED"] = "recipient",      -- [enum]
    ["MSG_REJECTED"] = "recipient",          -- [enum]
    ["MSG_UNAUTHORIZED"] = "recipient",      -- [enum] (ambiguous: it may be the app's; the campaign's
                                             -- circuit breaker stops a run that meets only failures)
    ["MSG_CONTENT_NOT_INTERESTED"] = "recipient", -- [enum]
    ["NO_RECENT_VISIT_RECORD"] = "recipient", -- [enum] mini send
    ["NO_PLACE_ORDER_RECORD"] = "recipient", -- [enum] mini send
    ["USER_KEYWORD_LENGTH_ERROR"] = "recipient", -- [enum] [faq] a value over 50 characters: a row's
                                             -- own data (the client refuses it before the call)
    -- the arguments of this call: the client checks them first, so what is
    -- left is about one row (ambiguous; the circuit breaker stops a run that
    -- meets nothing else)
    ["ILLEGAL_BIZ_PARAMS"] = "recipient",    -- [enum] template.message.get, user.follow.query
    ["ILLEGAL_ARGUMENT_PARAMS"] = "recipient", -- [enum] single.send, mini send, subscribe.query
    ["INVALID_PARAMETER"] = "recipient",     -- [enum] user.follow.query

    -- quota: a count the app may spend per period is spent; sending on
    -- spends calls on refusals, waiting is the fix
    ["MSG_SINGLE_SD_OVER"] = "quota",        -- [enum] single.send, mini send (ambiguous: a rate or a
                                             -- daily count; stopping is safe either way)
    ["MSG_BATCH_SD_OVER"] = "quota",         -- [life] PUB.MSG_BATCH_SD_OVER 批量发送消息频率超限, recorded
                                             -- by easysdk as the answer of every further run; [enet] group.send
    ["MODIFY_OVER_LIMIT"] = "quota",         -- [enum] industry.modify, as PUB.MODIFY_OVER_LIMIT
    ["3002"] = "quota",                      -- [life] industry.modify: once a month

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
    ["NEED_SELECT_INDUSTRY"] = "configuration",   -- [enum] template.message.get
    ["EXCEED_MAX_TEMPLATE_NUM"] = "configuration", -- [enum] template.message.get: delete templates first
    ["APPINFO_NOT_EXIST"] = "configuration",  -- [enum] template.message.get, industry.modify
    ["PUBLIC_NOT_ONLINE"] = "configuration",  -- [enum] template.message.get, industry.modify
    ["APP_NOT_PUBLICAPP"] = "configuration",  -- [enum] template.message.get
    ["NEED_DELETE_MSG_TEMPLATES"] = "configuration", -- [enum] industry.modify
    ["APP_NO_AVAIABLE"] = "configuration",    -- [enum] single.send, mini send (sic)
    ["BIZ_CONTENT_IS_NULL"] = "configuration", -- [enum] a request without biz_content: a client bug
    ["BIZ_CONTENT_FORMAT_ERROR"] = "configuration", -- [enum] mini send
    ["MSG_SEND_FORBIDDEN"] = "configuration", -- [enum] single.send (ambiguous: an account's ban or a
                                             -- user's block; stopping spends no calls on a ban)
    ["NO_BIND_PUBLIC_APP"] = "configuration", -- [enum] mini send: no Life Account bound
    ["MESSAGE_SEND_AUTH_ERROR"] = "configuration", -- [enum] mini send
    ["APP_TYPE_ERROR"] = "configuration",     -- [enum] [faq] mini send: the wrong app or token
    ["QUERY_FOLLOWER_FORBIDDEN"] = "configuration", -- [enum] follow.batchquery
    ["SUBSCRIBE_TEMPLATE_OVER_LIMIT"] = "configuration", -- [enum] subscribe.query (ambiguous)

    -- Life Account broadcasts, labels and contents (docs/messaging.md §2.7-§2.9).
    -- Each is one call the caller makes, never retried behind its back; the
    -- class says whether calling again may help.
    ["LABEL_COUNT_LIMIT"] = "configuration", -- [enet] label.create: 100 labels per account, delete some
    ["DATA_TYPE_INVALID"] = "recipient",     -- [enet] label.create, matchuser.label.create
    ["ADD_LABEL_NAME_IS_EMPTY"] = "recipient", -- [enet] label.create
    ["LABEL_NAME_HAS_SPACE"] = "recipient",  -- [enet] label.create, label.modify
    ["LABEL_NAME_HAS_COMMA"] = "recipient",  -- [enet] label.create, label.modify
    ["LABEL_NAME_TOO_LONG"] = "recipient",   -- [enet] label.create, label.modify (the limit is unknown)
    ["LABEL_NAME_ALREADY_EXISTS"] = "recipient", -- [enet] label.create, label.modify
    ["MOD_LABEL_ID_IS_EMPTY"] = "recipient", -- [enet] label.modify
    ["MOD_LABEL_NAME_IS_EMPTY"] = "recipient", -- [enet] label.modify
    ["DEL_LABEL_ID_IS_EMPTY"] = "recipient", -- [enet] label.delete
    ["LABEL_NOT_EXISTS"] = "recipient",      -- [enet] label.modify, label.delete, matchuser.label.*
    ["LABEL_IS_USED"] = "recipient",         -- [enet] label.delete (what uses it is unknown)
    ["MSG_MATCHER_INVALID"] = "recipient",   -- [enet] matchuser.label.*
    ["LABEL_ID_IS_EMPTY"] = "recipient",     -- [enet] matchuser.label.*
    ["LABEL_VALUE_IS_EMPTY"] = "recipient",  -- [enet] matchuser.label.create
    ["LABEL_VALUE_TOO_LONG"] = "recipient",  -- [enet] matchuser.label.create (the limit is unknown)
    ["MATCHER_PARAMS_IS_EMPTY"] = "recipient", -- [enet] matchuser.label.*
    ["MOBILE_NO_INVALID"] = "recipient",     -- [enet] matchuser.label.*
    ["IDENTITY_CARD_INVALID"] = "recipient", -- [enet] matchuser.label.*
    ["NOT_MATCHED_ACCOUNT"] = "recipient",   -- [enet] matchuser.label.*
    ["USER_LABEL_NOT_EXISTS"] = "recipient", -- [enet] matchuser.label.delete
    ["OPEN_ID_IS_ILLEGAL"] = "recipient",    -- [enet] total.send, label.send, matchuser.label.*
    ["MSG_TYPE_ILLEGAL"] = "recipient",      -- [enet] total.send, label.send: the request's own content
    ["LABEL_GROUP_FILTER_EMPTY"] = "recipient", -- [enet] label.send, and the other LABEL_GROUP_* below:
    ["LABEL_GROUP_LABEL_OVER_LIMIT"] = "recipient", -- [enet] the filter of this call
    ["LABEL_GROUP_KEY_EMPTY"] = "recipient", -- [enet]
    ["LABEL_GROUP_ITEM_EMPTY"] = "recipient", -- [enet]
    ["LABEL_GROUP_VALUES_EMPTY"] = "recipient", -- [enet]
    ["LABEL_GROUP_TPL_EMPTY"] = "recipient", -- [enet]
    ["LABEL_GROUP_NO_CONDITION"] = "recipient", -- [enet]
    ["LABEL_GROUP_VALUE_NOT_NUMBER"] = "recipient", -- [enet]
    ["LABEL_GROUP_LABEL_NOT_EXISTS"] = "recipient", -- [enet]
    ["GROUP_EMPTY_ERROR"] = "recipient",     -- [enet] group.send
    ["MESSAGE_IS_EMPTY"] = "recipient",      -- [enet] group.send
    ["MESSAGE_IS_INCOMPLETE"] = "recipient", -- [enet] group.send
    ["IMAGE_SIZE_ERROR"] = "recipient",      -- [enet] group.send
    ["IMAGE_TOO_LARGE"] = "recipient",       -- [enet] group.send
    ["ILLEGAL_IMAGE_FORMAT"] = "recipient",  -- [enet] group.send
    ["RCD_MSG_NOT_EXIST"] = "recipient",     -- [recall] as PUB.RCD_MSG_NOT_EXIST: no such message to recall
    ["MSG_CONTENT_TITLE_INVALID"] = "recipient", -- [enet] content.create, content.modify, and the
    ["MSG_CONTENT_COVER_INVALID"] = "recipient", -- [enet] other MSG_CONTENT_* below: this content's fields
    ["MSG_CONTENT_BODY_INVALID"] = "recipient", -- [enet]
    ["MSG_CONTENT_EXTTAGS_INVALID"] = "recipient", -- [enet]
    ["MSG_CONTENT_ACTIVITY_INVALID"] = "recipient", -- [enet]
    ["MSG_CONTENT_BENEFIT_INVALID"] = "recipient", -- [enet]
    ["MSG_CONTENT_PREVIEWIDS_INVALID"] = "recipient", -- [enet]
    ["MSG_CONTENT_SECURITY_INVALID"] = "recipient", -- [enet] (content refused by review: ambiguous)
    ["MSG_CONTENT_COULDCOMMENT_INVALID"] = "recipient", -- [enet]
    ["MSG_CONTENT_ADD_HAS_CONTENTID"] = "recipient", -- [enet] content.create
    ["MSG_CONTENT_ID_INVALID"] = "recipient", -- [enet] content.modify
    ["MSG_CONTENT_NOT_EXISTS"] = "recipient", -- [enet] content.modify
    ["MSG_CONTENT_NOT_ALLOW_UPDATE"] = "recipient", -- [enet] content.modify (when: unknown)
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
  -- [faq] A sub_code that means something else when the send carried a
  -- form_id (err.form_id, set by alipay.messaging.mini): USER_TEMPLATE_ILLEGAL
  -- then may be a form_id of the wrong kind for the template (a trade_no for
  -- a form template, or the other way round), which must not disable a good
  -- template for a whole campaign.
  with_form_id = { ["USER_TEMPLATE_ILLEGAL"] = "recipient" },
  -- Kinds of errors that carry Alipay's answer, where its codes decide.
  answered = { gateway = true, business = true },
  default = "configuration",
}

local function check_class(class)
  if not classify.classes[class] then
    error(("classify: unknown class %q (transient, throttled, template, recipient, quota, configuration)")
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
  if err.form_id and type(sub_code) == "string" and rules.with_form_id[sub_code] then
    return rules.with_form_id[sub_code], "sub_code " .. sub_code .. " with a form_id"
  end
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
