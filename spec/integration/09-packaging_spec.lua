-- Packaging. The two rockspecs are written by hand: this keeps them complete
-- (every C unit built, every Lua module in exactly one rock) and honest
-- (the library rock, which OpenResty loads under LuaJIT, holds only modules
-- that load there). `make install` is run for real into temporary prefixes:
-- the installed command must work with no LUA_PATH/LUA_CPATH from anywhere.
-- (`make rock` builds, installs and packs the rocks themselves.)
local helpers = require "helpers"

local LIBRARY = "lua-alipay-scm-1.rockspec"
local CLI = "lua-alipay-cli-scm-1.rockspec"

local function load_rockspec(file)
  local env = {}
  local chunk
  if _VERSION == "Lua 5.1" then
    chunk = assert(loadfile(file))
    setfenv(chunk, env) -- luacheck: ignore 113 (LuaJIT)
  else
    chunk = assert(loadfile(file, "t", env))
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

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function has_dependency(spec, pattern)
  for _, dep in ipairs(spec.dependencies) do
    if dep:find(pattern) then return dep end
  end
  return nil
end

-- The alipay.* modules a Lua file requires (comments skipped).
local function requires(path)
  local found = {}
  for line in helpers.read(path):gmatch("[^\n]+") do
    local code = line:gsub("%-%-.*$", "")
    for name in code:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do found[#found + 1] = name end
  end
  return found
end

describe("the rockspecs", function()
  local library, cli = load_rockspec(LIBRARY), load_rockspec(CLI)

  it("build every C unit into alipay.core", function()
    local command = library.build.build_command
    for _, src in ipairs(list("ls src/*.c")) do
      assert.is_truthy(command:find(" " .. src .. " ", 1, true), src .. " is missing from the build command")
    end
    assert.are.same({ ["alipay.core"] = "core.so" }, library.build.install.lib)
  end)

  it("install every Lua module under its module name, in exactly one rock", function()
    local of = {}
    for _, spec in ipairs { library, cli } do
      for name, path in pairs(spec.build.install.lua) do
        assert.is_nil(of[name], name .. " is in both rockspecs")
        of[name] = path
      end
    end
    local count = 0
    for _, path in ipairs(list("cd lua && find alipay -name '*.lua' | sort")) do
      local name = path:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.are.equal("lua/" .. path, of[name], name .. " is missing")
      count = count + 1
    end
    local listed = 0
    for _ in pairs(of) do listed = listed + 1 end
    assert.are.equal(count, listed) -- no module that does not exist
  end)

  it("keep the library free of the CLI rock's modules, loadable by LuaJIT", function()
    for name, path in pairs(library.build.install.lua) do
      for _, dep in ipairs(requires(path)) do
        assert.is_nil(cli.build.install.lua[dep], name .. " requires " .. dep .. " of the CLI rock")
      end
      local ok, out = helpers.run("luajit -e " .. sh_quote("assert(loadfile(" .. ("%q"):format(path) .. "))"))
      assert(ok, name .. " does not parse under LuaJIT: " .. out)
    end
  end)

  it("declare the real Lua versions and every runtime dependency", function()
    assert.are.equal("lua >= 5.1, < 5.5", library.dependencies[1])
    assert.are.equal("lua >= 5.3, < 5.5", cli.dependencies[1])
    assert.is_string(has_dependency(library, "^lua%-cjson$"))
    assert.is_string(has_dependency(library, "^luaexpat$"))
    assert.is_string(has_dependency(cli, "^lua%-alipay == scm%-1$"))
    assert.is_string(has_dependency(cli, "^argparse$"))
    assert.is_string(has_dependency(cli, "^luadbi%-sqlite3$"))
    assert.is_string(has_dependency(cli, "^lua%-cjson$"))
    assert.are.same({ alipay = "bin/alipay" }, cli.build.install.bin)
    assert.is_table(library.external_dependencies.OPENSSL)
    assert.is_table(library.external_dependencies.CURL)
  end)

  it("pass luarocks lint", function()
    for _, file in ipairs { LIBRARY, CLI } do
      local ok, out = helpers.run("luarocks lint " .. file)
      assert(ok, file .. ": " .. out)
    end
  end)
end)

describe("make install", function()
  local ROOT = helpers.cwd()
  local APP_ID = "2021000122671080"
  -- A clean environment: no Lua paths, no hint of the checkout.
  local CLEAN = "env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/nonexistent "

  after_each(function() helpers.cleanup() end)

  local function make(args)
    local ok, out = helpers.run("make --no-print-directory -s -C " .. sh_quote(ROOT) .. " " .. args)
    assert(ok, "make " .. args .. ": " .. out)
  end

  -- --help, then a sandbox gateway started and stopped: the 5.4 core signs
  -- its keys, nginx loads the installed modules and the installed LuaJIT core.
  local function works_from(prefix, where)
    local bin = sh_quote(prefix .. "/bin/alipay")
    local cd = "cd " .. sh_quote(where) .. " && " .. CLEAN
    local ok, out = helpers.run(cd .. bin .. " --help")
    assert(ok, out)
    assert.matches("^Usage: alipay", out)
    local state = where .. "/sandbox.json"
    ok, out = helpers.run(cd .. bin .. " sandbox start --app-id " .. APP_ID .. " --app-public-key "
      .. sh_quote(ROOT .. "/spec/fixtures/keys/app_public.pem") .. " --state " .. sh_quote(state) .. " --json")
    assert(ok, out)
    assert.matches('"app_id":"' .. APP_ID .. '"', out, 1, true)
    local stop_ok, stop_out = helpers.run(cd .. bin .. " sandbox stop --state " .. sh_quote(state))
    assert(stop_ok, stop_out)
    assert.matches("sandbox stopped", stop_out)
  end

  it("installs a command that finds its own modules and core", function()
    local prefix = helpers.tmpdir() .. "/with space"
    make("install PREFIX=" .. sh_quote(prefix))
    local installed = helpers.read(prefix .. "/bin/alipay")
    assert.is_truthy(installed:find(("%q"):format(prefix .. "/share/lua/5.4"), 1, true))
    works_from(prefix, helpers.tmpdir())
    make("uninstall PREFIX=" .. sh_quote(prefix))
    local ok = helpers.run("test -e " .. sh_quote(prefix .. "/bin/alipay"))
    assert.is_false(ok)
  end)

  it("bakes the PREFIX paths, not the DESTDIR ones, into a staged install", function()
    local tmp = helpers.tmpdir()
    local stage, prefix = tmp .. "/stage", tmp .. "/final"
    make("install PREFIX=" .. sh_quote(prefix) .. " DESTDIR=" .. sh_quote(stage))
    assert.is_nil(helpers.read(stage .. prefix .. "/bin/alipay"):find(stage, 1, true))
    local ok, out = helpers.run("mv " .. sh_quote(stage .. prefix) .. " " .. sh_quote(prefix)
      .. " && rm -rf " .. sh_quote(stage))
    assert(ok, out)
    works_from(prefix, helpers.tmpdir())
  end)

  it("leaves bin/alipay working from the checkout, also through a symlink", function()
    local dir = helpers.tmpdir()
    local ok, out = helpers.run("ln -s " .. sh_quote(ROOT .. "/bin/alipay") .. " " .. sh_quote(dir .. "/alipay"))
    assert(ok, out)
    for _, bin in ipairs { ROOT .. "/bin/alipay", dir .. "/alipay" } do
      ok, out = helpers.run("cd " .. sh_quote(dir) .. " && " .. CLEAN .. sh_quote(bin) .. " --help")
      assert(ok, out)
      assert.matches("^Usage: alipay", out)
    end
  end)
end)
