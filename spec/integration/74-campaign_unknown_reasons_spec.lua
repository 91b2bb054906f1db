-- Unknowns you can act on (issue 13 §4): every unknown recipient carries a
-- reason; `campaign status` counts them by reason; `campaign resume
-- --retry-unknown=REASON` retries only those. One campaign against the
-- sandbox's faults, one fault at a time (in_flight 1, the run stopped by
-- on_progress once the fault has struck): a 502 (http_5xx), a truncated
-- answer (truncated), a hang past the client's timeout (timeout) and a
-- runner killed with SIGKILL while its request hangs (runner_died). Then the
-- CLI retries the http_5xx ones only, and the delivery log shows everyone
-- delivered exactly once (the 502s never executed; the truncated answers had).
local helpers = require "helpers"
local world = require "support.campaign_world"
local cjson = require "cjson"
local campaign = require "alipay.campaign"

local APP_ID, LIFE, TEMPLATE, SEND, FIXED = world.APP_ID, world.LIFE, world.TEMPLATE, world.SEND, world.FIXED
local generated, sleep, process_gone = world.generated, world.sleep, world.process_gone
local RECIPIENTS = 20
local TIMEOUT_MS = 1500
local POLICY = { in_flight = 1, qps = 100, backoff_ms = 10 }



local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end


