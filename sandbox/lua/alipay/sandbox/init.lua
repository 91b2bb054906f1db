-- The sandbox gateway: a local stand-in for openapi.alipay.com (docs/architecture.md §13).
--
--   local sb = assert(require("alipay.sandbox").start{
--     app_id = "2021000122671080",
--     app_public_key = pem,          -- or app_cert = pem (the app's certificate mode)
--     seed = "spec/fixtures/sandbox_seed.json",   -- a path or a table; optional
--     encrypt_key = nil,             -- the app's AES key; optional
--     cert_mode = false,             -- make an "Alipay" certificate and root bundle
--                                    -- (default: true with app_cert, false otherwise)
--     workers = "auto",              -- nginx workers: one per core (default), or a count;
--                                    -- they share one state (alipay.sandbox.replica)
--   })
--   sb.gateway, sb.base_url, sb.https_gateway, sb.https_base_url, sb.ca_file, sb.admin
--   sb.alipay_public_key             -- PEM of the sandbox's signing key
--   sb.alipay_cert, sb.alipay_root_cert   -- PEMs, with cert_mode
--   sb.files                         -- the same PEMs as files in the prefix
--   sb:deliveries(), sb:arrivals([since]), sb:faults([faults]), sb:reset(), sb:health(),
--   sb:delete_template(id)
--   sb:notify(url, params[, opts]), sb:event(url, event[, opts])   -- callbacks signed as
--                                    -- Alipay's, sent to an endpoint under test
--   sb:callbacks([id]), sb:wait_callback(id[, opts])
--   sb:rotate_cert([{untrusted = true}])   -- certificate mode: Alipay's new certificate
--                                    -- (-> its SN, PEM), or one outside the root bundle
--   sb:stop()
--   require("alipay.sandbox").attach(state)   -- a sandbox started by another process
--
-- Environment: ALIPAY_LUAJIT_CPATH (where the LuaJIT build of alipay.core
-- is, as a cpath pattern or a directory), ALIPAY_SANDBOX_LUA_PATH (extra
-- lua_package_path entries for the workers, searched first; opts.lua_path
-- does the same per sandbox).
--
-- nginx (Debian's nginx + libnginx-mod-http-lua, a worker per core) serves the
-- gateway; alipay.sandbox.server is the code that runs inside it. This file
-- is plain Lua 5.4 / LuaJIT: it prepares the keys and the configuration,
-- starts nginx through alipay.sandbox.nginx and talks to the admin endpoints.
local cjson = require "cjson"
local runner = require "alipay.sandbox.nginx"

local shell = require "alipay.util.shell"
local fs = require "alipay.util.fs"
local quote, capture = shell.quote, shell.capture
local read_file, write_file, exists, last_lines = fs.read, fs.write, fs.exists, fs.last_lines

local M = {}

local DEBIAN_PACKAGES = "nginx libnginx-mod-http-lua"
local CONFIG_NAME = "sandbox.json"
local ADMIN_TIMEOUT_MS = 60000

-- ---- shell and files ----

local function cwd()
  local pwd = os.getenv("PWD")
  if pwd and pwd:sub(1, 1) == "/" then return pwd end
  local ok, out = capture("pwd")
  return ok and out:match("^%s*(.-)%s*$") or "/"
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return cwd() .. "/" .. path:gsub("^%./", "")
end

-- Quoted for nginx.conf: paths may hold spaces.
local function nginx_string(s)
  return '"' .. s:gsub("[\\\"]", "\\%0") .. '"'
end

-- ---- where the Lua code and the LuaJIT core are ----

-- The directory that holds alipay/sandbox/init.lua, i.e. the sandbox/lua/
-- of a checkout or share/lua/5.x of an installation.
local function lua_root()
  local source = debug.getinfo(1, "S").source
  local file = source:match("^@(.*)$") or "alipay/sandbox/init.lua"
  local root = file:match("^(.*)/alipay/sandbox/init%.lua$")
    or file:match("^(.*)/alipay/sandbox%.lua$") or "."
  return (absolute(root):gsub("/%./", "/"):gsub("/%.$", ""))
end

-- The directory that holds the lua-alipay modules this file loaded
-- (alipay/util/fs.lua): the lua/ of a checkout, where the sandbox's own
-- tree is apart from it (sandbox/lua/), or the same share/lua/5.x as the
-- sandbox's when both rocks are installed.
local function product_root()
  local file = debug.getinfo(fs.read, "S").source:match("^@(.*)$") or ""
  local root = file:match("^(.*)/alipay/util/fs%.lua$")
  return root and (absolute(root):gsub("/%./", "/"):gsub("/%.$", "")) or nil
end

-- The multiarch directory of Debian's LuaJIT/5.1 C modules (cjson).
local function debian_c_dirs()
  local dirs = {}
  for _, arch in ipairs { "x86_64-linux-gnu", "aarch64-linux-gnu", "i386-linux-gnu",
    "arm-linux-gnueabihf", "powerpc64le-linux-gnu", "s390x-linux-gnu", "riscv64-linux-gnu" } do
    local dir = "/usr/lib/" .. arch .. "/lua/5.1"
    if exists(dir .. "/cjson.so") then dirs[#dirs + 1] = dir .. "/?.so" end
  end
  return dirs
end

-- The LuaJIT build of alipay.core, as a cpath pattern, or nil, err.
-- ALIPAY_LUAJIT_CPATH (a pattern with '?', or a directory), then the
-- checkout's build/luajit, then an installation's lib/lua/5.1.
local function luajit_cpath(root)
  local env = os.getenv("ALIPAY_LUAJIT_CPATH")
  if env and env ~= "" then
    if not env:find("?", 1, true) then env = env:gsub("/$", "") .. "/?.so" end
    for pattern in env:gmatch("[^;]+") do
      if exists((pattern:gsub("%?", "alipay/core"))) then return env end
    end
    return nil, "ALIPAY_LUAJIT_CPATH: no alipay/core.so found through " .. env
  end
  local candidates = {}
  local checkout = root:match("^(.*)/lua$")
  if checkout then candidates[#candidates + 1] = checkout .. "/build/luajit" end
  local prefix = root:match("^(.*)/share/lua/[%d.]+$")
  if prefix then candidates[#candidates + 1] = prefix .. "/lib/lua/5.1" end
  for _, dir in ipairs(candidates) do
    if exists(dir .. "/alipay/core.so") then return dir .. "/?.so" end
  end
  return nil, "the LuaJIT build of alipay.core was not found (looked in "
    .. (#candidates > 0 and table.concat(candidates, ", ") or "no candidate directory")
    .. "); run `make`, or set ALIPAY_LUAJIT_CPATH"
end

-- nginx and its Lua module must be there before anything else is made.
local function check_nginx()
  if not exists(runner.nginx) then
    return nil, "nginx not found at " .. runner.nginx .. "; install the Debian packages: "
      .. DEBIAN_PACKAGES
  end
  for _, so in ipairs(runner.lua_modules) do
    if not exists(so) then
      return nil, "the nginx Lua module is missing (" .. so .. "); install the Debian packages: "
        .. DEBIAN_PACKAGES
    end
  end
  return true
end

-- ---- keys and certificates (openssl CLI) ----

local function openssl(args)
  local ok, out = capture("openssl " .. args)
  if not ok then return nil, "openssl failed: " .. last_lines(out, 5) end
  return true
end

local function random_serial()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(8)
  f:close()
  -- A positive serial with a nonzero first byte, like Alipay's.
  return "0x" .. ("%02x"):format(b:byte(1) % 127 + 1)
    .. b:sub(2):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
end

-- The sandbox's own "Alipay" signing key: private PEM path and public PEM.
local function make_signing_key(dir)
  local key = dir .. "/alipay_private_key.pem"
  local ok, err = openssl(("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s")
    :format(quote(key)))
  if not ok then return nil, err end
  local pub = dir .. "/alipay_public_key.pem"
  ok, err = openssl(("pkey -in %s -pubout -out %s"):format(quote(key), quote(pub)))
  if not ok then return nil, err end
  return key, pub
end

-- Certificate mode: an RSA root (what alipay_root_cert_sn counts), an EC
-- root beside it in the bundle (Alipay's bundle also holds roots that the SN
-- rule skips), and an "Alipay" leaf for the signing key, signed by the RSA
-- root. Returns {cert=, root=} PEM paths.
local ROOT_KEY, ROOT_CERT = "alipay_root.key", "alipay_root_rsa.pem"
local function make_alipay_certs(dir, signing_key, app_id)
  local root_key, root = dir .. "/" .. ROOT_KEY, dir .. "/" .. ROOT_CERT
  local ok, err = openssl(("req -x509 -newkey rsa:2048 -nodes -sha256 -keyout %s -out %s -days 3650"
    .. " -set_serial %s -subj %s -addext 'basicConstraints=critical,CA:TRUE'"
    .. " -addext 'keyUsage=critical,keyCertSign,cRLSign'")
    :format(quote(root_key), quote(root), random_serial(),
      quote("/C=CN/O=lua-alipay sandbox/OU=Certification Authority/CN=Sandbox Root CA R1")))
  if not ok then return nil, err end
  local ec_key, ec_root = dir .. "/alipay_root_ec.key", dir .. "/alipay_root_ec.pem"
  ok, err = openssl(("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s"
    .. " -out %s -days 3650 -set_serial %s -subj %s")
    :format(quote(ec_key), quote(ec_root), random_serial(),
      quote("/C=CN/O=lua-alipay sandbox/OU=Certification Authority/CN=Sandbox Root CA E1")))
  if not ok then return nil, err end
  local csr, cert = dir .. "/alipay_cert.csr", dir .. "/alipay_cert.pem"
  ok, err = openssl(("req -new -key %s -out %s -subj %s"):format(quote(signing_key), quote(csr),
    quote("/C=CN/O=lua-alipay sandbox/OU=Alipay Open Platform/CN=" .. app_id:gsub("[^%w]", ""))))
  if not ok then return nil, err end
  ok, err = openssl(("x509 -req -sha256 -in %s -CA %s -CAkey %s -set_serial %s -days 3650 -out %s")
    :format(quote(csr), quote(root), quote(root_key), random_serial(), quote(cert)))
  if not ok then return nil, err end
  local bundle = dir .. "/alipay_root_cert.pem"
  write_file(bundle, read_file(root) .. read_file(ec_root))
  -- The RSA root and its key stay in the prefix (made 0600 by openssl):
  -- rotate_cert signs the new certificates with them.
  for _, path in ipairs { ec_key, csr, ec_root } do os.remove(path) end
  return { cert = cert, root = bundle }
end

-- A new "Alipay" signing key and its certificate, in dir, signed by the
-- root of the bundle, or with untrusted by a throw-away root that is in no
-- bundle. Returns key PEM, certificate PEM, or nil, err.
local function make_rotated_cert(dir, root_cert, root_key, app_id, untrusted)
  local key = dir .. "/alipay_rotated.key"
  local ok, err = openssl(("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s"):format(quote(key)))
  if not ok then return nil, err end
  local made = {}
  if untrusted then
    root_key, root_cert = dir .. "/untrusted_root.key", dir .. "/untrusted_root.pem"
    made = { root_key, root_cert }
    ok, err = openssl(("req -x509 -newkey rsa:2048 -nodes -sha256 -keyout %s -out %s -days 3650"
      .. " -set_serial %s -subj %s -addext 'basicConstraints=critical,CA:TRUE'")
      :format(quote(root_key), quote(root_cert), random_serial(),
        quote("/C=CN/O=lua-alipay sandbox/OU=Not In The Bundle/CN=Untrusted Root")))
    if not ok then return nil, err end
  end
  local csr, cert = dir .. "/alipay_rotated.csr", dir .. "/alipay_rotated.pem"
  ok, err = openssl(("req -new -key %s -out %s -subj %s"):format(quote(key), quote(csr),
    quote("/C=CN/O=lua-alipay sandbox/OU=Alipay Open Platform/CN=" .. app_id:gsub("[^%w]", ""))))
  if ok then
    ok, err = openssl(("x509 -req -sha256 -in %s -CA %s -CAkey %s -set_serial %s -days 3650 -out %s")
      :format(quote(csr), quote(root_cert), quote(root_key), random_serial(), quote(cert)))
  end
  local key_pem, cert_pem = read_file(key), ok and read_file(cert)
  made[#made + 1] = key
  made[#made + 1] = csr
  made[#made + 1] = cert
  for _, path in ipairs(made) do os.remove(path) end
  if not ok then return nil, err end
  return key_pem, cert_pem
end

-- ---- the nginx configuration ----

local function server_conf(p)
  local handler = "require('alipay.sandbox.server')"
  local locations = ([[
    location = /gateway.do { content_by_lua_block { %s.v2() } }
    location /v3/ { content_by_lua_block { %s.v3() } }
    location /__sandbox/ { content_by_lua_block { %s.admin() } }
    location / { content_by_lua_block { %s.not_found() } }
]]):format(handler, handler, handler, handler)
  return table.concat({
    "  lua_package_path " .. nginx_string(p.lua_path) .. ";",
    "  lua_package_cpath " .. nginx_string(p.lua_cpath) .. ";",
    -- The state every worker shares (alipay.sandbox.server says what).
    "  lua_shared_dict alipay_sandbox 64m;",
    "  lua_shared_dict alipay_sandbox_ops 256m;",
    "  init_worker_by_lua_block { " .. handler .. ".init_worker("
      .. ("%q"):format(p.config) .. ") }",
    -- Access lines without the query string: it carries the signature.
    "  log_format alipay_sandbox '$remote_addr [$time_local] \"$request_method $uri\" '"
      .. " '$status $body_bytes_sent conn=$connection n=$connection_requests $request_time';",
    -- Bodies stay in memory (ngx.req.get_body_data) up to this size.
    "  client_body_buffer_size 1m;",
    "  client_max_body_size 16m;",
    "  keepalive_requests 1000000;",
    "  keepalive_timeout 120s;",
    "  server {",
    -- reuseport: the kernel spreads connections over the workers.
    ("    listen 127.0.0.1:%d reuseport;"):format(p.port),
    ("    listen 127.0.0.1:%d ssl reuseport;"):format(p.tls_port),
    "    ssl_certificate " .. nginx_string(p.tls.cert_file) .. ";",
    "    ssl_certificate_key " .. nginx_string(p.tls.key_file) .. ";",
    "    access_log " .. nginx_string(p.prefix .. "/access.log") .. " alipay_sandbox;",
    -- nginx's info messages name the request line, query (signature)
    -- included; the sandbox logs its own lines without it.
    "    error_log " .. nginx_string(p.prefix .. "/error.log") .. " notice;",
    locations,
    "  }",
  }, "\n")
end

-- ---- talking to the admin endpoints ----

-- The delivery log of a big campaign is large (about 200 bytes a
-- delivery): the admin client accepts far more than the client's 4 MiB.
local ADMIN_MAX_RESPONSE_BYTES = 1024 * 1024 * 1024

-- One HTTP exchange with the admin endpoints. Returns status, body or nil, err.
local function http_request(self, method, url, body)
  if not self._engine then
    local engine, err = require("alipay.core").http {
      timeout_ms = ADMIN_TIMEOUT_MS, ca_file = self.ca_file, max_response_bytes = ADMIN_MAX_RESPONSE_BYTES,
    }
    if not engine then return nil, err end
    self._engine = engine
  end
  local res, err = self._engine:request { method = method, url = url, body = body,
    headers = body and { ["Content-Type"] = "application/json" } or nil }
  if not res then return nil, err end
  return res.status, res.body
end

local Sandbox = {}
Sandbox.__index = Sandbox

-- Calls an admin endpoint; returns the decoded JSON, or nil, err (and the
-- decoded error answer when there is one).
function Sandbox:call_admin(method, path, payload)
  local body = payload ~= nil and cjson.encode(payload) or nil
  if body == "[]" then body = "{}" end -- an empty Lua table means "no faults"
  local status, text = http_request(self, method, self.admin .. "/" .. path, body)
  if not status then return nil, text end
  local ok, value = pcall(cjson.decode, text)
  if not ok then return nil, ("admin %s: HTTP %d, not JSON"):format(path, status) end
  if status ~= 200 then
    return nil, ("admin %s: HTTP %d: %s"):format(path, status,
      type(value) == "table" and tostring(value.error) or "?"), value
  end
  return value
end

function Sandbox:health() return self:call_admin("GET", "health") end

function Sandbox:deliveries() return self:call_admin("GET", "deliveries") end

function Sandbox:arrivals(since)
  return self:call_admin("GET", "arrivals" .. (since and ("?since=" .. math.floor(since)) or ""))
end

-- With a table: replaces the faults ({} clears them) and returns the stored
-- set. Without: returns the current set.
function Sandbox:faults(faults)
  if faults == nil then return self:call_admin("GET", "faults") end
  return self:call_admin("POST", "faults", faults)
end

function Sandbox:reset() return self:call_admin("POST", "reset", {}) end

-- Certificate mode: Alipay rotates its certificate. A new signing key and
-- certificate are made (signed by the bundle's root, or with
-- {untrusted = true} by a root outside the bundle, which clients must
-- refuse) and the gateway signs every later answer with them under the new
-- SN; alipay.open.app.alipaycert.download serves it. -> the new SN, its
-- certificate PEM | nil, err
function Sandbox:rotate_cert(opts)
  opts = opts or {}
  if not self.cert_mode then return nil, "rotate_cert: the sandbox is not in certificate mode" end
  local key_pem, cert_pem = make_rotated_cert(self.prefix, self.prefix .. "/" .. ROOT_CERT,
    self.prefix .. "/" .. ROOT_KEY, self.app_id, opts.untrusted)
  if not key_pem then return nil, cert_pem end
  local answer, err = self:call_admin("POST", "cert/rotate", { alipay_private_key = key_pem, alipay_cert = cert_pem })
  if not answer then return nil, err end
  return answer.alipay_cert_sn, cert_pem
end

-- Deletes a claimed or mini-program template now (as in Alipay's console).
function Sandbox:delete_template(template_id)
  return self:call_admin("POST", "templates/delete", { template_id = template_id })
end

-- ---- callbacks: the sandbox sends what Alipay sends (alipay.sandbox.callback) ----

local CALLBACK_OPTS = { "time_scale", "delays", "timeout_ms", "wait", "sign_type" }

local function callback_payload(fields, opts)
  if opts ~= nil and type(opts) ~= "table" then return nil, "opts: expected a table" end
  for _, name in ipairs(CALLBACK_OPTS) do fields[name] = opts and opts[name] end
  return fields
end

-- A signed asynchronous notification (rule V1) POSTed to url, retried on
-- Alipay's schedule (opts.time_scale scales it, opts.delays replaces it)
-- until the endpoint answers `success`. -> the record after the first
-- attempt (opts.wait: after the last one) | nil, err
function Sandbox:notify(url, params, opts)
  local payload, err = callback_payload({ url = url, params = params or {} }, opts)
  if not payload then return nil, err end
  return self:call_admin("POST", "notify", payload)
end

-- A signed app-gateway message (rule V2): event = {type = "follow" |
-- "unfollow" | "click" | "enter", user_id =, action_param =} (a follow adds
-- the user to the followers, an unfollow removes them), or {type =
-- "verifygw"} for the gateway check. -> the record | nil, err
function Sandbox:event(url, event, opts)
  local payload, err = callback_payload({ url = url, event = event }, opts)
  if not payload then return nil, err end
  return self:call_admin("POST", "event", payload)
end

-- Every recorded callback, or the one with this id.
function Sandbox:callbacks(id)
  if id == nil then return self:call_admin("GET", "callbacks") end
  if type(id) ~= "string" or not id:match("^cb%-%d+$") then return nil, "callbacks: expected an id cb-N" end
  return self:call_admin("GET", "callbacks?id=" .. id)
end

-- Polls the record until its state is final (delivered, failed, verified,
-- abandoned); opts.poll_s (default 0.1), opts.max_polls (default 600).
function Sandbox:wait_callback(id, opts)
  opts = opts or {}
  local record, err
  for _ = 1, opts.max_polls or 600 do
    record, err = self:callbacks(id)
    if not record then return nil, err end
    if record.state ~= "retrying" then return record end
    os.execute("sleep " .. tostring(opts.poll_s or 0.1))
  end
  return nil, "callback " .. id .. " is still retrying", record
end

function Sandbox:error_log()
  if self.server then return self.server:error_log() end
  return read_file(self.prefix .. "/error.log") or ""
end

-- The fields a client needs, for the CLI's state file and --json.
function Sandbox:describe()
  return {
    pid = self.pid, prefix = self.prefix, port = self.port, tls_port = self.tls_port,
    app_id = self.app_id, gateway = self.gateway, base_url = self.base_url,
    https_gateway = self.https_gateway, https_base_url = self.https_base_url,
    ca_file = self.ca_file, admin = self.admin, alipay_public_key = self.alipay_public_key,
    alipay_cert = self.alipay_cert, alipay_root_cert = self.alipay_root_cert,
    files = self.files, cert_mode = self.cert_mode,
  }
end

local function pid_alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- True when pid is still the nginx master serving this prefix (a pid can be
-- reused once the sandbox is gone).
function Sandbox:running()
  if self.stopped or not self.pid then return false end
  if not pid_alive(self.pid) then return false end
  local cmdline = (read_file("/proc/" .. self.pid .. "/cmdline") or ""):gsub("%z", " ")
  return cmdline:find("nginx", 1, true) ~= nil and cmdline:find(self.prefix, 1, true) ~= nil
end

function Sandbox:stop()
  if self.stopped then return true end
  if self._engine then self._engine:close() end
  self._engine = nil
  if self.server then
    self.server:stop()
  else
    -- Attached: signal the master we checked, then remove its prefix.
    if self:running() then
      os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
      for _ = 1, 100 do
        if not pid_alive(self.pid) then break end
        os.execute("sleep 0.05")
      end
      if pid_alive(self.pid) then os.execute("kill -KILL -- -" .. self.pid .. " 2>/dev/null") end
    end
    -- Only ever a directory this module made (it holds our config).
    if self.prefix and exists(self.prefix .. "/" .. CONFIG_NAME) then
      os.execute("rm -rf " .. quote(self.prefix))
    end
  end
  self.stopped = true
  return true
end

function Sandbox:__tostring()
  return ("alipay sandbox %s (%s)"):format(self.base_url, self.stopped and "stopped" or "running")
end

local function urls(sb, port, tls_port)
  sb.base_url = "http://127.0.0.1:" .. port
  sb.gateway = sb.base_url .. "/gateway.do"
  sb.https_base_url = "https://127.0.0.1:" .. tls_port
  sb.https_gateway = sb.https_base_url .. "/gateway.do"
  sb.admin = sb.base_url .. "/__sandbox"
  return sb
end

-- A sandbox object for one that another process started, from the table
-- that describe() returned (the CLI's state file).
function M.attach(state)
  if type(state) ~= "table" or type(state.prefix) ~= "string" then
    return nil, "not a sandbox description"
  end
  local sb = setmetatable({}, Sandbox)
  for k, v in pairs(state) do sb[k] = v end
  -- JSON numbers may come back as floats (4242.0): these are used in paths.
  for _, field in ipairs { "pid", "port", "tls_port" } do
    local n = tonumber(sb[field])
    if not n then return nil, "not a sandbox description (" .. field .. ")" end
    sb[field] = math.floor(n)
  end
  return urls(sb, sb.port, sb.tls_port)
end

-- ---- start ----

local function check_opts(opts)
  if type(opts) ~= "table" then return nil, "sandbox.start: options must be a table" end
  if type(opts.app_id) ~= "string" or not opts.app_id:match("^%d+$") then
    return nil, "app_id: expected the app's numeric id as a string"
  end
  if (opts.app_public_key == nil) == (opts.app_cert == nil) then
    return nil, "app_public_key, app_cert: give exactly one (public-key or certificate mode)"
  end
  for _, field in ipairs { "app_public_key", "app_cert", "encrypt_key" } do
    if opts[field] ~= nil and (type(opts[field]) ~= "string" or opts[field] == "") then
      return nil, field .. ": expected a non-empty string"
    end
  end
  if opts.seed ~= nil and type(opts.seed) ~= "string" and type(opts.seed) ~= "table" then
    return nil, "seed: expected a path or a table"
  end
  local w = opts.workers
  if w ~= nil and w ~= "auto" and (type(w) ~= "number" or w < 1 or w % 1 ~= 0 or w > 64) then
    return nil, 'workers: expected a count of nginx workers (1 to 64) or "auto"'
  end
  return true
end

-- The seed, copied into the prefix as JSON so that the workers read it from
-- a path that does not depend on anyone's working directory.
local function seed_json(seed)
  if seed == nil then return nil end
  if type(seed) == "table" then
    local ok, text = pcall(cjson.encode, seed)
    if not ok then return nil, "seed: " .. tostring(text) end
    return text
  end
  local text = read_file(seed)
  if not text then return nil, "seed: cannot read " .. seed end
  local ok = pcall(cjson.decode, text)
  if not ok then return nil, "seed: " .. seed .. " is not JSON" end
  return text
end

-- Makes the key material and the config in dir. Returns the pieces the
-- sandbox object exposes, or nil, err.
local function prepare(dir, opts, seed)
  local key, pub = make_signing_key(dir)
  if not key then return nil, pub end
  local made = { files = { alipay_public_key = pub }, alipay_public_key = read_file(pub) }
  local config = {
    app_id = opts.app_id, app_public_key = opts.app_public_key, app_cert = opts.app_cert,
    alipay_private_key = read_file(key), encrypt_key = opts.encrypt_key,
  }
  if opts.cert_mode then
    local certs, err = make_alipay_certs(dir, key, opts.app_id)
    if not certs then return nil, err end
    made.files.alipay_cert, made.files.alipay_root_cert = certs.cert, certs.root
    made.alipay_cert, made.alipay_root_cert = read_file(certs.cert), read_file(certs.root)
    config.alipay_cert, config.alipay_root_cert = made.alipay_cert, made.alipay_root_cert
  end
  -- Only the workers need the private key, and they have it in the config.
  os.remove(key)
  if seed then
    config.seed = dir .. "/seed.json"
    write_file(config.seed, seed)
  end
  made.config = dir .. "/" .. CONFIG_NAME
  -- Created empty and private first: it holds the sandbox's private key.
  local ok, err = write_file(made.config, "")
  if ok then ok = capture("chmod 600 " .. quote(made.config)) end
  if ok then ok, err = write_file(made.config, cjson.encode(config)) end
  if not ok then return nil, "cannot write the sandbox config: " .. tostring(err) end
  return made
end

-- The workers answer health once the gateway object is built; a failure
-- there (a bad seed, a key the gateway refuses) ends the start.
local function wait_healthy(sb)
  local last
  for _ = 1, 50 do
    local health, err, answer = sb:health()
    if health and health.ok then return true end
    answer = health or answer
    if type(answer) == "table" and answer.ok == false then
      return nil, "sandbox gateway failed: " .. tostring(answer.error), true
    end
    last = err
    os.execute("sleep 0.1")
  end
  return nil, "sandbox did not answer its health check: " .. tostring(last)
end

function M.start(opts)
  local ok, err = check_opts(opts)
  if not ok then return nil, err end
  -- An app in certificate mode needs Alipay's certificate and root bundle.
  if opts.app_cert and opts.cert_mode == nil then
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.cert_mode = true
    opts = copy
  end
  ok, err = check_nginx()
  if not ok then return nil, err end
  -- The core is found beside the product's modules (a checkout's lua/ is
  -- next to its build/luajit); the workers load both the sandbox's modules
  -- and the product's.
  local root, product = lua_root(), product_root() or lua_root()
  local cpath
  cpath, err = luajit_cpath(product)
  if not cpath then return nil, err end
  local seed
  seed, err = seed_json(opts.seed)
  if opts.seed ~= nil and not seed then return nil, err end

  local lua_path = root .. "/?.lua;" .. root .. "/?/init.lua;"
  if product ~= root then lua_path = lua_path .. product .. "/?.lua;" .. product .. "/?/init.lua;" end
  -- Extra workers' Lua path first (e.g. a gateway under development).
  local extra = opts.lua_path or os.getenv("ALIPAY_SANDBOX_LUA_PATH")
  if extra and extra ~= "" then lua_path = extra .. ";" .. lua_path end
  local lua_cpath = cpath .. ";" .. table.concat(debian_c_dirs(), ";") .. ";;"

  -- The conf callback runs once per port attempt, in the same prefix: the
  -- keys are made on the first call only. A failure there raises through
  -- the runner, which removes the prefix before nginx is ever started.
  local made, prepare_err
  local started, srv
  started, srv, err = pcall(runner.start, {
    tls = true, lua = true, workers = opts.workers or "auto",
    conf = function(port, tls_port, prefix, tls)
      if not made then
        made, prepare_err = prepare(prefix, opts, seed)
        if not made then error("sandbox: preparing the prefix failed", 0) end
      end
      return server_conf { port = port, tls_port = tls_port, prefix = prefix, tls = tls,
        lua_path = lua_path .. ";", lua_cpath = lua_cpath, config = made.config }
    end,
  })
  if not started then
    if prepare_err then return nil, prepare_err end
    error(srv, 0)
  end
  if not srv then return nil, err end

  local sb = setmetatable({
    server = srv, pid = srv.pid, prefix = srv.prefix, port = srv.port, tls_port = srv.tls_port,
    ca_file = srv.ca_file, app_id = opts.app_id, cert_mode = opts.cert_mode and true or false,
    alipay_public_key = made.alipay_public_key, alipay_cert = made.alipay_cert,
    alipay_root_cert = made.alipay_root_cert, files = made.files,
  }, Sandbox)
  sb.files.ca_file = srv.ca_file
  urls(sb, srv.port, srv.tls_port)
  local answered
  ok, err, answered = wait_healthy(sb)
  if not ok then
    local log = answered and "" or srv:error_log()
    sb:stop()
    local lines = {}
    for line in log:gmatch("[^\n]+") do
      if line:find("[error]", 1, true) or line:find("[emerg]", 1, true) then
        lines[#lines + 1] = line
      end
    end
    if #lines > 0 then err = err .. "\n" .. last_lines(table.concat(lines, "\n"), 5) end
    return nil, err
  end
  return sb
end

return M
