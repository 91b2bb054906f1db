-- The PostgreSQL backend's own behaviour (store/postgres/init.lua), beyond
-- the interface suite of spec/unit/55: store URLs, the password (from the
-- URL or PGPASSWORD, never in a message), errors without values, integers
-- past 32 bits, the transaction a failed statement aborted, readonly and
-- adopt. Against a real server (spec/support/postgres.lua).
local pg = require "support.postgres"
local store = require "alipay.store"
local url = require "alipay.store.url"

teardown(function() pg.stop() end)

describe("alipay.store.url", function()
  it("tells URLs from paths and picks the backend", function()
    assert.is_true(url.is_url("postgresql://u@h/db"))
    assert.is_true(url.is_url("postgres://h/db"))
    assert.is_false(url.is_url("state.db"))
    assert.is_false(url.is_url("a:b/c.db"))
    assert.is_false(url.is_url("/var/lib/x.db"))
    assert.are.equal("postgres", url.backend("POSTGRESQL://u@h/db"))
    assert.are.equal("sqlite", url.backend("./x.db"))
    local name, err = url.backend("mysql://u@h/db")
    assert.is_nil(name)
    assert.matches("unknown store URL scheme mysql://", err)
  end)

  it("parses user, password, host, port and database, decoding %XX", function()
    assert.same({ scheme = "postgresql", user = "al ice", password = "p@ss:w/rd", host = "db.example", port = 5433,
                  database = "alipay" }, url.parse("postgresql://al%20ice:p%40ss%3Aw%2Frd@db.example:5433/alipay"))
    assert.same({ scheme = "postgres", host = "::1", port = 5432, database = "d" },
      url.parse("postgres://[::1]:5432/d"))
    assert.same({ scheme = "postgres", database = "d" }, url.parse("postgres:///d"))
    for _, bad in ipairs { "postgresql://u@h:5432", "postgresql://u@h:5432/", "postgresql://u@h:99999/d",
                           "postgresql://u@h/d?sslmode=require", "postgresql://u@h:x/d", "postgresql://u@h/a/b" } do
      local parts, err = url.parse(bad)
      assert.is_nil(parts, bad)
      assert.is_string(err)
    end
  end)

  it("redacts the password (and a query string) from what is shown", function()
    assert.are.equal("postgresql://u@h:1/db", url.redact("postgresql://u:secret@h:1/db"))
    assert.are.equal("postgresql://u@h/db", url.redact("postgresql://u:se:cr@et@h/db?password=x"))
    assert.are.equal("postgres://h/db", url.redact("postgres://h/db"))
    assert.are.equal("state.db", url.redact("state.db"))
    local _, err = url.parse("postgresql://u:secret@h/db?x=1")
    assert.is_nil(err:find("secret", 1, true))
  end)
end)

describe("store.open of a PostgreSQL URL without lua-dbi-postgresql", function()
  it("names the package to install, not a connection failure", function()
    local saved = { backend = package.loaded["alipay.store.postgres"], driver = package.loaded["dbd.postgresql"] }
    package.loaded["alipay.store.postgres"], package.loaded["dbd.postgresql"] = nil, nil
    package.preload["dbd.postgresql"] = function() error("module 'dbd.postgresql' not found") end
    local st, err, detail = store.open("postgresql://u:secret-pw@127.0.0.1:1/db")
    package.preload["dbd.postgresql"] = nil
    package.loaded["alipay.store.postgres"], package.loaded["dbd.postgresql"] = saved.backend, saved.driver
    assert.is_nil(st)
    assert.are.equal("store", detail.kind)
    assert.matches("^store.open: lua%-dbi%-postgresql is not installed %(apt%-get install lua%-dbi%-postgresql%)", err)
    assert.is_nil(err:find("secret-pw", 1, true))
  end)
end)

