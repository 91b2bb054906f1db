-- Fenced runners (issue 13 §2): a runner paused with SIGSTOP for longer
-- than the staleness window loses its lease; a second run takes over; when
-- the first one is continued (SIGCONT) it must stop before another request
-- leaves, say who superseded it, exit non-zero, and record nothing. Checked
-- against the sandbox's delivery log: nobody delivered twice, every sent
-- recipient delivered once, and the rows the paused runner had in flight are
-- unknown with reason `superseded`.
--
-- The paused runner is `alipay campaign resume --stale-after STALE_S`; the
-- one that takes over is spec/support/campaign_child.lua with the same
-- window (policy stale_after_s), so this takes seconds.
local helpers = require "helpers"
local world = require "support.campaign_world"
local cjson = require "cjson"
local campaign = require "alipay.campaign"
local store_mod = require "alipay.store"

local APP_ID, LIFE, TEMPLATE, SEND, FIXED = world.APP_ID, world.LIFE, world.TEMPLATE, world.SEND, world.FIXED
local generated, sleep, process_gone = world.generated, world.sleep, world.process_gone
local RECIPIENTS = 400
local STALE_S = 2
local LATENCY_MS = 40
local POLICY = { in_flight = 4, qps = 60, backoff_ms = 50, stale_after_s = STALE_S }





