-- alipay.messaging.users (user bindings in the UMS upload format) and alipay.util.csv.
local helpers = require "helpers"
local store = require "alipay.store"
local users = require "alipay.messaging.users"
local csv = require "alipay.util.csv"

local CHANNELS = {
  alipaylife123 = { kind = "alipaylife", id_type = "user_id" },
  alipaylife456 = { kind = "alipaylife", id_type = "open_id" },
  mini789 = { kind = "alipaymini" }, -- id_type defaults to user_id
}
local UID1, UID2, UID3 = "2088102146158132", "2088102146158133", "2088102146158134"
local OPEN1 = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
local OPEN2 = "0e2f-K5_abcdefghij"

local function errcodes(result)
  local list = {}
  for _, f in ipairs(result.fail) do list[#list + 1] = f.errcode end
  return list
end

describe("alipay.messaging.users", function()
  local dir, st, u
  before_each(function()
    dir = helpers.tmpdir()
    st = assert(store.open(dir .. "/state.db"))
    u = assert(users.new(st, CHANNELS))
  end)
  after_each(function()
    st:close()
    helpers.cleanup()
  end)

  describe("new", function()
    it("checks the channels", function()
      local x, err = users.new(st, { c = { kind = "wechat" } })
      assert.is_nil(x)
      assert.matches("channel c: kind must be alipaylife or alipaymini", err)
      x, err = users.new(st, { c = { kind = "alipaylife", id_type = "uid" } })
      assert.is_nil(x)
      assert.matches("channel c: id_type must be user_id or open_id", err)
      assert.has_error(function() users.new(st) end)
    end)
  end)

  describe("upload", function()
    it("set binds with the channel's id type", function()
      local res = u:upload {
        { userid = "zhangsan", set = { alipaylife = { alipaylife123 = UID1, alipaylife456 = OPEN1 } } },
      }
      assert.are.same({ success = { "zhangsan" }, fail = {} }, res)
      assert.are.same({ UID1, "user_id" }, { u:resolve("zhangsan", "alipaylife123") })
      assert.are.same({ OPEN1, "open_id" }, { u:resolve("zhangsan", "alipaylife456") })
    end)

    it("the row's {user_id=} or {open_id=} overrides the channel's type; a 2088 prefix is never a type", function()
      local res = u:upload {
        { userid = "a", add = { alipaylife = { alipaylife123 = { open_id = OPEN2 } } } },
        { userid = "b", add = { alipaylife = { alipaylife456 = { user_id = UID1 } } } },
        -- a 16-digit 2088 string on an open_id channel is an open_id
        { userid = "c", add = { alipaylife = { alipaylife456 = UID2 } } },
      }
      assert.are.same({ "a", "b", "c" }, res.success)
      assert.are.same({ OPEN2, "open_id" }, { u:resolve("a", "alipaylife123") })
      assert.are.same({ UID1, "user_id" }, { u:resolve("b", "alipaylife456") })
      assert.are.same({ UID2, "open_id" }, { u:resolve("c", "alipaylife456") })
    end)

    it("set replaces the bindings of that kind only; add adds; del removes", function()
      assert.are.same({}, u:upload {
        { userid = "z", set = { alipaylife = { alipaylife123 = UID1, alipaylife456 = OPEN1 } } },
        { userid = "z", add = { alipaymini = { mini789 = UID3 } } },
      }.fail)
      -- set alipaylife to one channel: the other alipaylife binding goes, the mini one stays
      assert.are.same({}, u:upload { { userid = "z", set = { alipaylife = { alipaylife123 = UID2 } } } }.fail)
      assert.are.same({
        alipaylife123 = { alipay_id = UID2, id_type = "user_id", kind = "alipaylife" },
        mini789 = { alipay_id = UID3, id_type = "user_id", kind = "alipaymini" },
      }, u:show("z"))
      -- add overwrites and adds, leaving the rest
      assert.are.same({}, u:upload { { userid = "z", add = { alipaylife = { alipaylife456 = OPEN2 } } } }.fail)
      assert.are.equal(3, u:count())
      -- del with a list of codes, and with a map
      local del_both = { alipaylife = { "alipaylife123", "alipaylife456" } }
      assert.are.same({}, u:upload { { userid = "z", del = del_both } }.fail)
      assert.are.same({ "mini789" }, (function()
        local k = {}
        for code in pairs(u:show("z")) do k[#k + 1] = code end
        return k
      end)())
      assert.are.same({}, u:upload { { userid = "z", del = { alipaymini = { mini789 = "whatever" } } } }.fail)
      assert.are.same({}, u:show("z"))
      -- set with an empty kind clears it
      u:upload { { userid = "y", add = { alipaylife = { alipaylife123 = UID1 } } } }
      assert.are.same({ "y" }, u:upload { { userid = "y", set = { alipaylife = {} } } }.success)
      assert.are.same({}, u:show("y"))
    end)

    it("set leaves bindings of channels no longer configured", function()
      assert(st:binding_put("z", "retired", UID1, "user_id"))
      u:upload { { userid = "z", set = { alipaylife = { alipaylife123 = UID2 } } } }
      assert.are.same({ alipay_id = UID1, id_type = "user_id" }, st:binding_get("z", "retired"))
    end)

    it("reports every errcode per row and keeps the valid rows", function()
      local res = u:upload {
        { userid = "ok1", set = { alipaylife = { alipaylife123 = UID1 } } },                 -- 1
        "not a row",                                                                         -- 2
        { set = { alipaylife = { alipaylife123 = UID1 } } },                                 -- 3
        { userid = "", set = { alipaylife = { alipaylife123 = UID1 } } },                    -- 4
        { userid = ("x"):rep(65), set = { alipaylife = { alipaylife123 = UID1 } } },         -- 5
        { userid = "bad\nid", set = { alipaylife = { alipaylife123 = UID1 } } },             -- 6
        { userid = "u7" },                                                                   -- 7
        { userid = "u8", set = { alipaylife = {} }, add = { alipaylife = { alipaylife123 = UID1 } } }, -- 8
        { userid = "u9", sett = {} },                                                        -- 9
        { userid = "u10", set = { wechat = { x = "y" } } },                                  -- 10
        { userid = "u11", add = { alipaylife = { nochannel = UID1 } } },                     -- 11
        { userid = "u12", add = { alipaylife = { mini789 = UID1 } } },                       -- 12
        { userid = "u13", add = { alipaylife = { alipaylife123 = "2089102146158132" } } },   -- 13
        { userid = "u14", add = { alipaylife = { alipaylife123 = "208810214615813" } } },    -- 14
        { userid = "u15", add = { alipaylife = { alipaylife456 = "short" } } },              -- 15
        { userid = "u16", add = { alipaylife = { alipaylife456 = "has space in it ok?" } } }, -- 16
        { userid = "u17", add = { alipaylife = { alipaylife123 = 2088102146158132 } } },     -- 17
        { userid = "u18", add = { alipaylife = { alipaylife123 = { user_id = UID1, open_id = OPEN1 } } } }, -- 18
        { userid = "u19", del = { alipaylife = {} } },                                       -- 19
        { userid = "u20", add = { alipaylife = "alipaylife123" } },                          -- 20
        { userid = "ok2", add = { alipaymini = { mini789 = UID2 } } },                       -- 21
        { userid = "u22", add = {} },                                                        -- 22
        { userid = "u23", set = {} },                                                        -- 23
      }
      assert.are.same({ "ok1", "ok2" }, res.success)
      assert.are.same({
        "INVALID_ROW", "INVALID_USERID", "INVALID_USERID", "INVALID_USERID", "INVALID_USERID",
        "INVALID_OPERATION", "INVALID_OPERATION", "INVALID_OPERATION", "INVALID_OPERATION",
        "UNKNOWN_CHANNEL", "UNKNOWN_CHANNEL",
        "INVALID_ALIPAY_ID", "INVALID_ALIPAY_ID", "INVALID_ALIPAY_ID", "INVALID_ALIPAY_ID", "INVALID_ALIPAY_ID",
        "INVALID_ALIPAY_ID", "INVALID_OPERATION", "INVALID_OPERATION", "INVALID_OPERATION", "INVALID_OPERATION",
      }, errcodes(res))
      local rows = {}
      for _, f in ipairs(res.fail) do rows[#rows + 1] = f.row end
      assert.are.same({ 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23 }, rows)
      local by_row = {}
      for _, f in ipairs(res.fail) do by_row[f.row] = f end
      assert.are.equal("u7", by_row[7].userid)
      assert.is_nil(by_row[3].userid)
      assert.matches("exactly one of set, add, del; found none", by_row[7].errmsg)
      assert.matches("found set and add", by_row[8].errmsg)
      assert.matches("unknown field sett", by_row[9].errmsg)
      assert.matches("unknown channel kind wechat", by_row[10].errmsg)
      assert.matches("no channel nochannel is configured", by_row[11].errmsg)
      assert.matches("channel mini789 is an alipaymini channel, not alipaylife", by_row[12].errmsg)
      assert.matches("add%.alipaylife%.alipaylife123: user_id must be 16 digits starting with 2088", by_row[13].errmsg)
      assert.matches("open_id must be 16 to 128 letters", by_row[15].errmsg)
      assert.matches("must be a string", by_row[17].errmsg)
      assert.matches("del: names no channel", by_row[19].errmsg)
      -- nothing of the failed rows was written
      assert.are.equal(2, u:count())
    end)

    it("reports a store failure per row as STORE_ERROR", function()
      local other = assert(store.open { path = dir .. "/state.db", busy_timeout_ms = 20 })
      local blocked = assert(users.new(other, CHANNELS))
      local res
      st:transaction(function()
        res = blocked:upload { { userid = "z", add = { alipaylife = { alipaylife123 = UID1 } } } }
      end)
      assert.are.same({}, res.success)
      assert.are.equal("STORE_ERROR", res.fail[1].errcode)
      assert.matches("database is locked", res.fail[1].errmsg)
      other:close()
    end)
  end)

  describe("upload_json", function()
    it("reads a file or text in the UMS format", function()
      local path = dir .. "/bindings.json"
      helpers.write(path, '[{"userid":"zhangsan","set":{"alipaylife":{"alipaylife123":"' .. UID1 .. '"}}},'
        .. '{"userid":"lisi","add":{"alipaylife":{"alipaylife456":{"open_id":"' .. OPEN1 .. '"}}}},'
        .. '{"userid":null,"add":{}}]')
      local res = assert(u:upload_json(path))
      assert.are.same({ "zhangsan", "lisi" }, res.success)
      assert.are.same({ "INVALID_USERID" }, errcodes(res))
      assert.are.equal(3, res.fail[1].row)
      res = assert(u:upload_json('[{"userid":"wangwu","add":{"alipaymini":{"mini789":"' .. UID2 .. '"}}}]'))
      assert.are.same({ "wangwu" }, res.success)
      assert.are.same({ UID2, "user_id" }, { u:resolve("wangwu", "mini789") })
    end)

    it("a syntax error names cjson's position", function()
      local res, err = u:upload_json('[{"userid":"a", "set": }]')
      assert.is_nil(res)
      assert.matches("upload_json: JSON text is not valid JSON: .* at character 24", err)
      helpers.write(dir .. "/bad.json", '[{"userid": "a"},\n{"userid" "b"}]')
      res, err = u:upload_json(dir .. "/bad.json")
      assert.is_nil(res)
      assert.matches("bad.json is not valid JSON: .*character %d+", err)
      res, err = u:upload_json('{"userid": "a"}')
      assert.is_nil(res)
      assert.matches("must hold a JSON array", err)
      res, err = u:upload_json(dir .. "/none.json")
      assert.is_nil(res)
      assert.matches("cannot read", err)
    end)
  end)

  describe("upload_csv", function()
    local function upload(text, opts)
      local path = dir .. "/bindings.csv"
      helpers.write(path, text)
      return u:upload_csv(path, opts or { channel = "alipaylife123" })
    end

    it("binds from userid and alipaylife_userid columns", function()
      local res = assert(upload("userid,alipaylife_userid\nzhangsan," .. UID1 .. "\nlisi," .. UID2 .. "\n"))
      assert.are.same({ "zhangsan", "lisi" }, res.success)
      assert.are.same({ UID2, "user_id" }, { u:resolve("lisi", "alipaylife123") })
    end)

    it("handles quoted fields, doubled quotes, a BOM, CRLF, extra columns and empty lines", function()
      local text = "\239\187\191Name,UserID,alipaylife_userid\r\n"
        .. '"Zhang, San",zhangsan,' .. UID1 .. "\r\n"
        .. "\r\n"
        .. '"say ""hi""\r\nline two","li""si",' .. '"' .. UID2 .. '"\r\n'
        .. ',,\r\n'
        .. 'x,  wangwu  , ' .. UID3 .. ' \r\n'
      local res = assert(upload(text))
      assert.are.same({ "zhangsan", 'li"si', "wangwu" }, res.success)
      assert.are.same({}, res.fail)
      assert.are.same({ UID2, "user_id" }, { u:resolve('li"si', "alipaylife123") })
    end)

    it("reads open ids and both columns, refusing rows that fill both or neither", function()
      local res = assert(upload("userid,alipaylife_userid,alipaylife_openid\n"
        .. "a," .. UID1 .. ",\n"
        .. "b,," .. OPEN1 .. "\n"
        .. "c," .. UID2 .. "," .. OPEN1 .. "\n"
        .. "d,,\n", { channel = "alipaylife456" }))
      assert.are.same({ "a", "b" }, res.success)
      assert.are.same({ UID1, "user_id" }, { u:resolve("a", "alipaylife456") })
      assert.are.same({ OPEN1, "open_id" }, { u:resolve("b", "alipaylife456") })
      assert.are.same({ "INVALID_ALIPAY_ID", "INVALID_ALIPAY_ID" }, errcodes(res))
      assert.are.same({ 4, 5 }, { res.fail[1].row, res.fail[2].row })
      assert.are.equal("c", res.fail[1].userid)
      assert.matches("both alipaylife_userid and alipaylife_openid", res.fail[1].errmsg)
    end)

    it("reports malformed rows with their line numbers and keeps the valid rows", function()
      local text = table.concat({
        "userid,alipaylife_userid",            -- 1
        "good1," .. UID1,                      -- 2
        "toomany," .. UID1 .. ",extra",        -- 3
        "",                                    -- 4
        "badid,2088",                          -- 5
        '"multi',                              -- 6  a quoted userid spanning two lines
        'line",' .. UID2,                      -- 7
        "good2," .. UID3,                      -- 8
        "lonely",                              -- 9
        '"unterminated,' .. UID1,              -- 10
        "after," .. UID1,                      -- 11 (swallowed by the open quote)
      }, "\n") .. "\n"
      local res = assert(upload(text))
      assert.are.same({ "good1", "good2" }, res.success)
      local got = {}
      for _, f in ipairs(res.fail) do got[#got + 1] = { f.row, f.errcode } end
      assert.are.same({
        { 3, "INVALID_ROW" }, { 5, "INVALID_ALIPAY_ID" }, { 6, "INVALID_USERID" }, { 9, "INVALID_ROW" },
        { 10, "INVALID_ROW" },
      }, got)
      assert.matches("3 fields, the header has 2", res.fail[1].errmsg)
      assert.matches("line 10: unterminated quoted field", res.fail[5].errmsg)
    end)

    it("uses opts.op add and the mini-program columns for a mini channel", function()
      u:upload { { userid = "z", add = { alipaylife = { alipaylife123 = UID1 } } } }
      local res = assert(upload("userid,alipaymini_userid\nz," .. UID2 .. "\n", { channel = "mini789", op = "add" }))
      assert.are.same({ "z" }, res.success)
      assert.are.equal(2, #(function()
        local l = {}
        for k in pairs(u:show("z")) do l[#l + 1] = k end
        return l
      end)())
    end)

    it("refuses bad options and headers", function()
      local res, err = upload("userid,alipaylife_userid\n", {})
      assert.is_nil(res)
      assert.matches("opts.channel is required", err)
      res, err = upload("userid,alipaylife_userid\n", { channel = "nope" })
      assert.is_nil(res)
      assert.matches("no channel nope is configured", err)
      res, err = upload("userid,alipaylife_userid\n", { channel = "alipaylife123", op = "del" })
      assert.is_nil(res)
      assert.matches("opts.op must be set or add", err)
      res, err = upload("user,alipaylife_userid\n")
      assert.is_nil(res)
      assert.matches("line 1: the header has no userid column", err)
      res, err = upload("userid,alipaymini_userid\n")
      assert.is_nil(res)
      assert.matches("neither alipaylife_userid nor alipaylife_openid", err)
      res, err = upload("\n\n")
      assert.is_nil(res)
      assert.matches("is empty", err)
      res, err = u:upload_csv(dir .. "/missing.csv", { channel = "alipaylife123" })
      assert.is_nil(res)
      assert.matches("cannot read", err)
      res = assert(upload("userid,alipaylife_userid\n"))
      assert.are.same({ success = {}, fail = {} }, res)
    end)

    it("uploads 10,000 rows, keeping all but the one bad line", function()
      local lines = { "userid,alipaylife_userid" }
      for i = 1, 10000 do
        lines[#lines + 1] = ("user%05d,2088%012d"):format(i, i)
      end
      lines[5001] = "broken,123" -- line 5001
      -- Speed is measured by benchmarks, not asserted here.
      local res = assert(upload(table.concat(lines, "\r\n") .. "\r\n"))
      assert.are.equal(9999, #res.success)
      assert.are.equal(1, #res.fail)
      assert.are.equal(5001, res.fail[1].row)
      assert.are.equal(9999, u:count("alipaylife123"))
      assert.are.same({ "2088000000000042", "user_id" }, { u:resolve("user00042", "alipaylife123") })
    end)
  end)

  describe("resolve and show", function()
    it("name the user and the channel when there is no binding", function()
      local id, err = u:resolve("zhangsan", "alipaylife123")
      assert.is_false(id)
      assert.are.equal("user zhangsan has no binding for channel alipaylife123", err)
      assert.are.same({}, u:show("zhangsan"))
    end)

    it("tell a store failure (nil) from a missing binding (false)", function()
      st:close()
      local id, err = u:resolve("zhangsan", "alipaylife123")
      assert.is_nil(id)
      assert.matches("the store is closed", err, 1, true)
    end)
  end)
end)

describe("alipay.util.csv", function()
  local dir
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.cleanup() end)

  local function read_all(text, opts)
    local path = dir .. "/f.csv"
    helpers.write(path, text)
    local fh = assert(io.open(path, "rb"))
    local records = csv.reader(fh, opts)
    local out = {}
    for fields, line in records do out[#out + 1] = { line = line, fields = fields } end
    fh:close()
    return out, records.error
  end

  it("splits fields and keeps empty ones", function()
    local out = read_all("a,b,c\n,,\nx\n")
    assert.are.same({ { line = 1, fields = { "a", "b", "c" } }, { line = 2, fields = { "", "", "" } },
                      { line = 3, fields = { "x" } } }, out)
  end)

  it("reads a last line without a line break, and a bare CR at the very end", function()
    assert.are.same({ { line = 1, fields = { "a", "b" } } }, read_all("a,b"))
    assert.are.same({ { line = 1, fields = { "a", "b" } } }, read_all("a,b\r"))
  end)

  it("keeps line breaks inside quotes as they were and numbers records by their first line", function()
    local out = read_all('"a\r\nb","c\nd"\r\nnext,"""q"""\n')
    assert.are.same({ { line = 1, fields = { "a\r\nb", "c\nd" } }, { line = 4, fields = { "next", '"q"' } } }, out)
  end)

  it("is lenient about quotes outside quoted fields", function()
    local out = read_all('ab"c,"d"e,f\n')
    assert.are.same({ 'ab"c', "de", "f" }, out[1].fields)
  end)

  it("skips a BOM and empty lines", function()
    local out = read_all("\239\187\191h1,h2\n\n\r\nv1,v2\n\n")
    assert.are.same({ { line = 1, fields = { "h1", "h2" } }, { line = 4, fields = { "v1", "v2" } } }, out)
  end)

  it("stops at an unterminated quote naming its line", function()
    local out, err = read_all('a,b\n"open,c\nd,e\n')
    assert.are.equal(1, #out)
    assert.are.equal("line 2: unterminated quoted field (reached the end of the file)", err)
    local path = dir .. "/g.csv"
    helpers.write(path, '"x\n')
    local fh = assert(io.open(path, "rb"))
    local records = csv.reader(fh)
    local fields, e = records()
    assert.is_nil(fields)
    assert.matches("^line 1: unterminated", e)
    assert.is_nil(records()) -- and stays finished
    fh:close()
  end)

  it("bounds a record's size", function()
    local out, err = read_all('"' .. ("x\n"):rep(100), { max_record_bytes = 50 })
    assert.are.equal(0, #out)
    assert.matches("^line 1: a record longer than 50 bytes", err)
  end)

  it("takes another separator", function()
    assert.are.same({ "a", "b;c", "d" }, read_all('a;"b;c";d\n', { separator = ";" })[1].fields)
    assert.are.same({ "a", "b" }, read_all("a\tb\n", { separator = "\t" })[1].fields)
    assert.are.same({ "a.b", "c" }, read_all("a.b|c\n", { separator = "|" })[1].fields)
    assert.has_error(function() csv.reader(io.stdin, { separator = '"' }) end)
  end)
end)
