-- The SQLite driver of alipay.store (the interface is documented in
-- store/init.lua), over Debian's lua-dbi-sqlite3 (`require "DBI"`). Lua 5.4.
--
--   local st, err = require("alipay.store.sqlite").open{ path = "state.db", busy_timeout_ms = 5000 }
--
-- Rules this file keeps:
--   * Prepared statements only: every SQL text is a constant of this file,
--     values are always bound. Each statement is prepared once per store and
--     cached (st.statements[sql]); the only formatted SQL is PRAGMAs, which
--     cannot take parameters, and they only ever get integers checked here.
--   * WAL journal, synchronous=NORMAL, and a busy timeout, so that several
--     processes can share one file: readers never block the writer, and a
--     writer waits up to busy_timeout_ms for another writer.
--   * The schema is versioned with PRAGMA user_version and grows by appending
--     to store/sqlite/migrations.lua; a file written by a newer version is
--     refused rather than misread. No table is created anywhere else.
--
-- What lua-dbi-sqlite3 (0.7) does, and what this file does about it:
--   * Connections start with autocommit OFF and open a transaction at the
--     first execute that is held until commit: we switch autocommit on and
--     run our own BEGIN IMMEDIATE / COMMIT, so no read ever holds a lock.
--   * A statement is only reset at its next execute, and that reset reports
--     the previous failure again (a UNIQUE violation would make the next,
--     valid execute fail too), while a statement left mid-result blocks
--     SAVEPOINT and COMMIT ("SQL statements in progress"). After every use we
--     therefore reset the statement by executing it with one parameter too
--     many: the driver resets and clears it, then refuses before stepping.
--   * Numbers are bound as doubles (exact for integers below 2^53: times and
--     counts), but INTEGER columns are read as 32-bit C ints. Integer columns
--     are therefore selected as CAST(... AS TEXT) and converted back here.
--   * Errors: prepare and execute return nil/false, err; fetching raises.
--     Every call goes through pcall, and messages are prefixed with the
--     operation; SQLite's messages name tables and constraints, never values.
--   * close() on a connection with live statements leaks it (sqlite3_close,
--     not _v2): statements are closed first.
--
-- Beyond the interface, st:exec(op, sql, ...) -> rows changed, st:query(op,
-- sql, ...) -> rows, st:user_version() and st.journal_mode are this driver's
-- own (specs and later migrations use them); callers outside alipay.store
-- should keep to the interface so that another driver can stand in.
local DBI_ok, DBI = pcall(require, "DBI")
local records = require "alipay.store.records"
local errors = require "alipay.errors"

-- Failures follow docs/errors.md: nil, one-line string, detail. A database
-- failure is kind "store", a closed store "state", bad arguments "input".
local function fail(kind, msg) return errors.fail(kind, msg) end
local fs = require "alipay.util.fs"

local sqlite = {}

local Store = {}
Store.__index = Store

-- The campaign methods live in their own file (one job each); every
-- SQLite store has them, as the interface requires.
for name, fn in pairs(require("alipay.store.sqlite.campaigns").methods) do Store[name] = fn end

-- ---- schema ----

-- The numbered migrations (store/sqlite/migrations.lua); the last one's
-- number is the version a file opened here ends at.
local MIGRATIONS = require "alipay.store.sqlite.migrations"
sqlite.migrations = MIGRATIONS
sqlite.schema_version = #MIGRATIONS

-- ---- statements ----

