-- alipay.classify: every code of docs/messaging.md §4, in the v2 and v3 shapes
-- the client produces, plus transport kinds, defaults and added codes.
require "helpers"
local classify = require "alipay.classify"
local errors = require "alipay.errors"

-- The shapes of client.lua: v2 answers carry the result code and the
-- sub_code; v3 answers the HTTP status as code and the v3 code as sub_code.
local function v2(code, sub_code)
  return errors.new(code == "40004" and "business" or "gateway", { code = code, sub_code = sub_code })
end

local function v3(status, sub_code)
  local kind = (status >= 500 or status == 429 or status == 401 or status == 403
    or sub_code:match("^[a-z][a-z%-]*$")) and "gateway" or "business"
  return errors.new(kind, { status = status, code = tostring(status), sub_code = sub_code })
end

local function class_of(err)
  return (classify.classify(err))
end

describe("alipay.classify", function()
  it("transient: transport, HTTP and decode failures", function()
    assert.are.equal("transient", class_of(errors.new("transport", { msg = "connection reset" })))
    assert.are.equal("transient", class_of(errors.new("http", { status = 502 })))
    assert.are.equal("transient", class_of(errors.new("decode", { msg = "truncated" })))
  end)

  it("transient: 20000, unknow-error and BUSINESS_ERROR", function()
    assert.are.equal("transient", class_of(v2("20000", "isp.unknow-error")))
    assert.are.equal("transient", class_of(v2("20000")))
    assert.are.equal("transient", class_of(v2("20000", "aop.unknow-error")))
    assert.are.equal("transient", class_of(v2("40004", "BUSINESS_ERROR")))
    assert.are.equal("transient", class_of(v3(500, "unknow-error")))
    assert.are.equal("transient", class_of(v3(503, "something-new")))
    assert.are.equal("transient", class_of(v3(400, "BUSINESS_ERROR")))
  end)

  it("throttled", function()
    assert.are.equal("throttled", class_of(v2("40005", "isv.app-call-limited")))
    assert.are.equal("throttled", class_of(v2("40005", "isv.method-call-limited")))
    assert.are.equal("throttled", class_of(v2("40005")))
    assert.are.equal("throttled", class_of(v3(429, "app-call-limited")))
    assert.are.equal("throttled", class_of(v3(429, "something-new")))
  end)

  -- A count spent for a period: stop and resume later, not slow down.
  it("quota", function()
    for _, code in ipairs { "PUB.MSG_BATCH_SD_OVER", "MSG_SINGLE_SD_OVER", "PUB.MODIFY_OVER_LIMIT", "3002" } do
      assert.are.equal("quota", class_of(v2("40004", code)), code)
    end
    assert.are.equal("quota", class_of(v3(400, "MSG_BATCH_SD_OVER")))
    assert.is_false(errors.new("business", { code = "40004", sub_code = "MSG_SINGLE_SD_OVER" }).retryable)
  end)

  it("template", function()
    for _, code in ipairs { "MSG_TEMPLATE_NOT_EXIST", "USER_TEMPLATE_ILLEGAL", "USER_TEMPLATE_LACK_KEYWORD",
                            "TEMPLATE_MESSAGE_ID_INVAILD", "MSG_TEMPLATE_INVALID", "MSG_TEMPLATE_ID_INVALID",
                            "MSG_TEMPLATE_KEY_INVALID", "MSG_TEMPLATE_CONTEXT_LACK_KEY", "MSG_TEMPLATE_NOT_STARTED",
                            "TEMPLATE_ILLEGAL", "USER_TEMPLATE_STATUS_ILLEGAL", "MSG_TEMPLATE_ID_VALID",
                            "DATA_IS_EMPTY", "DATA_CONTENT_FORMAT_ERROR", "PAGE_OVER_LIMIT" } do
      assert.are.equal("template", class_of(v2("40004", code)), code)
      assert.are.equal("template", class_of(v3(400, code)), code)
    end
  end)

  it("recipient", function()
    for _, code in ipairs { "USER_KEYWORD_LENGTH_ERROR", "FORM_ID_NOT_MATCH_APPID", "FORM_ID_OVER_TIME",
                            "TRADE_NO_NOT_MATCH_USERID", "PUB.MSG_SD_NOFOLLOW", "MSG_UNSUBSCRIBED", "MSG_REJECTED",
                            "MSG_UNAUTHORIZED", "FORM_ID_SEND_LIMIT", "OPENID_INVALID", "USER_ID_INVALID",
                            "ILLEGAL_BIZ_PARAMS", "ILLEGAL_ARGUMENT_PARAMS" } do
      assert.are.equal("recipient", class_of(v2("40004", code)), code)
      assert.are.equal("recipient", class_of(v3(400, code)), code)
    end
    assert.are.equal("recipient", class_of(v3(400, "MSG_SD_NOFOLLOW")))
  end)

  it("USER_TEMPLATE_ILLEGAL after a send with a form_id is the recipient's (a form_id of the wrong kind)", function()
    local e = v2("40004", "USER_TEMPLATE_ILLEGAL")
    e.form_id = true
    assert.are.equal("recipient", class_of(e))
    assert.are.equal("template", class_of(v2("40004", "USER_TEMPLATE_ILLEGAL")))
    e = v2("40004", "MSG_TEMPLATE_NOT_EXIST")
    e.form_id = true
    assert.are.equal("template", class_of(e))
  end)

  it("is not fooled by a code that no official list has", function()
    -- USER_NOT_SUBSCRIBED was this library's own invention: it falls to the default of a business failure
    assert.are.same({ "recipient", "code 40004" }, { classify.classify(v2("40004", "USER_NOT_SUBSCRIBED")) })
    assert.is_nil(classify.rules.sub_code.USER_NOT_SUBSCRIBED)
  end)

  it("configuration: codes 20001, 40001, 40002, 40003, 40006 and their sub_codes", function()
    assert.are.equal("configuration", class_of(v2("20001", "aop.invalid-app-auth-token")))
    assert.are.equal("configuration", class_of(v2("40001", "isv.missing-signature")))
    assert.are.equal("configuration", class_of(v2("40002", "isv.invalid-signature")))
    assert.are.equal("configuration", class_of(v2("40002", "isv.invalid-app-id")))
    assert.are.equal("configuration", class_of(v2("40002", "isv.some-new-check")))
    assert.are.equal("configuration", class_of(v2("40003", "isv.missing-encrypt-key")))
    assert.are.equal("configuration", class_of(v2("40006", "isv.insufficient-isv-permissions")))
    assert.are.equal("configuration", class_of(v3(401, "invalid-signature")))
    assert.are.equal("configuration", class_of(v3(401, "invalid-app-auth-token")))
    assert.are.equal("configuration", class_of(v3(403, "insufficient-permissions")))
    assert.are.equal("configuration", class_of(v3(400, "invalid-parameter")))
    assert.are.equal("configuration", class_of(v3(404, "invalid-method")))
  end)

  it("configuration: local config and signature errors, and Life Account setup codes", function()
    assert.are.equal("configuration", class_of(errors.config("private_key", "not a key")))
    assert.are.equal("configuration", class_of(errors.new("signature", { msg = "not Alipay's" })))
    assert.are.equal("configuration",
      class_of(errors.new("signature", { code = "10000", msg = "a success response without a signature" })))
    for _, code in ipairs { "NEED_SELECT_INDUSTRY", "EXCEED_MAX_TEMPLATE_NUM", "APPINFO_NOT_EXIST",
                            "PUBLIC_NOT_ONLINE" } do
      assert.are.equal("configuration", class_of(v2("40004", code)), code)
    end
  end)

  it("a kind where Alipay did not answer decides even when codes are present", function()
    assert.are.equal("transient", class_of(errors.new("transport", { code = "40002" })))
    assert.are.equal("configuration", class_of(errors.new("config", { code = "20000" })))
  end)

  it("a reason of such a kind decides before the kind: an answer over max_response_bytes", function()
    assert.are.same({ "configuration", "kind transport reason too_large" },
                    { classify.classify(errors.transport("response larger than max_response_bytes", "too_large")) })
    assert.are.same({ "transient", "kind transport" }, { classify.classify(errors.transport("slow", "timeout")) })
    assert.are.equal("transient", class_of(errors.new("decode", { reason = "too_large" })))
  end)

  it("local failures stop: codes on them do not decide", function()
    for _, kind in ipairs { "input", "store", "io", "state" } do
      assert.are.same({ "configuration", "kind " .. kind },
                      { classify.classify(errors.new(kind, { msg = "x", code = "20000" })) }, kind)
    end
  end)

  it("defaults: an unknown business sub_code is about the recipient, anything else unknown stops", function()
    assert.are.equal("recipient", class_of(v2("40004", "SOMETHING_NEW")))
    assert.are.equal("recipient", class_of(v3(400, "SOMETHING_NEW")))
    assert.are.equal("configuration", class_of(v2("49999", "isv.brand-new")))
    assert.are.equal("configuration", class_of(v3(418, "brand-new")))
    assert.are.equal("configuration", class_of(errors.new("mystery", {})))
    assert.are.equal("configuration", class_of("a plain string"))
    assert.are.equal("configuration", class_of(nil))
  end)

  it("says which rule decided", function()
    assert.are.same({ "template", "sub_code MSG_TEMPLATE_NOT_EXIST" },
                    { classify.classify(v2("40004", "MSG_TEMPLATE_NOT_EXIST")) })
    assert.are.same({ "throttled", "code 40005" }, { classify.classify(v2("40005")) })
    assert.are.same({ "transient", "kind transport" }, { classify.classify(errors.new("transport", {})) })
    assert.are.same({ "configuration", "kind gateway" }, { classify.classify(v2("49999")) })
    assert.are.same({ "configuration", "default" }, { classify.classify(errors.new("mystery", { code = "1" })) })
  end)

  it("matches a sub_code without its dotted prefix", function()
    assert.are.equal("quota", class_of(v2("40004", "PUB.MSG_SINGLE_SD_OVER")))
    assert.are.equal("template", class_of(v2("40004", "isv.MSG_TEMPLATE_NOT_EXIST")))
  end)

  describe("rules are data", function()
    local saved
    before_each(function()
      saved = {}
      for k, v in pairs(classify.rules.sub_code) do saved[k] = v end
    end)
    after_each(function()
      for k in pairs(classify.rules.sub_code) do classify.rules.sub_code[k] = nil end
      for k, v in pairs(saved) do classify.rules.sub_code[k] = v end
    end)

    it("classify.add adds or changes a sub_code", function()
      assert.are.equal("recipient", class_of(v2("40004", "NEW_DAILY_LIMIT")))
      classify.add("NEW_DAILY_LIMIT", "throttled")
      assert.are.equal("throttled", class_of(v2("40004", "NEW_DAILY_LIMIT")))
      assert.are.equal("throttled", class_of(v3(400, "NEW_DAILY_LIMIT")))
      classify.add("SOME_NEW_CODE", "template")
      assert.are.equal("template", class_of(v2("40004", "SOME_NEW_CODE")))
    end)

    it("editing classify.rules directly works too", function()
      classify.rules.sub_code["isv.brand-new"] = "transient"
      assert.are.equal("transient", class_of(v2("49999", "isv.brand-new")))
    end)

    it("refuses unknown classes", function()
      assert.has_error(function() classify.add("X", "retry") end,
        'classify: unknown class "retry" (transient, throttled, template, recipient, quota, configuration)')
      assert.has_error(function() classify.add(nil, "transient") end)
    end)
  end)

  it("every rule names a known class", function()
    local maps = { classify.rules.sub_code, classify.rules.code, classify.rules.kind, classify.rules.invalid }
    for _, by_reason in pairs(classify.rules.reason) do maps[#maps + 1] = by_reason end
    for _, map in ipairs(maps) do
      for key, class in pairs(map) do
        assert.is_true(classify.classes[class] == true, key .. " -> " .. tostring(class))
      end
    end
    assert.is_true(classify.classes[classify.rules.default])
  end)
end)