describe("store.open of a PostgreSQL URL", function()
  local db_url
  before_each(function()
    local why
    db_url, why = pg.url()
    assert(db_url, why)
  end)

  it("opens postgresql:// and postgres:// alike, and st.path has no password", function()
    local st = assert(store.open(db_url))
    assert.are.equal(pg.url_of(db_url:match("/([^/]+)$"), false), st.path)
    assert(st:meta_put("k", "v"))
    st:close()
    st = assert(store.open { path = (db_url:gsub("^postgresql:", "postgres:")) })
    assert.are.equal("v", st:meta_get("k"))
    st:close()
  end)

  it("takes the password from PGPASSWORD when the URL has none", function()
    local bare = pg.url_of(db_url:match("/([^/]+)$"), false)
    local env = { PGPASSWORD = pg.PASSWORD }
    local st = assert(store.open { path = bare, getenv = function(k) return env[k] end })
    st:close()
  end)

  it("never shows the password: a wrong one, a refused connection, a missing database", function()
    local secret = "Wr0ng-Passw0rd-Zq"
    local cases = {
      ("postgresql://%s:%s@127.0.0.1:%d/postgres"):format(pg.USER, secret, pg.port()),
      ("postgresql://%s:%s@127.0.0.1:1/postgres"):format(pg.USER, secret),
      ("postgresql://%s:%s@127.0.0.1:%d/no_such_db"):format(pg.USER, pg.PASSWORD, pg.port()),
    }
    for _, u in ipairs(cases) do
      local st, err, detail = store.open(u)
      assert.is_nil(st, u)
      assert.are.equal("store", detail.kind)
      assert.matches("^store.open: cannot connect to postgresql://alipay@127.0.0.1:%d+/", err)
      assert.is_nil(err:find(secret, 1, true), err)
      assert.is_nil(err:find(pg.PASSWORD, 1, true), err)
      assert.is_nil(err:find("\n", 1, true), err)
      assert.matches("check the host, port, user, database and password", err)
    end
    local _, err = store.open { path = "postgresql://u:" .. secret .. "@h/db?sslmode=disable" }
    assert.matches("^store.open: postgresql://u@h/db: ", err)
    assert.is_nil(err:find(secret, 1, true))
    local _, merr = store.open("mysql://u:" .. secret .. "@h/db")
    assert.is_nil(merr:find(secret, 1, true))
  end)

  it("masks the password in any driver message, and keeps it off the store object", function()
    local clean = require("alipay.store.postgres").clean
    assert.are.equal("login as x with *** failed", clean("login as x with p%a.s-s failed", "p%a.s-s"))
    assert.are.equal("ERROR-free: one line", clean("ERROR:  ERROR-free: one line\nDETAIL:  Key (id)=(secret)"))
    local st = assert(store.open(db_url))
    for k, v in pairs(st) do
      assert.is_false(type(v) == "string" and v:find(pg.PASSWORD, 1, true) ~= nil, k)
    end
    st:close()
  end)

  it("keeps values out of error messages, and the first line only", function()
    local st = assert(store.open(db_url))
    local secret = "2088999999999999"
    local _, err, detail = st:exec("test", "INSERT INTO bindings (userid, channel, alipay_id, id_type, updated_at)"
      .. " VALUES (?, ?, ?, ?, ?)", "u", "c", secret, "nonsense", 1)
    assert.matches("^test: new row for relation \"bindings\" violates check constraint", err)
    assert.are.equal("store", detail.kind)
    assert.is_nil(err:find(secret, 1, true))
    assert(st:binding_put("u", "c", secret, "user_id"))
    _, err = st:exec("test", "INSERT INTO bindings (userid, channel, alipay_id, id_type, updated_at)"
      .. " VALUES (?, ?, ?, ?, ?)", "u", "c", secret, "user_id", 1)
    assert.matches("^test: duplicate key value violates unique constraint", err)
    assert.is_nil(err:find(secret, 1, true))
    assert.is_nil(err:find("\n", 1, true))
    _, err = st:exec("test", "UPDATE bindings SET updated_at = ? WHERE userid = ?", "not-a-number-" .. secret, "u")
    assert.matches("^test: invalid input syntax for type bigint", err)
    assert.is_nil(err:find(secret, 1, true))
    -- and the statement that failed works again
    assert.are.equal(1, st:exec("test", "UPDATE bindings SET updated_at = ? WHERE userid = ?", 5, "u"))
    st:close()
  end)

  it("keeps integers past 32 bits exact, and binds floats as integers", function()
    local st = assert(store.open(db_url))
    assert(st:template_put { channel = "c", id = "t", keywords = {}, kind = "alipaylife", imported_at = 4102444800 })
    assert.are.equal(4102444800, st:template_get("c", "t").imported_at)
    assert(st:campaign_insert { id = "c1", channel = "c", template = "t", kind = "alipaylife", spec = "{}",
                                status = "created", created_at = 1700000000.0 })
    assert.are.equal(1, st:transaction(function(s)
      return s:recipients_add("c1", { { line = 1, id_type = "user_id", alipay_id = "2088000000000001",
        status = "pending", updated_at = 1700000000 } })
    end))
    local r = st:recipient_get("c1", 1)
    r.next_attempt_at = 1700000000123.0 -- a float, as clock() * 1000 gives
    assert.are.equal(1, st:recipient_update("c1", r))
    assert.are.equal(1700000000123, st:recipient_get("c1", 1).next_attempt_at)
    assert.are.equal(0, #st:recipients_due("c1", 1700000000122.5, 10))
    assert.are.equal(1, #st:recipients_due("c1", 1700000000123.9, 10))
    assert.are.equal(1700000000123, st:recipients_next_due("c1"))
    st:close()
  end)

  it("sorts as SQLite does (bytes, NULLs first) whatever the database's collation", function()
    local name = "icu_" .. db_url:match("/([^/]+)$")
    assert(pg.admin_exec(("CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
      :format(name)))
    local st = assert(store.open(pg.url_of(name)))
    for _, c in ipairs { "a", "B", "b", "A" } do
      assert(st:template_put { channel = c, id = "t", keywords = {}, kind = "alipaylife" })
    end
    local channels = {}
    for i, t in ipairs(assert(st:template_list())) do channels[i] = t.channel end
    assert.same({ "A", "B", "a", "b" }, channels) -- en-US would say a, A, b, B
    local rows = assert(st:query("t", "SELECT string_agg(channel, ',' ORDER BY channel) AS s FROM templates"))
    assert.are.equal("a,A,b,B", rows[1].s) -- the database's own order differs indeed
    assert(st:campaign_insert { id = "c", channel = "a", template = "t", kind = "alipaylife", spec = "{}",
                                status = "created", created_at = 1 })
    st:transaction(function(s)
      assert(s:recipients_add("c", {
        { line = 1, id_type = "user_id", alipay_id = "2088000000000001", status = "failed", code = "b",
          updated_at = 1 },
        { line = 2, id_type = "user_id", alipay_id = "2088000000000002", status = "failed", updated_at = 1 },
        { line = 3, id_type = "user_id", alipay_id = "2088000000000003", status = "failed", code = "B",
          updated_at = 1 },
      }))
    end)
    local codes = {}
    for i, c in ipairs(assert(st:recipient_codes("c"))) do codes[i] = tostring(c.code) end
    assert.same({ "nil", "B", "b" }, codes)
    st:close()
  end)

  it("a statement failed inside a transaction: it raises at the end and keeps nothing", function()
    local st = assert(store.open(db_url))
    local ok, err = pcall(st.transaction, st, function(s)
      assert(s:meta_put("k", "lost"))
      local _, e = s:exec("test", "INSERT INTO meta (key, value) VALUES (?, NULL)", "x")
      assert.is_string(e)
      return true
    end)
    assert.is_false(ok)
    assert.matches("^transaction: rolled back, a statement inside failed: test: null value", err)
    assert.is_nil(st:meta_get("k"))
    -- A failed savepoint: only its part is undone, the outer one commits.
    st:transaction(function(s)
      assert(s:meta_put("outer", "1"))
      local iok = pcall(s.transaction, s, function(inner)
        assert(inner:meta_put("inner", "1"))
        inner:exec("test", "INSERT INTO meta (key, value) VALUES (?, NULL)", "x")
      end)
      assert.is_false(iok)
      assert(s:meta_put("after", "1"))
    end)
    assert.same({ "1", nil, "1" }, { st:meta_get("outer"), st:meta_get("inner"), st:meta_get("after") })
    st:close()
  end)

  it("readonly: reads, every write fails naming the database, and a new database is not migrated", function()
    local st = assert(store.open(db_url))
    assert(st:meta_put("k", "v"))
    st:close()
    local ro = assert(store.open { path = db_url, readonly = true })
    assert.are.equal("v", ro:meta_get("k"))
    local ok, err, detail = ro:meta_put("k", "w")
    assert.is_nil(ok)
    assert.are.equal("store", detail.kind)
    assert.matches("^meta_put: cannot execute INSERT in a read%-only transaction: postgresql://alipay@", err)
    assert.is_nil(err:find(pg.PASSWORD, 1, true))
    local tok = pcall(ro.transaction, ro, function(s) assert(s:meta_put("k", "w")) end)
    assert.is_false(tok)
    ro:close()
    st = assert(store.open(db_url))
    assert.are.equal("v", st:meta_get("k"))
    st:close()
    local empty = assert(pg.url())
    local none, nerr, ndetail = store.open { path = empty, readonly = true }
    assert.is_nil(none)
    assert.are.equal("state", ndetail.kind)
    assert.matches("schema is version 0, this lua%-alipay's is %d+: a read%-only open cannot migrate it", nerr)
  end)

  it("adopt: another application's tables are refused, unless adopt = true", function()
    local function other_app(u)
      local name = u:match("/([^/]+)$")
      local DBI = require "DBI"
      local db = assert(DBI.Connect("PostgreSQL", name, pg.USER, pg.PASSWORD, "127.0.0.1", pg.port()))
      db:autocommit(true)
      for _, sql in ipairs { "CREATE TABLE orders (id integer PRIMARY KEY)", "CREATE TABLE shop (k text)" } do
        local stmt = assert(db:prepare(sql))
        assert(stmt:execute())
      end
      db:close()
    end
    other_app(db_url)
    local st, err, detail = store.open(db_url)
    assert.is_nil(st)
    assert.are.equal("state", detail.kind)
    assert.matches("holds another application's tables %(orders, 2 in all%) and no lua%-alipay schema", err)
    assert.matches("adopt = true", err)
    st = assert(store.open { path = db_url, adopt = true })
    assert(st:meta_put("k", "v"))
    st:close()
    -- Ours now: it opens without adopt.
    st = assert(store.open(db_url))
    st:close()
  end)
end)

-- The database restarts under a long-running process (a worker): the
-- store connects again by itself, and says what happened meanwhile.
describe("a PostgreSQL store whose server goes away and comes back", function()
  it("fails with reason connection while it is down, then works again without being reopened", function()
    local db_url = assert(pg.url())
    local st = assert(store.open(db_url))
    assert(st:meta_put("cursor", "before"))
    assert(pg.pause())
    local ok, err, detail = st:meta_put("cursor", "during")
    assert.is_nil(ok)
    assert.are.equal("store", detail.kind)
    assert.are.equal("connection", detail.reason)
    assert.is_true(detail.retryable)
    assert.matches("connection to .* was lost", err)
    assert.is_nil(err:find(pg.PASSWORD, 1, true))
    -- still down: each operation fails at once, naming the database
    local _, err2, detail2 = st:meta_get("cursor")
    assert.are.equal("connection", detail2.reason)
    assert.matches("unreachable", err2)
    assert.is_nil(err2:find(pg.PASSWORD, 1, true))
    local raised = pcall(st.transaction, st, function(s) return s:meta_put("cursor", "x") end)
    assert.is_false(raised)
    assert(pg.resume())
    -- A new attempt at most once a second (a worker retries, as here).
    local value
    local tries = 0
    repeat
      tries = tries + 1
      value = st:meta_get("cursor")
      if not value then os.execute("sleep 0.2") end
    until value or tries == 50
    assert.are.equal("before", value)
    assert(st:meta_put("cursor", "after"))
    assert.are.equal("after", st:meta_get("cursor"))
    assert.are.equal(1, st:transaction(function(s)
      return s:binding_put("u1", "life", "2088000000000001", "user_id") and 1
    end))
    st:close()
  end)
end)
