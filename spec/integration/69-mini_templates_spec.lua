-- Mini-program templates and batch sends against the sandbox gateway: the
-- template list over several pages, a sync that adds, changes, revives and
-- invalidates registry templates (and one that fails writes nothing), the
-- library with its filters, applying for a template, and batch sends to a
-- crowd, scheduled, refused locally, and never retried after a failure.
local helpers = require "helpers"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"
local mini_templates = require "alipay.messaging.mini_templates"
local mini_batch = require "alipay.messaging.mini_batch"

local APP_ID = "2021000122671080"
local CODE = "mini1"

-- Seed facts (spec/fixtures/sandbox_seed.json).
local F1 = "2088857585575154" -- long-term MINI_A, in CROWD_VIP
local F2 = "2088088617867163" -- one-time MINI_A
local F3 = "2088595874450942" -- one-time MINI_A
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=" -- 订单号, 发货时间, 快递公司
local MINI_B = "NzVmYjA1ZDM0NjQ2NDZkNjk0YzBmMjc4OGM3ZDAxNDE=" -- 预约项目, 预约时间
local MINI_C = "YjU0ZGJkNzU4MzJmNGVkNGE1ZGY1NzQ4MTQ5OTQ3MzQ=" -- 退款金额, 退款方式, 到账时间, 订单号
local MINI_D = "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M=" -- deleted on Alipay

local M, B = mini_templates.METHODS, mini_batch.METHODS

