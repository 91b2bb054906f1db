-- The resource-growth child of spec/integration/85-fault_matrix_spec.lua: runs N cheap
-- calls (alipay.open.public.user.follow.query) with the curl client against a
-- sandbox started by the parent, under a mix of faults, and at checkpoints
-- prints its own open descriptors and memory, one line each:
--   at <calls> fd=<n> rss_kb=<n> hwm_kb=<n> lua_kb=<n> ok=<n> failed=<n> kinds=<k:n,...>
--
--   lua5.4 spec/support/fault_child.lua <state.json> <calls> <checkpoint,...>
-- state.json: {sandbox = sb:describe(), app_id =, private_key_file =, user =}
--
-- The descriptors are those of this process, listed by pid
-- (/proc/<our pid>/fd, the pid read from /proc/self/stat through io.open,
-- which this process itself opens): `ls /proc/self/fd` in a shell would list
-- the shell's. The pipe io.popen holds while ls runs is one more descriptor,
-- the same at every checkpoint.
package.cpath = "build/lua5.4/?.so;" .. package.cpath
-- lua/: lua-alipay; sandbox/lua/: the sandbox gateway (lua-alipay-sandbox).
package.path = "lua/?.lua;lua/?/init.lua;sandbox/lua/?.lua;sandbox/lua/?/init.lua;" .. package.path

local cjson = require "cjson"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"

local FOLLOW = "alipay.open.public.user.follow.query"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local state = cjson.decode(read(assert(arg[1], "state file")))
local total = assert(tonumber(arg[2]), "calls")
local checkpoints = {}
for n in (arg[3] or ""):gmatch("%d+") do checkpoints[tonumber(n)] = true end

local pid = read("/proc/self/stat"):match("^(%d+)")

local function fd_count()
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
  local n = tonumber(p:read("a"):match("%d+"))
  p:close()
  return n
end

local function status_kb(field)
  return tonumber(read("/proc/" .. pid .. "/status"):match(field .. ":%s*(%d+)")) or -1
end

local sb = assert(sandbox.attach(state.sandbox))
local client = assert(alipay.new {
  app_id = state.app_id, private_key = read(state.private_key_file),
  alipay_public_key = state.sandbox.alipay_public_key, gateway = state.sandbox.gateway,
  timeout_ms = 5000, transport = "curl",
})

-- About 6% of calls get a fault: resets, 502s, truncated bodies, bad
-- signatures, 20000s; and every 250th call a latency spike past its timeout.
local MIX = { reset = 0.012, http_502 = 0.012, truncate = 0.012, bad_sign = 0.012, error_rate = 0.012,
  methods = { FOLLOW } }
assert(sb:faults(MIX))

local ok_n, failed_n, kinds = 0, 0, {}
for i = 1, total do
  local res, err, _
  if i % 250 == 0 then
    assert(sb:faults { latency_ms = 250, count = 1, methods = { FOLLOW } })
    res, _, err = client:execute(FOLLOW, { user_id = state.user }, { timeout_ms = 50 })
    assert(sb:faults(MIX))
  else
    res, _, err = client:execute(FOLLOW, { user_id = state.user })
  end
  if res then
    ok_n = ok_n + 1
  else
    failed_n = failed_n + 1
    local k = err.kind .. (err.reason and ("/" .. err.reason) or "")
    kinds[k] = (kinds[k] or 0) + 1
  end
  if checkpoints[i] then
    collectgarbage()
    local list = {}
    for k, n in pairs(kinds) do list[#list + 1] = k .. ":" .. n end
    table.sort(list)
    io.write(("at %d fd=%d rss_kb=%d hwm_kb=%d lua_kb=%.0f ok=%d failed=%d kinds=%s\n"):format(i, fd_count(),
      status_kb("VmRSS"), status_kb("VmHWM"), collectgarbage("count"), ok_n, failed_n, table.concat(list, ",")))
    io.flush()
  end
end
assert(sb:faults {})
client:close()
io.write("done\n")
