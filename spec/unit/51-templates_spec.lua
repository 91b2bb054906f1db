-- alipay.messaging.templates: importing templates, checking Life Account contexts and
-- mini-program data against them, and invalidating them.
local helpers = require "helpers"
local store = require "alipay.store"
local templates = require "alipay.messaging.templates"
local cjson = require "cjson"

local LIFE_ID = "14330d60f0ab4516853a0900827cee35"
local MINI_ID = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM="

local function life_context(overrides)
  local c = {
    head_color = "#85be53", url = "https://example.com/orders/1", action_name = "查看详情",
    first = { color = "#85be53", value = "您的订单已发货" },
    keyword1 = { color = "#85be53", value = "HU7142" },
    keyword2 = { color = "#85be53", value = "顺丰速运" },
    keyword3 = { color = "#85be53", value = "SF1234567890" },
    remark = { color = "#85be53", value = "感谢您的支持" },
  }
  for k, v in pairs(overrides or {}) do
    if v == false then c[k] = nil else c[k] = v end
  end
  return c
end

describe("alipay.messaging.templates", function()
  local dir, st, reg, now
  before_each(function()
    dir = helpers.tmpdir()
    st = assert(store.open(dir .. "/state.db"))
    now = 1715600000
    reg = templates.new(st, { clock = function() return now end })
    local res = assert(reg:import({
      { id = LIFE_ID, name = "订单发货提醒", keywords = { "订单号", "快递公司", "运单号" },
        library_id = "TM000000223" },
      { id = MINI_ID, name = "Pickup", keywords = { "time", "date", "place" }, kind = "alipaymini",
        channel = "mini456" },
    }, { channel = "alipaylife123" }))
    assert.are.equal(2, res.imported)
  end)
  after_each(function()
    st:close()
    helpers.cleanup()
  end)

  describe("import", function()
    it("fills channel and kind from opts and stores everything", function()
      local t = assert(reg:get("alipaylife123", LIFE_ID))
      assert.are.same({ "订单号", "快递公司", "运单号" }, t.keywords)
      assert.are.equal("alipaylife", t.kind)
      assert.are.equal("订单发货提醒", t.name)
      assert.are.equal("TM000000223", t.library_id)
      assert.are.equal(now, t.imported_at)
      assert.are.equal("valid", t.status)
      local m = assert(reg:get("mini456", MINI_ID))
      assert.are.equal("alipaymini", m.kind)
      assert.are.equal(1, #reg:list("alipaylife123"))
      assert.are.equal(2, #reg:list())
    end)

    it("uses opts.kind and defaults to alipaylife", function()
      assert(reg:import({ { id = "m1", keywords = { "a" } } }, { channel = "mini456", kind = "alipaymini" }))
      assert.are.equal("alipaymini", reg:get("mini456", "m1").kind)
      assert(reg:import({ { id = "l1", keywords = { "a" }, channel = "x" } }))
      assert.are.equal("alipaylife", reg:get("x", "l1").kind)
    end)

    it("reports bad entries with their position and keeps the others", function()
      local res = assert(reg:import({
        { id = "ok1", keywords = { "a", "b" } },
        { keywords = { "a" } },                              -- 2: no id
        { id = "k1", keywords = {} },                        -- 3: empty keywords
        { id = "k2", keywords = "a,b" },                     -- 4: not a list
        { id = "k3", keywords = { "a", 7 } },                -- 5: not strings
        { id = "k4", keywords = { "a", "b", "a" } },         -- 6: duplicate keyword
        { id = "k5", keywords = { "a" }, kind = "wechat" },  -- 7: bad kind
        "not an object",                                     -- 8
        { id = "ok1", keywords = { "c" } },                  -- 9: same id twice
        { id = ("x"):rep(65), keywords = { "a" } },          -- 10: id too long
        { id = "k6", keywords = { "a" }, name = 5 },         -- 11: name not a string
        { id = "ok2", keywords = { "only" } },
      }, { channel = "c1" }))
      assert.are.equal(2, res.imported)
      local by_index = {}
      for _, f in ipairs(res.failed) do by_index[f.index] = f end
      assert.are.same({ 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 }, (function()
        local list = {}
        for _, f in ipairs(res.failed) do list[#list + 1] = f.index end
        return list
      end)())
      assert.matches("^id: missing", by_index[2].error)
      assert.is_nil(by_index[2].id)
      assert.matches("keywords: must be a non%-empty list", by_index[3].error)
      assert.are.equal("k1", by_index[3].id)
      assert.matches("keywords: must be a non%-empty list", by_index[4].error)
      assert.matches("keywords: item 2 must be a non%-empty string", by_index[5].error)
      assert.matches('keywords: duplicate keyword "a" %(items 1 and 3%)', by_index[6].error)
      assert.matches("kind: must be alipaylife or alipaymini", by_index[7].error)
      assert.matches("not an object", by_index[8].error)
      assert.matches("duplicate of item 1", by_index[9].error)
      assert.matches("id: at most 64 characters", by_index[10].error)
      assert.matches("name: must be a string", by_index[11].error)
      assert.are.same({ "a", "b" }, reg:get("c1", "ok1").keywords)
      assert.truthy(reg:get("c1", "ok2"))
    end)

    it("refuses an entry without a channel", function()
      local res = assert(reg:import({ { id = "x", keywords = { "a" } } }))
      assert.are.equal(0, res.imported)
      assert.matches("channel: missing", res.failed[1].error)
    end)

    it("imports a JSON file holding an array or {templates = [...]}", function()
      local path = dir .. "/t.json"
      helpers.write(path, cjson.encode({ { id = "j1", name = "J", keywords = { "甲", "乙" } } }))
      local res = assert(reg:import(path, { channel = "c2" }))
      assert.are.equal(1, res.imported)
      assert.are.same({ "甲", "乙" }, reg:get("c2", "j1").keywords)
      helpers.write(path, "\239\187\191" .. cjson.encode({ templates = {
        { id = "j2", keywords = { "a" }, channel = "c3", kind = "alipaymini" },
        { id = "j3" },
      } }))
      res = assert(reg:import(path))
      assert.are.equal(1, res.imported)
      assert.are.equal(2, res.failed[1].index)
      assert.are.equal("alipaymini", reg:get("c3", "j2").kind)
    end)

    it("accepts JSON text", function()
      local res = assert(reg:import('  [{"id":"t9","keywords":["a"]}]', { channel = "c4" }))
      assert.are.equal(1, res.imported)
    end)

    it("names unreadable files and bad JSON", function()
      local res, err = reg:import(dir .. "/missing.json")
      assert.is_nil(res)
      assert.matches("import: cannot read .*missing.json", err)
      helpers.write(dir .. "/bad.json", '[{"id": "x",}]')
      res, err = reg:import(dir .. "/bad.json")
      assert.is_nil(res)
      assert.matches("bad.json is not valid JSON: .*character %d+", err)
      helpers.write(dir .. "/obj.json", '{"id": "x"}')
      res, err = reg:import(dir .. "/obj.json")
      assert.is_nil(res)
      assert.matches("must hold an array of templates", err)
    end)

    it("re-import overwrites and makes an invalid template valid again", function()
      assert(reg:mark_invalid("alipaylife123", LIFE_ID, "MSG_TEMPLATE_NOT_EXIST"))
      assert(reg:import({ { id = LIFE_ID, keywords = { "订单号" } } }, { channel = "alipaylife123" }))
      local t = assert(reg:usable("alipaylife123", LIFE_ID))
      assert.are.same({ "订单号" }, t.keywords)
      assert.is_nil(t.invalid_code)
    end)
  end)

  describe("check_life_context", function()
    local t
    before_each(function() t = assert(reg:get("alipaylife123", LIFE_ID)) end)

    local function refused(ctx, pattern)
      local ok, err = reg:check_life_context(t, ctx)
      assert.is_nil(ok)
      assert.matches(pattern, err)
      return err
    end

    it("accepts a complete context, and one without first and remark", function()
      assert.is_true(reg:check_life_context(t, life_context()))
      assert.is_true(reg:check_life_context(t, life_context { first = false, remark = false }))
    end)

    -- Alipay documents no limit or format for head_color and url: anything
    -- non-empty goes, up to this library's own bound.
    it("head_color and url: required, non-empty, no undocumented limit", function()
      refused(life_context { head_color = false }, "head_color: required")
      refused(life_context { head_color = 85 }, "head_color: must be a string")
      refused(life_context { head_color = "" }, "head_color: must not be empty")
      assert.is_true(reg:check_life_context(t, life_context { head_color = "#85be5300000" }))
      assert.is_true(reg:check_life_context(t, life_context { head_color = "green" }))
      refused(life_context { url = false }, "url: required")
      refused(life_context { url = "" }, "url: must not be empty")
      assert.is_true(reg:check_life_context(t, life_context { url = "https://e.com/" .. ("a"):rep(1000) }))
    end)

    it("action_name: 8 CJK or 16 ASCII characters, CJK counting 2 units when mixed", function()
      assert.is_true(reg:check_life_context(t, life_context { action_name = ("查"):rep(8) }))
      assert.is_true(reg:check_life_context(t, life_context { action_name = ("a"):rep(16) }))
      assert.is_true(reg:check_life_context(t, life_context { action_name = "查看" .. ("a"):rep(12) }))
      refused(life_context { action_name = ("查"):rep(9) }, "action_name: 18 width units, at most 16")
      refused(life_context { action_name = ("a"):rep(17) }, "action_name: 17 width units, at most 16")
      refused(life_context { action_name = "查看" .. ("a"):rep(13) }, "action_name: 17 width units")
      refused(life_context { action_name = false }, "action_name: required")
      refused(life_context { action_name = "" }, "action_name: must be a non%-empty string")
    end)

    it("keywords: exactly the template's count, each with a value and a color", function()
      refused(life_context { keyword3 = false }, "keyword3 %(运单号%): missing")
      refused(life_context { keyword4 = { color = "#000000", value = "x" } },
              "keyword4: template " .. LIFE_ID .. " has 3 keywords %(订单号, 快递公司, 运单号%)")
      refused(life_context { keyword2 = { value = "顺丰" } }, "keyword2 %(快递公司%)%.color: required")
      assert.is_true(reg:check_life_context(t, life_context { keyword2 = { value = "顺丰", color = "red" } }))
      refused(life_context { keyword2 = { value = "顺丰", color = "" } }, "keyword2 %(快递公司%)%.color: must not be empty")
      refused(life_context { keyword1 = { color = "#000000" } }, "keyword1 %(订单号%)%.value: must be a string")
      refused(life_context { keyword1 = { color = "#000000", value = "" } },
              "keyword1 %(订单号%)%.value: must not be empty")
      refused(life_context { keyword1 = "HU7142" }, "keyword1 %(订单号%): must be an object")
      refused(life_context { keyword1 = { color = "#000000", value = "x", bold = true } },
              "keyword1 %(订单号%): unknown field bold")
    end)

    it("a value has no Alipay limit; this library's own bound of 2048 characters says it is ours", function()
      assert.is_true(reg:check_life_context(t, life_context { keyword1 = { color = "#000", value = ("单"):rep(2048) } }))
      local err = refused(life_context { keyword1 = { color = "#000", value = ("单"):rep(2049) } },
              "keyword1 %(订单号%)%.value: 2049 characters; Alipay documents no limit, this library sends at most 2048")
      assert.is_true(#err < 300)
      refused(life_context { keyword1 = { color = "#000", value = "\255\254" } }, "value: not valid UTF%-8")
      refused(life_context { url = ("u"):rep(5000) }, "url: 5000 characters; Alipay documents no limit")
    end)

    it("first and remark follow the keyword rules", function()
      refused(life_context { first = { value = "hi" } }, "first%.color: required")
      refused(life_context { remark = { color = "#000", value = ("x"):rep(2049) } },
              "remark%.value: 2049 characters; Alipay documents no limit")
      assert.is_true(reg:check_life_context(t, life_context { remark = { color = "#000", value = ("x"):rep(500) } }))
    end)

    it("refuses unknown fields, and reports every problem", function()
      local err = refused(life_context { footer = { value = "x" }, head_color = "", keyword2 = false },
                          "context: unknown field footer")
      assert.matches("head_color: must not be empty", err)
      assert.matches("keyword2 %(快递公司%): missing", err)
    end)

    it("refuses a mini-program template and a non-table context", function()
      local ok, err = reg:check_life_context(assert(reg:get("mini456", MINI_ID)), life_context())
      assert.is_nil(ok)
      assert.matches("is a alipaymini template, not alipaylife", err)
      refused("{}", "context: must be an object")
    end)
  end)

  describe("check_mini_data", function()
    local t
    before_each(function() t = assert(reg:get("mini456", MINI_ID)) end)

    local function data(overrides)
      local d = { keyword1 = { value = "12:00" }, keyword2 = { value = "20180808" }, keyword3 = { value = "支付宝" } }
      for k, v in pairs(overrides or {}) do
        if v == false then d[k] = nil else d[k] = v end
      end
      return d
    end

    local function refused(d, pattern)
      local ok, err = reg:check_mini_data(t, d)
      assert.is_nil(ok)
      assert.matches(pattern, err)
    end

    it("accepts data fitting the template, as a table or as JSON text", function()
      assert.is_true(reg:check_mini_data(t, data()))
      assert.is_true(reg:check_mini_data(t, cjson.encode(data())))
    end)

    it("the keyword count must equal the template's", function()
      refused(data { keyword3 = false }, "keyword3 %(place%): missing")
      refused(data { keyword4 = { value = "x" } }, "keyword4: template " .. MINI_ID .. " has 3 keywords")
    end)

    it("each value at most 50 characters", function()
      assert.is_true(reg:check_mini_data(t, data { keyword3 = { value = ("宝"):rep(50) } }))
      refused(data { keyword3 = { value = ("宝"):rep(51) } }, "keyword3 %(place%)%.value: 51 characters, at most 50")
      refused(data { keyword1 = { value = 12 } }, "keyword1 %(time%)%.value: must be a string")
      refused(data { keyword1 = { value = "x", color = "#000" } }, "keyword1 %(time%): unknown field color")
      refused(data { keyword1 = "x" }, "keyword1 %(time%): must be an object")
      refused(data { first = { value = "x" } }, "data: unknown field first")
    end)

    it("at most 2048 bytes as JSON", function()
      local big = {}
      for i = 1, 3 do big["keyword" .. i] = { value = ("\\"):rep(50) } end
      assert.is_true(reg:check_mini_data(t, big)) -- 3 * 100 escaped bytes is fine
      local long_template = { id = "m", kind = "alipaymini", keywords = {} }
      local d = {}
      for i = 1, 30 do
        long_template.keywords[i] = "k" .. i
        d["keyword" .. i] = { value = ("\\"):rep(50) }
      end
      local ok, err = reg:check_mini_data(long_template, d)
      assert.is_nil(ok)
      assert.matches("data: %d+ bytes as JSON, at most 2048", err)
      ok, err = reg:check_mini_data(t, "{not json")
      assert.is_nil(ok)
      assert.matches("data: not a JSON object", err)
    end)

    it("refuses a Life Account template", function()
      local ok, err = reg:check_mini_data(assert(reg:get("alipaylife123", LIFE_ID)), data())
      assert.is_nil(ok)
      assert.matches("is a alipaylife template, not alipaymini", err)
    end)
  end)

  describe("validity", function()
    it("mark_invalid makes usable refuse with the time and the code, mark_valid undoes it", function()
      assert.are.equal(LIFE_ID, assert(reg:usable("alipaylife123", LIFE_ID)).id)
      now = 1715600000 + 3600
      assert.is_true(reg:mark_invalid("alipaylife123", LIFE_ID, "MSG_TEMPLATE_NOT_EXIST"))
      local t, err = reg:usable("alipaylife123", LIFE_ID)
      assert.is_nil(t)
      assert.are.equal("template " .. LIFE_ID .. " of channel alipaylife123 was marked invalid at "
        .. "2024-05-13 12:33:20 UTC (MSG_TEMPLATE_NOT_EXIST); re-import it once fixed", err)
      local stored = reg:get("alipaylife123", LIFE_ID)
      assert.are.equal("invalid", stored.status)
      assert.are.equal(now, stored.invalid_at)
      assert.is_true(reg:mark_invalid("mini456", MINI_ID, "USER_TEMPLATE_ILLEGAL"))
      local _, mini_err = reg:usable("mini456", MINI_ID)
      assert.matches("%(USER_TEMPLATE_ILLEGAL%)", mini_err)
      assert.is_true(reg:mark_valid("alipaylife123", LIFE_ID))
      assert.truthy(reg:usable("alipaylife123", LIFE_ID))
    end)

    it("another registry on the same file sees the invalidation", function()
      assert(reg:mark_invalid("alipaylife123", LIFE_ID, "MSG_TEMPLATE_NOT_EXIST"))
      local other_store = assert(store.open(dir .. "/state.db"))
      local t, err = templates.new(other_store):usable("alipaylife123", LIFE_ID)
      assert.is_nil(t)
      assert.matches("marked invalid", err)
      other_store:close()
    end)

    it("unknown templates are named", function()
      local t, err = reg:usable("alipaylife123", "nope")
      assert.is_nil(t)
      assert.are.equal("template nope of channel alipaylife123 is not imported", err)
      local ok
      ok, err = reg:mark_invalid("alipaylife123", "nope", "MSG_TEMPLATE_NOT_EXIST")
      assert.is_nil(ok)
      assert.matches("is not imported", err)
      ok, err = reg:mark_valid("alipaylife123", "nope")
      assert.is_nil(ok)
      assert.matches("is not imported", err)
    end)
  end)

  it("measures UTF-8 by lead bytes", function()
    assert.are.same({ 3, 3 }, { templates.measure("abc") })
    assert.are.same({ 4, 6 }, { templates.measure("查看ab") })
    assert.are.same({ 1, 2 }, { templates.measure("😀") })
    assert.is_nil(templates.measure("\192\128"))
    assert.is_nil(templates.measure("\228\184"))
  end)
end)
