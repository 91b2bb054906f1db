-- A real PostgreSQL 15 server for the specs: initdb and pg_ctl in a
-- temporary directory, listening on 127.0.0.1 only (a free port, no Unix
-- socket in /var/run), with a password, so that the specs also prove the
-- password reaches libpq and never an error. As root the server runs as
-- the postgres system user (PostgreSQL refuses to run as root).
--
--   local pg = require "support.postgres"
--   local url, why = pg.url()              -- a new, empty database: postgresql://alipay:PW@127.0.0.1:P/tN
--   local url = pg.url(false)              -- the same without the password (PGPASSWORD=pg.PASSWORD)
--   local st, why = pg.fresh_store()       -- the same, opened as a store
--   pg.pause(); pg.resume()                -- the server stops, then starts again (same port, same data)
--   pg.stop()                              -- the server is stopped and its directory removed
--
-- One server per busted process, started at the first use. It is stopped
-- by pg.stop() (the specs' teardown) and, failing that, when the Lua state
-- closes (busted exits through os.exit(code, true)); a server left by a
-- process that was killed is stopped by the next run (its directory names
-- the pid that made it).
local M = {}

M.BIN = os.getenv("ALIPAY_PG_BIN") or "/usr/lib/postgresql/15/bin"
M.USER = "alipay"
-- Not a secret: a throwaway server on 127.0.0.1 that lives for one run.
M.PASSWORD = "spec-pw-4f2b9c"
local PREFIX = "/tmp/alipay-pg."

local server -- {dir=, port=}
local databases = 0

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(cmd)
  local ok, _, code = os.execute(cmd)
  return ok == true, code
end

local function read(path)
  local fh = io.open(path, "rb")
  if not fh then return nil end
  local text = fh:read("a")
  fh:close()
  return text
end

local IS_ROOT = (function()
  local p = io.popen("id -u")
  local uid = p and p:read("l")
  if p then p:close() end
  return uid == "0"
end)()

-- A command run as the server's owner.
local function as_owner(cmd)
  if IS_ROOT then return "runuser -u postgres -- " .. cmd end
  return cmd
end

local function pg_ctl(dir, args)
  return run(as_owner(("%s/pg_ctl -D %s %s >> %s 2>&1"):format(M.BIN, sh_quote(dir .. "/data"), args,
    sh_quote(dir .. "/ctl.log"))))
end

local function pid_alive(pid)
  return run(("kill -0 %d 2>/dev/null"):format(pid))
end

-- Servers of earlier runs whose process is gone (killed before its
-- teardown): stopped and removed.
local function reap_stale()
  local p = io.popen("ls -d " .. PREFIX .. "* 2>/dev/null")
  if not p then return end
  for dir in p:lines() do
    local owner = tonumber(read(dir .. "/owner.pid") or "")
    if owner and not pid_alive(owner) then
      pg_ctl(dir, "-m immediate stop")
      run("rm -rf " .. sh_quote(dir))
    end
  end
  p:close()
end

-- A port to try: random in 20000-59999 (seeded per process), so that
-- parallel runs rarely meet; a port in use fails the start, which tries
-- another (nothing else is needed to find one: no luasocket).
local function some_port(seed)
  return 20000 + (seed * 7919 + os.time() * 104729) % 40000
end

local function my_pid()
  local text = read("/proc/self/stat")
  -- /proc/self is the reading process: the Lua interpreter itself.
  return text and tonumber(text:match("^(%d+)"))
end

-- Starts the server once -> true | nil, why.
function M.start()
  if server then return true end
  if not run("test -x " .. sh_quote(M.BIN .. "/initdb")) then
    return nil, M.BIN .. "/initdb is missing: apt-get install postgresql-15"
  end
  reap_stale()
  local p = io.popen("mktemp -d " .. PREFIX .. "XXXXXX")
  local dir = p:read("l")
  p:close()
  local fh = io.open(dir .. "/owner.pid", "w")
  fh:write(tostring(my_pid() or 0), "\n")
  fh:close()
  fh = io.open(dir .. "/pw", "w")
  fh:write(M.PASSWORD, "\n")
  fh:close()
  if IS_ROOT then run("chown -R postgres:postgres " .. sh_quote(dir)) end
  -- scram for TCP (the specs connect there, with the password); trust on
  -- the socket in dir, which only the owner can reach.
  local ok = run(as_owner(("%s/initdb -D %s -U %s --pwfile=%s --auth-host=scram-sha-256 --auth-local=trust "
    .. "-E UTF8 --no-locale --no-sync >> %s 2>&1"):format(M.BIN, sh_quote(dir .. "/data"), M.USER,
    sh_quote(dir .. "/pw"), sh_quote(dir .. "/ctl.log"))))
  if not ok then
    local log = read(dir .. "/ctl.log") or ""
    run("rm -rf " .. sh_quote(dir))
    return nil, "initdb failed: " .. log
  end
  -- fsync off and a small footprint: a throwaway server on a shared machine.
  for attempt = 1, 5 do
    local port = some_port((my_pid() or 0) + attempt * 4099)
    local opts = ("-h 127.0.0.1 -p %d -k %s -F -c shared_buffers=16MB -c max_connections=40"
      .. " -c log_min_messages=warning -c deadlock_timeout=200ms"):format(port, dir)
    if pg_ctl(dir, ("-w -t 30 -l %s -o %s start"):format(sh_quote(dir .. "/server.log"), sh_quote(opts))) then
      server = { dir = dir, port = port, opts = opts }
      return true
    end
    pg_ctl(dir, "-m immediate stop")
  end
  local log = (read(dir .. "/server.log") or "") .. (read(dir .. "/ctl.log") or "")
  run("rm -rf " .. sh_quote(dir))
  return nil, "the PostgreSQL server did not start: " .. log
end

-- The database goes away and comes back (a restart, a failover): the
-- server stops (sessions are cut) and starts again on the same port and
-- data. -> true | nil, why
function M.pause()
  if not server then return nil, "no server" end
  if not pg_ctl(server.dir, "-w -t 30 -m fast stop") then return nil, "pg_ctl stop failed" end
  return true
end

function M.resume()
  if not server then return nil, "no server" end
  if not pg_ctl(server.dir, ("-w -t 30 -l %s -o %s start"):format(sh_quote(server.dir .. "/server.log"),
    sh_quote(server.opts))) then
    return nil, "pg_ctl start failed: " .. (read(server.dir .. "/server.log") or "")
  end
  return true
end

function M.port() return server and server.port end
function M.dir() return server and server.dir end

-- The URL of database name, with the password in it unless with_password
-- is false (then the caller sets PGPASSWORD, or proves it is needed).
function M.url_of(name, with_password)
  local auth = M.USER .. (with_password == false and "" or (":" .. M.PASSWORD))
  return ("postgresql://%s@127.0.0.1:%d/%s"):format(auth, server.port, name)
end

-- A superuser connection to the maintenance database -> DBI connection.
function M.admin()
  local DBI = require "DBI"
  local db = assert(DBI.Connect("PostgreSQL", "postgres", M.USER, M.PASSWORD, "127.0.0.1", server.port))
  db:autocommit(true)
  return db
end

-- Runs one statement on the maintenance database -> true | nil, err.
function M.admin_exec(sql)
  local db = M.admin()
  local stmt, err = db:prepare(sql)
  local ok
  if stmt then ok, err = stmt:execute() end
  if stmt then stmt:close() end
  db:close()
  if not ok then return nil, err end
  return true
end

-- A new, empty database -> its name | nil, why. template0 with FILE_COPY:
-- the quickest copy for a tiny database with fsync off.
function M.database()
  local ok, why = M.start()
  if not ok then return nil, why end
  databases = databases + 1
  local name = ("t%d"):format(databases)
  ok, why = M.admin_exec(("CREATE DATABASE %s TEMPLATE template0 STRATEGY FILE_COPY"):format(name))
  if not ok then return nil, "CREATE DATABASE failed: " .. tostring(why) end
  return name
end

-- The URL of a new, empty database -> url | nil, why.
function M.url(with_password)
  local name, why = M.database()
  if not name then return nil, why end
  return M.url_of(name, with_password), name
end

-- A store on a new, empty database -> store | nil, why.
function M.fresh_store(opts)
  local url, why = M.url()
  if not url then return nil, why end
  local o = { path = url }
  for k, v in pairs(opts or {}) do o[k] = v end
  return require("alipay.store").open(o)
end

-- Stops the server and removes its directory; idempotent.
function M.stop()
  if not server then return end
  local dir = server.dir
  server = nil
  -- fast: sessions still open are ended without the WARNING an immediate
  -- shutdown sends them (libpq prints it on the spec's stderr).
  if not pg_ctl(dir, "-m fast -w -t 10 stop") then pg_ctl(dir, "-m immediate stop") end
  run("rm -rf " .. sh_quote(dir))
end

-- The last resort: the Lua state closing (busted's os.exit(code, true)).
M.guard = setmetatable({}, { __gc = function() M.stop() end })

return M
