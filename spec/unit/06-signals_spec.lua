-- core.signals_catch / signal_caught / signals_restore (src/signal.c):
-- SIGINT and SIGTERM recorded as a flag that Lua reads when it is ready,
-- instead of lua5.4's "interrupted!" error raised at any instruction.
--
-- Signals are sent to this process by a shell started in the background
-- (`(sleep; kill) &`): os.execute waits through system(), which ignores
-- SIGINT in the caller while its child runs, so a SIGINT sent from inside
-- an os.execute would be lost.
local helpers = require "helpers"
local core = require "alipay.core"

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"

local function own_pid()
  local f = assert(io.open("/proc/self/stat", "rb"))
  local pid = tonumber(f:read("l"):match("^(%d+)"))
  f:close()
  return pid
end

-- Sends signal `name` to this process in about delay_s.
local function send_later(name, delay_s)
  assert(os.execute(("(sleep %.2f; kill -%s %d) >/dev/null 2>&1 &"):format(delay_s or 0.1, name, own_pid())))
end

-- Waits until signal_caught reports `count` signals (at most 5 s) -> name, count
local function wait_caught(count)
  local deadline = core.monotonic_ms() + 5000
  while core.monotonic_ms() < deadline do
    local name, n = core.signal_caught()
    if n and n >= count then return name, n end
    core.sleep_ms(10)
  end
  return core.signal_caught()
end

-- Runs a Lua script in a child interpreter (the same one as this spec, the
-- same build of the core) -> exit status as the shell reports it (128 + N
-- when signal N ended it), output.
local function child(script)
  local dir = helpers.tmpdir()
  local path = dir .. "/child.lua"
  helpers.write(path, 'package.path = "spec/?.lua;" .. package.path\nrequire "helpers"\n'
    .. 'local core = require "alipay.core"\n' .. script)
  local _, out = helpers.run(("%s %s; echo \"status=$?\""):format(LUA, path))
  return tonumber(out:match("status=(%d+)%s*$")), out
end

local CHILD_SEND = [[
local f = io.open("/proc/self/stat", "rb")
local pid = f:read("l"):match("^(%d+)")
f:close()
-- Sends itself the signal from a background shell (after os.execute has
-- returned: system() ignores SIGINT until then); waits until it is counted.
local function send(name)
  local before = select(2, core.signal_caught()) or 0
  os.execute(("(sleep 0.1; kill -%s %s) >/dev/null 2>&1 &"):format(name, pid))
  for _ = 1, 300 do
    core.sleep_ms(10)
    if (select(2, core.signal_caught()) or 0) > before then return end
  end
end
]]

describe("core signals", function()
  after_each(function() core.signals_restore() end)
  teardown(function() helpers.cleanup() end)

  it("records nothing before a signal is caught", function()
    assert.is_nil(core.signal_caught())
    assert.is_true(core.signals_catch { "INT", "TERM" })
    assert.is_nil(core.signal_caught())
  end)

  it("records the first signal's name and counts every one", function()
    assert.is_true(core.signals_catch { "INT", "TERM" })
    send_later("TERM")
    local name, n = wait_caught(1)
    assert.are.equal("TERM", name)
    assert.are.equal(1, n)
    send_later("INT")
    name, n = wait_caught(2)
    assert.are.equal("TERM", name) -- still the first one's
    assert.are.equal(2, n)
  end)

  it("forgets the record when restored; a new catch starts empty", function()
    assert.is_true(core.signals_catch { "INT" })
    send_later("INT")
    assert.are.equal("INT", (wait_caught(1)))
    assert.is_true(core.signals_restore())
    assert.is_nil(core.signal_caught())
    assert.is_true(core.signals_restore()) -- idempotent
    assert.is_true(core.signals_catch { "INT" })
    assert.is_nil(core.signal_caught())
  end)

  it("keeps the record when more signals are caught while catching", function()
    assert.is_true(core.signals_catch { "INT" })
    send_later("INT")
    assert.are.equal("INT", (wait_caught(1)))
    assert.is_true(core.signals_catch { "INT", "TERM" })
    local name, n = core.signal_caught()
    assert.are.equal("INT", name)
    assert.are.equal(1, n)
    send_later("TERM")
    name, n = wait_caught(2)
    assert.are.equal("INT", name)
    assert.are.equal(2, n)
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.signals_catch() end)
    assert.has_error(function() core.signals_catch("INT") end)
    assert.has_error(function() core.signals_catch {} end)
    assert.has_error(function() core.signals_catch { "KILL" } end)
    assert.has_error(function() core.signals_catch { "SIGINT" } end)
    assert.has_error(function() core.signals_catch { 2 } end)
    assert.is_nil(core.signal_caught()) -- nothing was installed
  end)

  it("gives the signal its earlier disposition back when restored", function()
    local status, out = child(CHILD_SEND .. [[
assert(core.signals_catch { "TERM" })
send("TERM")
local name, n = core.signal_caught()
print("caught", name, n)
io.stdout:flush()
core.signals_restore()
send("TERM")   -- the default action again: the process ends
print("survived")
]])
    assert.truthy(out:find("caught\tTERM\t1", 1, true), out)
    assert.is_nil(out:find("survived", 1, true), out)
    assert.are.equal(128 + 15, status, out)
  end)

  it("lets a process live through two signals; a third ends it by the default action", function()
    local status, out = child(CHILD_SEND .. [[
assert(core.signals_catch { "INT", "TERM" })
send("INT")
send("INT")
print("caught", core.signal_caught())
io.stdout:flush()
send("INT")
print("survived")
]])
    assert.truthy(out:find("caught\tINT\t2", 1, true), out)
    assert.is_nil(out:find("survived", 1, true), out)
    assert.are.equal(128 + 2, status, out)
  end)

  it("stays out of the processes the application starts (its pipe is close-on-exec)", function()
    -- In a fresh process: the pipes that appear with the first catch are
    -- the handler's; a process it starts must not hold them.
    local status, out = child([[
local function pipes(cmd)
  local p = io.popen(cmd)
  local set = {}
  for fd, inode in p:read("a"):gmatch(" (%d+) %-> pipe:%[(%d+)%]") do
    if tonumber(fd) > 2 then set[inode] = true end
  end
  p:close()
  return set
end
local f = io.open("/proc/self/stat", "rb")
local pid = f:read("l"):match("^(%d+)")
f:close()
local before = pipes("ls -l /proc/" .. pid .. "/fd")
assert(core.signals_catch { "INT" })
local new = 0
for inode in pairs(pipes("ls -l /proc/" .. pid .. "/fd")) do
  if not before[inode] then
    new = new + 1
    if pipes("ls -l /proc/self/fd")[inode] then print("leaked", inode) end
  end
end
print("new pipes", new)
]])
    assert.are.equal(0, status, out)
    -- (the other new one: io.popen's own pipe for the second listing)
    assert.truthy(out:find("new pipes\t[12]\n"), out)
    assert.is_nil(out:find("leaked", 1, true), out)
  end)
end)
