-- The sandbox gateway's Life Account broadcast, label and content methods
-- (apis/life_broadcast.lua, apis/life_labels.lua, apis/life_content.lua),
-- driven directly as spec/unit/20 does: signed v2 (and v3) requests in,
-- verified answers out, no nginx.
local helpers = require "helpers"
local core = require "alipay.core"
local cjson = require "cjson"
local gateway = require "alipay.sandbox.openapi"
local world = require "alipay.sandbox.world"

local APP_ID = "2021000122671080"
local T0 = 1717756911
local F1, F2 = "2088857585575154", "2088088617867163"
local STRANGER = "2088999999999999"
local F1_OPEN = "0V7KGVDalY9Ks76za6O6goGeF8QreKU60cAqETZaAs3Yp5"

local TOTAL = "alipay.open.public.message.total.send"
local LABEL_SEND = "alipay.open.public.message.label.send"
local GROUP_SEND = "alipay.open.public.message.group.send"
local RECALL = "alipay.open.public.life.msg.recall"
local L_CREATE = "alipay.open.public.life.label.create"
local L_QUERY = "alipay.open.public.life.label.batchquery"
local L_MODIFY = "alipay.open.public.life.label.modify"
local L_DELETE = "alipay.open.public.life.label.delete"
local TAG = "alipay.open.public.matchuser.label.create"
local UNTAG = "alipay.open.public.matchuser.label.delete"
local C_CREATE = "alipay.open.public.message.content.create"
local C_MODIFY = "alipay.open.public.message.content.modify"

local app_private = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem")))
local alipay_key

local function seed(mutate)
  local s = cjson.decode(helpers.read(helpers.fixtures .. "/sandbox_seed.json"))
  s.labels = { { label_id = "100900", label_name = "seeded" } }
  s.label_users = { { label_id = "100900", user_id = F1, label_value = "1" } }
  s.groups = { { group_id = "G1", members = { F1, F2, STRANGER } }, { group_id = "EMPTY", members = {} } }
  if mutate then mutate(s) end
  return s
end

local function new_gateway(mutate)
  if not alipay_key then
    local dir = helpers.tmpdir()
    local ok, out = helpers.run("openssl genrsa -out " .. dir .. "/k.pem 2048")
    assert(ok, out)
    alipay_key = helpers.read(dir .. "/k.pem")
  end
  return assert(gateway.new { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
    alipay_private_key = alipay_key, seed = seed(mutate), clock = function() return T0 end })
end

local function call_v2(gw, method, biz)
  local p = { app_id = APP_ID, method = method, format = "JSON", charset = "utf-8", sign_type = "RSA2",
    timestamp = os.date("!%Y-%m-%d %H:%M:%S", T0 + 8 * 3600), version = "1.0", biz_content = cjson.encode(biz) }
  p.sign = app_private:sign(core.sign_content(p), "RSA2")
  local status, _, body = gw:handle_v2 { query = core.form_encode(p), body = "",
    content_type = "application/x-www-form-urlencoded;charset=utf-8" }
  assert.are.equal(200, status)
  local x = assert(core.extract(body, method))
  assert.is_true(assert(core.public_key(gw.alipay_public_key)):verify(x.content, x.sign, "RSA2") == true)
  return cjson.decode(x.content)
end

local function ok_v2(gw, method, biz)
  local node = call_v2(gw, method, biz)
  assert.are.equal("10000", node.code, tostring(node.sub_code) .. ": " .. tostring(node.sub_msg))
  return node
end

local function biz_fail(gw, method, biz, sub_code)
  local node = call_v2(gw, method, biz)
  assert.are.equal("40004", node.code)
  assert.are.equal(sub_code, node.sub_code, tostring(node.sub_msg))
  return node
end

