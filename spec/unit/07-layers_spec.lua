-- The layers of lua/alipay/ (docs/architecture.md): every module belongs to
-- one, and its `require`s go only to its own layer or the ones below, never
-- in a circle. Only the command line uses the facade (`require "alipay"`),
-- and nothing in the product requires the sandbox gateway (its own rock),
-- except the CLI's `alipay sandbox` command, which is loaded only when the
-- sandbox rock is installed.
local helpers = require "helpers"

-- Bottom up. A module is placed by the first pattern its name matches.
local LAYERS = {
  { name = "core",      "^alipay%.core$" },
  { name = "errors",    "^alipay%.errors$", "^alipay%.classify$" },
  { name = "runtime",   "^alipay%.runtime$", "^alipay%.util%." },
  { name = "transport", "^alipay%.transport%." },
  { name = "client",    "^alipay%.client$", "^alipay%.config$", "^alipay%.keyfiles$", "^alipay%.alipaycert$" },
  { name = "store",     "^alipay%.store$", "^alipay%.store%." },
  { name = "inbound and messaging", "^alipay%.inbound%.", "^alipay%.messaging%." },
  { name = "campaign",  "^alipay%.campaign$", "^alipay%.campaign%." },
  { name = "workspace", "^alipay%.workspace$", "^alipay%.workspace%." },
  { name = "sandbox",   "^alipay%.sandbox$", "^alipay%.sandbox%." },
  { name = "cli",       "^alipay%.cli$", "^alipay%.cli%." },
  { name = "facade",    "^alipay$" },
}

local function layer_of(module)
  for rank, layer in ipairs(LAYERS) do
    for _, pattern in ipairs(layer) do
      if module:find(pattern) then return rank, layer.name end
    end
  end
end

-- Module name -> file, for every .lua file under lua/ (the product) and
-- sandbox/lua/ (the sandbox rock: alipay.sandbox.* and alipay.cli.sandbox).
local function modules()
  local list = {}
  for _, tree in ipairs { "lua", "sandbox/lua" } do
    local ok, out = helpers.run("cd " .. tree .. " && find alipay -name '*.lua' | sort")
    assert(ok, out)
    for path in out:gmatch("[^\n]+") do
      local name = path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      assert(not list[name], name .. " is in both lua/ and sandbox/lua/")
      list[name] = tree .. "/" .. path
    end
  end
  return list
end

-- The alipay.* modules a file requires, comments left out. A computed name
-- (`require("alipay.transport." .. name)`) is left to the spec of that module.
local function requires_of(path)
  local text = helpers.read(path):gsub("%-%-%[(=*)%[.-%]%1%]", ""):gsub("%-%-[^\n]*", "")
  local found = {}
  for name in text:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do
    if (name == "alipay" or name:find("^alipay%.")) and not name:find("%.$") then found[name] = true end
  end
  return found
end

describe("the layers of lua/alipay", function()
  local all = modules()

  it("places every module in a layer", function()
    local n = 0
    for name, path in pairs(all) do
      assert(layer_of(name), path .. " (" .. name .. ") belongs to no layer")
      n = n + 1
    end
    assert.is_true(n > 40, n .. " modules")
  end)

  it("requires only downward or within a layer", function()
    for name, path in pairs(all) do
      local rank, layer = layer_of(name)
      for dep in pairs(requires_of(path)) do
        local dep_rank, dep_layer = layer_of(dep)
        assert(dep_rank, path .. " requires " .. dep .. ", which is in no layer")
        if dep == "alipay" then
          assert(name:find("^alipay%.cli") or name == "alipay",
            path .. " requires the facade; only the command line may")
        elseif dep_layer == "sandbox" then
          assert(layer == "sandbox" or name == "alipay.cli.sandbox",
            path .. " requires " .. dep .. ": the product does not depend on the sandbox rock")
        elseif name == "alipay.cli.sandbox" or layer == "sandbox" then
          -- The sandbox rock depends on lua-alipay only: the library, never
          -- the store, campaigns or other CLI modules (lua-alipay-cli).
          assert(dep_rank <= layer_of("alipay.client") or dep_layer == "sandbox",
            path .. " requires " .. dep .. ", which the sandbox rock's lua-alipay dependency does not provide")
        else
          assert(dep_rank <= rank or layer == "facade",
            ("%s (%s) requires %s (%s), a layer above it"):format(path, layer, dep, dep_layer))
        end
      end
    end
  end)

  it("keeps the sandbox rock's modules in sandbox/lua/, out of the product's lua/", function()
    for name, path in pairs(all) do
      local sandbox_rock = name == "alipay.cli.sandbox" or select(2, layer_of(name)) == "sandbox"
      assert.are.equal(sandbox_rock, path:find("^sandbox/lua/") ~= nil, path .. " (" .. name .. ")")
    end
    assert.are.equal("sandbox/lua/alipay/cli/sandbox.lua", all["alipay.cli.sandbox"])
    assert.are.equal("sandbox/lua/alipay/sandbox/init.lua", all["alipay.sandbox"])
  end)

  it("has no circular requires", function()
    local state = {}   -- nil: not seen, 1: on the path, 2: done
    local function visit(name, trail)
      if state[name] == 2 or not all[name] then return end
      trail[#trail + 1] = name
      assert(state[name] ~= 1, "circular requires: " .. table.concat(trail, " -> "))
      state[name] = 1
      for dep in pairs(requires_of(all[name])) do
        if dep ~= name then visit(dep, trail) end
      end
      state[name] = 2
      trail[#trail] = nil
    end
    for name in pairs(all) do visit(name, {}) end
  end)

  it("catches an upward require (the check itself can fail)", function()
    assert.is_true(layer_of("alipay.messaging.send") > layer_of("alipay.client"))
    assert.is_nil(layer_of("alipay.unplaced"))
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/x.lua", '-- require "alipay.cli"\nlocal c = require("alipay.campaign")\n')
    local found = requires_of(dir .. "/x.lua")
    assert.is_nil(found["alipay.cli"])
    assert.is_true(found["alipay.campaign"])
    helpers.cleanup()
  end)
end)
