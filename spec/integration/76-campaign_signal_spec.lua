-- Ctrl-C and SIGTERM during `alipay campaign run` (lua/alipay/cli/campaign.lua,
-- alipay.campaign's run, the drain of alipay.campaign.dispatch): a child
-- process against the sandbox, whose answers are slowed down so that every
-- signal finds requests in flight, some already delivered by the gateway.
--
-- After one signal the run stops sending, records every answer that came,
-- waits for the rest at most --drain seconds, marks what is still in flight
-- unknown and exits 130 (SIGINT) or 143 (SIGTERM), naming the resume command.
-- Checked against the sandbox's delivery log: every delivered recipient is
-- `sent` in the store, none is left `inflight`, and `resume` then delivers
-- everyone else exactly once. The race the first signal used to lose (an
-- interrupt raised just after the engine returned finished transfers: the
-- answers lost, the drain waiting its full 15 s) depends on timing, so the
-- plain case runs several times.
local helpers = require "helpers"
local cjson = require "cjson"
local core = require "alipay.core"

local APP_ID = "2021000122671080"
local CHANNEL = "alipaylife_signal"
local TEMPLATE = "0spec0order0template000000000001"
local FOLLOWERS = 1000
local TRIALS = 6
local PER_CAMPAIGN = 40

local function follower(i) return ("20880000%08d"):format(i) end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sleep(seconds)
  os.execute(("sleep %.3f"):format(seconds))
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

describe("alipay campaign run, interrupted by a signal", function()
  local sandbox = require "alipay.sandbox"
  local sb, dir, config
  local next_follower = 1

  local DATA = cjson.encode {
    head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看订单",
    keyword1 = { value = "{order_no}", color = "#85be53" },
    keyword2 = { value = "已发货", color = "#85be53" },
    keyword3 = { value = "2026-11-22 10:00", color = "#85be53" },
  }

  -- Runs bin/alipay to its end -> exit status, stdout, stderr.
  local function alipay(args)
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local _, _, code = os.execute(("lua5.4 bin/alipay %s >%s 2>%s"):format(args, shell_quote(out), shell_quote(err)))
    return code, helpers.read(out), helpers.read(err)
  end

  -- Starts a command in the background -> {pid=, rc=, out=, err=}. A shell
  -- in between waits for it and writes its exit status (128 + the signal
  -- when a signal ended it) to rc; signals go to the pid of the command itself.
  local function spawn(name, command)
    local child = { pid_file = dir .. "/" .. name .. ".pid", rc = dir .. "/" .. name .. ".rc",
                    out = dir .. "/" .. name .. ".out", err = dir .. "/" .. name .. ".err" }
    local tmp = child.pid_file .. ".tmp"
    local script = ("%s >%s 2>%s & echo $! >%s; mv %s %s; wait $!; echo $? >%s"):format(command,
      shell_quote(child.out), shell_quote(child.err), shell_quote(tmp), shell_quote(tmp),
      shell_quote(child.pid_file), shell_quote(child.rc))
    assert(os.execute(("sh -c %s >/dev/null 2>&1 &"):format(shell_quote(script))))
    for _ = 1, 200 do
      if exists(child.pid_file) then break end
      sleep(0.02)
    end
    child.pid = tonumber(helpers.read(child.pid_file):match("%d+"))
    return assert(child.pid and child, "the child did not start")
  end

  local function signal(child, name)
    assert(os.execute(("kill -%s %d"):format(name, child.pid)))
    return core.monotonic_ms()
  end

  -- Waits for the child's end, at most limit_s -> exit status, seconds
  -- since `since_ms`, stderr. Kills it when it takes longer.
  local function finished(child, since_ms, limit_s)
    while not exists(child.rc) do
      if core.monotonic_ms() - since_ms > limit_s * 1000 then
        os.execute(("kill -9 %d 2>/dev/null"):format(child.pid))
        sleep(0.2)
        break
      end
      sleep(0.02)
    end
    local elapsed_s = (core.monotonic_ms() - since_ms) / 1000
    local rc = tonumber((helpers.read(child.rc) or ""):match("%d+"))
    return rc, elapsed_s, helpers.read(child.err) or ""
  end

  -- A new audience of n followers nobody has sent to yet -> path, {id = true}.
  local function audience(name, n)
    local lines, ids = { "user_id,userid,order_no" }, {}
    for _ = 1, n do
      local id = follower(next_follower)
      lines[#lines + 1] = id .. ",,O" .. next_follower
      ids[id] = true
      next_follower = next_follower + 1
    end
    assert(next_follower <= FOLLOWERS, "the sandbox has too few followers for these specs")
    local path = dir .. "/" .. name .. ".csv"
    helpers.write(path, table.concat(lines, "\n") .. "\n")
    return path, ids
  end

  local function run_args(id, path, extra)
    return ("campaign run --config %s --channel %s --template %s --audience %s --data %s --id %s "
      .. "--in-flight 8 --qps 50 --progress none %s"):format(shell_quote(config), CHANNEL, TEMPLATE,
      shell_quote(path), shell_quote(DATA), id, extra or "")
  end

  -- Deliveries so far to ids -> {id = n}, total
  local function deliveries_to(ids)
    local count, total = {}, 0
    for _, d in ipairs(assert(sb:deliveries())) do
      if ids[d.to_user_id] then
        count[d.to_user_id] = (count[d.to_user_id] or 0) + 1
        total = total + 1
      end
    end
    return count, total
  end

  local function wait_deliveries(child, ids, n, limit_s)
    local deadline = core.monotonic_ms() + limit_s * 1000
    while core.monotonic_ms() < deadline do
      local _, total = deliveries_to(ids)
      if total >= n then return total end
      if exists(child.rc) then
        error(("the child ended before the signal (exit %s): %s"):format(helpers.read(child.rc):match("%d+"),
          helpers.read(child.err)))
      end
      sleep(0.02)
    end
    error(("fewer than %d deliveries after %s s"):format(n, limit_s))
  end

  -- The store's rows of a campaign (through `campaign export`) -> {alipay_id = row}
  local function rows_of(id)
    local path = dir .. "/" .. id .. ".jsonl"
    local code, _, err = alipay(("campaign export %s --output %s --config %s"):format(id, shell_quote(path),
      shell_quote(config)))
    assert.equal(0, code, err)
    local rows = {}
    for line in helpers.read(path):gmatch("[^\n]+") do
      local row = cjson.decode(line)
      rows[row.alipay_id] = row
    end
    return rows
  end

  -- The store after a signal: every delivered recipient sent (or, with
  -- allow_unknown, unknown: its answer had not come when the drain ended),
  -- none inflight, every other one pending or unknown. -> counts by status
  local function check_store(id, ids, allow_unknown)
    local rows, count = rows_of(id), deliveries_to(ids)
    local by_status = { sent = 0, pending = 0, unknown = 0, inflight = 0 }
    for alipay_id in pairs(ids) do
      local row = assert(rows[alipay_id], alipay_id .. " is not in the store")
      by_status[row.status] = (by_status[row.status] or 0) + 1
      assert.are_not.equal("inflight", row.status, alipay_id .. " was left inflight")
      assert.is_true((count[alipay_id] or 0) <= 1, alipay_id .. " was delivered twice")
      if count[alipay_id] then
        if allow_unknown and row.status == "unknown" then
          assert.equal("INTERRUPTED", row.code)
        else
          assert.equal("sent", row.status, alipay_id .. " was delivered but the store says " .. row.status
            .. " (" .. tostring(row.msg) .. ")")
        end
      else
        assert.is_truthy(row.status == "pending" or row.status == "unknown",
          alipay_id .. " was not delivered but the store says " .. row.status)
      end
    end
    return by_status
  end

  -- resume: completes, and then every recipient was delivered exactly once.
  local function check_resume(id, ids, n)
    local code, out, err = alipay(("campaign resume %s --json --progress none --config %s"):format(id,
      shell_quote(config)))
    assert.equal(0, code, err)
    local status = cjson.decode(out)
    assert.equal("completed", status.status)
    assert.equal(n, status.counts.sent)
    local count = deliveries_to(ids)
    for alipay_id in pairs(ids) do
      assert.equal(1, count[alipay_id] or 0, alipay_id .. " delivered " .. tostring(count[alipay_id] or 0) .. " times")
    end
  end

  setup(function()
    dir = helpers.tmpdir()
    sb = assert(sandbox.start {
      app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
      seed = {
        industries = { { code = "10001/20102", name = "IT科技/IT软件与服务" } },
        industry = { primary = "10001/20102" },
        library = { { template_id = "TM000000223", name = "订单状态提醒", industry = "10001/20102",
                      keywords = { "订单号", "订单状态", "更新时间" } } },
        claimed = { { template_id = "TM000000223", msg_template_id = TEMPLATE } },
        followers = { generate = { count = FOLLOWERS, user_id_prefix = "20880000" } },
      },
    })
    helpers.write(dir .. "/alipay_public_key.pem", sb.alipay_public_key)
    config = dir .. "/alipay.json"
    helpers.write(config, cjson.encode {
      store = dir .. "/alipay.db",
      channels = { [CHANNEL] = { kind = "alipaylife", app_id = APP_ID,
        private_key_file = helpers.cwd() .. "/" .. helpers.fixtures .. "/keys/app_private_pkcs1.pem",
        alipay_public_key_file = dir .. "/alipay_public_key.pem", gateway = sb.gateway } },
    })
    local ws = assert(require("alipay.workspace").open { config = config })
    assert(ws.registry:import({ { id = TEMPLATE, name = "订单状态提醒", keywords = { "订单号", "订单状态", "更新时间" } } },
      { channel = CHANNEL }))
    ws:close()
    math.randomseed(os.time())
  end)

  teardown(function()
    if sb then sb:stop() end
    if not os.getenv("KEEP") then helpers.cleanup() else print("kept", dir) end
  end)

  after_each(function() assert(sb:faults {}) end)

  it("--help names --drain and the exit statuses after a signal; --drain refuses what is not seconds", function()
    for _, action in ipairs { "run", "resume" } do
      local code, out = alipay("campaign " .. action .. " --help")
      assert.equal(0, code)
      for _, word in ipairs { "--drain", "SIGTERM", "130", "143" } do
        assert.truthy(out:find(word, 1, true), word .. " missing from campaign " .. action .. " --help")
      end
      code = alipay("campaign " .. action .. (action == "resume" and " x" or "") .. " --drain -1")
      assert.equal(2, code)
      code = alipay("campaign " .. action .. (action == "resume" and " x" or "") .. " --drain soon")
      assert.equal(2, code)
    end
  end)

  for trial = 1, TRIALS do
    it(("SIGINT (trial %d of %d): answers recorded, exit 130 within the drain, resume sends the rest once")
      :format(trial, TRIALS), function()
      local id = "sigint-" .. trial
      local path, ids = audience(id, PER_CAMPAIGN)
      assert(sb:faults { latency_ms = 300 })
      local child = spawn(id, "lua5.4 bin/alipay " .. run_args(id, path, "--drain 5"))
      -- Some sends delivered, then a moment that falls anywhere in a round.
      wait_deliveries(child, ids, 8 + trial, 20)
      sleep(math.random() * 0.3)
      local at = signal(child, "INT")
      local rc, elapsed_s, err = finished(child, at, 20)
      assert.equal(130, rc, err)
      assert.is_true(elapsed_s <= 6, ("exited %.1f s after the signal (drain 5 s)"):format(elapsed_s))
      assert.truthy(err:find("alipay campaign resume " .. id, 1, true), err)
      assert.is_nil(err:find("interrupted!", 1, true), err)
      assert(sb:faults {})
      local counts = check_store(id, ids, false)
      print(("\n    [signal] trial %d: exit %d %.2f s after SIGINT; %d sent, %d pending, %d unknown")
        :format(trial, rc, elapsed_s, counts.sent, counts.pending, counts.unknown))
      check_resume(id, ids, PER_CAMPAIGN)
    end)
  end

  -- ---- the library: c:run{signals =, drain_s =} ----

  local function library_campaign(id)
    local path, ids = audience(id, PER_CAMPAIGN)
    local ws = assert(require("alipay.workspace").open { config = config })
    local c = assert(require("alipay.campaign").create(assert(ws:campaign_ctx()), {
      id = id, channel = CHANNEL, template = TEMPLATE, audience = { file = path }, data = cjson.decode(DATA),
      policy = { in_flight = 8, qps = 50 } }))
    return c, ids, ws
  end

  local function own_pid()
    local f = assert(io.open("/proc/self/stat", "rb"))
    local pid = tonumber(f:read("l"):match("^(%d+)"))
    f:close()
    return pid
  end

  it("c:run{signals = true} stops on a signal: status stopped, the signal named, handlers given back", function()
    local c, ids, ws = library_campaign("library-term")
    assert(sb:faults { latency_ms = 300 })
    local sent = false
    local summary = assert(c:run { signals = true, drain_s = 3, on_progress = function(stats)
      if not sent and stats.counts.sent >= 8 then
        sent = true
        assert(os.execute(("kill -TERM %d"):format(own_pid()))) -- this process: the run catches it
      end
    end })
    assert.is_true(sent)
    assert.equal("stopped", summary.status)
    assert.equal("TERM", summary.signal)
    assert.truthy(summary.stop_reason:find("interrupted by SIGTERM", 1, true), summary.stop_reason)
    assert.equal(0, summary.counts.inflight)
    assert.is_true(summary.counts.pending > 0)
    assert.is_nil(core.signal_caught()) -- the record went with the handlers
    assert.equal("stopped", c:status().status)
    assert(sb:faults {})
    check_store("library-term", ids, false)
    -- Resumed by the library, without signals: it completes.
    summary = assert(c:run {})
    assert.equal("completed", summary.status)
    assert.is_nil(summary.signal)
    ws:close()
  end)

  it("c:run{} installs no handler: a library leaves the signals to the application", function()
    local c, ids, ws = library_campaign("library-default")
    local script = dir .. "/library_child.lua"
    helpers.write(script, ([[
package.path = "spec/?.lua;" .. package.path
require "helpers"
local ws = assert(require("alipay.workspace").open { config = %q })
local c = assert(require("alipay.campaign").open(assert(ws:campaign_ctx()), %q))
local summary = c:run {}
print("the run returned", summary and summary.status)
]]):format(config, c.id))
    ws:close()
    assert(sb:faults { latency_ms = 300 })
    local child = spawn("library-default", "lua5.4 " .. shell_quote(script))
    wait_deliveries(child, ids, 8, 20)
    local at = signal(child, "TERM")
    local rc, elapsed_s, err = finished(child, at, 20)
    -- Ended by the signal's default action, at once, the run never returning;
    -- the requests it had in flight are left inflight, as after a kill.
    assert.equal(143, rc, err)
    assert.is_true(elapsed_s < 2, ("exited %.1f s after the signal"):format(elapsed_s))
    assert.is_nil((helpers.read(child.out) or ""):find("the run returned", 1, true))
    local inflight = 0
    for _, row in pairs(rows_of(c.id)) do
      if row.status == "inflight" then inflight = inflight + 1 end
    end
    assert.is_true(inflight > 0)
  end)

  it("c:run refuses bad signals and drain_s before touching the campaign", function()
    local c, _, ws = library_campaign("library-misuse")
    assert.has_error(function() c:run { signals = "yes" } end)
    assert.has_error(function() c:run { signals = {} } end)
    assert.has_error(function() c:run { signals = { "KILL" } } end)
    assert.has_error(function() c:run { drain_s = -1 } end)
    assert.has_error(function() c:run { drain_s = "5" } end)
    assert.equal("created", c:status().status)
    assert.is_nil(core.signal_caught())
    ws:close()
  end)

  it("SIGTERM (systemd's stop) does the same, with exit 143", function()
    local id = "sigterm"
    local path, ids = audience(id, PER_CAMPAIGN)
    assert(sb:faults { latency_ms = 300 })
    local child = spawn(id, "lua5.4 bin/alipay " .. run_args(id, path))
    wait_deliveries(child, ids, 10, 20)
    local at = signal(child, "TERM")
    local rc, elapsed_s, err = finished(child, at, 20)
    assert.equal(143, rc, err)
    assert.is_true(elapsed_s <= 6, ("exited %.1f s after the signal (default drain 5 s)"):format(elapsed_s))
    assert.truthy(err:find("SIGTERM", 1, true), err)
    assert.truthy(err:find("alipay campaign resume " .. id, 1, true), err)
    assert(sb:faults {})
    check_store(id, ids, false)
    check_resume(id, ids, PER_CAMPAIGN)
  end)

  it("waits no longer than --drain: what is still in flight then is unknown", function()
    local id = "short-drain"
    local path, ids = audience(id, PER_CAMPAIGN)
    -- Answers slower than the drain: the first round is delivered, the
    -- second is in flight when the signal comes and still when the drain ends.
    assert(sb:faults { latency_ms = 2500 })
    local child = spawn(id, "lua5.4 bin/alipay " .. run_args(id, path, "--drain 1"))
    wait_deliveries(child, ids, 8, 20)
    sleep(0.3)
    local at = signal(child, "INT")
    local rc, elapsed_s, err = finished(child, at, 20)
    assert.equal(130, rc, err)
    assert.is_true(elapsed_s <= 2, ("exited %.1f s after the signal (drain 1 s)"):format(elapsed_s))
    sleep(2.5) -- the gateway still executes what was in flight
    assert(sb:faults {})
    local counts = check_store(id, ids, true)
    assert.is_true(counts.unknown > 0, "nothing was in flight at the end of the drain")
  end)

  it("--drain 0 waits for nothing: the requests in flight are unknown at once", function()
    local id = "no-drain"
    local path, ids = audience(id, PER_CAMPAIGN)
    assert(sb:faults { latency_ms = 1500 })
    local child = spawn(id, "lua5.4 bin/alipay " .. run_args(id, path, "--drain 0"))
    wait_deliveries(child, ids, 8, 20)
    sleep(0.3)
    local at = signal(child, "INT")
    local rc, elapsed_s, err = finished(child, at, 20)
    assert.equal(130, rc, err)
    assert.is_true(elapsed_s <= 1, ("exited %.1f s after the signal (drain 0 s)"):format(elapsed_s))
    assert.truthy(err:find("still in flight", 1, true), err)
    sleep(1.5)
    assert(sb:faults {})
    local counts = check_store(id, ids, true)
    assert.is_true(counts.unknown > 0)
  end)

  it("a second signal ends the drain at once, the store consistent", function()
    local id = "twice"
    local path, ids = audience(id, PER_CAMPAIGN)
    assert(sb:faults { latency_ms = 2500 })
    local child = spawn(id, "lua5.4 bin/alipay " .. run_args(id, path, "--drain 5"))
    wait_deliveries(child, ids, 8, 20)
    sleep(0.3)
    signal(child, "INT")
    sleep(0.5)
    local at = signal(child, "INT")
    local rc, elapsed_s, err = finished(child, at, 20)
    assert.equal(130, rc, err)
    assert.is_true(elapsed_s <= 1, ("exited %.1f s after the second signal"):format(elapsed_s))
    assert.truthy(err:find("alipay campaign resume " .. id, 1, true), err)
    sleep(2.5)
    assert(sb:faults {})
    local counts = check_store(id, ids, true)
    assert.is_true(counts.unknown > 0, "nothing was in flight at the second signal")
  end)
end)
