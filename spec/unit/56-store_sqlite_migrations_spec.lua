-- The SQLite backend's numbered migrations (store/sqlite/migrations.lua):
-- order, one transaction, idempotence, and the upgrade of a file made by
-- the lua-alipay before them (schema version 1, campaign tables created by
-- the campaign code on its own). That file is built here from the old
-- statements, frozen below, through the bare driver.
local helpers = require "helpers"
local store = require "alipay.store"
local sqlite = require "alipay.store.sqlite"
local migrations = require "alipay.store.sqlite.migrations"
local DBI = require "DBI"

-- What store.open ran on a new file before numbered migrations...
local OLD_OPEN = {
  "PRAGMA journal_mode = WAL",
  [[CREATE TABLE meta (
      key   TEXT PRIMARY KEY,
      value TEXT NOT NULL
    )]],
  [[CREATE TABLE templates (
      channel      TEXT NOT NULL,
      id           TEXT NOT NULL,
      name         TEXT,
      keywords     TEXT NOT NULL,
      kind         TEXT NOT NULL CHECK (kind IN ('alipaylife', 'alipaymini')),
      library_id   TEXT,
      status       TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'invalid')),
      invalid_code TEXT,
      invalid_at   INTEGER,
      imported_at  INTEGER NOT NULL,
      PRIMARY KEY (channel, id)
    )]],
  [[CREATE TABLE bindings (
      userid     TEXT NOT NULL,
      channel    TEXT NOT NULL,
      alipay_id  TEXT NOT NULL,
      id_type    TEXT NOT NULL CHECK (id_type IN ('user_id', 'open_id')),
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (userid, channel)
    )]],
  [[CREATE INDEX bindings_by_channel ON bindings (channel, userid)]],
  "PRAGMA user_version = 1",
}

-- ...and what the campaign code added on its first use of the file.
local OLD_CAMPAIGNS = {
  [[CREATE TABLE IF NOT EXISTS campaigns (
      id           TEXT PRIMARY KEY,
      channel      TEXT NOT NULL,
      template     TEXT NOT NULL,
      kind         TEXT NOT NULL CHECK (kind IN ('alipaylife', 'alipaymini')),
      spec         TEXT NOT NULL,
      status       TEXT NOT NULL CHECK (status IN ('importing', 'created', 'running', 'completed', 'stopped')),
      stop_reason  TEXT,
      runner       TEXT,
      heartbeat_at INTEGER,
      total        INTEGER NOT NULL DEFAULT 0,
      created_at   INTEGER NOT NULL,
      started_at   INTEGER,
      finished_at  INTEGER
    )]],
  [[CREATE TABLE IF NOT EXISTS campaign_recipients (
      campaign        TEXT NOT NULL,
      line            INTEGER NOT NULL,
      userid          TEXT,
      id_type         TEXT CHECK (id_type IN ('user_id', 'open_id')),
      alipay_id       TEXT,
      vars            TEXT,
      status          TEXT NOT NULL
        CHECK (status IN ('pending', 'inflight', 'sent', 'failed', 'skipped', 'unknown')),
      checked         INTEGER NOT NULL DEFAULT 1,
      dup_of          INTEGER,
      code            TEXT,
      sub_code        TEXT,
      msg             TEXT,
      attempts        INTEGER NOT NULL DEFAULT 0,
      tries           INTEGER NOT NULL DEFAULT 0,
      uncertain       INTEGER NOT NULL DEFAULT 0,
      next_attempt_at INTEGER NOT NULL DEFAULT 0,
      updated_at      INTEGER NOT NULL,
      PRIMARY KEY (campaign, line)
    )]],
  [[CREATE UNIQUE INDEX IF NOT EXISTS campaign_recipients_once
      ON campaign_recipients (campaign, id_type, alipay_id) WHERE dup_of IS NULL AND alipay_id IS NOT NULL]],
  [[CREATE INDEX IF NOT EXISTS campaign_recipients_by_status
      ON campaign_recipients (campaign, status, line)]],
}

