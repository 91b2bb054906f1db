-- Crash safety of campaigns: a campaign of a few thousand recipients runs
-- in a child process (spec/support/campaign_child.lua) that is killed with
-- SIGKILL at a random moment, again and again; each time another child
-- resumes it. After the last resume, checked against the sandbox's
-- delivery log: nobody lost (every recipient final), nobody delivered
-- twice, and every unknown recipient is one that was in flight at a kill.
--
-- The sandbox answers sends after LATENCY_MS, so that every kill finds
-- requests in flight, some already executed by the gateway (delivered, but
-- the answer never read) and some not.
local helpers = require "helpers"
local world = require "support.campaign_world"
local cjson = require "cjson"
local campaign = require "alipay.campaign"

local APP_ID, LIFE, TEMPLATE, SEND, FIXED = world.APP_ID, world.LIFE, world.TEMPLATE, world.SEND, world.FIXED
local generated, sleep, process_gone = world.generated, world.sleep, world.process_gone
local RECIPIENTS = 2500        -- generated followers; every 125th line adds a stranger (failed),
                               -- every 250th a duplicate (skipped)
local KILLS = 12
local LATENCY_MS = 30
local POLICY = { in_flight = 8, qps = 150, backoff_ms = 50 }

local function stranger(n) return ("20889999%08d"):format(n) end




-- Starts the child in the background -> pid
local function spawn(config_path, log_path)
  local p = io.popen(("lua5.4 spec/support/campaign_child.lua '%s' >>'%s' 2>&1 & echo $!"):format(config_path,
    log_path))
  local pid = tonumber(p:read("l"))
  p:close()
  return assert(pid, "the child did not start")
end

local function wait_gone(pid, seconds)
  for _ = 1, seconds * 20 do
    if process_gone(pid) then return true end
    sleep(0.05)
  end
  return false
end

describe("campaign crash safety", function()
  local sb, dir, ctx, store

  setup(function()
    local w = world.start(10000)
    sb, dir, ctx, store = w.sb, w.dir, w.ctx, w.store
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  it("loses nobody and sends nobody twice across " .. KILLS .. " kill -9", function()
    local lines = { "user_id" }
    for i = 1, RECIPIENTS do
      lines[#lines + 1] = generated(i)
      if i % 250 == 0 then lines[#lines + 1] = generated(i - 1) end -- duplicates
      if i % 125 == 0 then lines[#lines + 1] = stranger(i) end       -- not followers
    end
    local audience = dir .. "/audience.csv"
    helpers.write(audience, table.concat(lines, "\n") .. "\n")
    local total = #lines - 1
    local c = assert(campaign.create(ctx, { id = "crash", channel = LIFE, template = TEMPLATE,
                                            audience = { file = audience }, data = FIXED, policy = POLICY }))
    assert.are.equal(total, c:status().total)

    local config = dir .. "/child.json"
    helpers.write(config, cjson.encode {
      store = dir .. "/state.db", campaign = "crash", app_id = APP_ID, channel = LIFE, kind = "alipaylife",
      gateway = sb.gateway, private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
      alipay_public_key_file = dir .. "/alipay_public.pem",
    })
    local log = dir .. "/child.log"
    assert(sb:faults { latency_ms = LATENCY_MS, methods = { SEND } })

    math.randomseed(os.time())
    local in_flight_at_kill, kills, delays = {}, 0, {}
    for _ = 1, KILLS do
      local pid = spawn(config, log)
      local delay = 0.15 + math.random() * 0.9
      sleep(delay)
      if process_gone(pid) then break end -- it finished: nothing left to kill
      os.execute("kill -9 " .. pid)
      assert.is_true(wait_gone(pid, 10), "the child survived kill -9")
      kills = kills + 1
      delays[#delays + 1] = ("%.2f"):format(delay)
      local st = c:status()
      -- A child killed before it claimed the campaign leaves it as it was.
      assert.is_truthy(st.status == "interrupted" or st.status == "created", st.status)
      local rows = assert(store:query("spec", [[SELECT alipay_id FROM campaign_recipients
        WHERE campaign = ? AND status = 'inflight']], "crash"))
      for _, row in ipairs(rows) do in_flight_at_kill[row.alipay_id] = true end
      assert.is_true(#rows <= POLICY.in_flight)
    end
    assert.is_true(kills >= 10, "only " .. kills .. " kills landed before the campaign finished")
    assert(sb:faults {})

    -- The last resume, in another child, to the end.
    local pid = spawn(config, log)
    assert.is_true(wait_gone(pid, 100), "the last resume did not finish")
    local st = c:status()
    assert.are.equal("completed", st.status, helpers.read(log))
    assert.are.equal(0, st.counts.pending)
    assert.are.equal(0, st.counts.inflight)
    assert.are.equal(total, st.counts.sent + st.counts.failed + st.counts.skipped + st.counts.unknown)
    assert.are.equal(RECIPIENTS // 250, st.counts.skipped)
    -- strangers fail (MSG_SD_NOFOLLOW), or are unknown when a kill caught them in flight
    assert.is_true(st.counts.failed <= RECIPIENTS // 125)

    -- Against the delivery log.
    local delivered = {}
    for _, d in ipairs(sb:deliveries()) do
      delivered[d.to_user_id] = (delivered[d.to_user_id] or 0) + 1
    end
    local path = dir .. "/export.jsonl"
    assert.are.equal(total, c:export(path, "jsonl"))
    local unknown, unknown_delivered, sent = 0, 0, 0
    for text in io.lines(path) do
      local row = cjson.decode(text)
      local id = row.alipay_id
      if row.status == "sent" then
        sent = sent + 1
        assert.are.equal(1, delivered[id], id .. " is sent: delivered " .. tostring(delivered[id]) .. " times")
      elseif row.status == "unknown" then
        unknown = unknown + 1
        assert.is_true(in_flight_at_kill[id] == true, id .. " is unknown but was not in flight at a kill")
        assert.are.equal("INTERRUPTED", row.code)
        assert.is_true((delivered[id] or 0) <= 1, id .. " delivered twice")
        if delivered[id] then unknown_delivered = unknown_delivered + 1 end
      elseif row.status == "failed" then
        assert.are.equal("MSG_SD_NOFOLLOW", row.sub_code)
        assert.is_nil(delivered[id], id .. " failed but was delivered")
      else
        assert.are.equal("DUPLICATE", row.code)
      end
    end
    for id, n in pairs(delivered) do assert.are.equal(1, n, id .. " delivered " .. n .. " times") end
    assert.are.equal(sent, st.counts.sent)
    assert.is_true(unknown <= kills * POLICY.in_flight)
    print(("\n    [crash] %d lines, %d kills after %s s; %d sent, %d unknown (%d of them delivered), %d failed"
      .. ", %d skipped"):format(total, kills, table.concat(delays, "/"), sent, unknown, unknown_delivered,
        st.counts.failed, st.counts.skipped))
  end)
end)
