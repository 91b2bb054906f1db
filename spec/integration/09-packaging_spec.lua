-- Packaging. The three rockspecs are written by hand: this keeps them complete
-- (every C unit built, every Lua module in exactly one rock) and honest
-- (the library rock, which OpenResty loads under LuaJIT, holds only modules
-- that load there; the sandbox gateway, a test double, is in a rock of its
-- own that production hosts need not install). `make install` is run for real into temporary prefixes:
-- the installed command must work with no LUA_PATH/LUA_CPATH from anywhere.
-- (`make rock` builds, installs and packs the rocks themselves.)
local helpers = require "helpers"

local LIBRARY = "lua-alipay-scm-1.rockspec"
local CLI = "lua-alipay-cli-scm-1.rockspec"
local SANDBOX = "lua-alipay-sandbox-scm-1.rockspec"

-- The modules of the sandbox rock, wherever they are listed.
local function is_sandbox_module(name)
  return name == "alipay.sandbox" or name:find("^alipay%.sandbox%.") ~= nil or name == "alipay.cli.sandbox"
end

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
  local library, cli, sandbox = load_rockspec(LIBRARY), load_rockspec(CLI), load_rockspec(SANDBOX)

  it("build every C unit into alipay.core", function()
    local command = library.build.build_command
    for _, src in ipairs(list("ls src/*.c")) do
      assert.is_truthy(command:find(" " .. src .. " ", 1, true), src .. " is missing from the build command")
    end
    assert.are.same({ ["alipay.core"] = "core.so" }, library.build.install.lib)
  end)

  it("install every Lua module under its module name, in exactly one rock", function()
    local of = {}
    for _, spec in ipairs { library, cli, sandbox } do
      for name, path in pairs(spec.build.install.lua) do
        assert.is_nil(of[name], name .. " is in two rockspecs")
        of[name] = path
      end
    end
    local count = 0
    for _, tree in ipairs { "lua", "sandbox/lua" } do
      for _, path in ipairs(list("cd " .. tree .. " && find alipay -name '*.lua' | sort")) do
        local name = path:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
        assert.are.equal(tree .. "/" .. path, of[name], name .. " is missing")
        count = count + 1
      end
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

  it("keep the sandbox gateway out of the product rocks, all of it in its own", function()
    for _, spec in ipairs { library, cli } do
      for name, path in pairs(spec.build.install.lua) do
        assert.is_false(is_sandbox_module(name), spec.package .. " lists " .. name)
        assert.is_nil(path:find("^sandbox/"), spec.package .. " installs " .. path)
      end
    end
    local n = 0
    for name, path in pairs(sandbox.build.install.lua) do
      assert.is_true(is_sandbox_module(name), SANDBOX .. " lists " .. name .. ", not a sandbox module")
      assert.matches("^sandbox/lua/", path)
      n = n + 1
    end
    assert.are.equal(#list("find sandbox/lua -name '*.lua'"), n)
    assert.is_string(sandbox.build.install.lua["alipay.cli.sandbox"])
    assert.is_string(sandbox.build.install.lua["alipay.sandbox.nginx"])
  end)

  it("keep the sandbox rock on lua-alipay alone, loadable by LuaJIT (nginx runs it)", function()
    for name, path in pairs(sandbox.build.install.lua) do
      for _, dep in ipairs(requires(path)) do
        if dep:find("^alipay") then
          assert(library.build.install.lua[dep] or library.build.install.lib[dep] or sandbox.build.install.lua[dep],
            name .. " requires " .. dep .. ", which neither lua-alipay nor lua-alipay-sandbox installs")
        end
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
    assert.are.equal("lua >= 5.1, < 5.5", sandbox.dependencies[1])
    assert.is_string(has_dependency(sandbox, "^lua%-alipay == scm%-1$"))
    assert.is_string(has_dependency(sandbox, "^lua%-cjson$"))
    assert.is_nil(has_dependency(sandbox, "^lua%-alipay%-cli"))
    assert.is_nil(has_dependency(library, "sandbox"))
    assert.is_nil(has_dependency(cli, "sandbox"))
  end)

  it("pass luarocks lint", function()
    for _, file in ipairs { LIBRARY, CLI, SANDBOX } do
      local ok, out = helpers.run("luarocks lint " .. file)
      assert(ok, file .. ": " .. out)
    end
  end)
end)

-- The rocks as LuaRocks installs them (offline, Debian's modules standing in
-- for the dependencies, like `make rock`): the product's two give a command
-- with no `sandbox`; the sandbox rock brings the command and its modules.
describe("the rocks, installed by luarocks", function()
  local CLEAN = "env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/nonexistent "

  after_each(function() helpers.cleanup() end)

  it("give `alipay sandbox` only once lua-alipay-sandbox is installed", function()
    local tree = helpers.tmpdir()
    local ok, out = helpers.run("mkdir " .. sh_quote(tree .. "/checkout") .. " && cp -r src lua sandbox bin "
      .. table.concat({ LIBRARY, CLI, SANDBOX }, " ") .. " " .. sh_quote(tree .. "/checkout"))
    assert(ok, out)
    local arch_ok, arch = helpers.run("gcc -print-multiarch")
    local flags = " --deps-mode=none CURL_INCDIR=/usr/include/" .. (arch_ok and arch:match("%S+") or "x86_64-linux-gnu")
    local function rock_make(rockspec)
      local made, log = helpers.run("cd " .. sh_quote(tree .. "/checkout") .. " && luarocks --lua-version 5.4 --tree "
        .. sh_quote(tree) .. " make " .. rockspec .. flags)
      assert(made, rockspec .. ": " .. log)
    end
    local function help()
      local ran, text = helpers.run("cd /tmp && " .. CLEAN .. sh_quote(tree .. "/bin/alipay") .. " --help")
      assert(ran, text)
      assert.matches("^Usage: alipay", text)
      return text
    end
    rock_make(LIBRARY)
    rock_make(CLI)
    assert.is_nil(help():find("\n   sandbox ", 1, true))
    assert.are.same({}, list("find " .. sh_quote(tree .. "/share") .. " -name '*sandbox*'"))
    rock_make(SANDBOX)
    assert.is_truthy(help():find("\n   sandbox ", 1, true))
    local installed = list("find " .. sh_quote(tree .. "/share/lua/5.4/alipay") .. " -path '*sandbox*' -name '*.lua'")
    assert.are.equal(#list("find sandbox/lua -name '*.lua'"), #installed)
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

  -- A production host: no sandbox module and no `sandbox` command, until
  -- `make install-sandbox` adds both.
  it("leaves the sandbox out with SANDBOX=no; make install-sandbox adds it", function()
    local prefix, where = helpers.tmpdir() .. "/prod", helpers.tmpdir()
    make("install SANDBOX=no PREFIX=" .. sh_quote(prefix))
    local cd = "cd " .. sh_quote(where) .. " && " .. CLEAN .. sh_quote(prefix .. "/bin/alipay")
    local ok, out = helpers.run(cd .. " --help")
    assert(ok, out)
    assert.is_nil(out:find("\n   sandbox ", 1, true))
    ok, out = helpers.run(cd .. " sandbox status")
    assert.is_false(ok)
    assert.matches("unknown command 'sandbox'", out, 1, true)
    assert.are.same({}, list("find " .. sh_quote(prefix) .. " -name '*sandbox*'"))
    make("install-sandbox PREFIX=" .. sh_quote(prefix))
    ok, out = helpers.run(cd .. " --help")
    assert(ok, out)
    assert.is_truthy(out:find("\n   sandbox ", 1, true))
    works_from(prefix, where)
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
