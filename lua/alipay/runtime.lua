-- Where the code runs: inside nginx (OpenResty, or Debian's nginx with
-- libnginx-mod-http-lua) or in plain Lua. This is the only module that
-- looks for the `ngx` table; every other one asks here, so that the
-- choices below (clock, sleep, log, cosockets) are made in one place.
--
--   local runtime = require "alipay.runtime"
--   runtime.ngx() -> the ngx table | nil       (nil outside nginx)
--   runtime.in_nginx() -> boolean
--   runtime.phase() -> "content", "init_worker", ... | nil outside nginx
--   runtime.cosockets() -> boolean             cosockets (and ngx.sleep) work in this phase
--   runtime.now_ms() -> Unix milliseconds (a float)
--   runtime.sleep_ms(ms)                       yields inside nginx where it can, blocks elsewhere
--   runtime.log(level, msg[, bare])            level: "error" | "warn" | "notice" | "info" | "debug"
--   runtime.logger(log[, ngx]) -> log, or a function(level, msg) into the default sink
--   runtime.detect([env]) -> {nginx=, phase=, cosockets=, clock=, sleep=, log=}
--
-- The ngx table is looked up at every call, never cached at load time:
-- a module loaded by the nginx master in init_by_lua (no cosockets there)
-- is used later by workers in content handlers, and specs simulate nginx
-- by setting _G.ngx. detect(env) describes an environment without calling
-- into it: env.ngx is a table (a simulated nginx) or false (plain Lua);
-- without env, the real one.
-- LuaJIT too (OpenResty runs this module): no integer division.
local core = require "alipay.core"

local runtime = {}

-- ngx.get_phase() values where cosockets work: lua-nginx-module's
-- documented contexts of ngx.socket.tcp (README.md, "OpenResty / nginx").
-- ngx.sleep yields in exactly these too.
runtime.COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local function env_ngx(env)
  if env ~= nil then
    if type(env) ~= "table" then error("runtime.detect: env must be a table, e.g. { ngx = fake_ngx }", 3) end
    return type(env.ngx) == "table" and env.ngx or nil
  end
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and ngx or nil
end

function runtime.ngx()
  return env_ngx(nil)
end

function runtime.in_nginx()
  return env_ngx(nil) ~= nil
end

local function phase_of(ngx)
  if not ngx or type(ngx.get_phase) ~= "function" then return nil end
  -- pcall: a stand-in ngx (the sandbox's, a spec's) may raise here.
  local ok, phase = pcall(ngx.get_phase)
  if ok and type(phase) == "string" then return phase end
  return nil
end

function runtime.phase()
  return phase_of(env_ngx(nil))
end

local function cosockets_in(ngx)
  return runtime.COSOCKET_PHASES[phase_of(ngx) or false] == true
end

function runtime.cosockets()
  return cosockets_in(env_ngx(nil))
end

-- ngx.now is the time the event loop last cached: update_time first, or a
-- loop that never yields would see the clock stand still.
local function ngx_clock(ngx)
  return ngx and type(ngx.now) == "function" and type(ngx.update_time) == "function"
end

function runtime.now_ms()
  local ngx = env_ngx(nil)
  if ngx_clock(ngx) then
    ngx.update_time()
    return ngx.now() * 1000
  end
  return core.now_ms()
end

-- ngx.sleep never blocks the worker, but nginx refuses it outside the
-- yielding phases; there (init_worker, log, ...) and outside nginx the
-- core's sleep blocks, which is the best that phase allows. Misuse (a
-- negative or non-number ms) raises in either.
local function ngx_sleeps(ngx)
  return ngx and type(ngx.sleep) == "function" and cosockets_in(ngx)
end

function runtime.sleep_ms(ms)
  local ngx = env_ngx(nil)
  if ngx_sleeps(ngx) then
    ngx.sleep(ms / 1000)
  else
    core.sleep_ms(ms)
  end
end

-- nginx's level constants for ours; an unknown level logs as NOTICE.
local NGX_LEVELS = { error = "ERR", warn = "WARN", notice = "NOTICE", info = "INFO", debug = "DEBUG" }

local function ngx_logs(ngx)
  return ngx and type(ngx.log) == "function" and ngx.WARN ~= nil
end

local function log_to(ngx, level, msg, bare)
  if ngx_logs(ngx) then
    ngx.log(ngx[NGX_LEVELS[level] or "NOTICE"] or ngx.NOTICE, msg)
  elseif bare then
    io.stderr:write(tostring(msg), "\n")
  else
    io.stderr:write("[", tostring(level), "] ", tostring(msg), "\n")
  end
end

-- The default sink: nginx's error log inside nginx, else a line on
-- stderr, "[level] msg", or msg alone when `bare` (a message that names
-- its level itself, such as config.warn's "alipay: WARNING: ...").
function runtime.log(level, msg, bare)
  log_to(env_ngx(nil), level, msg, bare)
end

-- The caller's log callback when it gave one, else the default sink, into
-- the error log of `ngx` when given (a handler's own, or a spec's stand-in).
function runtime.logger(log, ngx)
  if log then return log end -- a function, or a callable table
  if ngx ~= nil then
    return function(level, msg) log_to(ngx, level, msg) end
  end
  return runtime.log
end

-- What the functions above would do in env (default: here and now).
function runtime.detect(env)
  local ngx = env_ngx(env)
  local phase = phase_of(ngx)
  return {
    nginx = ngx ~= nil,
    phase = phase,
    cosockets = cosockets_in(ngx),
    clock = ngx_clock(ngx) and "ngx" or "core",
    sleep = ngx_sleeps(ngx) and "ngx" or "core",
    log = ngx_logs(ngx) and "ngx" or "stderr",
  }
end

return runtime