local function read_number(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = tonumber(f:read("a"))
  f:close()
  return n
end

-- Starts `command` in the background; its pid comes from pid_file (the
-- command writes it, or the shell that execs it does), its exit status goes
-- to rc_file.
local function spawn(command, log_path, pid_file, rc_file)
  os.remove(pid_file)
  os.remove(rc_file)
  os.execute(("(%s >>'%s' 2>&1; echo $? >'%s') &"):format(command, log_path, rc_file))
  for _ = 1, 200 do
    local pid = read_number(pid_file)
    if pid then return pid end
    sleep(0.02)
  end
  error("the child did not start: " .. tostring(helpers.read(log_path)))
end

local function wait_rc(rc_file, seconds)
  for _ = 1, seconds * 20 do
    local rc = read_number(rc_file)
    if rc then return rc end
    sleep(0.05)
  end
  return nil
end

describe("fenced campaign runners", function()
  local sb, dir, ctx, store

  setup(function()
    local w = world.start(10000)
    sb, dir, ctx, store = w.sb, w.dir, w.ctx, w.store
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  it("a paused runner that lost its lease stops on SIGCONT and sends nobody twice", function()
    local ids = {}
    for i = 1, RECIPIENTS do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { id = "fence", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = ids }, data = FIXED, policy = POLICY }))
    local config = dir .. "/child.json"
    helpers.write(config, cjson.encode {
      store = dir .. "/state.db", campaign = "fence", app_id = APP_ID, channel = LIFE, kind = "alipaylife",
      gateway = sb.gateway, private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
      alipay_public_key_file = dir .. "/alipay_public.pem", stale_after_s = STALE_S,
      pid_file = dir .. "/a.pid",
    })
    local config_b = dir .. "/child_b.json"
    local cfg_b = cjson.decode(helpers.read(config))
    cfg_b.pid_file = dir .. "/b.pid"
    helpers.write(config_b, cjson.encode(cfg_b))
    assert(sb:faults { latency_ms = LATENCY_MS, methods = { SEND } })

    local p = io.popen("pwd")
    local cwd = p:read("l")
    p:close()
    local cli_config = dir .. "/alipay.json"
    helpers.write(cli_config, cjson.encode { store = dir .. "/state.db", channels = { [LIFE] = {
      kind = "alipaylife", app_id = APP_ID, gateway = sb.gateway, timeout_ms = 10000,
      private_key_file = cwd .. "/spec/fixtures/keys/app_private_pkcs8.pem",
      alipay_public_key_file = dir .. "/alipay_public.pem" } } })
    local log_a, log_b = dir .. "/a.log", dir .. "/b.log"
    local a = spawn(("sh -c 'echo $$ >%s/a.pid; exec lua5.4 bin/alipay campaign resume fence --stale-after %d "
      .. "--progress none --config %s'"):format(dir, STALE_S, cli_config), log_a, dir .. "/a.pid", dir .. "/a.rc")
    for _ = 1, 200 do
      if c:status().counts.sent >= 20 then break end
      sleep(0.05)
    end
    -- Pause A outside a write transaction (a paused writer would hold the
    -- database lock: a test artefact, not what is tested here).
    local probe = assert(store_mod.open { path = dir .. "/state.db", busy_timeout_ms = 0 })
    local paused = false
    for _ = 1, 50 do
      os.execute("kill -STOP " .. a)
      sleep(0.05)
      if pcall(probe.transaction, probe, function() end) then
        paused = true
        break
      end
      os.execute("kill -CONT " .. a)
      sleep(0.01)
    end
    probe:close()
    assert.is_true(paused, "could not pause the runner outside a transaction")
    local at_pause = c:status()
    assert.are.equal("running", at_pause.status) -- still held: the heartbeat is fresh
    local inflight_a = {}
    for _, row in ipairs(assert(store:query("spec", [[SELECT alipay_id FROM campaign_recipients
      WHERE campaign = ? AND status = 'inflight']], "fence"))) do inflight_a[row.alipay_id] = true end
    sleep(STALE_S + 1)
    assert.are.equal("interrupted", c:status().status) -- the lease went stale

    -- B takes over and sends for a while; then A is continued.
    local b = spawn("lua5.4 spec/support/campaign_child.lua " .. config_b, log_b, dir .. "/b.pid",
      dir .. "/b.rc")
    local sent_before_b = at_pause.counts.sent
    for _ = 1, 200 do
      if c:status().counts.sent >= sent_before_b + 40 then break end
      sleep(0.05)
    end
    local delivered_at_cont = #sb:deliveries()
    os.execute("kill -CONT " .. a)
    local rc_a = wait_rc(dir .. "/a.rc", 30)
    assert.is_not_nil(rc_a, "the superseded runner did not exit")
    assert.are.equal(1, rc_a, helpers.read(log_a))
    local text_a = helpers.read(log_a)
    local b_pid = read_number(dir .. "/b.pid")
    assert.matches("superseded by [^%s]+/" .. b_pid .. " %(lease token %d+%) at %d%d%d%d%-", text_a)
    -- Said once, on one line.
    local _, said = text_a:gsub("superseded by", "")
    assert.are.equal(1, said, text_a)
    assert.is_nil(text_a:find("assertion failed", 1, true), text_a)
    local rc_b = wait_rc(dir .. "/b.rc", 120)
    assert.are.equal(0, rc_b, helpers.read(log_b))
    assert.is_true(process_gone(a) and process_gone(b))
    assert(sb:faults {})

    local st = c:status()
    assert.are.equal("completed", st.status, helpers.read(log_b))
    assert.are.equal(RECIPIENTS, st.counts.sent + st.counts.unknown)
    assert.is_true(st.counts.unknown <= POLICY.in_flight)
    assert.are.equal(st.counts.unknown, st.unknown_by_reason.superseded or 0)
    assert.is_true(#sb:deliveries() > delivered_at_cont)

    -- Against the delivery log: every sent one once, nobody twice; the
    -- unknown ones are exactly those A had in flight when paused.
    local delivered = {}
    for _, d in ipairs(sb:deliveries()) do delivered[d.to_user_id] = (delivered[d.to_user_id] or 0) + 1 end
    local path = dir .. "/export.jsonl"
    assert.are.equal(RECIPIENTS, c:export(path, "jsonl"))
    for line in io.lines(path) do
      local row = cjson.decode(line)
      if row.status == "sent" then
        assert.are.equal(1, delivered[row.alipay_id], row.alipay_id .. " sent, delivered "
          .. tostring(delivered[row.alipay_id]) .. " times")
      else
        assert.are.equal("unknown", row.status)
        assert.are.equal("superseded", row.unknown_reason)
        assert.is_true(inflight_a[row.alipay_id] == true, row.alipay_id .. " was not in flight in A")
        assert.is_true((delivered[row.alipay_id] or 0) <= 1)
      end
    end
    for id, n in pairs(delivered) do assert.are.equal(1, n, id .. " delivered " .. n .. " times") end
    print(("\n    [fence] %d recipients: A paused with %d in flight, %d sent, %d unknown (superseded)")
      :format(RECIPIENTS, (function() local n = 0 for _ in pairs(inflight_a) do n = n + 1 end return n end)(),
        st.counts.sent, st.counts.unknown))
  end)
end)
