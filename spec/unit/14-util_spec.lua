-- The small shared helpers in alipay.util: utf8 (counting as Alipay counts),
-- table (array or object), json_source (JSON text or a file path), fs.read.
local helpers = require "helpers"
local utf8_text = require "alipay.util.utf8"
local tables = require "alipay.util.table"
local json_source = require "alipay.util.json_source"
local fs = require "alipay.util.fs"

describe("alipay.util.utf8", function()
  it("chars counts code points, a CJK character or an emoji being one", function()
    assert.are.equal(0, utf8_text.chars(""))
    assert.are.equal(5, utf8_text.chars("hello"))
    assert.are.equal(3, utf8_text.chars("订单号"))
    assert.are.equal(4, utf8_text.chars("a宝é😀"))
  end)

  it("measure gives characters and display width, nil for ill-formed UTF-8", function()
    assert.are.same({ 5, 5 }, { utf8_text.measure("hello") })
    assert.are.same({ 9, 11 }, { utf8_text.measure("查看details") })
    assert.are.same({ 1, 2 }, { utf8_text.measure("😀") })
    assert.is_nil(utf8_text.measure("\128"))          -- a lone continuation byte
    assert.is_nil(utf8_text.measure("\192\128"))      -- an overlong lead
    assert.is_nil(utf8_text.measure("\228\189"))      -- truncated
    assert.is_nil(utf8_text.measure("\245\128\128\128")) -- above U+10FFFF
  end)
end)

describe("alipay.util.table.is_list", function()
  it("is true for keys exactly 1..n, the empty table included", function()
    assert.is_true(tables.is_list({}))
    assert.is_true(tables.is_list({ "a", "b", 3 }))
  end)

  it("is false for holes, other keys and non-tables", function()
    assert.is_false(tables.is_list({ [1] = "a", [3] = "c" }))
    assert.is_false(tables.is_list({ "a", x = 1 }))
    assert.is_false(tables.is_list({ [1.5] = true }))
    assert.is_false(tables.is_list({ [0] = "zero" }))
    assert.is_false(tables.is_list("abc"))
    assert.is_false(tables.is_list(nil))
  end)
end)

describe("alipay.util.json_source.decode", function()
  local dir
  before_each(function() dir = helpers.tmpdir() end)

  it("decodes JSON text, after a BOM and blanks", function()
    local v, where = json_source.decode('\239\187\191 \n[1, {"a": 2}]', "t")
    assert.are.same({ 1, { a = 2 } }, v)
    assert.are.equal("JSON text", where)
  end)

  it("reads anything else as a path, a BOM at the file's start allowed", function()
    local path = dir .. "/rows.json"
    assert(fs.write(path, '\239\187\191{"k": "v"}'))
    local v, where = json_source.decode(path, "t")
    assert.are.same({ k = "v" }, v)
    assert.are.equal(path, where)
  end)

  it("fails with kind io for a file it cannot read, input for text that is not JSON", function()
    local v, err, detail = json_source.decode(dir .. "/missing.json", "import")
    assert.is_nil(v)
    assert.matches("^import: cannot read ", err)
    assert.are.equal("io", detail.kind)
    v, err, detail = json_source.decode(dir, "import") -- a directory opens, then fails to read
    assert.is_nil(v)
    assert.matches("^import: cannot read ", err)
    assert.are.equal("io", detail.kind)
    v, err, detail = json_source.decode("[1, 2", "upload_json")
    assert.is_nil(v)
    assert.matches("^upload_json: JSON text is not valid JSON: ", err)
    assert.are.equal("input", detail.kind)
  end)
end)

describe("alipay.util.fs.read", function()
  it("fails with the reason for a directory (it opens, then cannot be read)", function()
    local data, err = fs.read(helpers.tmpdir())
    assert.is_nil(data)
    assert.is_string(err)
  end)
end)

describe("alipay.util.table.sorted_keys", function()
  it("lists the keys sorted, by < or by the order given", function()
    assert.are.same({}, tables.sorted_keys({}))
    assert.are.same({ "a", "b", "c" }, tables.sorted_keys({ c = 1, a = 2, b = 3 }))
    assert.are.same({ "c", "b", "a" }, tables.sorted_keys({ c = 1, a = 2, b = 3 }, function(x, y) return x > y end))
  end)
end)