describe("mini_templates and mini_batch", function()
  local sb, client

  local function channel()
    return { code = CODE, kind = "alipaymini", id_type = "user_id", app_id = APP_ID, client = client }
  end

  local function registry()
    local store = assert(require("alipay.store").open(helpers.tmpdir() .. "/t.db"))
    return require("alipay.messaging.templates").new(store)
  end

  local function arrivals(method)
    local n = 0
    for _, ev in ipairs(sb:arrivals()) do
      if ev.event == "arrive" and ev.method == method then n = n + 1 end
    end
    return n
  end

  local function ids(list)
    local out = {}
    for i, t in ipairs(list) do out[i] = t.id or t.template and t.template.id end
    return out
  end

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = "spec/fixtures/sandbox_seed.json" })
    client = assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs8.pem"),
                                 alipay_public_key = sb.alipay_public_key, gateway = sb.gateway, timeout_ms = 5000 })
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function() assert(sb:reset()) end)

  it("refuses a Life Account channel", function()
    assert.has_error(function() mini_templates.new { code = "life", kind = "alipaylife", client = client } end)
    assert.has_error(function() mini_batch.new { code = "life", kind = "alipaylife", client = client } end)
  end)

  describe("list", function()
    it("reads the templates with their keywords in one page", function()
      local list = assert(mini_templates.new(channel()):list())
      assert.are.same({ MINI_A, MINI_B, MINI_C }, ids(list))
      assert.are.same({ "订单号", "发货时间", "快递公司" }, list[1].keywords)
      assert.are.equal("订单发货提醒", list[1].name)
      assert.are.equal(1, arrivals(M.list))
    end)

    it("pages through more than ten templates", function()
      local tpl = mini_templates.new(channel())
      for _ = 1, 9 do assert(tpl:apply("LIB_BOOKING_OK", { "预约项目", "预约门店" })) end
      local list = assert(tpl:list())
      assert.are.equal(12, #list)
      assert.are.same({ "预约项目", "预约门店" }, list[12].keywords)
      assert.are.equal(2, arrivals(M.list))
    end)

    it("returns the failure of a page with the templates read before it", function()
      sb:faults { error_rate = 1, count = 1, methods = { M.list } }
      local list, _, err, partial = mini_templates.new(channel()):list()
      assert.is_nil(list)
      assert.are.equal("20000", err.code)
      assert.are.same({}, partial)
    end)
  end)

  describe("sync", function()
    local function seeded_registry()
      local reg = registry()
      assert(reg:import({
        { id = MINI_A, name = "订单发货提醒", keywords = { "订单号", "发货时间" } },          -- changed keywords
        { id = MINI_C, name = "退款到账通知", keywords = { "退款金额", "退款方式", "到账时间", "订单号" } },
        { id = MINI_D, name = "活动开始提醒", keywords = { "活动名称", "开始时间" } },        -- gone
      }, { channel = CODE, kind = "alipaymini" }))
      return reg
    end

    it("adds, changes, keeps and invalidates", function()
      local reg = seeded_registry()
      local report = assert(mini_templates.new(channel(), reg):sync())
      assert.are.same({ MINI_B }, ids(report.added))
      assert.are.same({ MINI_A }, ids(report.changed))
      assert.is_true(report.changed[1].keywords)
      assert.is_false(report.changed[1].name)
      assert.are.same({ MINI_C }, ids(report.unchanged))
      assert.are.same({ MINI_D }, ids(report.gone))
      assert.are.same({}, report.failed)
      assert.are.same({ "订单号", "发货时间", "快递公司" }, assert(reg:usable(CODE, MINI_A)).keywords)
      assert.are.same({ "预约项目", "预约时间" }, assert(reg:usable(CODE, MINI_B)).keywords)
      local d = assert(reg:get(CODE, MINI_D))
      assert.are.same({ "invalid", "NOT_LISTED" }, { d.status, d.invalid_code })
    end)

    it("marks a template deleted in the console invalid, and revives it when listed again", function()
      local reg = seeded_registry()
      local tpl = mini_templates.new(channel(), reg)
      assert(tpl:sync())
      assert(sb:delete_template(MINI_C))
      local report = assert(tpl:sync())
      assert.are.same({ MINI_C }, ids(report.gone))
      assert.are.same({ MINI_A, MINI_B }, ids(report.unchanged))
      assert.is_nil(reg:usable(CODE, MINI_C))
      -- The sandbox's reset brings MINI_C back: Alipay lists it again.
      assert(sb:reset())
      report = assert(tpl:sync())
      assert.are.same({ MINI_C }, ids(report.revived))
      assert(reg:usable(CODE, MINI_C))
      -- A second sync changes nothing.
      report = assert(tpl:sync())
      assert.are.same({ 0, 0, 0, 0, 3 }, { #report.added, #report.changed, #report.revived, #report.gone,
                                           #report.unchanged })
    end)

    it("refuses an empty listing that would invalidate everything, unless told", function()
      local reg = seeded_registry()
      local tpl = mini_templates.new(channel(), reg)
      for _, id in ipairs { MINI_A, MINI_B, MINI_C } do assert(sb:delete_template(id)) end
      local report, _, err = tpl:sync()
      assert.is_nil(report)
      assert.are.equal("state", err.kind)
      assert(reg:usable(CODE, MINI_A))
      report = assert(tpl:sync { allow_empty = true })
      assert.are.same({ MINI_A, MINI_C, MINI_D }, ids(report.gone))
      assert.is_nil(reg:usable(CODE, MINI_A))
    end)

    it("writes nothing when the listing fails", function()
      local reg = seeded_registry()
      sb:faults { error_rate = 1, count = 1, methods = { M.list } }
      local report, _, err = mini_templates.new(channel(), reg):sync()
      assert.is_nil(report)
      assert.are.equal("transient", require("alipay.errors").classify(err))
      assert(reg:usable(CODE, MINI_D))
      assert.are.same({ "订单号", "发货时间" }, assert(reg:get(CODE, MINI_A)).keywords)
    end)
  end)

  describe("library and apply", function()
    it("lists the library with its filters", function()
      local tpl = mini_templates.new(channel())
      local lib = assert(tpl:library())
      assert.are.equal(4, #lib)
      assert.are.same({ "订单号", "发货时间", "快递公司", "收货地址", "商品名称" }, lib[1].keywords)
      assert.is_false(lib[4].selectable)
      local long = assert(tpl:library { scene_rule = "long_term_subscribe" })
      assert.are.same({ "LIB_BOOKING_OK" }, { long[1].code, long[2] })
      local _, _, bad = tpl:library { scene_rule = "weekly" }
      assert.are.same({ "invalid", "scene_rule" }, { bad.kind, bad.field })
    end)

    it("applies and imports the new template; a sync then takes the name Alipay lists", function()
      local reg = registry()
      local tpl = mini_templates.new(channel(), reg)
      local applied = assert(tpl:apply("LIB_ORDER_SHIPPED", { "订单号", "收货地址" }, { name = "发货" }))
      assert.is_true(applied.imported)
      local t = assert(reg:usable(CODE, applied.template_id))
      assert.are.same({ "订单号", "收货地址" }, t.keywords)
      assert.are.equal("LIB_ORDER_SHIPPED", t.library_id)
      local report = assert(tpl:sync())
      assert.are.same({ applied.template_id }, ids(report.changed))   -- the name Alipay lists wins
      assert.are.same({ MINI_A, MINI_B, MINI_C }, ids(report.added))
    end)

    it("refuses a bad application before any call, and reports Alipay's refusal", function()
      local tpl = mini_templates.new(channel())
      for _, kw in ipairs { { "订单号" }, { "a", "b", "c", "d", "e", "f" }, { "订单号", "订单号" }, "订单号" } do
        local ok, _, d = tpl:apply("LIB_ORDER_SHIPPED", kw)
        assert.is_nil(ok)
        assert.are.equal("invalid", d.kind)
      end
      assert.are.equal(0, arrivals(M.apply))
      local ok, _, d = tpl:apply("LIB_CLOSED", { "名称", "时间" })
      assert.is_nil(ok)
      assert.are.same({ "business", "SANDBOX_LIB_NOT_SELECTABLE" }, { d.kind, d.sub_code })
    end)
  end)

  describe("batchsend", function()
    local function deliveries()
      local out = {}
      for _, d in ipairs(assert(sb:deliveries())) do
        if d.method == B.batchsend then out[#out + 1] = d end
      end
      return out
    end

    it("sends to the template's subscribers, or a crowd of them, now or later", function()
      local batch = mini_batch.new(channel())
      local r = assert(batch:batchsend(MINI_A, { "HU7142", "12:00", "顺丰" }, { page = "pages/order?id=1" }))
      assert.is_string(r.batch_msg_id)
      r = assert(batch:batchsend(MINI_A, { "HU7142", "12:00", "顺丰" },
        { crowd_code = "CROWD_VIP", schedule_send_time = "2024-06-08 09:00:00" }))
      local d = deliveries()
      assert.are.equal(2, #d)
      assert.are.same({ F2, F3, F1 }, d[1].recipients)
      assert.are.equal("pages/order?id%3D1", d[1].payload.page)
      assert.are.same({ F1 }, d[2].recipients)
      assert.are.same({ "CROWD_VIP", "2024-06-08 09:00:00", r.batch_msg_id },
        { d[2].crowd_code, d[2].schedule_send_time, d[2].batch_msg_id })
      assert.are.equal('{"keyword1":{"value":"HU7142"},"keyword2":{"value":"12:00"},"keyword3":{"value":"顺丰"}}',
        d[1].payload.data)
    end)

    it("checks the data against the registry and refuses locally", function()
      local reg = registry()
      assert(reg:import({ { id = MINI_B, keywords = { "预约项目", "预约时间" } },
                          { id = MINI_D, keywords = { "活动名称", "开始时间" } } }, { channel = CODE, kind = "alipaymini" }))
      assert(reg:mark_invalid(CODE, MINI_D, "NOT_LISTED"))
      local batch = mini_batch.new(channel(), reg)
      local cases = {
        { MINI_B, { "only one" }, nil, "data" },
        { MINI_B, { "a", ("长"):rep(51) }, nil, "data" },
        { MINI_D, { "a", "b" }, nil, "template" },
        { "unknown", { "a", "b" }, nil, "template" },
        { MINI_B, { "a", "b" }, { schedule_send_time = "2024-02-30 09:00:00" }, "request" },
        { MINI_B, { "a", "b" }, { schedule_send_time = 1717756911 }, "request" },
        { MINI_B, { "a", "b" }, { crowd_code = "" }, "request" },
      }
      for i, c in ipairs(cases) do
        local ok, _, detail = batch:batchsend(c[1], c[2], c[3])
        assert.is_nil(ok, "case " .. i)
        assert.are.same({ "invalid", c[4] }, { detail.kind, detail.reason }, "case " .. i)
      end
      assert.are.equal(0, arrivals(B.batchsend))
      assert(batch:batchsend(MINI_B, { "a", "b" }, { schedule_send_time = "2024-02-29 09:00:00" }))
    end)

    it("is never retried: a failure is returned after one request", function()
      local batch = mini_batch.new(channel())
      sb:faults { error_rate = 1, count = 1, methods = { B.batchsend } }
      local ok, _, d = batch:batchsend(MINI_A, { "a", "b", "c" })
      assert.is_nil(ok)
      assert.is_true(d.retryable)      -- a caller may decide to; this library does not
      assert.are.equal(1, arrivals(B.batchsend))
      sb:faults { reset = 1, methods = { B.batchsend } }
      ok, _, d = batch:batchsend(MINI_A, { "a", "b", "c" })
      assert.is_nil(ok)
      assert.is_true(d.unknown)
      assert.are.equal(2, arrivals(B.batchsend))
      sb:faults {}
      ok, _, d = batch:batchsend(MINI_D, { "a", "b" })
      assert.is_nil(ok)
      assert.are.same({ "business", "SANDBOX_TEMPLATE_NOT_EXIST" }, { d.kind, d.sub_code })
      assert.are.equal(3, arrivals(B.batchsend))
      assert.are.same({}, deliveries())
    end)
  end)
end)
