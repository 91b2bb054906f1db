-- The sandbox gateway's mini-program template methods and batch send, driven
-- directly (no nginx): template.batchquery (paging, deleted templates left
-- out), templatelib.batchquery (filters), template.apply (checks, the new
-- template listed), templatemessage.batchsend (crowd, schedule, deliveries),
-- and reset(). Requests are signed and answers verified as a client would.
local helpers = require "helpers"
local core = require "alipay.core"
local cjson = require "cjson"
local gateway = require "alipay.sandbox.openapi"

local APP_ID = "2021000122671080"
local T0 = 1717756911

local LIST = "alipay.open.mini.message.template.batchquery"
local LIB = "alipay.open.mini.message.templatelib.batchquery"
local APPLY = "alipay.open.mini.message.template.apply"
local BATCH = "alipay.open.app.mini.templatemessage.batchsend"

-- Seed facts (spec/fixtures/sandbox_seed.json).
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=" -- 3 keywords
local MINI_B = "NzVmYjA1ZDM0NjQ2NDZkNjk0YzBmMjc4OGM3ZDAxNDE=" -- 2 keywords
local MINI_C = "YjU0ZGJkNzU4MzJmNGVkNGE1ZGY1NzQ4MTQ5OTQ3MzQ=" -- 4 keywords
local MINI_D = "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M=" -- deleted
local F1 = "2088857585575154" -- long-term MINI_A, in CROWD_VIP
local F2 = "2088088617867163" -- one-time MINI_A
local F3 = "2088595874450942" -- one-time MINI_A x3

local app_private = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem")))
local alipay_key

local function new_gateway(mutate)
  if not alipay_key then
    local dir = helpers.tmpdir()
    assert(helpers.run("openssl genrsa -out " .. dir .. "/k.pem 2048"))
    alipay_key = helpers.read(dir .. "/k.pem")
  end
  local seed = cjson.decode(helpers.read(helpers.fixtures .. "/sandbox_seed.json"))
  if mutate then mutate(seed) end
  return assert(gateway.new { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
    alipay_private_key = alipay_key, seed = seed, clock = function() return T0 end })
end

local function call(gw, method, biz)
  local p = { app_id = APP_ID, method = method, format = "JSON", charset = "utf-8", sign_type = "RSA2",
    timestamp = os.date("!%Y-%m-%d %H:%M:%S", T0 + 8 * 3600), version = "1.0", biz_content = cjson.encode(biz) }
  p.sign = app_private:sign(core.sign_content(p), "RSA2")
  local body = core.form_encode { biz_content = p.biz_content }
  p.biz_content = nil
  local status, _, text = gw:handle_v2 { query = core.form_encode(p), body = body,
    content_type = "application/x-www-form-urlencoded;charset=utf-8" }
  assert.are.equal(200, status)
  local x = assert(core.extract(text, method))
  assert.is_true(assert(core.public_key(gw.alipay_public_key)):verify(x.content, x.sign, "RSA2"))
  return cjson.decode(x.content)
end

local function ok(gw, method, biz)
  local node = call(gw, method, biz)
  assert.are.equal("10000", node.code, tostring(node.sub_code) .. ": " .. tostring(node.sub_msg))
  return node
end

local function biz_fail(gw, method, biz, sub_code)
  local node = call(gw, method, biz)
  assert.are.equal("40004", node.code)
  assert.are.equal(sub_code, node.sub_code, tostring(node.sub_msg))
  return node
end

-- A signed v3 request and its verified answer (as spec/unit/20 builds them).
local function call_v3(gw, path, json)
  local body = cjson.encode(json)
  local auth = "app_id=" .. APP_ID .. ",nonce=" .. core.random_hex(16) .. ",timestamp=" .. ("%.0f"):format(T0 * 1000)
  local signed = auth .. "\nPOST\n" .. path .. "\n" .. body .. "\n"
  local status, headers, text = gw:handle_v3 { method = "POST", path = path, query = "", body = body, headers = {
    authorization = "ALIPAY-SHA256withRSA " .. auth .. ",sign=" .. app_private:sign(signed),
    ["content-type"] = "application/json", ["alipay-request-id"] = core.random_hex(16) } }
  local key = assert(core.public_key(gw.alipay_public_key))
  assert.is_true(key:verify(headers["alipay-timestamp"] .. "\n" .. headers["alipay-nonce"] .. "\n" .. text .. "\n",
    headers["alipay-signature"]) == true)
  return status, cjson.decode(text)
end

local function ids(list, field)
  local out = {}
  for i, t in ipairs(list) do out[i] = t[field or "template_id"] end
  return out
end

