-- Runs Debian's nginx on loopback for tests and the sandbox gateway.
--
--   local runner = require "alipay.sandbox.nginx"
--   local srv = assert(runner.start{
--     tls = true, lua = true,
--     conf = function(port, tls_port, prefix, tls)   -- returns the http block's contents
--       return ("server { listen 127.0.0.1:%d; ... }"):format(port)
--     end,
--   })
--   srv.port, srv.tls_port, srv.prefix, srv.pid
--   srv.ca_file, srv.cert_file, srv.key_file   -- with tls: the same as tls.* above
--   srv:error_log()                            -- its text (kept after stop)
--   srv:stop()                                 -- idempotent; runner.stop_all() stops them all
--   runner.make_ca(dir, name), runner.make_server_cert(dir, ca, name)
--
-- Every file nginx touches lives in a fresh temporary prefix (config, pid,
-- error and access logs, temp paths, TLS material), removed by stop(): nothing
-- is written to /etc, /var/log or /var/lib. Plain Lua 5.4 and LuaJIT: only
-- io.popen and os.execute, no C modules.
--
-- nginx runs with `daemon on`: its launcher exits once every listening
-- socket is bound, which is the readiness signal plain Lua can wait for
-- (it cannot fork). The master is then re-parented; stop() signals it by pid.
local shell = require "alipay.util.shell"
local fs = require "alipay.util.fs"
local quote, execute, capture, sleep = shell.quote, shell.execute, shell.capture, shell.sleep
local read_file, write_file, last_lines = fs.read, fs.write, fs.last_lines

local M = {}

M.nginx = "/usr/sbin/nginx"
-- Debian's libnginx-mod-http-ndk and libnginx-mod-http-lua; the lua module
-- needs the devel kit loaded first.
M.lua_modules = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}

local PORT_MIN, PORT_SPAN = 20000, 41000 -- 20000-60999
local MAX_ATTEMPTS = 20
local START_WAIT_S = 5 -- the pid file appears right after nginx forks
local STOP_WAIT_S = 5

-- ---- shell and files ----

-- Random bytes from the kernel: LuaJIT's math.random is unseeded, and two
-- test processes started together must not walk the same port sequence.
local function random_bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(n)
  f:close()
  return b
end

local function random_port()
  local b = random_bytes(3)
  local n = (b:byte(1) * 256 + b:byte(2)) * 256 + b:byte(3)
  return PORT_MIN + n % PORT_SPAN
end

