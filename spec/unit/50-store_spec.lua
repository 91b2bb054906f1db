-- alipay.store and its SQLite driver: schema, upserts, transactions,
-- statement reuse, sharing one file between store objects and processes.
local helpers = require "helpers"
local store = require "alipay.store"

local function template(fields)
  local t = { channel = "alipaylife123", id = "14330d60f0ab4516853a0900827cee35", name = "Order shipped",
              keywords = { "订单号", "快递公司", "运单号" }, kind = "alipaylife" }
  for k, v in pairs(fields or {}) do t[k] = v end
  return t
end

local function count_statements(st)
  local n = 0
  for _ in pairs(st.statements) do n = n + 1 end
  return n
end

describe("alipay.store", function()
  local dir, st
  before_each(function()
    dir = helpers.tmpdir()
    st = assert(store.open(dir .. "/state.db"))
  end)
  after_each(function()
    st:close()
    helpers.cleanup()
  end)

  describe("open", function()
    it("creates a versioned schema in WAL mode", function()
      assert.are.equal("wal", st.journal_mode)
      assert.are.equal(require("alipay.store.sqlite").schema_version, st:user_version())
      assert.is_true(st:user_version() >= 1)
    end)

    it("implements every method of the interface", function()
      for _, name in ipairs(store.interface) do
        assert.are.equal("function", type(st[name]), name)
      end
    end)

    it("accepts {path=, driver=} and refuses unknown drivers", function()
      local other = assert(store.open { path = dir .. "/other.db", driver = "sqlite" })
      other:close()
      local s, err = store.open { path = dir .. "/x.db", driver = "redis" }
      assert.is_nil(s)
      assert.matches('unknown driver "redis"', err)
      s, err = store.open(42)
      assert.is_nil(s)
      assert.matches("expected a file path", err)
      s, err = store.open {}
      assert.is_nil(s)
      assert.matches("path", err)
    end)

    it("names a missing directory", function()
      local s, err = store.open(dir .. "/missing/sub/state.db")
      assert.is_nil(s)
      assert.matches("the directory .*/missing/sub does not exist", err)
    end)

    it("names a directory that is a file", function()
      helpers.write(dir .. "/plain", "")
      local s, err = store.open(dir .. "/plain/state.db")
      assert.is_nil(s)
      assert.matches("the directory .*/plain is not a directory", err)
    end)

    it("opens through ., .. and a symlinked directory", function()
      assert(os.execute(("mkdir -p '%s/real/sub' && ln -s real '%s/link'"):format(dir, dir)))
      for _, path in ipairs { dir .. "/./a.db", dir .. "/real/./b.db", dir .. "/real/sub/../c.db",
                              dir .. "/link/d.db", dir .. "/link/sub/../e.db" } do
        local s, err = store.open(path)
        assert.is_nil(err, path)
        assert(s:meta_put("k", path))
        s:close()
      end
      for _, name in ipairs { "a.db", "real/b.db", "real/c.db", "real/d.db", "real/e.db" } do
        assert.is_true(helpers.run(("test -f '%s/%s'"):format(dir, name)), name)
      end
    end)

    -- Relative paths are relative to the working directory of the process:
    -- a child Lua started in dir (os.rename(".", ".") fails with EBUSY, so
    -- the old directory test refused ./x.db and ../x.db).
    it("opens relative paths from any working directory: x.db, ./x.db, ../, sub/./", function()
      assert(os.execute(("mkdir -p '%s/work/sub'"):format(dir)))
      local root = helpers.cwd()
      local script = ([[
        package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
        package.cpath = %q .. "/build/lua5.4/?.so;" .. package.cpath
        local store = require "alipay.store"
        for _, path in ipairs { "x.db", "./y.db", "../work/z.db", "sub/./w.db", "./sub/../v.db" } do
          local s = assert(store.open(path))
          assert(s:meta_put("k", path))
          s:close()
        end
        local s, err = store.open("./missing/x.db")
        assert(not s and err:find("the directory ./missing does not exist", 1, true), err)
        print("ok")
      ]]):format(root, root, root)
      helpers.write(dir .. "/relative.lua", script)
      local ok, out = helpers.run(("cd '%s/work' && lua5.4 ../relative.lua"):format(dir))
      assert.is_true(ok, out)
      assert.matches("ok", out)
      for _, name in ipairs { "x.db", "y.db", "z.db", "sub/w.db", "v.db" } do
        assert.is_true(helpers.run(("test -f '%s/work/%s'"):format(dir, name)), name)
      end
    end)

    it("refuses a file that is not a database", function()
      helpers.write(dir .. "/junk.db", ("not a database "):rep(100))
      local s, err = store.open(dir .. "/junk.db")
      assert.is_nil(s)
      assert.matches("junk.db: file is not a database", err)
    end)

    it("refuses a schema newer than it knows", function()
      st:exec("test", "PRAGMA user_version = 999")
      local s, err = store.open(dir .. "/state.db")
      assert.is_nil(s)
      assert.matches("schema is version 999, newer than this lua%-alipay knows", err)
    end)

    it("opens an existing file without migrating it again", function()
      assert(st:meta_put("k", "v"))
      local again = assert(store.open(dir .. "/state.db"))
      assert.are.equal("v", again:meta_get("k"))
      again:close()
    end)

    it("works in memory", function()
      local m = assert(store.open(":memory:"))
      assert(m:binding_put("u", "c", "2088102146158132", "user_id"))
      assert.are.equal(1, m:binding_count())
      m:close()
    end)
  end)

  describe("templates", function()
    it("round-trips a template with its keywords in order", function()
      assert.is_true(st:template_put(template { library_id = "TM000000223", imported_at = 1715600000 }))
      local t = assert(st:template_get("alipaylife123", "14330d60f0ab4516853a0900827cee35"))
      assert.are.same({ "订单号", "快递公司", "运单号" }, t.keywords)
      assert.are.equal("Order shipped", t.name)
      assert.are.equal("alipaylife", t.kind)
      assert.are.equal("TM000000223", t.library_id)
      assert.are.equal("valid", t.status)
      assert.are.equal(1715600000, t.imported_at)
      assert.is_nil(t.invalid_at)
    end)

    it("upserts", function()
      assert(st:template_put(template()))
      assert(st:template_put(template { name = "Renamed", keywords = { "a" }, status = "invalid",
                                        invalid_code = "X", invalid_at = 5 }))
      local t = st:template_get("alipaylife123", "14330d60f0ab4516853a0900827cee35")
      assert.are.equal("Renamed", t.name)
      assert.are.same({ "a" }, t.keywords)
      assert.are.equal("invalid", t.status)
      assert.are.equal(#st:template_list(), 1)
    end)

    it("keeps times beyond 32 bits exact", function()
      assert(st:template_put(template { imported_at = 4102444800 })) -- 2100-01-01
      assert(st:template_set_status("alipaylife123", "14330d60f0ab4516853a0900827cee35", "invalid",
                                    "MSG_TEMPLATE_NOT_EXIST", math.tointeger(2 ^ 40)))
      local t = st:template_get("alipaylife123", "14330d60f0ab4516853a0900827cee35")
      assert.are.equal(4102444800, t.imported_at)
      assert.are.equal(math.tointeger(2 ^ 40), t.invalid_at)
    end)

    it("returns nil without an error when not found", function()
      local t, err = st:template_get("alipaylife123", "nope")
      assert.is_nil(t)
      assert.is_nil(err)
    end)

    it("lists by channel, ordered by channel and id", function()
      assert(st:template_put(template { channel = "b", id = "2" }))
      assert(st:template_put(template { channel = "a", id = "9" }))
      assert(st:template_put(template { channel = "b", id = "1" }))
      local all = st:template_list()
      assert.are.same({ "a9", "b1", "b2" }, { all[1].channel .. all[1].id, all[2].channel .. all[2].id,
                                              all[3].channel .. all[3].id })
      local b = st:template_list("b")
      assert.are.equal(2, #b)
      assert.are.equal("1", b[1].id)
      assert.are.same({}, st:template_list("none"))
    end)

    it("sets the status and reports whether a row changed", function()
      assert(st:template_put(template()))
      assert.are.equal(1, st:template_set_status("alipaylife123", "14330d60f0ab4516853a0900827cee35",
                                                 "invalid", "MSG_TEMPLATE_NOT_EXIST", 1715600000))
      local t = st:template_get("alipaylife123", "14330d60f0ab4516853a0900827cee35")
      assert.are.equal("invalid", t.status)
      assert.are.equal("MSG_TEMPLATE_NOT_EXIST", t.invalid_code)
      assert.are.equal(1715600000, t.invalid_at)
      assert.are.equal(1, st:template_set_status("alipaylife123", "14330d60f0ab4516853a0900827cee35", "valid"))
      t = st:template_get("alipaylife123", "14330d60f0ab4516853a0900827cee35")
      assert.are.equal("valid", t.status)
      assert.is_nil(t.invalid_code)
      assert.are.equal(0, st:template_set_status("alipaylife123", "nope", "invalid", "X", 1))
      local n, err = st:template_set_status("alipaylife123", "nope", "broken")
      assert.is_nil(n)
      assert.matches("template_set_status: status must be valid or invalid", err)
    end)

    it("deletes", function()
      assert(st:template_put(template()))
      assert.are.equal(1, st:template_delete("alipaylife123", "14330d60f0ab4516853a0900827cee35"))
      assert.are.equal(0, st:template_delete("alipaylife123", "14330d60f0ab4516853a0900827cee35"))
      assert.is_nil(st:template_get("alipaylife123", "14330d60f0ab4516853a0900827cee35"))
    end)

    it("refuses malformed templates with the operation's name", function()
      local cases = {
        { template { channel = "" }, "channel" },
        { template { id = 5 }, "id" },
        { template { keywords = "a,b" }, "keywords" },
        { template { keywords = { "a", 2 } }, "keywords" },
        { template { kind = "wechat" }, "kind" },
        { template { status = "gone" }, "status" },
        { template { imported_at = "yesterday" }, "imported_at" },
      }
      for _, case in ipairs(cases) do
        local ok, err = st:template_put(case[1])
        assert.is_nil(ok)
        assert.matches("^template_put: .*" .. case[2], err)
      end
    end)
  end)

  describe("bindings", function()
    it("upserts, reads and counts", function()
      assert.is_true(st:binding_put("zhangsan", "alipaylife123", "2088102146158132", "user_id"))
      assert.is_true(st:binding_put("zhangsan", "mini456", "0a1b2c3d4e5f6g7h8i9j", "open_id"))
      assert.is_true(st:binding_put("zhangsan", "alipaylife123", "2088102146158133", "user_id"))
      assert.is_true(st:binding_put("lisi", "alipaylife123", "2088102146158134", "user_id"))
      assert.are.same({ alipay_id = "2088102146158133", id_type = "user_id" },
                      st:binding_get("zhangsan", "alipaylife123"))
      assert.are.same({
        alipaylife123 = { alipay_id = "2088102146158133", id_type = "user_id" },
        mini456 = { alipay_id = "0a1b2c3d4e5f6g7h8i9j", id_type = "open_id" },
      }, st:bindings_of("zhangsan"))
      assert.are.same({}, st:bindings_of("nobody"))
      assert.is_nil(st:binding_get("lisi", "mini456"))
      assert.are.equal(3, st:binding_count())
      assert.are.equal(2, st:binding_count("alipaylife123"))
      assert.are.equal(0, st:binding_count("none"))
    end)

    it("deletes one channel or all of a user's", function()
      assert(st:binding_put("zhangsan", "a", "2088102146158132", "user_id"))
      assert(st:binding_put("zhangsan", "b", "2088102146158132", "user_id"))
      assert(st:binding_put("zhangsan", "c", "2088102146158132", "user_id"))
      assert(st:binding_put("lisi", "a", "2088102146158132", "user_id"))
      assert.are.equal(1, st:binding_delete("zhangsan", "a"))
      assert.are.equal(0, st:binding_delete("zhangsan", "a"))
      assert.are.equal(2, st:binding_delete("zhangsan"))
      assert.are.same({}, st:bindings_of("zhangsan"))
      assert.are.equal(1, st:binding_count())
    end)

    it("refuses bad arguments", function()
      local ok, err = st:binding_put("u", "c", "2088102146158132", "uid")
      assert.is_nil(ok)
      assert.matches("^binding_put: id_type", err)
      ok, err = st:binding_put("", "c", "2088102146158132", "user_id")
      assert.is_nil(ok)
      assert.matches("^binding_put: userid", err)
    end)
  end)

  describe("meta", function()
    it("stores, overwrites and deletes strings", function()
      assert.is_nil(st:meta_get("followers.cursor"))
      assert.is_true(st:meta_put("followers.cursor", "2088102146158132"))
      assert.are.equal("2088102146158132", st:meta_get("followers.cursor"))
      assert.is_true(st:meta_put("followers.cursor", 12))
      assert.are.equal("12", st:meta_get("followers.cursor"))
      assert.is_true(st:meta_put("followers.cursor", nil))
      assert.is_nil(st:meta_get("followers.cursor"))
      local ok, err = st:meta_put("k", {})
      assert.is_nil(ok)
      assert.matches("^meta_put: value", err)
    end)
  end)

  describe("transaction", function()
    it("commits and returns the function's results", function()
      local a, b, c = st:transaction(function(s)
        assert(s:meta_put("k", "v"))
        return 1, nil, 3
      end)
      assert.are.same({ 1, nil, 3 }, { a, b, c })
      assert.are.equal("v", st:meta_get("k"))
    end)

    it("rolls back on an error and re-raises it unchanged", function()
      local boom = { reason = "boom" }
      local ok, err = pcall(st.transaction, st, function(s)
        assert(s:meta_put("k", "v"))
        assert(s:binding_put("u", "c", "2088102146158132", "user_id"))
        error(boom)
      end)
      assert.is_false(ok)
      assert.are.equal(boom, err)
      assert.is_nil(st:meta_get("k"))
      assert.are.equal(0, st:binding_count())
      ok, err = pcall(st.transaction, st, function() error("plain message", 0) end)
      assert.is_false(ok)
      assert.are.equal("plain message", err)
    end)

    it("nests as savepoints: an inner failure undoes only the inner part", function()
      st:transaction(function(s)
        assert(s:meta_put("outer", "1"))
        local ok = pcall(s.transaction, s, function()
          assert(s:meta_put("inner", "1"))
          error("inner fails")
        end)
        assert.is_false(ok)
        s:transaction(function() assert(s:meta_put("inner2", "1")) end)
      end)
      assert.are.equal("1", st:meta_get("outer"))
      assert.is_nil(st:meta_get("inner"))
      assert.are.equal("1", st:meta_get("inner2"))
      -- an outer failure undoes released savepoints too
      pcall(st.transaction, st, function(s)
        s:transaction(function() assert(s:meta_put("gone", "1")) end)
        error("outer fails")
      end)
      assert.is_nil(st:meta_get("gone"))
    end)

    it("is usable again after a failed statement inside it", function()
      st:transaction(function(s)
        local ok = s:binding_put("u", "c", "x", "bad-type")
        assert.is_nil(ok)
        assert(s:binding_put("u", "c", "2088102146158132", "user_id"))
      end)
      assert.are.equal(1, st:binding_count())
    end)
  end)

  describe("prepared statements", function()
    it("are prepared once and survive many calls, errors included", function()
      assert(st:binding_put("user0", "c", "2088102146158132", "user_id"))
      assert(st:binding_get("user0", "c"))
      assert(st:meta_put("n", 0))
      assert(st:meta_get("n"))
      local before = count_statements(st)
      for i = 1, 2000 do
        assert(st:binding_put("user" .. i, "c", "2088102146158132", "user_id"))
        assert.are.same({ alipay_id = "2088102146158132", id_type = "user_id" }, st:binding_get("user" .. i, "c"))
        assert(st:meta_put("n", i))
        assert.are.equal(tostring(i), st:meta_get("n"))
        assert.is_nil(st:binding_put("user" .. i, "c", "2088102146158132", "no-such-type"))
      end
      assert.are.equal(before, count_statements(st))
      assert.are.equal(2001, st:binding_count("c"))
    end)

    it("a failed execute does not poison the next one", function()
      -- A CHECK violation from SQLite itself, then a valid call on the same statement.
      local _, err = st:exec("test", "INSERT INTO bindings (userid, channel, alipay_id, id_type, updated_at)"
        .. " VALUES (?, ?, ?, ?, ?)", "u", "c", "x", "nonsense", 1)
      assert.matches("^test: CHECK constraint failed", err)
      assert.is_true(st:binding_put("u", "c", "2088102146158132", "user_id"))
      local n = st:exec("test", "INSERT INTO bindings (userid, channel, alipay_id, id_type, updated_at)"
        .. " VALUES (?, ?, ?, ?, ?)", "u2", "c", "x", "open_id", 1)
      assert.are.equal(1, n)
    end)

    it("error messages do not contain the values", function()
      local secret = "2088999999999999"
      local _, err = st:exec("test", "INSERT INTO bindings (userid, channel, alipay_id, id_type, updated_at)"
        .. " VALUES (?, ?, ?, ?, ?)", "u", "c", secret, "nonsense", 1)
      assert.is_nil(err:find(secret, 1, true))
    end)
  end)

  describe("sharing a file", function()
    it("two store objects see each other's writes", function()
      local other = assert(store.open(dir .. "/state.db"))
      assert(st:binding_put("zhangsan", "c", "2088102146158132", "user_id"))
      assert.are.same({ alipay_id = "2088102146158132", id_type = "user_id" }, other:binding_get("zhangsan", "c"))
      assert(other:meta_put("cursor", "abc"))
      assert.are.equal("abc", st:meta_get("cursor"))
      -- a reader in the middle of the other's transaction sees the committed state
      st:transaction(function(s)
        assert(s:meta_put("cursor", "def"))
        assert.are.equal("abc", other:meta_get("cursor"))
      end)
      assert.are.equal("def", other:meta_get("cursor"))
      other:close()
    end)

    it("a writer waits for the busy timeout, then fails naming the operation", function()
      local other = assert(store.open { path = dir .. "/state.db", busy_timeout_ms = 50 })
      st:transaction(function()
        local ok, err = other:meta_put("k", "v")
        assert.is_nil(ok)
        assert.matches("^meta_put: database is locked", err)
        local tok, terr = pcall(other.transaction, other, function() end)
        assert.is_false(tok)
        assert.matches("^transaction: database is locked", terr)
      end)
      assert.is_true(other:meta_put("k", "v")) -- and works once the lock is gone
      other:close()
    end)

    it("another process writes to the same file", function()
      assert(st:meta_put("from", "parent"))
      local script = dir .. "/child.lua"
      helpers.write(script, ([[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        local s = assert(require("alipay.store").open(%q))
        assert(s:meta_get("from") == "parent", "child does not see the parent's write")
        assert(s:transaction(function()
          for i = 1, 100 do assert(s:binding_put("child" .. i, "c", "2088102146158132", "user_id")) end
          return true
        end))
        s:close()
      ]]):format(dir .. "/state.db"))
      local ok, out = helpers.run("lua5.4 " .. script)
      assert.is_true(ok, out)
      assert.are.equal(100, st:binding_count("c"))
    end)
  end)

  describe("close", function()
    it("is idempotent and later calls fail cleanly", function()
      assert.is_true(st:close())
      assert.is_true(st:close())
      local v, err = st:meta_get("k")
      assert.is_nil(v)
      assert.matches("^meta_get: the store is closed", err)
      st = assert(store.open(dir .. "/state.db")) -- for after_each
    end)
  end)
end)
