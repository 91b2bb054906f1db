-- The PostgreSQL backend's numbered migrations (store/postgres/migrations.lua):
-- the same list as SQLite's, the only place tables are made, recorded in
-- alipay_schema, applied once (two processes opening a new database at
-- once included), a newer database refused, and all of them in one
-- transaction. Against a real server (spec/support/postgres.lua).
local helpers = require "helpers"
local pg = require "support.postgres"
local postgres = require "alipay.store.postgres"
local migrations = require "alipay.store.postgres.migrations"
local sqlite_migrations = require "alipay.store.sqlite.migrations"

teardown(function() pg.stop() end)

local function tables_of(st)
  local rows = assert(st:query("t", [[SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = current_schema() ORDER BY table_name COLLATE "C"]]))
  local names = {}
  for i, r in ipairs(rows) do names[i] = r.name end
  return table.concat(names, ",")
end

local function columns_of(st, tbl)
  local rows = assert(st:query("t", [[SELECT column_name AS name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = ? ORDER BY column_name COLLATE "C"]], tbl))
  local names = {}
  for _, r in ipairs(rows) do names[r.name] = true end
  return names
end

describe("alipay.store.postgres migrations", function()
  it("are SQLite's list: the same numbers and names, in order", function()
    assert.are.equal(#sqlite_migrations, #migrations)
    for i, m in ipairs(migrations) do
      assert.are.equal(i, m.version)
      assert.are.equal(sqlite_migrations[i].name, m.name)
      assert.matches(("^%03d_"):format(i), m.name)
    end
  end)

  it("are the only place that creates tables or indexes", function()
    for _, file in ipairs { "lua/alipay/store/postgres/init.lua", "lua/alipay/store/postgres/campaigns.lua" } do
      local text = helpers.read(file)
      assert.is_nil(text:find("CREATE TABLE", 1, true), file)
      assert.is_nil(text:find("CREATE INDEX", 1, true), file)
    end
  end)

  it("give a new database every table, the same columns as SQLite's, and record each version", function()
    local st = assert(pg.fresh_store())
    assert.are.equal("alipay_schema,bindings,campaign_recipients,campaigns,meta,templates", tables_of(st))
    assert.are.equal(#migrations, st:schema_version())
    local rows = assert(st:query("t", "SELECT CAST(version AS TEXT) AS v, name FROM alipay_schema ORDER BY version"))
    for i, m in ipairs(migrations) do assert.same({ tostring(i), m.name }, { rows[i].v, rows[i].name }) end
    -- Every SQLite column is here (campaigns.seq stands for SQLite's rowid).
    local sq = require("alipay.store").open(helpers.tmpdir() .. "/s.db")
    for _, tbl in ipairs { "meta", "templates", "bindings", "campaigns", "campaign_recipients" } do
      local want = {}
      for _, r in ipairs(assert(sq:query("t", ("SELECT name FROM pragma_table_info('%s')"):format(tbl)))) do
        want[r.name] = true
      end
      local have = columns_of(st, tbl)
      have.seq = nil
      assert.same(want, have, tbl)
    end
    sq:close()
    helpers.cleanup()
    st:close()
  end)

  it("run once: reopening changes nothing", function()
    local u = assert(pg.url())
    local st = assert(postgres.open { path = u })
    assert(st:meta_put("k", "v"))
    st:close()
    st = assert(postgres.open { path = u })
    assert.are.equal("v", st:meta_get("k"))
    local rows = assert(st:query("t", "SELECT CAST(count(*) AS TEXT) AS n FROM alipay_schema"))
    assert.are.equal(tostring(#migrations), rows[1].n)
    st:close()
  end)

  it("two processes opening one new database at once migrate it once", function()
    local u = assert(pg.url())
    local dir = helpers.tmpdir()
    local script = dir .. "/open.lua"
    helpers.write(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local st, err = require("alipay.store").open(%q)
      if not st then io.stderr:write(err, "\n") os.exit(1) end
      st:close()
    ]]):format(u))
    local ok, out = helpers.run(("pids=; for i in 1 2 3 4; do lua5.4 %s & pids=\"$pids $!\"; done; fail=0; "
      .. "for p in $pids; do wait $p || fail=1; done; test $fail = 0"):format(script))
    assert.is_true(ok, out)
    local st = assert(postgres.open { path = u })
    local rows = assert(st:query("t", "SELECT CAST(count(*) AS TEXT) AS n FROM alipay_schema"))
    assert.are.equal(tostring(#migrations), rows[1].n)
    st:close()
    helpers.cleanup()
  end)

  it("upgrade a version-3 database to crowd rows (004), keeping its rows", function()
    local u = assert(pg.url())
    local three = { migrations[1], migrations[2], migrations[3] }
    local st = assert(postgres.open { path = u, migrations = three })
    assert.are.equal(3, st:schema_version())
    assert(st:campaign_insert { id = "c", channel = "l", template = "t", kind = "alipaylife", spec = "{}",
                                status = "created", created_at = 1 })
    local crowd = { line = 2, id_type = "crowd", alipay_id = "CROWD1", status = "pending", updated_at = 1 }
    local ok = pcall(st.transaction, st, function(s) assert(s:recipients_add("c", { crowd })) end)
    assert.is_false(ok) -- version 3 refuses a crowd row
    st:transaction(function(s)
      assert(s:recipients_add("c", { { line = 1, id_type = "user_id", alipay_id = "2088000000000001",
                                       status = "pending", updated_at = 1 } }))
    end)
    st:close()
    st = assert(postgres.open { path = u })
    assert.are.equal(#migrations, st:schema_version())
    assert.are.equal("2088000000000001", st:recipient_get("c", 1).alipay_id)
    st:transaction(function(s) assert(s:recipients_add("c", { crowd })) end)
    assert.are.equal("crowd", st:recipient_get("c", 2).id_type)
    local _, err = st:exec("t", "UPDATE campaign_recipients SET id_type = ? WHERE line = ?", "phone", 2)
    assert.matches("violates check constraint \"campaign_recipients_id_type\"", err)
    st:close()
  end)

  it("refuse a database newer than they know, and leave it alone", function()
    local u = assert(pg.url())
    local st = assert(postgres.open { path = u })
    assert(st:exec("t", "INSERT INTO alipay_schema (version, name, applied_at) VALUES (?, ?, ?)",
      #migrations + 1, "999_future", 1))
    st:close()
    local again, err, detail = postgres.open { path = u }
    assert.is_nil(again)
    assert.are.equal("store", detail.kind)
    assert.matches("newer than this lua%-alipay knows", err)
    local ro, rerr, rdetail = postgres.open { path = u, readonly = true }
    assert.is_nil(ro)
    assert.are.equal("state", rdetail.kind)
    assert.matches("read a newer database", rerr)
  end)

  it("apply all pending migrations in one transaction: a failing one leaves the database as it was", function()
    local u = assert(pg.url())
    local broken = {}
    for i, m in ipairs(migrations) do broken[i] = m end
    broken[#broken + 1] = { version = #migrations + 1, name = "004_broken",
                            statements = { "CREATE TABLE extra (x INTEGER)", "CREATE TABLE nonsense (" } }
    local st, err = postgres.open { path = u, migrations = broken }
    assert.is_nil(st)
    assert.matches("migration 004_broken: schema: syntax error", err)
    -- Nothing at all: not even 001-003, which ran in the same transaction.
    local DBI = require "DBI"
    local db = assert(DBI.Connect("PostgreSQL", u:match("/([^/]+)$"), pg.USER, pg.PASSWORD, "127.0.0.1", pg.port()))
    db:autocommit(true)
    local stmt = assert(db:prepare("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"))
    assert(stmt:execute())
    assert.are.equal(0, stmt:fetch()[1])
    db:close()
    st = assert(postgres.open { path = u })
    assert.are.equal(#migrations, st:schema_version())
    st:close()
  end)
end)