local OLD_DATA = {
  [[INSERT INTO templates (channel, id, name, keywords, kind, status, imported_at)
    VALUES ('life', 'tpl1', 'Shipped', '["订单号"]', 'alipaylife', 'valid', 1700000000)]],
  [[INSERT INTO bindings VALUES ('u1', 'life', '2088000000000001', 'user_id', 1700000000)]],
  [[INSERT INTO meta VALUES ('followers.cursor', 'abc')]],
}

local OLD_CAMPAIGN_DATA = {
  [[INSERT INTO campaigns (id, channel, template, kind, spec, status, total, created_at, started_at)
    VALUES ('spring', 'life', 'tpl1', 'alipaylife', '{}', 'running', 2, 1700000000, 1700000010)]],
  [[INSERT INTO campaign_recipients (campaign, line, id_type, alipay_id, status, attempts, updated_at)
    VALUES ('spring', 1, 'user_id', '2088000000000001', 'sent', 1, 1700000020)]],
  [[INSERT INTO campaign_recipients (campaign, line, id_type, alipay_id, status, updated_at)
    VALUES ('spring', 2, 'user_id', '2088000000000002', 'pending', 1700000000)]],
}

local function run_old(path, ...)
  local db = assert(DBI.Connect("SQLite3", path))
  db:autocommit(true)
  for _, list in ipairs { ... } do
    for _, sql in ipairs(list) do
      local h = assert(db:prepare(sql))
      assert(h:execute())
      h:close()
    end
  end
  db:close()
end

