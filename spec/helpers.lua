-- Shared by every spec: puts the right build of alipay.core on the path
-- (ALIPAY_BUILD picks the LuaJIT or sanitizer build) and loads fixtures.
local build = os.getenv("ALIPAY_BUILD")
  or (rawget(_G, "jit") and "build/luajit" or "build/lua5.4")
package.cpath = build .. "/?.so;" .. package.cpath
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path

local cjson = require "cjson"

local helpers = {}

helpers.fixtures = "spec/fixtures"

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

-- Runs a shell command; returns ok, combined output.
function helpers.run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  return ok == true or ok == 0, out
end

function helpers.cleanup()
  for _, dir in ipairs(made) do
    os.execute("rm -rf '" .. dir .. "'")
  end
  made = {}
end

return helpers