local function random_hex(n)
  return (random_bytes(n):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function is_root()
  local _, out = capture("id -u")
  return out:match("^%s*0%s*$") ~= nil
end

-- ---- TLS material, made with the openssl CLI ----

local EC_KEY = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

local function openssl(args)
  local ok, out = capture("openssl " .. args)
  if not ok then return nil, "openssl failed: " .. last_lines(out, 5) end
  return true
end

-- A self-signed CA in dir: returns {cert=, key=} (PEM paths) or nil, err.
function M.make_ca(dir, name)
  name = name or "ca"
  local ca = { cert = dir .. "/" .. name .. ".pem", key = dir .. "/" .. name .. ".key" }
  local ok, err = openssl(("req -x509 %s -keyout %s -out %s -days 7 -subj %s"
    .. " -addext 'basicConstraints=critical,CA:TRUE'"
    .. " -addext 'keyUsage=critical,keyCertSign,cRLSign'")
    :format(EC_KEY, quote(ca.key), quote(ca.cert), quote("/CN=lua-alipay test CA " .. name)))
  if not ok then return nil, err end
  return ca
end

-- A server certificate for 127.0.0.1 and localhost signed by ca: returns
-- {cert=, key=} or nil, err.
function M.make_server_cert(dir, ca, name)
  name = name or "server"
  local base = dir .. "/" .. name
  local cert = { cert = base .. ".pem", key = base .. ".key" }
  local ext = base .. ".ext"
  write_file(ext, table.concat({
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid,issuer",
  }, "\n") .. "\n")
  local ok, err = openssl(("req -new %s -keyout %s -out %s -subj /CN=localhost")
    :format(EC_KEY, quote(cert.key), quote(base .. ".csr")))
  if ok then
    ok, err = openssl(("x509 -req -in %s -CA %s -CAkey %s -set_serial 0x%s -days 7 -extfile %s -out %s")
      :format(quote(base .. ".csr"), quote(ca.cert), quote(ca.key), random_hex(8), quote(ext),
        quote(cert.cert)))
  end
  if not ok then return nil, err end
  return cert
end

local function make_tls(prefix)
  local dir = prefix .. "/tls"
  execute("mkdir -p " .. quote(dir))
  local ca, err = M.make_ca(dir, "ca")
  if not ca then return nil, err end
  local server
  server, err = M.make_server_cert(dir, ca, "server")
  if not server then return nil, err end
  return { ca_file = ca.cert, cert_file = server.cert, key_file = server.key }
end

-- ---- configuration ----

local function main_conf(prefix, opts, http_body)
  local lines = {}
  if opts.lua then
    for _, so in ipairs(M.lua_modules) do lines[#lines + 1] = "load_module " .. so .. ";" end
  end
  local function add(fmt, ...) lines[#lines + 1] = fmt:format(...) end
  -- one worker unless the caller asks for more ("auto": one per core)
  add("worker_processes %s;", tostring(opts.workers or 1))
  add("daemon on;")
  add("master_process on;")
  add("pid %s/nginx.pid;", prefix)
  add("error_log %s/error.log %s;", prefix, opts.log_level or "info")
  -- As root, workers would switch to nobody and lose access to the 0700
  -- prefix (temp files, lua files); this server only ever serves loopback.
  if is_root() then add("user root;") end
  add("events { worker_connections 1024; }")
  add("http {")
  add("  access_log %s/access.log;", prefix)
  for _, kind in ipairs { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
    add("  %s_temp_path %s/tmp/%s;", kind, prefix, kind)
  end
  add("  default_type application/octet-stream;")
  lines[#lines + 1] = http_body
  add("}")
  return table.concat(lines, "\n") .. "\n"
end

-- ---- the server object ----

local Server = {}
Server.__index = Server

local running = {} -- every started server, for stop_all()

local function pid_state(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  return stat:match("^%d+ %b() (%a)")
end

-- True once the process is gone. A zombie counts as gone: the daemonised
-- master is re-parented to PID 1, which may never reap it.
local function wait_exit(pid, seconds)
  for _ = 1, seconds * 20 do
    local state = pid_state(pid)
    if not state or state == "Z" then return true end
    sleep(0.05)
  end
  return false
end

function Server:error_log()
  return read_file(self.prefix .. "/error.log") or self.final_log or ""
end

function Server:stop()
  if self.stopped then return true end
  self.stopped = true
  running[self] = nil
  local pid = self.pid
  if pid then
    execute("kill -TERM " .. pid .. " 2>/dev/null")
    if not wait_exit(pid, STOP_WAIT_S) then
      -- The master is a session leader: its group holds the workers too.
      execute("kill -KILL -- -" .. pid .. " 2>/dev/null")
      wait_exit(pid, 1)
    end
  end
  self.final_log = read_file(self.prefix .. "/error.log")
  execute("rm -rf " .. quote(self.prefix))
  return true
end

function Server:__tostring()
  return ("nginx sandbox (port %s%s, %s)"):format(self.port,
    self.tls_port and ", tls " .. self.tls_port or "", self.stopped and "stopped" or "running")
end

-- ---- start ----

local function make_prefix()
  local ok, out = capture("mktemp -d -t alipay-nginx.XXXXXXXX")
  local dir = out:match("^%s*(.-)%s*$")
  if not ok or dir == "" then return nil, "mktemp failed: " .. out end
  if not execute("mkdir -p " .. quote(dir .. "/tmp")) then return nil, "cannot create " .. dir end
  return dir
end

-- Two distinct ports when TLS is on (one listener each).
local function pick_ports(tls)
  local port = random_port()
  local tls_port = nil
  if tls then
    repeat tls_port = random_port() until tls_port ~= port
  end
  return port, tls_port
end

local function wait_pid(prefix)
  for _ = 1, START_WAIT_S * 20 do
    local pid = tonumber((read_file(prefix .. "/nginx.pid") or ""):match("%d+"))
    if pid then return pid end
    sleep(0.05)
  end
  return nil
end

-- Runs nginx once. With `daemon on` the launcher exits only after every
-- listening socket is bound and listening, so its status tells whether the
-- ports were free. Returns "ok", pid | "busy" | "failed", output.
local function launch(prefix)
  local log = prefix .. "/error.log"
  write_file(log, "")
  local ok, out = capture(("%s -p %s/ -c %s/nginx.conf -e %s"):format(
    quote(M.nginx), quote(prefix), quote(prefix), quote(log)))
  -- The log repeats what nginx printed, with timestamps; the printed text
  -- covers failures that happen before the log is open.
  local logged = read_file(log) or ""
  local text = logged:find("%S") and logged or out
  if not ok then
    if text:find("Address already in use", 1, true) then return "busy" end
    return "failed", text
  end
  local pid = wait_pid(prefix)
  if not pid then return "failed", text .. "\n(no pid file after " .. START_WAIT_S .. " s)" end
  return "ok", pid
end

local function fail(prefix, msg)
  execute("rm -rf " .. quote(prefix))
  return nil, msg
end

-- opts.conf(port, tls_port, prefix, tls) returns the contents of the http
-- block; tls = {ca_file=, cert_file=, key_file=} when opts.tls. opts.lua loads
-- the lua module; opts.log_level sets the error log level (default info);
-- opts.workers the number of worker processes (a count or "auto", default 1).
function M.start(opts)
  if type(opts) ~= "table" or type(opts.conf) ~= "function" then
    error("alipay.sandbox.nginx.start: opts.conf must be a function", 2)
  end
  local prefix, err = make_prefix()
  if not prefix then return nil, err end
  local tls
  if opts.tls then
    tls, err = make_tls(prefix)
    if not tls then return fail(prefix, err) end
  end
  for _ = 1, MAX_ATTEMPTS do
    local port, tls_port = pick_ports(opts.tls)
    local ok, body = pcall(opts.conf, port, tls_port, prefix, tls)
    if not ok then
      fail(prefix)
      error(body, 0)
    end
    write_file(prefix .. "/nginx.conf", main_conf(prefix, opts, body))
    local status, detail = launch(prefix)
    if status == "ok" then
      local srv = setmetatable({
        port = port, tls_port = tls_port, prefix = prefix, pid = detail,
        ca_file = tls and tls.ca_file, cert_file = tls and tls.cert_file,
        key_file = tls and tls.key_file,
      }, Server)
      running[srv] = true
      return srv
    elseif status == "failed" then
      return fail(prefix, "nginx failed to start:\n" .. last_lines(detail, 15))
    end
  end
  return fail(prefix, "nginx: no free port after " .. MAX_ATTEMPTS .. " attempts")
end

-- Stops every server this process started and has not stopped yet.
function M.stop_all()
  local list = {}
  for srv in pairs(running) do list[#list + 1] = srv end
  for _, srv in ipairs(list) do srv:stop() end
end

return M
