-- Shared by every spec: puts the right build of alipay.core on the path
-- (ALIPAY_BUILD picks the LuaJIT or sanitizer build) and loads fixtures.
local build = os.getenv("ALIPAY_BUILD")
  or (rawget(_G, "jit") and "build/luajit" or "build/lua5.4")
package.cpath = build .. "/?.so;" .. package.cpath
-- sandbox/lua: the sandbox gateway (its own rock, lua-alipay-sandbox) that
-- the integration specs run against.
package.path = "lua/?.lua;lua/?/init.lua;sandbox/lua/?.lua;sandbox/lua/?/init.lua;spec/?.lua;" .. package.path

local cjson = require "cjson"

-- Under `make asan` the sanitizer runtime is preloaded into the Lua
-- interpreter. Keep it out of the shell, openssl, nginx and Lua children
-- the specs start: their exit-time leak checks are about them, not us.
-- Busted loads this file again for every spec file: wrap only once (while
-- io.popen is still the C function).
if (os.getenv("LD_PRELOAD") or ""):find("libasan", 1, true) and debug.getinfo(io.popen, "S").what == "C" then
  local popen, execute = io.popen, os.execute
  local function unpreloaded(cmd)
    -- ALIPAY_BUILD too: a child Lua would load the instrumented core
    -- without the runtime it needs.
    return "env -u LD_PRELOAD -u ALIPAY_BUILD sh -c '" .. cmd:gsub("'", "'\\''") .. "'"
  end
  -- luacheck: push ignore 122 (the point is to replace them for every spec)
  io.popen = function(cmd, mode) return popen(unpreloaded(cmd), mode) end
  os.execute = function(cmd)
    if cmd == nil then return execute() end
    return execute(unpreloaded(cmd))
  end
  -- luacheck: pop
end

local helpers = {}

helpers.fixtures = "spec/fixtures"

-- How much slower than a plain run this one executes (`make valgrind` sets
-- ALIPAY_SPEC_TIME_SCALE). A spec whose outcome depends on the client
-- keeping up with a network timing (a timeout that only the delayed requests
-- may reach) scales that timing by it, so a slow run tests the same thing.
helpers.time_scale = math.max(1, tonumber(os.getenv("ALIPAY_SPEC_TIME_SCALE") or "") or 1)

function helpers.read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function helpers.key_text(name)
  return helpers.read(helpers.fixtures .. "/keys/" .. name)
end

local vectors
function helpers.vectors()
  vectors = vectors or cjson.decode(helpers.read(helpers.fixtures .. "/vectors.json"))
  return vectors
end

-- A fresh temporary directory, removed by helpers.cleanup().
local made = {}
function helpers.tmpdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("*l")
  p:close()
  made[#made + 1] = dir
  return dir
end

function helpers.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- Runs a shell command; returns ok, combined output. The shell echoes the
-- status because LuaJIT's popen close() does not report it.
function helpers.run(cmd)
  local p = io.popen("{ " .. cmd .. "\n} 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  local text, status = out:match("^(.-)exit=(%d+)%s*$")
  return status == "0", text or out
end

-- The working directory (specs run from the repository root).
function helpers.cwd()
  local ok, out = helpers.run("pwd")
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

-- package.cpath for Lua code running inside a test nginx: the checkout's
-- LuaJIT build of the core, then Debian's LuaJIT C modules (cjson, lxp).
function helpers.nginx_lua_cpath()
  local ok, out = helpers.run("ls -d /usr/lib/*/lua/5.1 2>/dev/null")
  local dirs = { helpers.cwd() .. "/build/luajit/?.so" }
  if ok then
    for dir in out:gmatch("[^\n]+") do dirs[#dirs + 1] = dir .. "/?.so" end
  end
  return table.concat(dirs, ";") .. ";;"
end

function helpers.cleanup()
  for _, dir in ipairs(made) do
    os.execute("rm -rf '" .. dir .. "'")
  end
  made = {}
end

return helpers
