-- Campaigns whose audience Alipay resolves (docs/messaging.md §6.2): a mini
-- program's crowd is ONE stored row sent in ONE batch send, under the same
-- exactly-once rules as a recipient (inflight first, unknown when open,
-- re-sent only with retry_unknown); a label, and a crowd on a Life Account,
-- are refused at create with nothing stored. Against the sandbox, through
-- the library and through `alipay campaign run --crowd ... --json`.
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"
local campaign = require "alipay.campaign"
local workspace = require "alipay.workspace"

local APP_ID = "2021000122671080"
local SEED_PATH = "spec/fixtures/sandbox_seed.json"
local LIFE = "alipaylife123"
local MINI = "mini1"
local TEMPLATE = "14330d60f0ab4516853a0900827cee35"
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=" -- 3 keywords
local MINI_D = "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M=" -- deleted on Alipay
local BATCH = "alipay.open.app.mini.templatemessage.batchsend"
local CROWD = "CROWD_VIP" -- in the seed: F1 (long-term subscriber of MINI_A), F4 (refused), a stranger
local F1 = "2088857585575154"
local DATA = { "春季大促", "2026-03-01 10:00", "全场包邮" }

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

describe("campaign with a crowd or label audience", function()
  local sb, dir, config_path

  local function arrivals(method)
    local n = 0
    for _, ev in ipairs(sb:arrivals()) do
      if ev.event == "arrive" and ev.method == method then n = n + 1 end
    end
    return n
  end

  local function batch_deliveries()
    local list = {}
    for _, d in ipairs(sb:deliveries()) do
      if d.method == BATCH then list[#list + 1] = d end
    end
    return list
  end

  local function context()
    local ws = assert(workspace.open { config = config_path, store = helpers.tmpdir() .. "/state.db" })
    assert(ws.registry:import {
      { channel = LIFE, kind = "alipaylife", id = TEMPLATE, name = "订单状态提醒",
        keywords = { "订单号", "订单状态", "更新时间" } },
      { channel = MINI, kind = "alipaymini", id = MINI_A, name = "订单发货提醒",
        keywords = { "订单号", "发货时间", "快递公司" } },
      { channel = MINI, kind = "alipaymini", id = MINI_D, name = "活动开始提醒", keywords = { "活动名称", "开始时间" } },
    })
    return assert(ws:campaign_ctx {})
  end

  local function crowd_campaign(ctx, id, over)
    local spec = { id = id, channel = MINI, template = MINI_A, audience = { crowd = CROWD }, data = DATA,
                   page = "pages/sale" }
    for k, v in pairs(over or {}) do spec[k] = v end
    return campaign.create(ctx, spec)
  end

  local function rows(ctx, id)
    local list = {}
    for _, r in ipairs(assert(ctx.store:recipients_page(id, 0, 10))) do list[#list + 1] = r end
    return list
  end

  setup(function()
    dir = helpers.tmpdir()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = SEED_PATH })
    helpers.write(dir .. "/alipay_public.pem", sb.alipay_public_key)
    local function ch(kind)
      return { kind = kind, app_id = APP_ID,
               private_key_file = helpers.cwd() .. "/spec/fixtures/keys/app_private_pkcs8.pem",
               alipay_public_key_file = dir .. "/alipay_public.pem", gateway = sb.gateway, timeout_ms = 5000 }
    end
    config_path = dir .. "/alipay.json"
    helpers.write(config_path, cjson.encode { store = dir .. "/cli.db",
                                              channels = { [LIFE] = ch("alipaylife"), [MINI] = ch("alipaymini") } })
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    assert(sb:reset())
  end)

  it("stores one row for a crowd and sends it in one batch send, once", function()
    local ctx = context()
    local c = assert(crowd_campaign(ctx, "crowd"))
    local stored = rows(ctx, "crowd")
    assert.are.equal(1, #stored)
    assert.same({ "crowd", CROWD, "pending", true }, { stored[1].id_type, stored[1].alipay_id, stored[1].status,
                                                       stored[1].checked })
    local summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    assert.are.same({ pending = 0, inflight = 0, sent = 1, failed = 0, skipped = 0, unknown = 0 }, summary.counts)
    -- One request, no subscription query, no single send.
    assert.are.equal(1, arrivals(BATCH))
    assert.are.equal(0, arrivals("alipay.open.app.messagetemplate.subscribe.query"))
    assert.are.equal(0, arrivals("alipay.open.app.mini.templatemessage.send"))
    local d = batch_deliveries()
    assert.are.equal(1, #d)
    assert.are.equal(#sb:deliveries(), 1)
    assert.same({ MINI_A, CROWD, "pages/sale" }, { d[1].template_id, d[1].crowd_code, d[1].payload.page })
    assert.are.equal("春季大促", cjson.decode(d[1].payload.data).keyword1.value)
    assert.same({ F1 }, d[1].recipients) -- the sandbox's choice: the crowd's subscribers
    -- The batch_msg_id is recorded, and the summary and the status say what was done.
    local report = summary.crowd
    assert.are.equal(d[1].batch_msg_id, report.batch_msg_id)
    assert.is_false(report.per_user_results)
    assert.are.equal(("sent to crowd %s in one batch send (batch_msg_id %s); Alipay reports no per-user results")
      :format(CROWD, d[1].batch_msg_id), report.text)
    assert.same(report, assert(c:status()).crowd)
    -- Running it again sends nothing.
    summary = assert(campaign.open(ctx, "crowd"):run())
    assert.are.equal(1, summary.counts.sent)
    assert.are.equal(1, arrivals(BATCH))
    assert.are.equal(1, #batch_deliveries())
  end)

  it("commits the crowd row inflight before its batch send arrives", function()
    local ctx = context()
    local c = assert(crowd_campaign(ctx, "crowd-inflight"))
    assert(sb:faults { latency_ms = 800, methods = { BATCH } })
    local seen
    local summary = assert(c:run { progress_every_ms = 20, on_progress = function()
      -- The request has reached the gateway and has not been answered.
      if not seen and arrivals(BATCH) == 1 and #batch_deliveries() == 0 then
        local r = ctx.store:recipient_get("crowd-inflight", 1)
        seen = { r.status, r.attempts }
      end
    end })
    assert(sb:faults {})
    assert.same({ "inflight", 1 }, seen)
    assert.are.equal(1, summary.counts.sent)
  end)

  it("makes a crowd row its runner left inflight unknown (runner_died), and does not send it", function()
    local ctx = context()
    local c = assert(crowd_campaign(ctx, "crowd-crash"))
    -- A run of a process that is gone claimed the row (as kill -9 after the claim leaves it).
    local state = require "alipay.campaign.lease"
    local token = assert(ctx.store:campaign_acquire("crowd-crash", 0, state.host .. "/999999999/dead", os.time()))
    assert.are.equal(1, #assert(ctx.store:recipients_claim("crowd-crash", token, os.time() * 1000, 10, os.time())))
    local summary = assert(c:run())
    assert.are.same({ pending = 0, inflight = 0, sent = 0, failed = 0, skipped = 0, unknown = 1 }, summary.counts)
    assert.are.equal("runner_died", rows(ctx, "crowd-crash")[1].unknown_reason)
    assert.matches("unknown outcome (runner_died)", summary.crowd.text, 1, true)
    assert.are.equal(0, arrivals(BATCH))
  end)

  for _, case in ipairs {
    { fault = "reset", reason = "reset", delivered = 0 },
    { fault = "truncate", reason = "truncated", delivered = 1 },
  } do
    it(("leaves the crowd row unknown after a %s, and sends it again only with retry_unknown"):format(case.fault),
      function()
        local ctx = context()
        local c = assert(crowd_campaign(ctx, "crowd-" .. case.fault))
        assert(sb:faults { [case.fault] = 1, count = 1, methods = { BATCH } })
        local summary = assert(c:run())
        assert(sb:faults {})
        assert.are.same({ pending = 0, inflight = 0, sent = 0, failed = 0, skipped = 0, unknown = 1 }, summary.counts)
        assert.are.equal(1, arrivals(BATCH))
        assert.are.equal(case.delivered, #batch_deliveries())
        local row = rows(ctx, c.id)[1]
        assert.same({ "unknown", case.reason, 1 }, { row.status, row.unknown_reason, row.attempts })
        assert.matches("unknown outcome %(" .. case.reason .. "%)", summary.crowd.text)
        assert.is_nil(summary.crowd.batch_msg_id)
        assert.same({ [case.reason] = 1 }, assert(c:status()).unknown_by_reason)
        -- A second run sends nothing.
        summary = assert(c:run())
        assert.are.equal(1, summary.counts.unknown)
        assert.are.equal(1, arrivals(BATCH))
        -- retry_unknown sends once more.
        summary = assert(c:run { retry_unknown = true })
        assert.are.equal(1, summary.counts.sent)
        assert.are.equal(2, arrivals(BATCH))
        assert.are.equal(case.delivered + 1, #batch_deliveries())
        assert.are.equal(2, rows(ctx, c.id)[1].attempts)
        assert.are.equal(batch_deliveries()[case.delivered + 1].batch_msg_id, summary.crowd.batch_msg_id)
        assert.is_nil(c:run { retry_unknown = true }.crowd.text:find("unknown", 1, true))
        assert.are.equal(2, arrivals(BATCH))
      end)
  end

  it("records a refused batch send with Alipay's code: an unknown crowd, a deleted template", function()
    local ctx = context()
    local c = assert(crowd_campaign(ctx, "no-crowd", { audience = { crowd = "NO_SUCH_CROWD" } }))
    local summary = assert(c:run())
    assert.are.same({ pending = 0, inflight = 0, sent = 0, failed = 1, skipped = 0, unknown = 0 }, summary.counts)
    local row = rows(ctx, "no-crowd")[1]
    assert.same({ "failed", "40004", "SANDBOX_CROWD_NOT_EXIST" }, { row.status, row.code, row.sub_code })
    assert.matches("^the batch send to crowd NO_SUCH_CROWD was refused: 40004 SANDBOX_CROWD_NOT_EXIST",
      summary.crowd.text)
    assert.are.equal(0, #batch_deliveries())
    assert(c:run())
    assert.are.equal(1, arrivals(BATCH)) -- a refusal is final: not sent again

    local gone = assert(crowd_campaign(ctx, "gone", { template = MINI_D, data = { "春季大促", "2026-03-01" } }))
    summary = assert(gone:run())
    assert.are.equal(1, summary.counts.failed)
    assert.are.equal("SANDBOX_TEMPLATE_NOT_EXIST", rows(ctx, "gone")[1].sub_code)
    assert.are.equal(0, #batch_deliveries())
  end)

  it("refuses placeholders, a label, and a crowd on a Life Account at create, storing nothing", function()
    local ctx = context()
    local c, err, detail = crowd_campaign(ctx, "placeholders", { data = { "{order_no}", "x", "y" } })
    assert.is_nil(c)
    assert.matches("placeholder {order_no} takes a value per recipient", err, 1, true)
    assert.same({ "input", "data" }, { detail.kind, detail.field })

    c, err, detail = campaign.create(ctx, { id = "label", channel = LIFE, template = TEMPLATE,
                                            audience = { label = "1001" }, data = { keyword1 = { value = "x" } } })
    assert.is_nil(c)
    assert.matches("message.label.send carries a text or image-text message only, never a template message", err,
      1, true)
    assert.matches("no API lists the users of a label", err, 1, true)
    assert.matches("`alipay broadcast text --label 1001` or `alipay broadcast image-text --label 1001`", err, 1, true)
    assert.same({ "input", "audience" }, { detail.kind, detail.field })

    c, err, detail = campaign.create(ctx, { id = "life-crowd", channel = LIFE, template = TEMPLATE,
                                            audience = { crowd = CROWD }, data = { keyword1 = { value = "x" } } })
    assert.is_nil(c)
    assert.matches("a crowd (棋盘人群) is a mini-program audience", err, 1, true)
    assert.are.equal("input", detail.kind)

    for _, code in ipairs { "", "A B", "A\nB", 42 } do
      c, err = crowd_campaign(ctx, "bad-code", { audience = { crowd = code } })
      assert.is_nil(c)
      assert.matches("audience.crowd: expected a crowd code without spaces or control characters", err, 1, true)
    end

    for _, id in ipairs { "placeholders", "label", "life-crowd", "bad-code" } do
      assert.is_nil(ctx.store:campaign_get(id))
      assert.are.same({}, rows(ctx, id))
    end
    assert.are.same({}, assert(campaign.list(ctx)))
    assert.are.equal(0, #sb:arrivals())
  end)

  describe("alipay campaign run --crowd", function()
    local function alipay(args)
      local out, err = dir .. "/stdout", dir .. "/stderr"
      local _, _, code = os.execute(("lua5.4 bin/alipay %s --config %s >%s 2>%s"):format(args,
        shell_quote(config_path), shell_quote(out), shell_quote(err)))
      return code, helpers.read(out), helpers.read(err)
    end

    setup(function()
      local ws = assert(workspace.open { config = config_path })
      assert(ws.registry:import({ { id = MINI_A, kind = "alipaymini", name = "订单发货提醒",
        keywords = { "订单号", "发货时间", "快递公司" } } },
        { channel = MINI }))
      ws:close()
    end)

    it("sends once and says so, in text and --json; a run again sends nothing", function()
      local code, out, err = alipay(("campaign run --channel %s --template %s --crowd %s --data %s --id cli-crowd "
        .. "--progress none --json"):format(MINI, shell_quote(MINI_A), CROWD, shell_quote(cjson.encode(DATA))))
      assert.are.equal(0, code, err)
      local status = cjson.decode(out)
      assert.same({ "completed", 1, 1 }, { status.status, status.total, status.counts.sent })
      local d = batch_deliveries()
      assert.are.equal(1, #d)
      assert.same({ CROWD, d[1].batch_msg_id, false }, { status.crowd.crowd_code, status.crowd.batch_msg_id,
                                                         status.crowd.per_user_results })
      code, out = alipay("campaign status cli-crowd")
      assert.are.equal(0, code)
      assert.matches(("sent to crowd %s in one batch send (batch_msg_id %s); Alipay reports no per-user results")
        :format(CROWD, d[1].batch_msg_id), out, 1, true)
      code = alipay("campaign resume cli-crowd --progress none")
      assert.are.equal(0, code)
      assert.are.equal(1, arrivals(BATCH))
    end)

    it("refuses --label and placeholders with the reason, exit 1, nothing stored", function()
      local code, out, err = alipay(("campaign run --channel %s --template %s --label 1001 --data '{}' --id cli-label")
        :format(LIFE, TEMPLATE))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("never a template message", err, 1, true)
      assert.matches("alipay broadcast text --label 1001", err, 1, true)
      local _
      code, _, err = alipay(("campaign run --channel %s --template %s --crowd %s --data %s --id cli-ph --json")
        :format(MINI, shell_quote(MINI_A), CROWD, shell_quote('["{order}", "x", "y"]')))
      assert.are.equal(1, code)
      assert.matches("placeholder {order}", err, 1, true)
      for _, id in ipairs { "cli-label", "cli-ph" } do
        assert.are.equal(1, (alipay("campaign status " .. id)))
      end
      assert.are.equal(0, #sb:arrivals())
    end)
  end)
end)
