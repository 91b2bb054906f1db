-- The helpers that refuse bad data where it enters (issue 13 §5): control
-- characters (alipay.util.control_chars), a JSON object's repeated key
-- (alipay.util.json_keys), the short echo of input in messages
-- (alipay.util.excerpt, alipay.util.csv.header_problem). What the sends and
-- campaigns do with them: spec/unit/17-bad_data_refused_spec.lua.
require "helpers"
local control_chars = require "alipay.util.control_chars"
local excerpt = require "alipay.util.excerpt"
local json_keys = require "alipay.util.json_keys"
local csv = require "alipay.util.csv"
local cjson = require "cjson"

describe("alipay.util.control_chars", function()
  it("finds NUL, the other C0 characters, DEL, ESC and the C1 characters", function()
    assert.are.same({ 3, "NUL" }, { control_chars.find("HU\0" .. "101") })
    assert.are.same({ 2, "ESC" }, { control_chars.find("a\27[31mred") })
    assert.are.same({ 2, "DEL" }, { control_chars.find("a\127") })
    assert.are.same({ 2, "CR" }, { control_chars.find("a\r\n") })
    assert.are.same({ 1, "U+0007" }, { control_chars.find("\7") })
    assert.are.same({ 2, "U+009B" }, { control_chars.find("a\194\155" .. "2J") }) -- the one-byte CSI
    assert.is_nil(control_chars.find("订单 é ü 😀 #85be53 https://x/y?a=1&b=%20"))
  end)

  it("lets a tab and a line feed through only in text", function()
    assert.are.same({ 2, "TAB" }, { control_chars.find("a\tb") })
    assert.are.same({ 2, "LF" }, { control_chars.find("a\nb") })
    assert.is_nil(control_chars.find("a\tb\nc", true))
    assert.are.same({ 2, "NUL" }, { control_chars.find("a\0", true) })
    assert.are.same({ 4, "ESC" }, { control_chars.find("a\n\t\27", true) })
  end)

  it("check walks a context: only the values are text, every other leaf and key is not", function()
    assert.is_true(control_chars.check("context",
      { url = "https://x", keyword1 = { value = "a\nb\tc", color = "#fff" } }))
    local ok, msg, field = control_chars.check("context", { keyword1 = { value = "a", color = "#fff\n" } })
    assert.is_nil(ok)
    assert.are.equal("context.keyword1.color", field)
    assert.are.equal("context.keyword1.color: a control character (LF) at byte 5 is refused", msg)
    ok, msg, field = control_chars.check("context", { url = "https://x/\0", action_name = "go\t" })
    assert.is_nil(ok)
    assert.are.equal("context.action_name", field) -- sorted: the same value names the same field
    assert.truthy(msg:find("TAB", 1, true))
    ok, msg, field = control_chars.check("data", { ["key\0"] = { value = "x" } })
    assert.is_nil(ok)
    assert.are.equal("data", field)
    assert.truthy(msg:find("a field name", 1, true))
    ok, msg, field = control_chars.check("template_ids", { "ok", "b\27" })
    assert.truthy(msg:find("ESC", 1, true))
    assert.is_nil(ok)
    assert.are.equal("template_ids[2]", field)
    assert.is_true(control_chars.check("page", "pages/index?id=1"))
  end)
end)

describe("alipay.util.excerpt", function()
  it("keeps short values, cuts long ones on a character boundary and says their size", function()
    assert.are.equal("order_no", excerpt("order_no"))
    local long = excerpt(("x"):rep(1000000))
    assert.are.equal(("x"):rep(40) .. "…(40 of 1000000 bytes)", long)
    local cjk = excerpt(("订"):rep(100)) -- 3 bytes each: 13 whole characters fit in 40 bytes
    assert.are.equal(("订"):rep(13) .. "…(39 of 300 bytes)", cjk)
    assert.are.equal("a?b?", excerpt("a\27b\0"))
  end)
end)

describe("alipay.util.json_keys.repeated", function()
  local function repeated(text) return json_keys.repeated(text, cjson.decode(text)) end

  it("names a key that appears twice at the top level", function()
    assert.are.equal("user_id", repeated('{"user_id":"1","user_id":"2"}'))
    assert.are.equal("user_id", repeated('{"user_id":"1","user\\u005fid":"2"}')) -- the same key, escaped
    assert.are.equal("a", repeated('{"a":["b",":"] , "a" : 2}'))
    assert.are.equal("a", repeated('{"a":"\\\\","a":1}'))
  end)

  it("is not fooled by strings, escapes and nested objects", function()
    assert.is_nil(repeated('{"a":"x\\":","b":1}'))
    assert.is_nil(repeated('{"a":"\\\\\\"a\\":","b":1}'))
    assert.is_nil(repeated('{"a":{"b":1,"b":2},"c":1}'))
    assert.is_nil(repeated('{"user_id":"2088000000000001","order_no":"HU1"}'))
    assert.is_nil(repeated('{}'))
  end)
end)

describe("alipay.util.csv.header_problem", function()
  it("names the column and its size, and echoes a short prefix only", function()
    assert.is_nil(csv.header_problem { "user_id", "order_no" })
    local msg = csv.header_problem { "user_id", ("c"):rep(1000000) }
    assert.is_true(#msg < 200, #msg .. " bytes")
    assert.truthy(msg:find("column 2 of the header is a name of 1000000 bytes (at most 128)", 1, true))
    msg = csv.header_problem { "user\27[2Jid" }
    assert.truthy(msg:find("column 1 of the header: a control character (ESC) at byte 5", 1, true))
  end)
end)
