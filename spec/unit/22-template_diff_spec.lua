-- The diff of a template sync (alipay.messaging.template_diff), with no network
-- and no store, plus the pure helpers of the mini-program template modules:
-- keyword_desc splitting and the batch send's schedule time check.
local diff = require "alipay.messaging.template_diff"
local mini_templates = require "alipay.messaging.mini_templates"
local mini_batch = require "alipay.messaging.mini_batch"

local function reg(id, keywords, status, code, name)
  return { id = id, name = name or id, keywords = keywords, status = status or "valid", invalid_code = code }
end

local function listed(id, keywords, name)
  return { id = id, name = name or id, keywords = keywords }
end

local function ids(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = t.id or t.template.id end
  return out
end

describe("template_diff.compare", function()
  it("sorts every template into exactly one list", function()
    local d = diff.compare({
      reg("same", { "a", "b" }),
      reg("kw", { "a", "b" }),
      reg("order", { "a", "b" }),
      reg("renamed", { "a" }, nil, nil, "old"),
      reg("gone", { "a" }),
      reg("was_gone", { "a" }, "invalid", diff.GONE_CODE),
      reg("refused", { "a" }, "invalid", "USER_TEMPLATE_ILLEGAL"),
      reg("already_invalid", { "a" }, "invalid", "USER_TEMPLATE_ILLEGAL"),
    }, {
      listed("new", { "x", "y" }),
      listed("same", { "a", "b" }),
      listed("kw", { "a", "b", "c" }),
      listed("order", { "b", "a" }),
      listed("renamed", { "a" }, "new name"),
      listed("was_gone", { "a" }),
      listed("refused", { "a" }),
    })
    assert.are.same({ "new" }, ids(d.added))
    assert.are.same({ "kw", "order", "renamed" }, ids(d.changed))
    assert.are.same({ true, true, false }, { d.changed[1].keywords, d.changed[2].keywords, d.changed[3].keywords })
    assert.are.same({ false, false, true }, { d.changed[1].name, d.changed[2].name, d.changed[3].name })
    assert.are.equal("old", d.changed[3].before.name)
    assert.are.same({ "was_gone" }, ids(d.revived))
    assert.are.same({ "same", "refused" }, ids(d.unchanged))
    assert.are.same({ "gone" }, ids(d.gone))
  end)

  it("an empty listing makes every valid template gone; an empty registry makes all added", function()
    local d = diff.compare({ reg("a", { "k" }), reg("b", { "k" }, "invalid", "X") }, {})
    assert.are.same({ "a" }, ids(d.gone))
    d = diff.compare({}, { listed("a", { "k" }), listed("b", { "k" }) })
    assert.are.same({ "a", "b" }, ids(d.added))
  end)

  it("a listed template without a name keeps the registered one", function()
    local d = diff.compare({ reg("a", { "k" }, nil, nil, "mine") }, { { id = "a", keywords = { "k" } } })
    assert.are.same({ "a" }, ids(d.unchanged))
  end)
end)

describe("mini_templates.split_keywords", function()
  it("splits keyword_desc at commas, ASCII or full-width, dropping blanks", function()
    assert.are.same({ "回复内容", "投诉状态" }, mini_templates.split_keywords("回复内容,投诉状态"))
    assert.are.same({ "a", "b", "c" }, mini_templates.split_keywords(" a ，b,, c "))
    assert.are.same({}, mini_templates.split_keywords(nil))
    assert.are.same({}, mini_templates.split_keywords(""))
  end)
end)

describe("mini_batch.check_time", function()
  it("takes YYYY-MM-DD HH:MM:SS naming a real date and time", function()
    assert.is_true(mini_batch.check_time("2024-02-29 23:59:59"))
    assert.is_true(mini_batch.check_time("2000-02-29 00:00:00"))
    for _, bad in ipairs { "2023-02-29 09:00:00", "1900-02-29 09:00:00", "2024-13-01 09:00:00",
                           "2024-04-31 09:00:00", "2024-06-08 24:00:00", "2024-06-08T09:00:00",
                           "2024-06-08 9:00:00", "", 1717756911 } do
      assert.is_nil(mini_batch.check_time(bad), tostring(bad))
    end
  end)
end)
