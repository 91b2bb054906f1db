-- store.open's readonly and adopt options (store/init.lua; issue 13 §5):
-- a store opened read-only reads an existing file without writing a byte
-- (so a read-only mount or another user's file still serves the commands
-- that only read), and its writes fail naming the file; a writing open of a
-- file this user may not write fails at open, naming it; a SQLite file that
-- holds another application's tables is refused rather than given ours,
-- unless adopt = true.
--
-- Specs run as root here, where file permissions stop nothing: the
-- permission cases run a child Lua as the user nobody (setpriv), which is
-- what an operator without write access is.
local helpers = require "helpers"
local store = require "alipay.store"

local T = { channel = "c", id = "t1", keywords = { "a" }, kind = "alipaylife" }

local function sh(cmd) assert(helpers.run(cmd)) end

local function tables_of(path)
  local DBI = require "DBI"
  local db = assert(DBI.Connect("SQLite3", path))
  local names = {}
  local stmt = assert(db:prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"))
  assert(stmt:execute())
  for row in stmt:rows() do names[#names + 1] = row[1] end
  stmt:close()
  db:close()
  return table.concat(names, ",")
end

local function foreign_file(path)
  local DBI = require "DBI"
  local db = assert(DBI.Connect("SQLite3", path))
  db:autocommit(true)
  for _, sql in ipairs { "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)", "CREATE TABLE shop (k, v)" } do
    local stmt = assert(db:prepare(sql))
    assert(stmt:execute())
    stmt:close()
  end
  db:close()
end

describe("store.open{readonly = true}", function()
  local dir
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.cleanup() end)

  local function filled(path)
    local st = assert(store.open(path))
    assert(st:template_put(T))
    st:close()
  end

  it("reads an existing store, and its writes fail naming the file", function()
    local path = dir .. "/state.db"
    filled(path)
    local st = assert(store.open { path = path, readonly = true })
    assert.are.equal(1, #assert(st:template_list()))
    assert.are.equal("t1", st:template_get("c", "t1").id)
    local ok, err, detail = st:template_put { channel = "c", id = "t2", keywords = { "b" }, kind = "alipaylife" }
    assert.is_nil(ok)
    assert.are.equal("store", detail.kind)
    assert.truthy(err:find(path .. " was opened read-only", 1, true), err)
    st:close()
    assert.are.equal(1, #assert(store.open(path)):template_list())
  end)

  it("never creates a file", function()
    local path = dir .. "/none.db"
    local st, err, detail = store.open { path = path, readonly = true }
    assert.is_nil(st)
    assert.are.equal("io", detail.kind)
    assert.truthy(err:find(path .. " does not exist", 1, true), err)
    assert.is_nil(io.open(path))
  end)

  it("never migrates: a file of an older schema is refused, and left as it was", function()
    local path = dir .. "/old.db"
    -- A file made by code that knew only the first migration.
    local first = { (require "alipay.store.sqlite.migrations")[1] }
    local st = assert(store.open { path = path, migrations = first })
    assert(st:template_put(T))
    st:close()
    local ro, err, detail = store.open { path = path, readonly = true }
    assert.is_nil(ro)
    assert.are.equal("state", detail.kind)
    assert.truthy(err:find("a read-only open cannot migrate it", 1, true), err)
    local again = assert(store.open(path)) -- a writing open migrates it
    again:close()
    assert(store.open { path = path, readonly = true }):close()
  end)

  it("serves a file and a directory this user may not write; a writing open fails naming the file", function()
    local path = dir .. "/state.db"
    filled(path)
    sh(("chmod 444 %s && chmod 555 %s && chmod o+x %s"):format(path, dir, dir:match("^(.*)/[^/]+$")))
    local script = dir .. "/../probe-" .. dir:match("[^/]+$") .. ".lua"
    helpers.write(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = "build/lua5.4/?.so;" .. package.cpath
      local store = require "alipay.store"
      local st, err = store.open { path = %q, readonly = true }
      print(st and ("read " .. #st:template_list()) or ("readonly failed: " .. tostring(err)))
      local w, werr = store.open(%q)
      print(w and "wrote" or ("write failed: " .. tostring(werr)))
    ]]):format(path, path))
    local as_user = helpers.run("test $(id -u) = 0") and "setpriv --reuid=nobody --regid=nogroup --clear-groups " or ""
    local p = io.popen(as_user .. "lua5.4 " .. script .. " 2>&1")
    local out = p:read("a")
    p:close()
    os.remove(script)
    sh(("chmod 755 %s"):format(dir))
    assert.truthy(out:find("read 1", 1, true), out)
    assert.truthy(out:find("write failed: store.open: " .. path .. ": cannot write the file (Permission denied)",
      1, true), out)
    assert.truthy(out:find("only read it", 1, true), out)
  end)
end)

describe("store.open{readonly = true} on a read-only mount", function()
  -- A read-only bind mount needs root with CAP_SYS_ADMIN: elsewhere this
  -- case cannot be made, and says so (the permission case above still runs).
  it("reads the store; a writing open fails naming the file", function()
    local dir = helpers.tmpdir()
    local src, mnt = dir .. "/src", dir .. "/ro"
    sh(("mkdir %s %s"):format(src, mnt))
    local st = assert(store.open(src .. "/state.db"))
    assert(st:template_put(T))
    st:close()
    if not helpers.run(("mount --bind %s %s 2>/dev/null"):format(src, mnt)) then
      helpers.cleanup()
      return pending("mount --bind is not permitted here: the read-only mount case cannot be made")
    end
    local ok, err = pcall(function()
      sh(("mount -o remount,bind,ro %s"):format(mnt))
      assert.is_nil(io.open(mnt .. "/probe", "w")) -- the mount is read-only, even for root
      local ro = assert(store.open { path = mnt .. "/state.db", readonly = true })
      assert.are.equal("t1", ro:template_get("c", "t1").id)
      ro:close()
      local w, werr = store.open(mnt .. "/state.db")
      assert.is_nil(w)
      assert.truthy(werr:find(mnt .. "/state.db: cannot write the file (Read-only file system)", 1, true), werr)
    end)
    helpers.run(("umount %s"):format(mnt))
    helpers.cleanup()
    assert(ok, err)
  end)
end)

describe("store.open of a file that holds another application's tables", function()
  local dir
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.cleanup() end)

  it("is refused, naming the file and a table, and the file is left as it was", function()
    local path = dir .. "/shop.db"
    foreign_file(path)
    for _, opts in ipairs { { path = path }, { path = path, readonly = true } } do
      local st, err, detail = store.open(opts)
      assert.is_nil(st)
      assert.are.equal("state", detail.kind)
      assert.truthy(err:find(path, 1, true), err)
      assert.truthy(err:find("another application's tables (orders, 2 in all)", 1, true), err)
    end
    assert.are.equal("orders,shop", tables_of(path))
  end)

  it("is adopted with adopt = true: our tables join theirs", function()
    local path = dir .. "/shop.db"
    foreign_file(path)
    local st = assert(store.open { path = path, adopt = true })
    assert(st:template_put(T))
    st:close()
    assert.truthy(tables_of(path):find("orders", 1, true))
    assert.truthy(tables_of(path):find("templates", 1, true))
    -- Now a lua-alipay store: opened without adopt from then on.
    assert(store.open(path)):close()
  end)

  it("with a schema version but none of our tables is another program's, adopt or not", function()
    local path = dir .. "/versioned.db"
    foreign_file(path)
    local DBI = require "DBI"
    local db = assert(DBI.Connect("SQLite3", path))
    db:autocommit(true)
    local stmt = assert(db:prepare("PRAGMA user_version = 3"))
    assert(stmt:execute())
    stmt:close()
    db:close()
    for _, adopt in ipairs { false, true } do
      local st, err = store.open { path = path, adopt = adopt }
      assert.is_nil(st)
      assert.truthy(err:find("schema version is 3 but it has no bindings table", 1, true), err)
    end
  end)

  it("an empty file is a new store", function()
    local path = dir .. "/empty.db"
    helpers.write(path, "")
    assert(store.open(path)):close()
  end)
end)
