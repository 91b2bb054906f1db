-- core.iconv: charset conversion for GBK notifications, checked against
-- the iconv CLI and for every failure it can report.
local helpers = require "helpers"
local core = require "alipay.core"

local UTF8_TEXT = "语雀空间 500人规模 麦禾商城模版 技术支持测试的公司，￥ abc。"

-- The bytes the iconv CLI produces for `text`.
local function cli_iconv(from, to, text)
  local dir = helpers.tmpdir()
  helpers.write(dir .. "/in", text)
  local ok, out = helpers.run(("iconv -f %s -t %s '%s/in' > '%s/out'"):format(from, to, dir, dir))
  assert(ok, out)
  return helpers.read(dir .. "/out")
end

describe("core.iconv", function()
  teardown(helpers.cleanup)

  it("converts UTF-8 to GBK exactly as the iconv CLI does, and back", function()
    local gbk = assert(core.iconv("UTF-8", "GBK", UTF8_TEXT))
    assert.are.equal(cli_iconv("UTF-8", "GBK", UTF8_TEXT), gbk)
    assert.are_not.equal(UTF8_TEXT, gbk)
    assert.are.equal(UTF8_TEXT, core.iconv("GBK", "UTF-8", gbk))
  end)

  it("round-trips through GB18030 and GB2312", function()
    for _, charset in ipairs { "GB18030", "GB2312", "gbk", "gb18030" } do
      local text = charset:upper() == "GB2312" and "语雀空间 abc" or UTF8_TEXT
      local encoded = assert(core.iconv("UTF-8", charset, text))
      assert.are.equal(text, core.iconv(charset, "UTF-8", encoded), charset)
    end
  end)

  it("returns the empty string for empty input", function()
    assert.are.equal("", core.iconv("UTF-8", "GBK", ""))
    assert.are.equal("", core.iconv("GBK", "UTF-8", ""))
  end)

  it("keeps embedded NUL bytes", function()
    assert.are.equal("a\0语", core.iconv("GBK", "UTF-8", core.iconv("UTF-8", "GBK", "a\0语")))
  end)

  it("refuses invalid sequences with nil, err naming the offset", function()
    local text, err = core.iconv("UTF-8", "GBK", "ok\xff\xfe")
    assert.is_nil(text)
    assert.matches("invalid or unconvertible UTF%-8 sequence at byte 3", err)
    -- 0x81 0x20: a GBK lead byte followed by a byte that cannot trail it
    text, err = core.iconv("GBK", "UTF-8", "ab\x81\x20")
    assert.is_nil(text)
    assert.matches("at byte 3", err)
  end)

  it("refuses characters the target charset cannot represent", function()
    local text, err = core.iconv("UTF-8", "GBK", "emoji \xf0\x9f\x98\x80")
    assert.is_nil(text)
    assert.matches("unconvertible", err)
    -- GB18030 covers all of Unicode
    assert.is_string(core.iconv("UTF-8", "GB18030", "emoji \xf0\x9f\x98\x80"))
  end)

  it("refuses input that ends inside a multibyte sequence", function()
    local text, err = core.iconv("GBK", "UTF-8", "abc\xd3")
    assert.is_nil(text)
    assert.matches("incomplete GBK sequence", err)
    text, err = core.iconv("UTF-8", "GBK", "abc\xe8\xaf")
    assert.is_nil(text)
    assert.matches("incomplete", err)
  end)

  it("refuses unknown charsets with nil, err", function()
    local text, err = core.iconv("UTF-8", "NO-SUCH-CHARSET", "x")
    assert.is_nil(text)
    assert.matches("from UTF%-8 to NO%-SUCH%-CHARSET is not supported", err)
    text, err = core.iconv("NO-SUCH-CHARSET", "UTF-8", "x")
    assert.is_nil(text)
    assert.matches("not supported", err)
  end)

  it("refuses glibc's //TRANSLIT and //IGNORE options and empty names", function()
    for _, to in ipairs { "GBK//TRANSLIT", "GBK//IGNORE", "" } do
      local text, err = core.iconv("UTF-8", to, "x")
      assert.is_nil(text)
      assert.matches("plain names", err)
    end
  end)

  it("raises on arguments that are not strings (misuse)", function()
    assert.has_error(function() core.iconv("UTF-8", "GBK") end)
    assert.has_error(function() core.iconv(nil, "GBK", "x") end)
    assert.has_error(function() core.iconv("UTF-8", {}, "x") end)
  end)

  it("converts large inputs, growing its buffer when the output is larger", function()
    local big = UTF8_TEXT:rep(20000) -- about 1.4 MB
    local gbk = assert(core.iconv("UTF-8", "GBK", big))
    assert.are.equal(big, core.iconv("GBK", "UTF-8", gbk))
    -- GBK -> UTF-8 of pure CJK grows by 3/2; UTF-16 of ASCII doubles;
    -- UTF-32 of ASCII quadruples: each needs the E2BIG retry.
    local cjk = ("语雀"):rep(100000)
    local cjk_gbk = assert(core.iconv("UTF-8", "GBK", cjk))
    assert.are.equal(cjk, core.iconv("GBK", "UTF-8", cjk_gbk))
    local ascii = ("x"):rep(300000)
    assert.are.equal(#ascii * 4, #assert(core.iconv("UTF-8", "UTF-32LE", ascii)))
    assert.are.equal(ascii, core.iconv("UTF-32LE", "UTF-8", core.iconv("UTF-8", "UTF-32LE", ascii)))
  end)

  it("flushes stateful encodings", function()
    local text = "abc 日本語 def 日本"
    local jis = assert(core.iconv("UTF-8", "ISO-2022-JP", text))
    assert.are.equal(cli_iconv("UTF-8", "ISO-2022-JP", text), jis)
    assert.are.equal(text, core.iconv("ISO-2022-JP", "UTF-8", jis))
  end)
end)
