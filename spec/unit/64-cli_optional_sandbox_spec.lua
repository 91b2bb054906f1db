-- `alipay sandbox` is in the lua-alipay-sandbox rock (sandbox/lua/), which
-- production hosts need not install: the command line lists it only when
-- its module is there, and a module that is there but broken is listed and
-- says why instead of vanishing. In-process: the module is hidden or
-- replaced through package.path/package.preload, restored after each test.
local cli = require "alipay.cli"

local MODULE = "alipay.cli.sandbox"

local function capture()
  local buf = {}
  return { write = function(_, ...) for _, s in ipairs { ... } do buf[#buf + 1] = s end end,
           text = function() return table.concat(buf) end }
end

-- argparse prints --help with print() and ends with os.exit(0): both are
-- replaced for the call, so the help text is captured and busted lives on.
-- (pparse turns whatever is raised into a string: the exit is a marker.)
local EXIT = "spec: os.exit "
local function run(argv)
  local out, err = capture(), capture()
  local print, exit = _G.print, os.exit
  -- luacheck: push ignore 121 122 (restored below)
  _G.print = function(...) out:write(table.concat({ ... }, "\t"), "\n") end
  os.exit = function(code) error(EXIT .. tostring(code or 0), 0) end
  local ok, status = pcall(cli.main, argv, { stdout = out, stderr = err })
  _G.print, os.exit = print, exit
  -- luacheck: pop
  if not ok then
    status = tostring(status)
    if status:sub(1, #EXIT) ~= EXIT then error(status, 0) end
    status = tonumber(status:match("^%d+", #EXIT + 1))
  end
  return status, out.text(), err.text()
end

describe("the optional `alipay sandbox` command", function()
  local saved_path, saved_loaded, saved_preload

  before_each(function()
    saved_path, saved_loaded, saved_preload = package.path, package.loaded[MODULE], package.preload[MODULE]
    package.loaded[MODULE] = nil
  end)

  after_each(function()
    package.path, package.loaded[MODULE], package.preload[MODULE] = saved_path, saved_loaded, saved_preload
  end)

  -- The checkout's sandbox tree taken off the path: as on a host with the
  -- product rocks only.
  local function without_sandbox_tree()
    local kept = {}
    for entry in package.path:gmatch("[^;]+") do
      if not entry:find("sandbox/lua/", 1, true) then kept[#kept + 1] = entry end
    end
    package.path = table.concat(kept, ";")
    assert.is_nil(package.searchpath(MODULE, package.path))
  end

  it("is listed when its module is installed (here: sandbox/lua/ of the checkout)", function()
    local status, out = run { "--help" }
    assert.are.equal(cli.OK, status)
    assert.matches("\n   sandbox +Run the local sandbox gateway", out)
  end)

  it("is absent when its module is not installed; the others remain", function()
    without_sandbox_tree()
    local status, out = run { "--help" }
    assert.are.equal(cli.OK, status)
    assert.is_nil(out:find("\n   sandbox ", 1, true))
    assert.matches("\n   campaign ", out)
    local usage, _, err = run { "sandbox", "status" }
    assert.are.equal(cli.USAGE, usage)
    assert.matches("unknown command 'sandbox'", err, 1, true)
  end)

  it("is listed and reports its error when installed but broken", function()
    package.preload[MODULE] = function() error("sandbox module: syntax error near 'x'", 0) end
    local status, out = run { "--help" }
    assert.are.equal(cli.OK, status)
    assert.matches("\n   sandbox +%(unavailable: failed to load%)", out)
    local failed, _, err = run { "sandbox", "status" }
    assert.are.equal(cli.FAILED, failed)
    assert.matches("command sandbox failed to load: sandbox module: syntax error near 'x'", err, 1, true)
  end)

  -- Installed without what it needs (the sandbox rock's alipay.sandbox
  -- missing): that is broken, not absent, although the error says "not found".
  it("counts a missing dependency of the module as broken, not as not installed", function()
    without_sandbox_tree()
    package.preload[MODULE] = function() return require "alipay.sandbox.not_there" end
    local status, out = run { "--help" }
    assert.are.equal(cli.OK, status)
    assert.matches("\n   sandbox +%(unavailable: failed to load%)", out)
    local failed, _, err = run { "sandbox" }
    assert.are.equal(cli.FAILED, failed)
    assert.matches("module 'alipay.sandbox.not_there' not found", err, 1, true)
  end)
end)