local function data(n)
  local d = {}
  for i = 1, n do d["keyword" .. i] = { value = "v" .. i } end
  return cjson.encode(d)
end

describe("sandbox mini-program templates", function()
  teardown(helpers.cleanup)

  describe(LIST, function()
    it("lists the live templates with their keywords, deleted ones left out", function()
      local node = ok(new_gateway(), LIST, { biz_type = "sub_msg", page_num = 1, page_size = "10" })
      assert.are.same({ MINI_A, MINI_B, MINI_C }, ids(node.template_list))
      assert.are.equal("订单号,发货时间,快递公司", node.template_list[1].keyword_desc)
      assert.are.equal("订单发货提醒", node.template_list[1].name)
      assert.are.equal("STARTED", node.template_list[1].status)
      assert.are.same({ "1", "10", 3 }, { node.page_num, node.page_size, node.total_count })
    end)

    it("pages by page_num and page_size, at most 10 a page", function()
      local gw = new_gateway()
      local p1 = ok(gw, LIST, { page_num = 1, page_size = "2" })
      local p2 = ok(gw, LIST, { page_num = 2, page_size = "2" })
      local p3 = ok(gw, LIST, { page_num = 3, page_size = "2" })
      assert.are.same({ MINI_A, MINI_B }, ids(p1.template_list))
      assert.are.same({ MINI_C }, ids(p2.template_list))
      assert.are.same({}, p3.template_list)
      assert.are.equal(3, p3.total_count)
      biz_fail(gw, LIST, { page_num = 1, page_size = "11" }, "SANDBOX_INVALID_PARAMETER")
      biz_fail(gw, LIST, { page_num = 0 }, "SANDBOX_INVALID_PARAMETER")
      biz_fail(gw, LIST, { biz_type = "push_msg" }, "SANDBOX_INVALID_PARAMETER")
    end)

    it("filters by status_list and forgets a template deleted by the admin", function()
      local gw = new_gateway(function(seed) seed.mini_templates[2].status = "STOPPED" end)
      assert.are.same({ MINI_B }, ids(ok(gw, LIST, { status_list = { "STOPPED" } }).template_list))
      assert.is_true(gw:state():delete_mini_template(MINI_A))
      assert.are.same({ MINI_B, MINI_C }, ids(ok(gw, LIST, {}).template_list))
      assert.is_falsy(ids(ok(gw, LIST, {}).template_list)[3] == MINI_D)
    end)
  end)

  it("answers the same methods over v3, under paths derived from their names", function()
    local gw = new_gateway()
    local status, res = call_v3(gw, "/v3/alipay/open/mini/message/template/batchquery", { page_num = 1 })
    assert.are.equal(200, status)
    assert.are.same({ MINI_A, MINI_B, MINI_C }, ids(res.template_list))
    status, res = call_v3(gw, "/v3/alipay/open/app/mini/templatemessage/batchsend", { template_id = MINI_D,
      data = data(2) })
    assert.are.equal(400, status)
    assert.are.equal("SANDBOX_TEMPLATE_NOT_EXIST", res.code)
    status = call_v3(gw, "/v3/alipay/open/mini/message/templatelib/batchquery", {})
    assert.are.equal(200, status)
  end)

  describe(LIB, function()
    it("lists the library, filtered by industry, scene rule and push", function()
      local gw = new_gateway()
      local all = ok(gw, LIB, { page_num = 1, page_size = 10 })
      assert.are.same({ "LIB_ORDER_SHIPPED", "LIB_BOOKING_OK", "LIB_REFUND_DONE", "LIB_CLOSED" },
        ids(all.template_lib_list, "code"))
      assert.are.same({ 1, 10, 4 }, { all.page_num, all.page_size, all.total_count })
      assert.are.equal("订单号,发货时间,快递公司,收货地址,商品名称", all.template_lib_list[1].keyword_desc)
      assert.is_false(all.template_lib_list[4].selectable)
      assert.are.same({ "LIB_BOOKING_OK" }, ids(ok(gw, LIB, { scene_rule = "long_term_subscribe" })
        .template_lib_list, "code"))
      assert.are.same({ "LIB_REFUND_DONE" }, ids(ok(gw, LIB, { has_push = true }).template_lib_list, "code"))
      assert.are.equal(3, ok(gw, LIB, { industry_code = "XS1001" }).total_count)
      biz_fail(gw, LIB, { scene_rule = "weekly" }, "SANDBOX_INVALID_PARAMETER")
    end)
  end)

  describe(APPLY, function()
    local function apply(names, code)
      local list = {}
      for i, n in ipairs(names) do list[i] = { name = n } end
      return { lib_code = code or "LIB_ORDER_SHIPPED", keyword_list = list }
    end

    it("applies with 2 to 5 of the library's keywords; the template is listed at once", function()
      local gw = new_gateway()
      local id = ok(gw, APPLY, apply { "订单号", "快递公司" }).template_id
      assert.is_string(id)
      local list = ok(gw, LIST, {}).template_list
      assert.are.equal(id, list[4].template_id)
      assert.are.equal("订单号,快递公司", list[4].keyword_desc)
      assert.are.equal("one_time_subscribe", list[4].scene_rule)
      -- A second application is a second template.
      assert.are_not.equal(id, ok(gw, APPLY, apply { "订单号", "快递公司" }).template_id)
      -- Ids are stable across a reset.
      gw:reset()
      assert.are.equal(id, ok(gw, APPLY, apply { "订单号", "快递公司" }).template_id)
    end)

    it("refuses what the model rules out", function()
      local gw = new_gateway()
      biz_fail(gw, APPLY, apply { "订单号" }, "SANDBOX_INVALID_PARAMETER")
      biz_fail(gw, APPLY, apply { "订单号", "发货时间", "快递公司", "收货地址", "商品名称", "订单号" },
        "SANDBOX_INVALID_PARAMETER")
      biz_fail(gw, APPLY, apply { "订单号", "订单号" }, "SANDBOX_INVALID_PARAMETER")
      biz_fail(gw, APPLY, apply { "订单号", "颜色" }, "SANDBOX_KEYWORD_NOT_IN_LIB")
      biz_fail(gw, APPLY, apply({ "订单号", "时间" }, "LIB_NONE"), "SANDBOX_LIB_CODE_NOT_EXIST")
      biz_fail(gw, APPLY, apply({ "名称", "时间" }, "LIB_CLOSED"), "SANDBOX_LIB_NOT_SELECTABLE")
      assert.are.equal(3, ok(gw, LIST, {}).total_count)
    end)
  end)

  describe(BATCH, function()
    it("sends to every subscriber of the template, as one delivery", function()
      local gw = new_gateway()
      local node = ok(gw, BATCH, { template_id = MINI_A, data = data(3), page = "pages/index" })
      assert.is_string(node.batch_msg_id)
      local d = gw:deliveries()
      assert.are.equal(1, #d)
      assert.are.same({ F2, F3, F1 }, d[1].recipients)
      assert.are.same({ BATCH, MINI_A, node.batch_msg_id }, { d[1].method, d[1].template_id, d[1].batch_msg_id })
      -- Nothing consumed: a second batch reaches the same users.
      ok(gw, BATCH, { template_id = MINI_A, data = data(3) })
      assert.are.same({ F2, F3, F1 }, gw:deliveries()[2].recipients)
      assert.are_not.equal(node.batch_msg_id, gw:deliveries()[2].batch_msg_id)
    end)

    it("narrows to a crowd and records a schedule", function()
      local gw = new_gateway()
      ok(gw, BATCH, { template_id = MINI_A, data = data(3), crowd_code = "CROWD_VIP",
                      schedule_send_time = "2024-06-08 09:00:00" })
      local d = gw:deliveries()[1]
      assert.are.same({ F1 }, d.recipients)
      assert.are.same({ "CROWD_VIP", "2024-06-08 09:00:00" }, { d.crowd_code, d.schedule_send_time })
      assert.are.equal(1, gw:state():summary().batch_sends)
      gw:reset()
      assert.are.same({}, gw:deliveries())
      assert.are.equal(0, gw:state():summary().batch_sends)
    end)

    it("refuses a wrong template, data, crowd or time, delivering nothing", function()
      local gw = new_gateway()
      biz_fail(gw, BATCH, { template_id = MINI_D, data = data(2) }, "SANDBOX_TEMPLATE_NOT_EXIST")
      biz_fail(gw, BATCH, { template_id = "nope", data = data(2) }, "SANDBOX_TEMPLATE_NOT_EXIST")
      biz_fail(gw, BATCH, { template_id = MINI_B, data = data(3) }, "SANDBOX_DATA_KEYWORD_MISMATCH")
      biz_fail(gw, BATCH, { template_id = MINI_B, data = data(2), crowd_code = "NONE" }, "SANDBOX_CROWD_NOT_EXIST")
      biz_fail(gw, BATCH, { template_id = MINI_B, data = data(2), schedule_send_time = "tomorrow" },
        "SANDBOX_INVALID_PARAMETER")
      biz_fail(gw, BATCH, { template_id = MINI_B }, "SANDBOX_INVALID_PARAMETER")
      assert.are.same({}, gw:deliveries())
    end)
  end)
end)
