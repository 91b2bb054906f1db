-- The PostgreSQL driver of alipay.store (the interface is documented in
-- store/init.lua), over Debian's lua-dbi-postgresql (`require "DBI"`), for
-- state shared by several processes or hosts (docs/architecture.md §8). Lua 5.4.
--
--   local st, err = require("alipay.store").open("postgresql://alipay@db.example:5432/alipay")
--   local st, err = require("alipay.store.postgres").open{ path = url, readonly = true }
--
-- The password comes from the URL or, when it has none, PGPASSWORD (then
-- libpq's ~/.pgpass). st.path, and every message, is the URL without it.
--
-- Rules this file keeps (as the SQLite driver):
--   * Prepared statements only: every SQL text is a constant, values are
--     always bound; each statement is prepared once per connection.
--   * The schema is versioned by the alipay_schema table and grows by
--     appending to store/postgres/migrations.lua; a database written by a
--     newer version is refused rather than misread.
--
-- What lua-dbi-postgresql (0.7) does, and what this file does about it:
--   * A connection starts inside a BEGIN held until commit: autocommit is
--     switched on (a ROLLBACK) and transactions are our own BEGIN/COMMIT.
--   * `?` placeholders become $1, $2, ... and every value is sent as text:
--     a Lua float prints as "1.7e+12" or "12.0", which no BIGINT column
--     takes, so numbers are bound as integers (floored: times and counts).
--   * INTEGER and BIGINT columns are read through atoi (32 bits): integer
--     columns are selected as CAST(... AS TEXT) and converted back here.
--   * Error messages carry DETAIL and CONTEXT lines that quote the row's
--     values ("Key (id)=(c1) already exists"): only the first line is kept,
--     and an "invalid input syntax" message loses the value it quotes.
--   * A statement that fails inside a transaction aborts it (PostgreSQL
--     ignores every later statement): the transaction then raises at its
--     end, naming the first failure, instead of committing (SQLite would
--     have kept the other statements' work). See transaction().
--
-- A lost connection (the server restarted, a network cut) is noticed
-- when an operation fails and the connection no longer answers a ping;
-- the next operation outside a transaction connects again (the session
-- settings and prepared statements are made anew), so a long-running
-- worker outlives a database restart without reopening its store. The
-- operation that failed is not repeated: a write whose answer was lost
-- may or may not have been applied, and only its caller can tell (kind
-- "store", detail.reason "connection"). While the server stays down each
-- operation fails the same way, without waiting.
--
-- Beyond the interface, st:exec(op, sql, ...) -> rows changed, st:query(op,
-- sql, ...) -> rows and st:schema_version() are this driver's own (specs
-- and migrations use them).
local DBI_ok, DBI = pcall(require, "DBI")
-- DBI loads a driver by name at connect time: ask for ours now, so that a
-- host with only lua-dbi-sqlite3 hears which package is missing, not a
-- connection failure.
if DBI_ok then
  local driver_ok, why = pcall(require, "dbd.postgresql")
  if not driver_ok then DBI_ok, DBI = false, why end
end
local records = require "alipay.store.records"
local errors = require "alipay.errors"
local url = require "alipay.store.url"

local function fail(kind, msg) return errors.fail(kind, msg) end

local postgres = {}

-- Each open store's password, to mask it in driver messages; kept off the
-- store object, so that dumping a store (a debugger, a log of a table)
-- never shows it. Weak keys: a store that is collected takes it along.
local passwords = setmetatable({}, { __mode = "k" })
-- Each open store's connection parameters (the URL's parts), to connect
-- again after a lost connection; kept off the object for the same reason.
local targets = setmetatable({}, { __mode = "k" })

local Store = {}
Store.__index = Store

-- The campaign methods (their own file, as in the SQLite driver).
for name, fn in pairs(require("alipay.store.postgres.campaigns").methods) do Store[name] = fn end

local MIGRATIONS = require "alipay.store.postgres.migrations"
postgres.migrations = MIGRATIONS
postgres.schema_version = #MIGRATIONS

-- Serialises migrations of one database across processes
-- (pg_advisory_xact_lock): any constant of our own, "alipay" in ASCII.
local MIGRATION_LOCK = 0x616c69706179

