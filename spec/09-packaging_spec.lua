-- The rockspec is written by hand (builtin type); this keeps it complete:
-- every C unit and every Lua module of the tree must be in it.
local helpers = require "helpers"

local function load_rockspec()
  local env = {}
  local chunk
  if _VERSION == "Lua 5.1" then
    chunk = assert(loadfile("lua-alipay-scm-1.rockspec"))
    setfenv(chunk, env) -- luacheck: ignore 113 (LuaJIT)
  else
    chunk = assert(loadfile("lua-alipay-scm-1.rockspec", "t", env))
  end
  chunk()
  return env
end

local function list(cmd)
  local out = {}
  local p = io.popen(cmd)
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

describe("lua-alipay-scm-1.rockspec", function()
  local spec = load_rockspec()

  it("builds every C unit into alipay.core", function()
    local listed = {}
    for _, src in ipairs(spec.build.modules["alipay.core"].sources) do listed[src] = true end
    for _, src in ipairs(list("ls src/*.c")) do
      assert.is_true(listed[src], src .. " is missing from the rockspec")
    end
  end)

  it("installs every Lua module under its module name", function()
    for _, path in ipairs(list("cd lua && find alipay -name '*.lua' | sort")) do
      local name = path:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.are.equal("lua/" .. path, spec.build.modules[name], name .. " is missing")
    end
  end)

  it("declares OpenSSL and libcurl as external dependencies", function()
    assert.is_table(spec.external_dependencies.OPENSSL)
    assert.is_table(spec.external_dependencies.CURL)
    assert.is_string(helpers.read("lua-alipay-scm-1.rockspec"))
  end)
end)