local SQL = {
  begin = "BEGIN IMMEDIATE",
  commit = "COMMIT",
  rollback = "ROLLBACK",
  savepoint = "SAVEPOINT nested",
  release = "RELEASE nested",
  rollback_to = "ROLLBACK TO nested",
  user_version = "PRAGMA user_version",

  template_put = [[
    INSERT INTO templates (channel, id, name, keywords, kind, library_id, status, invalid_code,
                           invalid_at, imported_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (channel, id) DO UPDATE SET
      name = excluded.name, keywords = excluded.keywords, kind = excluded.kind,
      library_id = excluded.library_id, status = excluded.status,
      invalid_code = excluded.invalid_code, invalid_at = excluded.invalid_at,
      imported_at = excluded.imported_at]],
  template_get = [[
    SELECT channel, id, name, keywords, kind, library_id, status, invalid_code,
           CAST(invalid_at AS TEXT) AS invalid_at, CAST(imported_at AS TEXT) AS imported_at
    FROM templates WHERE channel = ? AND id = ?]],
  template_list_all = [[
    SELECT channel, id, name, keywords, kind, library_id, status, invalid_code,
           CAST(invalid_at AS TEXT) AS invalid_at, CAST(imported_at AS TEXT) AS imported_at
    FROM templates ORDER BY channel, id]],
  template_list_channel = [[
    SELECT channel, id, name, keywords, kind, library_id, status, invalid_code,
           CAST(invalid_at AS TEXT) AS invalid_at, CAST(imported_at AS TEXT) AS imported_at
    FROM templates WHERE channel = ? ORDER BY channel, id]],
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

-- luadbi prefixes its messages; the operation name is the better prefix.
local function clean(msg)
  msg = tostring(msg)
  msg = msg:gsub("^Execute failed ", ""):gsub("^Error preparing statement handle: ", "")
  return msg
end

-- Enough arguments to make any of our statements refuse (see the header).
local TOO_MANY = {}
for i = 1, 32 do TOO_MANY[i] = false end

local function reset(stmt)
  pcall(stmt.handle.execute, stmt.handle, table.unpack(TOO_MANY, 1, stmt.params + 1))
end

-- A failed operation -> nil, err, detail (kind "store"). On a store opened
-- read-only, a write says so and names the file.
function Store:fail_op(op, msg)
  if self.readonly and msg:find("readonly", 1, true) then
    msg = ("%s: %s was opened read-only"):format(msg, self.path)
  end
  return fail("store", op .. ": " .. msg)
end

-- The cached prepared statement for a constant SQL text.
function Store:statement(op, sql)
  local stmt = self.statements[sql]
  if stmt then return stmt end
  if not self.db then return fail("state", op .. ": the store is closed") end
  local ok, handle, err = pcall(self.db.prepare, self.db, sql)
  if not ok or not handle then return self:fail_op(op, clean(err or handle)) end
  local _, params = sql:gsub("%?", "")
  stmt = { handle = handle, params = params }
  self.statements[sql] = stmt
  return stmt
end

-- Runs a statement that returns no rows -> number of rows changed | nil, err, detail
function Store:exec(op, sql, ...)
  local stmt, err, detail = self:statement(op, sql)
  if not stmt then return nil, err, detail end
  local ok, done, eerr = pcall(stmt.handle.execute, stmt.handle, ...)
  if not ok or not done then
    reset(stmt)
    return self:fail_op(op, clean(ok and eerr or done))
  end
  local changed = stmt.handle:affected()
  reset(stmt)
  return changed
end

-- Runs a query -> list of rows keyed by column name | nil, err, detail
function Store:query(op, sql, ...)
  local stmt, err, detail = self:statement(op, sql)
  if not stmt then return nil, err, detail end
  local handle = stmt.handle
  local ok, done, eerr = pcall(handle.execute, handle, ...)
  if not ok or not done then
    reset(stmt)
    return self:fail_op(op, clean(ok and eerr or done))
  end
  local rows = {}
  local fetched, ferr = pcall(function()
    for row in handle:rows(true) do rows[#rows + 1] = row end
  end)
  reset(stmt)
  if not fetched then return fail("store", op .. ": " .. clean(ferr)) end
  return rows
end

local function to_integer(text)
  if text == nil then return nil end
  return math.tointeger(tonumber(text))
end

-- ---- opening and schema ----

-- Runs a PRAGMA on the bare connection (before the store exists) -> its
-- first value | nil, err. The statement is closed at once.
local function pragma(db, sql)
  local handle, err = db:prepare(sql)
  if not handle then return nil, clean(err) end
  local ok, done, eerr = pcall(handle.execute, handle)
  local row
  if ok and done then
    ok, row = pcall(handle.fetch, handle)
    if not ok then eerr = row end
  end
  handle:close()
  if not ok or not done then return nil, clean(eerr or done) end
  return row and row[1]
end

local function directory_of(path)
  return path:match("^(.*)/[^/]*$")
end


function Store:user_version()
  local rows, err, detail = self:query("schema", SQL.user_version)
  if not rows then return nil, err, detail end
  return to_integer(rows[1] and rows[1].user_version) or 0
end

-- Brings the schema to the latest version -> true | nil, err, detail. Runs
-- inside BEGIN IMMEDIATE and reads the version again there, so two
-- processes opening a new file at once migrate it exactly once; every
-- pending migration and the new user_version commit together or not at all.
-- `list` (default: migrations.lua) is a parameter so that a spec can prove
-- the rollback with a migration that fails.
function Store:migrate(list)
  list = list or MIGRATIONS
  for i, m in ipairs(list) do
    assert(m.version == i, "store/sqlite/migrations.lua: migration versions must be 1, 2, 3, ... in order")
  end
  local version, err, detail = self:user_version()
  if not version then return nil, err, detail end
  if version > #list then
    return fail("store", ("the database schema is version %d, newer than this lua-alipay knows (%d): "
      .. "upgrade lua-alipay"):format(version, #list))
  end
  if version == #list then return true end
  local once = {} -- DDL runs once: its statements leave the cache afterwards
  local function run(name, sql)
    once[#once + 1] = sql
    local _, rerr = self:exec("schema", sql)
    if rerr then error(("migration %s: %s"):format(name, rerr), 0) end
  end
  local ok, merr = pcall(self.transaction, self, function()
    local current = assert(self:user_version())
    for n = current + 1, #list do
      for _, ddl in ipairs(list[n].statements) do run(list[n].name, ddl) end
      -- PRAGMAs take no parameters; n is our own integer.
      run(list[n].name, ("PRAGMA user_version = %d"):format(n))
    end
  end)
  for _, sql in ipairs(once) do
    local stmt = self.statements[sql]
    if stmt then stmt.handle:close() end
    self.statements[sql] = nil
  end
  if not ok then return fail("store", tostring(merr)) end
  return true
end

-- ---- read-only and foreign files ----

-- A path as an SQLite URI (file:...): the characters a URI gives a meaning
-- to are escaped, so that any path names the same file.
local function uri_of(path)
  return "file:" .. path:gsub("[%%?#]", function(c) return ("%%%02X"):format(c:byte()) end)
end

-- A read-only connection -> db | nil, err. mode=ro first: it sees other
-- processes' writes (a campaign running). A WAL file whose -shm cannot be
-- opened for writing (a read-only directory, a file we may not write, and
-- no writer has it open: "attempt to write a readonly database"; a
-- read-only mount: "unable to open database file") cannot be read that
-- way; then immutable=1 reads the file as it is, without locks: right for
-- a file no one can be writing, and the only way to read it. The first
-- error is the one reported.
local function connect_readonly(path)
  local first
  for _, query in ipairs { "?mode=ro", "?mode=ro&immutable=1" } do
    local ok, db, err = pcall(DBI.Connect, "SQLite3", uri_of(path) .. query)
    local perr
    if ok and db then
      db:autocommit(true)
      _, perr = pragma(db, "SELECT count(*) FROM sqlite_master")
      if not perr then return db end
      db:close()
    else
      perr = clean(ok and err or db)
    end
    first = first or perr
  end
  return nil, first
end

local TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name"
-- The tables migration 001 creates: every lua-alipay file has them.
local OURS = { "bindings", "meta", "templates" }

-- A file that holds another application's tables -> the problem | nil.
-- Version 0 with tables is someone else's file (ours start empty and get
-- version 1 with our tables at once); a version without our tables is
-- another program's user_version. `adopt` lets us add our tables to the
-- first kind, never to the second (our migrations would be skipped).
function Store:foreign(adopt)
  local version, err = self:user_version()
  if not version then return err end
  local rows, qerr = self:query("schema", TABLES)
  if not rows then return qerr end
  if #rows == 0 then return nil end
  local have = {}
  for _, row in ipairs(rows) do have[row.name] = true end
  if version == 0 then
    if adopt then return nil end
    return ("the file holds another application's tables (%s, %d in all) and no lua-alipay schema: "
      .. "refusing to add ours (open it with adopt = true to share the file)"):format(rows[1].name, #rows)
  end
  for _, name in ipairs(OURS) do
    if not have[name] then
      return ("the file's schema version is %d but it has no %s table: another application's file (tables: %s)")
        :format(version, name, rows[1].name)
    end
  end
end

-- sqlite.open{path=, busy_timeout_ms=?, migrations=?, readonly=?, adopt=?} -> store | nil, err, detail.
-- migrations: the list to bring the file to (default migrations.lua), for
-- the spec that proves a failing migration leaves the file as it was.
-- readonly: open an existing file for reading only (store/init.lua).
-- adopt: add our tables to a file that holds another application's.
function sqlite.open(opts)
  local path = opts.path
  if type(path) ~= "string" or path == "" then
    return fail("input", "store.open: path must be a file path (or \":memory:\")")
  end
  if not DBI_ok then
    return fail("store", "store.open: lua-dbi-sqlite3 is not installed (apt-get install lua-dbi-sqlite3): "
      .. tostring(DBI))
  end
  local busy = opts.busy_timeout_ms or 5000
  if type(busy) ~= "number" or busy ~= math.floor(busy) or busy < 0 then
    return fail("input", "store.open: busy_timeout_ms must be a non-negative integer")
  end
  local dir = directory_of(path)
  if dir and path ~= ":memory:" then
    -- SQLite's own message for a missing directory is "unable to open
    -- database file": say which directory, and what is wrong with it. When
    -- it cannot be told (no permission to look), SQLite has the last word.
    local is_dir, why = fs.is_directory(dir == "" and "/" or dir)
    if is_dir == false then
      return fail("io", ("store.open: cannot open %s: the directory %s %s"):format(path, dir == "" and "/" or dir, why))
    end
  end
  if opts.readonly then return sqlite.open_readonly(path, busy) end
  -- SQLite opens a file it may not write read-only without a word, and the
  -- first write fails far from here: find out now, without writing (r+
  -- neither creates nor truncates).
  if path ~= ":memory:" and fs.exists(path) then
    local fh, werr = io.open(path, "r+b")
    if not fh then
      werr = tostring(werr)
      if werr:sub(1, #path + 2) == path .. ": " then werr = werr:sub(#path + 3) end
      return fail("store", ("store.open: %s: cannot write the file (%s): this command writes to the store"
        .. " (campaign status, list, export and template list only read it)"):format(path, werr))
    end
    fh:close()
  end
  local ok, db, err = pcall(DBI.Connect, "SQLite3", path)
  if not ok or not db then
    return fail("store", ("store.open: cannot open %s: %s"):format(path, clean(ok and err or db)))
  end
  db:autocommit(true) -- returns false when there was nothing to roll back; that is fine
  local function fail_open(msg)
    db:close()
    if msg:find("readonly", 1, true) then
      msg = msg .. ": the file or its directory is read-only; this command writes to the store"
        .. " (campaign status, list, export and template list only read it)"
    end
    return fail("store", ("store.open: %s: %s"):format(path, msg))
  end
  -- The busy timeout first: switching to WAL may itself wait for a lock.
  local _, perr = pragma(db, ("PRAGMA busy_timeout = %d"):format(busy))
  if perr then return fail_open(perr) end
  local mode
  mode, perr = pragma(db, "PRAGMA journal_mode = WAL")
  if perr then return fail_open(perr) end
  _, perr = pragma(db, "PRAGMA synchronous = NORMAL")
  if perr then return fail_open(perr) end

  local self = setmetatable({
    db = db, path = path, journal_mode = mode, statements = {}, depth = 0,
  }, Store)
  local foreign = self:foreign(opts.adopt)
  if foreign then
    self:close()
    return fail("state", ("store.open: %s: %s"):format(path, foreign))
  end
  local mok, merr, mdetail = self:migrate(opts.migrations)
  if not mok then
    self:close()
    return fail(mdetail and mdetail.kind or "store", ("store.open: %s: %s"):format(path, merr))
  end
  return self
end

-- A file opened for reading only: never created, never migrated (that
-- writes), so its schema must be this version's already.
function sqlite.open_readonly(path, busy)
  if path == ":memory:" then return fail("input", "store.open: a read-only store needs a file, not :memory:") end
  if not fs.exists(path) then
    return fail("io", ("store.open: %s does not exist (a store opened read-only is never created)"):format(path))
  end
  local db, err = connect_readonly(path)
  if not db then return fail("store", ("store.open: cannot open %s read-only: %s"):format(path, err)) end
  local _, perr = pragma(db, ("PRAGMA busy_timeout = %d"):format(busy))
  local mode
  if not perr then mode, perr = pragma(db, "PRAGMA journal_mode") end
  if perr then
    db:close()
    return fail("store", ("store.open: %s: %s"):format(path, perr))
  end
  local self = setmetatable({
    db = db, path = path, journal_mode = mode, statements = {}, depth = 0, readonly = true,
  }, Store)
  local problem = self:foreign(false)
  local version = not problem and self:user_version()
  if not problem and version ~= sqlite.schema_version then
    problem = ("the database schema is version %d, this lua-alipay's is %d: a read-only open cannot %s")
      :format(version or 0, sqlite.schema_version, (version or 0) > sqlite.schema_version
        and "read a newer file (upgrade lua-alipay)" or "migrate it (run a writing command once)")
  end
  if problem then
    self:close()
    return fail("state", ("store.open: %s: %s"):format(path, problem))
  end
  return self
end

-- ---- transactions and lifetime ----

local function finish(ok, ...)
  return ok, select("#", ...), { ... }
end

function Store:transaction(fn)
  local outer = self.depth == 0
  local begin_sql = outer and SQL.begin or SQL.savepoint
  local _, berr = self:exec("transaction", begin_sql)
  if berr then error(berr, 0) end
  self.depth = self.depth + 1
  local ok, n, results = finish(pcall(fn, self))
  self.depth = self.depth - 1
  if ok then
    local _, cerr = self:exec("transaction", outer and SQL.commit or SQL.release)
    if not cerr then return table.unpack(results, 1, n) end
    results[1] = cerr
  end
  if outer then
    self:exec("transaction", SQL.rollback)
  else
    self:exec("transaction", SQL.rollback_to)
    self:exec("transaction", SQL.release)
  end
  error(results[1], 0)
end

function Store:close()
  if not self.db then return true end
  for sql, stmt in pairs(self.statements) do
    stmt.handle:close()
    self.statements[sql] = nil
  end
  self.db:close()
  self.db = nil
  return true
end

-- ---- templates, bindings, meta: the same for every backend ----

records.install(Store, SQL)

return sqlite