local SQL = {
  begin = "BEGIN",
  commit = "COMMIT",
  rollback = "ROLLBACK",
  savepoint = "SAVEPOINT nested",
  release = "RELEASE nested",
  rollback_to = "ROLLBACK TO nested",
  readonly = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
  application = "SET application_name = 'lua-alipay'",
  -- libpq prints a server's NOTICEs on stderr (the CLI's output): warnings only.
  quiet = "SET client_min_messages = warning",

  schema_exists = "SELECT CAST(to_regclass('alipay_schema') AS TEXT) AS t",
  schema_version = "SELECT CAST(coalesce(max(version), 0) AS TEXT) AS v FROM alipay_schema",
  schema_lock = "SELECT CAST(pg_advisory_xact_lock(?) AS TEXT) AS locked",
  schema_create = MIGRATIONS.record,
  schema_record = "INSERT INTO alipay_schema (version, name, applied_at) VALUES (?, ?, ?)",
  tables = [[
    SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name COLLATE "C"]],

  template_put = [[
    INSERT INTO templates (channel, id, name, keywords, kind, library_id, status, invalid_code,
                           invalid_at, imported_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (channel, id) DO UPDATE SET
      name = excluded.name, keywords = excluded.keywords, kind = excluded.kind,
      library_id = excluded.library_id, status = excluded.status,
      invalid_code = excluded.invalid_code, invalid_at = excluded.invalid_at,
      imported_at = excluded.imported_at]],
  -- COLLATE "C": the byte order SQLite sorts in, whatever the database's locale.
  template_get = [[
    SELECT channel, id, name, keywords, kind, library_id, status, invalid_code,
      CAST(invalid_at AS TEXT) AS invalid_at, CAST(imported_at AS TEXT) AS imported_at
    FROM templates WHERE channel = ? AND id = ?]],
  template_list_all = [[
    SELECT channel, id, name, keywords, kind, library_id, status, invalid_code,
      CAST(invalid_at AS TEXT) AS invalid_at, CAST(imported_at AS TEXT) AS imported_at
    FROM templates ORDER BY channel COLLATE "C", id COLLATE "C"]],
  template_list_channel = [[
    SELECT channel, id, name, keywords, kind, library_id, status, invalid_code,
      CAST(invalid_at AS TEXT) AS invalid_at, CAST(imported_at AS TEXT) AS imported_at
    FROM templates WHERE channel = ? ORDER BY id COLLATE "C"]],
  template_set_status = [[
    UPDATE templates SET status = ?, invalid_code = ?, invalid_at = ? WHERE channel = ? AND id = ?]],
  template_delete = "DELETE FROM templates WHERE channel = ? AND id = ?",

  binding_put = [[
    INSERT INTO bindings (userid, channel, alipay_id, id_type, updated_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (userid, channel) DO UPDATE SET
      alipay_id = excluded.alipay_id, id_type = excluded.id_type, updated_at = excluded.updated_at]],
  binding_delete_one = "DELETE FROM bindings WHERE userid = ? AND channel = ?",
  binding_delete_all = "DELETE FROM bindings WHERE userid = ?",
  binding_get = "SELECT alipay_id, id_type FROM bindings WHERE userid = ? AND channel = ?",
  bindings_of = "SELECT channel, alipay_id, id_type FROM bindings WHERE userid = ?",
  binding_count_all = "SELECT CAST(count(*) AS TEXT) AS n FROM bindings",
  binding_count_channel = "SELECT CAST(count(*) AS TEXT) AS n FROM bindings WHERE channel = ?",

  meta_get = "SELECT value FROM meta WHERE key = ?",
  meta_put = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  meta_delete = "DELETE FROM meta WHERE key = ?",
}
postgres.SQL = SQL

-- luadbi's and PostgreSQL's messages -> one line without values (header).
local function clean(msg, password)
  msg = tostring(msg)
  if password and #password >= 4 then msg = msg:gsub((password:gsub("%p", "%%%0")), "***") end
  msg = msg:gsub("^Error executing statement parameters: ", ""):gsub("^Error preparing statement handle: ", "")
    :gsub("^Failed to connect to database: ", "")
  msg = msg:match("^%s*([^\n]*)") or msg
  msg = msg:gsub("^ERROR:%s+", ""):gsub("^FATAL:%s+", ""):gsub("%s+$", "")
  if msg:find("^invalid input") then msg = msg:gsub(':%s*".*$', "") end
  return msg
end
postgres.clean = clean

-- Bound values: floats as integers (header); the rest as given.
local function bindable(n, ...)
  local args = { ... }
  for i = 1, n do
    local v = args[i]
    if math.type(v) == "float" and v == v and v ~= math.huge and v ~= -math.huge then
      args[i] = math.tointeger(math.floor(v)) or v
    end
  end
  return args
end

-- Whether the connection still answers (a failed statement may be the
-- server going away).
local function connected(db)
  local ok, alive = pcall(db.ping, db)
  return ok and alive == true
end

-- A failed operation -> nil, err, detail (kind "store"). Inside a
-- transaction the first failure is kept: PostgreSQL aborted it.
function Store:fail_op(op, msg)
  if self.readonly and msg:find("read-only transaction", 1, true) then
    msg = ("%s: %s was opened read-only"):format(msg, self.path)
  end
  if self.depth > 0 and not self.aborted then self.aborted = op .. ": " .. msg end
  if self.db and not connected(self.db) then
    self.lost = true
    return errors.fail("store", { reason = "connection", retryable = true,
      msg = ("%s: the connection to %s was lost (%s); the next operation connects again"):format(op, self.path,
        msg) })
  end
  return fail("store", op .. ": " .. msg)
end

-- Connects again after a lost connection: a fresh connection with this
-- store's session settings; statements are prepared again as they are used.
-- -> true | nil, err, detail
-- At most one attempt per RECONNECT_S: a refused connection costs the
-- server a login, and lua-dbi-postgresql never frees a connection that
-- failed to open (some 30 KB of libpq's each time).
local RECONNECT_S = 1

function Store:reconnect(op)
  local now = os.time()
  if self.tried_at and now - self.tried_at < RECONNECT_S then
    return errors.fail("store", { reason = "connection", retryable = true,
      msg = ("%s: %s is unreachable (tried %d s ago)"):format(op, self.path, now - self.tried_at) })
  end
  self.tried_at = now
  for sql, handle in pairs(self.statements) do
    pcall(handle.close, handle)
    self.statements[sql] = nil
  end
  pcall(self.db.close, self.db)
  local t = targets[self]
  local ok, db, err = pcall(DBI.Connect, "PostgreSQL", t.database, t.user, passwords[self], t.host, t.port)
  if not ok or not db then
    return errors.fail("store", { reason = "connection", retryable = true,
      msg = ("%s: %s is unreachable (%s)"):format(op, self.path, clean(ok and err or db, passwords[self])) })
  end
  db:autocommit(true)
  self.db, self.lost, self.tried_at = db, nil, nil
  for _, sql in ipairs { SQL.application, SQL.quiet, self.readonly and SQL.readonly or nil } do
    local _, serr, sdetail = self:exec(op, sql)
    if serr then return nil, serr, sdetail end
  end
  return true
end

function Store:statement(op, sql)
  if self.lost and self.db and self.depth == 0 then
    local ok, err, detail = self:reconnect(op)
    if not ok then return nil, err, detail end
  end
  local stmt = self.statements[sql]
  if stmt then return stmt end
  if not self.db then return fail("state", op .. ": the store is closed") end
  local ok, handle, err = pcall(self.db.prepare, self.db, sql)
  if not ok or not handle then return self:fail_op(op, clean(ok and err or handle, passwords[self])) end
  self.statements[sql] = handle
  return handle
end

local function run(self, op, sql, ...)
  local handle, err, detail = self:statement(op, sql)
  if not handle then return nil, err, detail end
  local n = select("#", ...)
  local ok, done, eerr = pcall(handle.execute, handle, table.unpack(bindable(n, ...), 1, n))
  if not ok or not done then return self:fail_op(op, clean(ok and eerr or done, passwords[self])) end
  return handle
end

-- Runs a statement that returns no rows -> number of rows changed | nil, err, detail
function Store:exec(op, sql, ...)
  local handle, err, detail = run(self, op, sql, ...)
  if not handle then return nil, err, detail end
  local ok, n = pcall(handle.affected, handle)
  if not ok then return self:fail_op(op, clean(n, passwords[self])) end
  return n
end

-- Runs a query -> list of rows keyed by column name | nil, err, detail
function Store:query(op, sql, ...)
  local handle, err, detail = run(self, op, sql, ...)
  if not handle then return nil, err, detail end
  local rows = {}
  local ok, ferr = pcall(function()
    for row in handle:rows(true) do rows[#rows + 1] = row end
  end)
  if not ok then return self:fail_op(op, clean(ferr, passwords[self])) end
  return rows
end

local function to_integer(text)
  if text == nil then return nil end
  return math.tointeger(tonumber(text))
end

-- ---- schema ----

-- The version recorded in alipay_schema -> n (0: no record) | nil, err, detail.
function Store:schema_version()
  local rows, err, detail = self:query("schema", SQL.schema_exists)
  if not rows then return nil, err, detail end
  if not rows[1] or rows[1].t == nil then return 0 end
  rows, err, detail = self:query("schema", SQL.schema_version)
  if not rows then return nil, err, detail end
  return to_integer(rows[1].v) or 0
end

-- Brings the schema to the latest version -> true | nil, err, detail. The
-- advisory lock makes a second process wait for the first one's
-- migration, then read the version it reached; every pending migration
-- and its record commit together or not at all (PostgreSQL's DDL is
-- transactional).
function Store:migrate(list)
  list = list or MIGRATIONS
  for i, m in ipairs(list) do
    assert(m.version == i, "store/postgres/migrations.lua: migration versions must be 1, 2, 3, ... in order")
  end
  local version, err, detail = self:schema_version()
  if not version then return nil, err, detail end
  if version > #list then
    return fail("store", ("the database schema is version %d, newer than this lua-alipay knows (%d): "
      .. "upgrade lua-alipay"):format(version, #list))
  end
  if version == #list then return true end
  local once = {} -- DDL runs once: its statements leave the cache afterwards
  local function step(name, sql, ...)
    once[#once + 1] = sql
    local _, rerr = self:exec("schema", sql, ...)
    if rerr then error(("migration %s: %s"):format(name, rerr), 0) end
  end
  local ok, merr = pcall(self.transaction, self, function()
    assert(self:query("schema", SQL.schema_lock, MIGRATION_LOCK))
    step("alipay_schema", SQL.schema_create)
    local current = assert(self:schema_version())
    for n = current + 1, #list do
      for _, ddl in ipairs(list[n].statements) do step(list[n].name, ddl) end
      step(list[n].name, SQL.schema_record, n, list[n].name, os.time())
    end
  end)
  for _, sql in ipairs(once) do
    local handle = self.statements[sql]
    if handle then handle:close() end
    self.statements[sql] = nil
  end
  if not ok then return fail("store", tostring(merr)) end
  return true
end

-- The tables migration 001 creates: every lua-alipay database has them.
local OURS = { "bindings", "meta", "templates" }

-- A database that holds another application's tables -> the problem | nil.
-- Tables without alipay_schema are someone else's (ours are made with
-- it, in one transaction); `adopt` lets us add ours beside them. An
-- alipay_schema without our tables is not ours either way.
function Store:foreign(adopt)
  local rows, err = self:query("schema", SQL.tables)
  if not rows then return err end
  if #rows == 0 then return nil end
  local have = {}
  for _, row in ipairs(rows) do have[row.name] = true end
  if not have.alipay_schema then
    if adopt then return nil end
    return ("the database holds another application's tables (%s, %d in all) and no lua-alipay schema: "
      .. "refusing to add ours (open it with adopt = true to share the database)"):format(rows[1].name, #rows)
  end
  local version = self:schema_version() or 0
  for _, name in ipairs(OURS) do
    if version > 0 and not have[name] then
      return ("the database's schema version is %d but it has no %s table: another application's database "
        .. "(tables: %s)"):format(version, name, rows[1].name)
    end
  end
end

-- ---- opening ----

-- postgres.open{path = url | url = url, readonly=?, adopt=?, migrations=?, getenv=?}
-- -> store | nil, err, detail. getenv (default os.getenv) reads PGPASSWORD.
function postgres.open(opts)
  local location = opts.url or opts.path
  if type(location) ~= "string" or location == "" then
    return fail("input", "store.open: the PostgreSQL store needs a URL: postgresql://USER@HOST:PORT/DATABASE")
  end
  local shown = url.redact(location)
  local parts, perr = url.parse(location)
  if not parts then return fail("input", ("store.open: %s: %s"):format(shown, perr)) end
  if not DBI_ok then
    return fail("store", "store.open: lua-dbi-postgresql is not installed (apt-get install lua-dbi-postgresql): "
      .. tostring(DBI))
  end
  local password = parts.password
  if not password then
    local env = (opts.getenv or os.getenv)("PGPASSWORD")
    if env and env ~= "" then password = env end
  end
  local ok, db, err = pcall(DBI.Connect, "PostgreSQL", parts.database, parts.user, password, parts.host,
    parts.port)
  if not ok or not db then
    -- lua-dbi-postgresql runs a BEGIN before it looks at the connection, so
    -- libpq's reason (refused, no such database, a wrong password) is
    -- replaced by "no connection to the server": name what to check.
    return fail("store", ("store.open: cannot connect to %s: %s (the server is down, or refused the login: check "
      .. "the host, port, user, database and password (the URL's or PGPASSWORD))")
      :format(shown, clean(ok and err or db, password)))
  end
  db:autocommit(true) -- ends the BEGIN the driver opened
  local self = setmetatable({
    db = db, path = shown, statements = {}, depth = 0, readonly = opts.readonly and true or nil,
  }, Store)
  passwords[self] = password
  targets[self] = { database = parts.database, user = parts.user, host = parts.host, port = parts.port }
  local function refuse(kind, msg)
    self:close()
    return fail(kind, ("store.open: %s: %s"):format(shown, msg))
  end
  local _, serr = self:exec("open", SQL.application)
  if not serr then _, serr = self:exec("open", SQL.quiet) end
  if serr then return refuse("store", serr) end
  if self.readonly then
    _, serr = self:exec("open", SQL.readonly)
    if serr then return refuse("store", serr) end
    local problem = self:foreign(false)
    local version, verr = self:schema_version()
    if not version then return refuse("store", verr) end
    if not problem and version ~= postgres.schema_version then
      problem = ("the database schema is version %d, this lua-alipay's is %d: a read-only open cannot %s")
        :format(version, postgres.schema_version, version > postgres.schema_version
          and "read a newer database (upgrade lua-alipay)" or "migrate it (run a writing command once)")
    end
    if problem then return refuse("state", problem) end
    return self
  end
  local foreign = self:foreign(opts.adopt)
  if foreign then return refuse("state", foreign) end
  local mok, merr, mdetail = self:migrate(opts.migrations)
  if not mok then return refuse(mdetail and mdetail.kind or "store", merr) end
  return self
end

-- ---- transactions and lifetime ----

local function finish(ok, ...)
  return ok, select("#", ...), { ... }
end

-- As the SQLite driver's, with one difference: a statement that failed
-- inside (PostgreSQL aborted the transaction, or the savepoint's part of
-- it) makes the end raise that failure after rolling back, even when fn
-- returned, because nothing after the failure was done.
function Store:transaction(fn)
  local outer = self.depth == 0
  local _, berr = self:exec("transaction", outer and SQL.begin or SQL.savepoint)
  if berr then error(berr, 0) end
  self.depth = self.depth + 1
  local before = self.aborted
  self.aborted = nil
  local ok, n, results = finish(pcall(fn, self))
  local aborted = self.aborted
  self.depth = self.depth - 1
  if ok and aborted then
    ok, results[1] = false, ("transaction: rolled back, a statement inside failed: %s"):format(aborted)
  end
  if ok then
    local _, cerr = self:exec("transaction", outer and SQL.commit or SQL.release)
    if not cerr then
      self.aborted = before
      return table.unpack(results, 1, n)
    end
    results[1] = cerr
  end
  if outer then
    self:exec("transaction", SQL.rollback)
  else
    self:exec("transaction", SQL.rollback_to)
    self:exec("transaction", SQL.release)
  end
  self.aborted = before
  error(results[1], 0)
end

function Store:close()
  if not self.db then return true end
  for sql, handle in pairs(self.statements) do
    handle:close()
    self.statements[sql] = nil
  end
  self.db:close()
  self.db = nil
  passwords[self] = nil
  return true
end

-- ---- templates, bindings, meta: the same for every backend ----

records.install(Store, SQL)

return postgres