describe("unknown recipients by reason", function()
  local sb, dir, ctx, cli_config

  setup(function()
    local w = world.start(TIMEOUT_MS)
    sb, dir, ctx = w.sb, w.dir, w.ctx
    local channel = w.channel
    cli_config = dir .. "/alipay.json"
    local p = io.popen("pwd")
    local cwd = p:read("l")
    p:close()
    local cli_channel = {}
    for k, v in pairs(channel) do cli_channel[k] = v end
    -- A channel file's paths are relative to the file.
    cli_channel.private_key_file = cwd .. "/" .. channel.private_key_file
    helpers.write(cli_config, cjson.encode { store = dir .. "/state.db", channels = { [LIFE] = cli_channel } })
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  local function alipay(args)
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local _, _, code = os.execute(("lua5.4 bin/alipay %s --config %s >%s 2>%s"):format(args,
      shell_quote(cli_config), shell_quote(out), shell_quote(err)))
    return code, helpers.read(out), helpers.read(err)
  end

  -- One run that stops (resumable) once `unknown` recipients are unknown.
  local function run_until(c, unknown)
    return assert(c:run { progress_every_ms = 0, on_progress = function(s)
      if s.status == "running" and s.counts.unknown >= unknown then return false end
    end })
  end

  local function rows_by_reason(c)
    local path = dir .. "/export.jsonl"
    assert.are.equal(RECIPIENTS, c:export(path, "jsonl"))
    local by, rows = {}, {}
    for line in io.lines(path) do
      local row = cjson.decode(line)
      rows[#rows + 1] = row
      if row.status == "unknown" then
        local r = row.unknown_reason
        by[r] = by[r] or {}
        by[r][#by[r] + 1] = row.alipay_id
      end
    end
    return by, rows
  end

  it("records why, shows it by reason, and retries only the reasons asked for", function()
    local ids = {}
    for i = 1, RECIPIENTS do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { id = "reasons", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = ids }, data = FIXED, policy = POLICY }))
    assert(sb:faults { http_502 = 1, count = 3, methods = { SEND } })
    local s = run_until(c, 3)
    assert.are.equal("stopped", s.status)
    assert(sb:faults { truncate = 1, count = 2, methods = { SEND } })
    run_until(c, 5)
    assert(sb:faults { latency_ms = TIMEOUT_MS * 2, count = 1, methods = { SEND } })
    run_until(c, 6)

    -- A runner killed while its request hangs in the gateway.
    assert(sb:faults { latency_ms = 4000, count = 1, methods = { SEND } })
    local child = dir .. "/child.json"
    helpers.write(child, cjson.encode {
      store = dir .. "/state.db", campaign = "reasons", app_id = APP_ID, channel = LIFE, kind = "alipaylife",
      gateway = sb.gateway, private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
      alipay_public_key_file = dir .. "/alipay_public.pem", pid_file = dir .. "/child.pid", timeout_ms = 10000,
    })
    os.execute(("lua5.4 spec/support/campaign_child.lua %s >>%s 2>&1 &"):format(shell_quote(child),
      shell_quote(dir .. "/child.log")))
    local pid
    for _ = 1, 200 do
      local f = io.open(dir .. "/child.pid", "rb")
      pid = f and tonumber(f:read("a"))
      if f then f:close() end
      if pid and c:status().counts.inflight == 1 then break end
      sleep(0.02)
    end
    assert.are.equal(1, c:status().counts.inflight, helpers.read(dir .. "/child.log"))
    os.execute("kill -9 " .. pid)
    for _ = 1, 100 do
      if process_gone(pid) then break end
      sleep(0.05)
    end
    assert(sb:faults {})
    local final = assert(c:run())
    assert.are.equal("completed", final.status)

    local st = c:status()
    assert.same({ http_5xx = 3, truncated = 2, timeout = 1, runner_died = 1 }, st.unknown_by_reason)
    assert.are.equal(7, st.counts.unknown)
    assert.are.equal(RECIPIENTS - 7, st.counts.sent)

    -- status: text and JSON
    local code, out, err = alipay("campaign status reasons")
    assert.are.equal(0, code, err)
    assert.matches("unknown by reason", out)
    for _, line in ipairs { "http_5xx%s+3", "truncated%s+2", "timeout%s+1", "runner_died%s+1" } do
      assert.matches(line, out)
    end
    code, out, err = alipay("campaign status reasons --json")
    assert.are.equal(0, code, err)
    assert.same(st.unknown_by_reason, cjson.decode(out).unknown_by_reason)

    -- A reason that does not exist is a usage error naming the valid ones.
    local _
    code, _, err = alipay("campaign resume reasons --retry-unknown=http_5xx,bogus")
    assert.are.equal(2, code)
    assert.matches('unknown reason "bogus"', err)
    assert.matches("valid: timeout, reset, truncated, http_5xx, unverified, runner_died, superseded, interrupted", err)

    local before = rows_by_reason(c)
    code, _, err = alipay("campaign resume reasons --retry-unknown=http_5xx --progress none")
    assert.are.equal(0, code, err)
    st = c:status()
    assert.same({ truncated = 2, timeout = 1, runner_died = 1 }, st.unknown_by_reason)
    assert.are.equal(RECIPIENTS - 4, st.counts.sent)
    local after, rows = rows_by_reason(c)
    for _, reason in ipairs { "truncated", "timeout", "runner_died" } do
      assert.same(before[reason], after[reason], reason .. " rows must be left alone")
    end

    -- Against the delivery log, once the hanging requests have ended.
    sleep(2)
    local delivered = {}
    for _, d in ipairs(sb:deliveries()) do delivered[d.to_user_id] = (delivered[d.to_user_id] or 0) + 1 end
    local retried = {}
    for _, id in ipairs(before.http_5xx) do retried[id] = true end
    for _, row in ipairs(rows) do
      local id = row.alipay_id
      if row.status == "sent" then
        assert.are.equal(1, delivered[id], id .. " delivered " .. tostring(delivered[id]) .. " times")
        if retried[id] then assert.are.equal(2, row.attempts) end -- the 502 one, then the retry
      else
        assert.is_true((delivered[id] or 0) <= 1, id .. " delivered twice")
      end
    end
    -- The truncated answers came from executed sends: delivered, and not sent again.
    for _, id in ipairs(after.truncated) do assert.are.equal(1, delivered[id]) end
    for id, n in pairs(delivered) do assert.are.equal(1, n, id .. " delivered " .. n .. " times") end
  end)
end)