local function tables_of(st)
  local names = {}
  for _, row in ipairs(assert(st:query("spec", "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"))) do
    names[#names + 1] = row.name
  end
  return names
end

local ALL_TABLES = { "bindings", "campaign_recipients", "campaigns", "meta", "templates" }

local function check_old_data(st)
  assert.are.equal("Shipped", st:template_get("life", "tpl1").name)
  assert.same({ "订单号" }, st:template_get("life", "tpl1").keywords)
  assert.same({ alipay_id = "2088000000000001", id_type = "user_id" }, st:binding_get("u1", "life"))
  assert.are.equal("abc", st:meta_get("followers.cursor"))
end

describe("alipay.store.sqlite migrations", function()
  local dir
  before_each(function() dir = helpers.tmpdir() end)
  after_each(function() helpers.cleanup() end)

  it("are numbered 1, 2, ... with names that start with their number", function()
    assert.is_true(#migrations >= 2)
    for i, m in ipairs(migrations) do
      assert.are.equal(i, m.version)
      assert.are.equal(("%03d_"):format(i), m.name:sub(1, 4))
      assert.is_true(#m.statements >= 1)
    end
    assert.are.equal(#migrations, sqlite.schema_version)
  end)

  it("are the only place that creates tables or indexes", function()
    local p = assert(io.popen("grep -rlis 'CREATE \\(UNIQUE \\)\\?\\(TABLE\\|INDEX\\)' lua"))
    local files = {}
    for f in p:lines() do files[#files + 1] = f end
    p:close()
    table.sort(files)
    -- (and the PostgreSQL backend's: spec/unit/47)
    assert.same({ "lua/alipay/store/postgres/migrations.lua", "lua/alipay/store/sqlite/migrations.lua" }, files)
  end)

  it("give a new file every table and the latest version", function()
    local st = assert(store.open(dir .. "/new.db"))
    assert.are.equal(#migrations, st:user_version())
    assert.same(ALL_TABLES, tables_of(st))
    st:close()
  end)

  it("upgrade a version-1 file that never ran a campaign, keeping its data", function()
    local path = dir .. "/old.db"
    run_old(path, OLD_OPEN, OLD_DATA)
    local st = assert(store.open(path))
    assert.are.equal(#migrations, st:user_version())
    assert.same(ALL_TABLES, tables_of(st))
    check_old_data(st)
    assert(st:campaign_insert { id = "c1", channel = "life", template = "tpl1", kind = "alipaylife", spec = "{}",
                                status = "importing", created_at = 1 })
    st:close()
  end)

  it("upgrade a version-1 file whose campaign tables the campaign code made, keeping its campaigns", function()
    local path = dir .. "/old.db"
    run_old(path, OLD_OPEN, OLD_DATA, OLD_CAMPAIGNS, OLD_CAMPAIGN_DATA)
    for _ = 1, 2 do -- and opening again changes nothing
      local st = assert(store.open(path))
      assert.are.equal(#migrations, st:user_version())
      assert.same(ALL_TABLES, tables_of(st))
      check_old_data(st)
      local c = assert(st:campaign_get("spring"))
      assert.same({ "running", 2, 1700000010 }, { c.status, c.total, c.started_at })
      assert.same({ sent = 1, pending = 1, inflight = 0, failed = 0, skipped = 0, unknown = 0 },
        st:recipient_counts("spring"))
      assert.are.equal(1, st:recipient_get("spring", 1).attempts)
      st:close()
    end
    -- The old unique index still finds duplicates.
    local st = assert(store.open(path))
    st:transaction(function(s)
      assert(s:recipients_add("spring", { { line = 3, id_type = "user_id", alipay_id = "2088000000000002",
                                            status = "pending", updated_at = 1 } }))
    end)
    assert.are.equal(2, st:recipient_get("spring", 3).dup_of)
    st:close()
  end)

  it("upgrade a version-2 file to lease tokens and unknown reasons (003), keeping its rows", function()
    local path = dir .. "/v2.db"
    run_old(path, OLD_OPEN, OLD_DATA, OLD_CAMPAIGNS, OLD_CAMPAIGN_DATA, {
      [[INSERT INTO campaign_recipients (campaign, line, id_type, alipay_id, status, code, sub_code, updated_at)
        VALUES ('spring', 3, 'user_id', '2088000000000003', 'unknown', 'INTERRUPTED', NULL, 1700000030)]],
      [[INSERT INTO campaign_recipients (campaign, line, id_type, alipay_id, status, code, sub_code, updated_at)
        VALUES ('spring', 4, 'user_id', '2088000000000004', 'unknown', 'HTTP', '502', 1700000030)]],
      [[INSERT INTO campaign_recipients (campaign, line, id_type, alipay_id, status, code, sub_code, updated_at)
        VALUES ('spring', 5, 'user_id', '2088000000000005', 'unknown', 'TRANSPORT', 'reset', 1700000030)]],
      [[INSERT INTO campaign_recipients (campaign, line, id_type, alipay_id, status, attempts, updated_at)
        VALUES ('spring', 6, 'user_id', '2088000000000006', 'inflight', 1, 1700000030)]],
      "PRAGMA user_version = 2",
    })
    local st = assert(store.open(path))
    assert.are.equal(#migrations, st:user_version())
    assert.is_true(#migrations >= 3)
    check_old_data(st)
    local c = assert(st:campaign_get("spring"))
    assert.same({ "running", 0 }, { c.status, c.lease_token })
    -- Reasons from the stored codes where they prove one; "unrecorded" where not.
    assert.same({ runner_died = 1, http_5xx = 1, unrecorded = 1 }, st:recipient_unknown_reasons("spring"))
    assert.are.equal(0, st:recipient_get("spring", 6).lease_token)
    -- The old run's inflight row is recovered by the first claim, as after a crash.
    local token = assert(st:campaign_acquire("spring", 0, "host/1/x", 1700000100))
    assert.are.equal(1, token)
    assert.are.equal(1, st:recipients_interrupted("spring", token, "runner_died", "m", 1700000100))
    assert.are.equal("runner_died", st:recipient_get("spring", 6).unknown_reason)
    -- The reason column refuses a name that is not one.
    local ok = st:exec("spec", "UPDATE campaign_recipients SET unknown_reason = 'whatever' WHERE line = 3")
    assert.is_nil(ok)
    st:close()
  end)

  it("upgrade a version-3 file to crowd rows (004), keeping its rows, tokens, reasons and indexes", function()
    local path = dir .. "/v3.db"
    local v3 = {}
    for i = 2, 3 do
      for _, sql in ipairs(migrations[i].statements) do v3[#v3 + 1] = sql end
    end
    run_old(path, OLD_OPEN, OLD_DATA, v3, OLD_CAMPAIGN_DATA, {
      [[INSERT INTO campaign_recipients (campaign, line, id_type, alipay_id, status, code, updated_at, lease_token,
          unknown_reason) VALUES ('spring', 3, 'user_id', '2088000000000003', 'unknown', 'TRANSPORT', 1, 4, 'reset')]],
      "PRAGMA user_version = 3",
    })
    local st = assert(store.open(path))
    assert.are.equal(#migrations, st:user_version())
    assert.same(ALL_TABLES, tables_of(st))
    check_old_data(st)
    local r = assert(st:recipient_get("spring", 3))
    assert.same({ "unknown", "reset", 4 }, { r.status, r.unknown_reason, r.lease_token })
    assert.same({ sent = 1, pending = 1, inflight = 0, failed = 0, skipped = 0, unknown = 1 },
      st:recipient_counts("spring"))
    -- A crowd row is accepted now; an id type that is none still is not, and
    -- the unique index still finds duplicates.
    st:transaction(function(s)
      assert(s:recipients_add("spring", {
        { line = 4, id_type = "crowd", alipay_id = "CROWD_VIP", status = "pending", updated_at = 1 },
        { line = 5, id_type = "user_id", alipay_id = "2088000000000003", status = "pending", updated_at = 1 } }))
    end)
    assert.are.equal("crowd", st:recipient_get("spring", 4).id_type)
    assert.are.equal(3, st:recipient_get("spring", 5).dup_of)
    assert.is_nil(st:exec("spec", "UPDATE campaign_recipients SET id_type = 'label' WHERE line = 4"))
    assert.is_nil(st:exec("spec", "UPDATE campaign_recipients SET unknown_reason = 'whatever' WHERE line = 3"))
    st:close()
  end)

  it("refuse a file newer than they know, and leave it alone", function()
    local path = dir .. "/new.db"
    run_old(path, OLD_OPEN, { ("PRAGMA user_version = %d"):format(#migrations + 1) })
    local st, err, detail = store.open(path)
    assert.is_nil(st)
    assert.matches(("schema is version %d, newer"):format(#migrations + 1), err)
    assert.are.equal("store", detail.kind)
  end)

  it("apply all pending migrations in one transaction: a failing one leaves the file as it was", function()
    local path = dir .. "/old.db"
    run_old(path, OLD_OPEN, OLD_DATA)
    -- Opening with a list whose 003 breaks halfway: 002 must not stay either.
    local broken = {}
    for i, m in ipairs(migrations) do broken[i] = m end
    broken[#broken + 1] = { version = #broken + 1, name = ("%03d_broken"):format(#broken + 1),
                            statements = { "CREATE TABLE half (x)", "THIS IS NOT SQL" } }
    local st, err, detail = store.open { path = path, migrations = broken }
    assert.is_nil(st)
    assert.matches(("migration %03d_broken"):format(#broken), err)
    assert.are.equal("store", detail.kind)
    -- The file as the old code left it, read through the bare driver.
    local db = assert(DBI.Connect("SQLite3", path))
    local function first(sql)
      local h = assert(db:prepare(sql))
      assert(h:execute())
      local row = h:fetch()
      h:close()
      return row and row[1]
    end
    assert.are.equal(1, first("PRAGMA user_version"))
    assert.are.equal("bindings,meta,templates",
      first("SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)"))
    assert.are.equal("abc", first("SELECT value FROM meta WHERE key = 'followers.cursor'"))
    db:close()
    -- and the real list still upgrades it afterwards.
    local again = assert(store.open(path))
    assert.are.equal(#migrations, again:user_version())
    again:close()
  end)
end)