local function broadcasts(gw)
  local out = {}
  for _, d in ipairs(gw:deliveries()) do
    if d.kind == "broadcast" then out[#out + 1] = d end
  end
  return out
end

local TEXT = { msg_type = "text", text = { title = "", content = "维护通知" } }
local function label_filter(op, values, template)
  return { template = template or "${a}",
           context = { a = { column_name = "label_id_list", op = op, values = values } } }
end

describe("sandbox Life Account broadcasts, labels, contents", function()
  describe("message.total.send", function()
    it("answers a message id and records one delivery for every follower", function()
      local gw = new_gateway()
      local node = ok_v2(gw, TOTAL, TEXT)
      assert.are.equal(32, #node.message_id)
      local d = broadcasts(gw)
      assert.are.equal(1, #d)
      assert.are.same({ "all", 25000, node.message_id, "text", T0 },
        { d[1].audience, d[1].recipients, d[1].message_id, d[1].msg_type, d[1].at })
      assert.is_nil(d[1].ids)
      -- ids repeat after reset
      gw.st:reset()
      assert.are.equal(node.message_id, ok_v2(gw, TOTAL, TEXT).message_id)
    end)

    it("MSG_TYPE_ILLEGAL, and ILLEGAL_ARGUMENT_PARAMS for a missing text or article field", function()
      local gw = new_gateway()
      biz_fail(gw, TOTAL, { msg_type = "image", text = TEXT.text }, "MSG_TYPE_ILLEGAL")
      biz_fail(gw, TOTAL, { msg_type = "text" }, "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, TOTAL, { msg_type = "text", text = { title = "t" } }, "ILLEGAL_ARGUMENT_PARAMS")
      biz_fail(gw, TOTAL, { msg_type = "image-text", articles = { { desc = "d" } } }, "ILLEGAL_ARGUMENT_PARAMS")
      local two = { { desc = "d", url = "u" }, { desc = "d", url = "u", image_url = "i" } }
      assert.matches("image_url", biz_fail(gw, TOTAL, { msg_type = "image-text", articles = two },
        "ILLEGAL_ARGUMENT_PARAMS").sub_msg, 1, true)
      ok_v2(gw, TOTAL, { msg_type = "image-text", articles = { { desc = "d", url = "u" } } })
      assert.are.equal(1, #broadcasts(gw))
    end)

    it("PUB.MSG_BATCH_SD_OVER once the seeded quota is spent, until reset", function()
      local gw = new_gateway(function(s) s.quotas = { total_send = 2 } end)
      ok_v2(gw, TOTAL, TEXT)
      ok_v2(gw, TOTAL, TEXT)
      assert.are.equal("批量发送消息频率超限", biz_fail(gw, TOTAL, TEXT, "PUB.MSG_BATCH_SD_OVER").sub_msg)
      assert.are.equal(2, #broadcasts(gw))
      gw.st:reset()
      ok_v2(gw, TOTAL, TEXT)
    end)
  end)

  describe("message.group.send and life.msg.recall", function()
    it("reaches the group's followers, and recalls once", function()
      local gw = new_gateway()
      local id = ok_v2(gw, GROUP_SEND, { group_id = "G1", msg_type = "text", text = TEXT.text }).message_id
      local d = broadcasts(gw)[1]
      assert.are.same({ "group", 2, { F1, F2 } }, { d.audience, d.recipients, d.ids })
      ok_v2(gw, RECALL, { message_id = id })
      assert.are.equal(T0, broadcasts(gw)[1].recalled_at)
      biz_fail(gw, RECALL, { message_id = id }, "SANDBOX_MSG_ALREADY_RECALLED")
      assert.are.equal("撤回的消息不存在", biz_fail(gw, RECALL, { message_id = "x" }, "PUB.RCD_MSG_NOT_EXIST").sub_msg)
      biz_fail(gw, RECALL, {}, "SANDBOX_ILLEGAL_ARGUMENT")
    end)

    it("GROUP_EMPTY_ERROR, MESSAGE_IS_EMPTY, MESSAGE_IS_INCOMPLETE, an image message, an unknown group", function()
      local gw = new_gateway()
      biz_fail(gw, GROUP_SEND, { group_id = "EMPTY", msg_type = "text", text = TEXT.text }, "GROUP_EMPTY_ERROR")
      biz_fail(gw, GROUP_SEND, { group_id = "G1", msg_type = "text" }, "MESSAGE_IS_EMPTY")
      biz_fail(gw, GROUP_SEND, { group_id = "G1", msg_type = "image-text", articles = { { desc = "d" } } },
        "MESSAGE_IS_INCOMPLETE")
      biz_fail(gw, GROUP_SEND, { group_id = "G1", msg_type = "image", image = { url = "u" } }, "ILLEGAL_BIZ_PARAMS")
      biz_fail(gw, GROUP_SEND, { group_id = "NOPE", msg_type = "text", text = TEXT.text }, "SANDBOX_GROUP_NOT_EXIST")
      assert.are.equal(0, #broadcasts(gw))
    end)

    it("MSG_BATCH_SD_OVER (no PUB. prefix: the method's official list) past the group quota", function()
      local gw = new_gateway(function(s) s.quotas = { group_send = 1 } end)
      local biz = { group_id = "G1", msg_type = "text", text = TEXT.text }
      ok_v2(gw, GROUP_SEND, biz)
      biz_fail(gw, GROUP_SEND, biz, "MSG_BATCH_SD_OVER")
    end)
  end)

  describe("message.label.send", function()
    it("reaches the followers the filter selects, with no message id", function()
      local gw = new_gateway()
      local l2 = ok_v2(gw, L_CREATE, { label_name = "second" }).label_id
      ok_v2(gw, TAG, { label_id = l2, label_value = "x", matchers = { { user_id = F2 } } })
      local node = ok_v2(gw, LABEL_SEND, { filter = label_filter("=", { "100900" }), material = TEXT })
      assert.is_nil(node.message_id)
      ok_v2(gw, LABEL_SEND, { filter = label_filter("in", { "100900", l2 }), material = TEXT })
      local both = label_filter("=", { "100900" }, "${a} and ${b}")
      both.context.b = { column_name = "label_id_list", op = "!=", values = { l2 } }
      ok_v2(gw, LABEL_SEND, { filter = both, material = TEXT })
      local d = broadcasts(gw)
      assert.are.same({ { F1 }, { F1, F2 }, { F1 } }, { d[1].ids, d[2].ids, d[3].ids })
      assert.are.same({ 1, 2, 1 }, { d[1].recipients, d[2].recipients, d[3].recipients })
      assert.is_nil(d[1].message_id)
    end)

    it("answers the LABEL_GROUP_* codes of a bad filter", function()
      local gw = new_gateway()
      biz_fail(gw, LABEL_SEND, { material = TEXT }, "LABEL_GROUP_FILTER_EMPTY")
      biz_fail(gw, LABEL_SEND, { filter = { context = {} }, material = TEXT }, "LABEL_GROUP_TPL_EMPTY")
      biz_fail(gw, LABEL_SEND, { filter = { template = "${a}" }, material = TEXT }, "LABEL_GROUP_NO_CONDITION")
      biz_fail(gw, LABEL_SEND, { filter = { template = "${b}", context = { a = {} } }, material = TEXT },
        "LABEL_GROUP_ITEM_EMPTY")
      local f = label_filter("=", {})
      biz_fail(gw, LABEL_SEND, { filter = f, material = TEXT }, "LABEL_GROUP_VALUES_EMPTY")
      f.context.a.column_name = nil
      biz_fail(gw, LABEL_SEND, { filter = f, material = TEXT }, "LABEL_GROUP_KEY_EMPTY")
      biz_fail(gw, LABEL_SEND, { filter = label_filter("=", { "404" }), material = TEXT },
        "LABEL_GROUP_LABEL_NOT_EXISTS")
      biz_fail(gw, LABEL_SEND, { filter = label_filter("=", { "100900" }, "${a} and ${b} or ${c}"),
        material = TEXT }, "LABEL_GROUP_LABEL_OVER_LIMIT")
      biz_fail(gw, LABEL_SEND, { filter = label_filter("=", { "100900" }), material = { msg_type = "x" } },
        "MSG_TYPE_ILLEGAL")
      local seven = {}
      for i = 1, 7 do seven[i] = { desc = "d", url = "u", image_url = "i" } end
      biz_fail(gw, LABEL_SEND, { filter = label_filter("=", { "100900" }),
        material = { msg_type = "image-text", articles = seven } }, "ILLEGAL_BIZ_PARAMS")
      assert.are.equal(0, #broadcasts(gw))
    end)
  end)

  describe("labels", function()
    it("create, batchquery, modify, delete", function()
      local gw = new_gateway()
      local id = ok_v2(gw, L_CREATE, { label_name = "vip" }).label_id
      assert.are.equal("100001", id)
      local labels = ok_v2(gw, L_QUERY, {}).labels
      assert.are.same({ label_id = id, label_name = "vip", data_type = "string", type = "custom" }, labels[2])
      ok_v2(gw, L_MODIFY, { label_id = id, label_name = "gold" })
      assert.are.equal("gold", ok_v2(gw, L_QUERY, {}).labels[2].label_name)
      ok_v2(gw, L_DELETE, { label_id = id })
      assert.are.equal(1, #ok_v2(gw, L_QUERY, {}).labels)
      biz_fail(gw, L_DELETE, { label_id = id }, "LABEL_NOT_EXISTS")
      biz_fail(gw, L_DELETE, { label_id = "100900" }, "LABEL_IS_USED")
      biz_fail(gw, L_DELETE, {}, "DEL_LABEL_ID_IS_EMPTY")
    end)

    it("refuses bad names with the official codes, and a 101st label", function()
      local gw = new_gateway()
      biz_fail(gw, L_CREATE, {}, "ADD_LABEL_NAME_IS_EMPTY")
      biz_fail(gw, L_CREATE, { label_name = "a b" }, "LABEL_NAME_HAS_SPACE")
      biz_fail(gw, L_CREATE, { label_name = "a，b" }, "LABEL_NAME_HAS_COMMA")
      biz_fail(gw, L_CREATE, { label_name = "seeded" }, "LABEL_NAME_ALREADY_EXISTS")
      biz_fail(gw, L_CREATE, { label_name = "n", data_type = "number" }, "DATA_TYPE_INVALID")
      biz_fail(gw, L_MODIFY, { label_name = "x" }, "MOD_LABEL_ID_IS_EMPTY")
      biz_fail(gw, L_MODIFY, { label_id = "100900" }, "MOD_LABEL_NAME_IS_EMPTY")
      biz_fail(gw, L_MODIFY, { label_id = "404", label_name = "x" }, "LABEL_NOT_EXISTS")
      for i = 2, 100 do ok_v2(gw, L_CREATE, { label_name = "l" .. i }) end
      biz_fail(gw, L_CREATE, { label_name = "one-too-many" }, "LABEL_COUNT_LIMIT")
    end)

    it("labels and unlabels users, reporting the matchers it could not use", function()
      local gw = new_gateway()
      local node = ok_v2(gw, TAG, { label_id = "100900", label_value = "2",
        matchers = { { user_id = F2 }, { user_id = STRANGER }, { open_id = F1_OPEN }, { mobile_no = "13800000000" } } })
      assert.are.equal(3, node.error_count)
      assert.are.same({ STRANGER, F1_OPEN, "13800000000" }, { node.error_matchers[1].matcher.user_id,
        node.error_matchers[2].matcher.open_id, node.error_matchers[3].matcher.mobile_no })
      assert.are.same({ F2, F1 }, gw.st:label_member_ids("100900")) -- sorted
      node = ok_v2(gw, UNTAG, { label_id = "100900", matchers = { { user_id = F1 }, { user_id = F1 } } })
      assert.are.equal(1, node.error_count) -- the second no longer carries it
      assert.are.same({ F2 }, gw.st:label_member_ids("100900"))
      local eleven = {}
      for i = 1, 11 do eleven[i] = { user_id = F1 } end
      biz_fail(gw, TAG, { label_id = "100900", label_value = "1", matchers = eleven }, "ILLEGAL_BIZ_PARAMS")
      biz_fail(gw, TAG, { label_id = "100900", label_value = "1", matchers = {} }, "MATCHER_PARAMS_IS_EMPTY")
      biz_fail(gw, TAG, { label_id = "100900", matchers = { { user_id = F1 } } }, "LABEL_VALUE_IS_EMPTY")
      biz_fail(gw, TAG, { label_value = "1", matchers = { { user_id = F1 } } }, "LABEL_ID_IS_EMPTY")
      biz_fail(gw, TAG, { label_id = "404", label_value = "1", matchers = { { user_id = F1 } } }, "LABEL_NOT_EXISTS")
      biz_fail(gw, TAG, { label_id = "100900", label_value = "1", matchers = { {} } }, "MSG_MATCHER_INVALID")
    end)
  end)

  describe("message.content.create and modify", function()
    local C = { title = "t", cover = "https://example.com/c.png", content = "<p>b</p>" }
    local function with(k, v)
      local t = {}
      for key, val in pairs(C) do t[key] = val end
      t[k] = v
      return t
    end

    it("creates and modifies; the official codes for each bad field", function()
      local gw = new_gateway()
      local node = ok_v2(gw, C_CREATE, with("benefit", "一二三四五六七八九十"))
      assert.is_string(node.content_id)
      assert.matches(node.content_id, node.content_url, 1, true)
      local m = ok_v2(gw, C_MODIFY, with("content_id", node.content_id))
      assert.are.equal(node.content_id, m.content_id)
      assert.are.equal("t", gw.st:content(node.content_id).title)
      for _, case in ipairs {
        { with("title", nil), "MSG_CONTENT_TITLE_INVALID" }, { with("cover", nil), "MSG_CONTENT_COVER_INVALID" },
        { with("content", nil), "MSG_CONTENT_BODY_INVALID" },
        { with("could_comment", "Y"), "MSG_CONTENT_COULDCOMMENT_INVALID" },
        { with("ctype", "news"), "MSG_CONTENT_ACTIVITY_INVALID" },
        { with("benefit", "一二三四五六七八九十一"), "MSG_CONTENT_BENEFIT_INVALID" },
        { with("ext_tags", "a,b,c,d,e,f"), "MSG_CONTENT_EXTTAGS_INVALID" },
        { with("login_ids", "1,2,3,4,5,6,7,8,9,10,11"), "MSG_CONTENT_PREVIEWIDS_INVALID" },
        { with("content_id", "x"), "MSG_CONTENT_ADD_HAS_CONTENTID" },
      } do
        biz_fail(gw, C_CREATE, case[1], case[2])
      end
      biz_fail(gw, C_MODIFY, C, "MSG_CONTENT_ID_INVALID")
      biz_fail(gw, C_MODIFY, with("content_id", "nope"), "MSG_CONTENT_NOT_EXISTS")
    end)
  end)

  it("routes each method's v3 path (the official paths and verbs)", function()
    local apis = require "alipay.sandbox.apis"
    for method, verb in pairs { [TOTAL] = "POST", [LABEL_SEND] = "POST", [GROUP_SEND] = "POST", [RECALL] = "POST",
      [L_CREATE] = "POST", [L_QUERY] = "POST", [L_MODIFY] = "POST", [L_DELETE] = "DELETE", [TAG] = "POST",
      [UNTAG] = "POST", [C_CREATE] = "POST", [C_MODIFY] = "POST" } do
      local path = "/v3/" .. method:gsub("%.", "/")
      local routed, api = apis.route(path)
      assert.are.equal(method, routed)
      assert.is_true(api.verbs[verb], method)
    end
  end)

  describe("the seed", function()
    it("names a bad labels, label_users, groups or quotas entry", function()
      for _, case in ipairs {
        { function(s) s.labels = { {} } end, "seed.labels[1].label_name: missing" },
        { function(s) s.label_users = { { label_id = "9", user_id = F1, label_value = "1" } } end,
          "seed.label_users[1].label_id: not in seed.labels: 9" },
        { function(s) s.groups = { { members = {} } } end, "seed.groups[1].group_id: missing" },
        { function(s) s.quotas = { broadcast = 1 } end, "seed.quotas.broadcast: unknown quota" },
      } do
        local st, err = world.new(seed(case[1]))
        assert.is_nil(st)
        assert.matches(case[2], err, 1, true)
      end
    end)
  end)
end)
