-- Life Account broadcasts, labels and image-text contents against the
-- sandbox gateway (docs/messaging.md §2.7-§2.9): alipay.messaging.life_broadcast,
-- life_labels and life_content. Every broadcast is checked against the
-- sandbox's delivery log (one record per broadcast, exactly once), and no
-- send is ever retried behind the caller's back.
local helpers = require "helpers"
local cjson = require "cjson"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"
local classify = require "alipay.classify"
local life_broadcast = require "alipay.messaging.life_broadcast"
local life_labels = require "alipay.messaging.life_labels"
local life_content = require "alipay.messaging.life_content"

local APP_ID = "2021000122671080"
local SEED_PATH = "spec/fixtures/sandbox_seed.json"
local F1 = "2088857585575154"      -- listed followers (spec/fixtures/sandbox_seed.json)
local F2 = "2088088617867163"
local STRANGER = "2088999999999999" -- follows nobody
local FOLLOWERS = 25000
local GENERATED = "208800000000%04d" -- generated followers 0001..

local M = life_broadcast.METHODS

local function seed(extra)
  local s = cjson.decode(helpers.read(SEED_PATH))
  s.groups = { { group_id = "G1", members = { F1, F2, STRANGER } }, { group_id = "EMPTY", members = { STRANGER } } }
  s.labels = { { label_id = "100900", label_name = "seeded" } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local TEXT = { text = { title = "通知", content = "本周六系统维护" } }
local ARTICLE = { title = "新品", desc = "秋季新品上市", image_url = "https://example.com/a.png",
                  url = "https://example.com/a", action_name = "查看" }

describe("life_broadcast, life_labels, life_content", function()
  local sb, limited

  local function channel_for(s)
    local client = assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs8.pem"),
      alipay_public_key = s.alipay_public_key, gateway = s.gateway, timeout_ms = 5000 })
    return { code = "alipaylife123", kind = "alipaylife", id_type = "user_id", app_id = APP_ID, client = client }
  end

  local function arrivals(s, method)
    local n = 0
    for _, ev in ipairs(s:arrivals()) do
      if ev.event == "arrive" and ev.method == method then n = n + 1 end
    end
    return n
  end

  local function broadcasts(s)
    local out = {}
    for _, d in ipairs(s:deliveries()) do
      if d.kind == "broadcast" then out[#out + 1] = d end
    end
    return out
  end

  setup(function()
    local pub = helpers.key_text("app_public.pem")
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = pub, seed = seed() })
    limited = assert(sandbox.start { app_id = APP_ID, app_public_key = pub,
      seed = seed { quotas = { total_send = 1, group_send = 1 } } })
  end)

  teardown(function()
    for _, s in ipairs { sb, limited } do s:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    for _, s in ipairs { sb, limited } do
      assert(s:reset())
      assert(s:faults {})
    end
  end)

  describe("total_send", function()
    it("broadcasts text to every follower once and returns the message id", function()
      local bc = life_broadcast.new(channel_for(sb))
      local res, err = bc:total_send(TEXT)
      assert.is_nil(err)
      assert.is_string(res.message_id)
      local d = broadcasts(sb)
      assert.are.equal(1, #d)
      assert.are.equal(M.total, d[1].method)
      assert.are.equal("all", d[1].audience)
      assert.are.equal(FOLLOWERS, d[1].recipients)
      assert.are.equal(res.message_id, d[1].message_id)
      assert.are.same({ msg_type = "text", text = TEXT.text }, d[1].payload)
    end)

    it("broadcasts image-text, with an empty title when none is given", function()
      local bc = life_broadcast.new(channel_for(sb))
      assert(bc:total_send { articles = { ARTICLE, { desc = "第二条", url = "https://example.com/b" } } })
      assert(bc:total_send { text = { content = "无标题" } })
      local d = broadcasts(sb)
      assert.are.equal(2, #d)
      assert.are.equal("image-text", d[1].msg_type)
      assert.are.equal(2, #d[1].payload.articles)
      assert.are.equal("", d[2].payload.text.title)
    end)

    it("refuses what Alipay documents as wrong before any call", function()
      local bc = life_broadcast.new(channel_for(sb))
      local cases = {
        { {}, "message" },
        { { text = { title = "only a title" } }, "text.content" },
        { { text = TEXT.text, articles = { ARTICLE } }, "message" },
        { { articles = {} }, "articles" },
        { { articles = { { url = "https://example.com" } } }, "articles[1].desc" },
        { { articles = { { desc = "d" } } }, "articles[1].url" },
        { { articles = { { desc = "d", url = "u" }, ARTICLE } }, "articles[1].image_url" },
        { { articles = { { desc = "d", url = "u", colour = "red" } } }, "articles[1].colour" },
      }
      for _, case in ipairs(cases) do
        local res, _, detail = bc:total_send(case[1])
        assert.is_nil(res)
        assert.are.equal("invalid", detail.kind)
        assert.are.equal(case[2], detail.field)
        assert.is_false(detail.unknown)
      end
      -- one article needs no image_url
      assert(bc:total_send { articles = { { desc = "d", url = "https://example.com" } } })
      assert.are.equal(1, arrivals(sb, M.total))
    end)

    it("stops on PUB.MSG_BATCH_SD_OVER, a quota, and never retries it", function()
      local bc = life_broadcast.new(channel_for(limited))
      assert(bc:total_send(TEXT))
      local res, err, detail = bc:total_send(TEXT)
      assert.is_nil(res)
      assert.matches("PUB.MSG_BATCH_SD_OVER", err, 1, true)
      assert.are.equal("PUB.MSG_BATCH_SD_OVER", detail.sub_code)
      assert.are.equal("quota", (classify.classify(detail)))
      assert.is_false(detail.retryable)
      assert.are.equal(2, arrivals(limited, M.total))
      assert.are.equal(1, #broadcasts(limited))
    end)

    it("reports a cut answer as maybe delivered, and does not send again", function()
      assert(sb:faults { truncate = 1, methods = { M.total } })
      local bc = life_broadcast.new(channel_for(sb))
      local res, _, detail = bc:total_send(TEXT)
      assert.is_nil(res)
      assert.is_true(detail.unknown)
      assert.are.equal(1, arrivals(sb, M.total))
      assert.are.equal(1, #broadcasts(sb)) -- it was delivered: a retry would have sent it twice
    end)
  end)

  describe("labels", function()
    it("creates, lists, renames, labels users, sends to the label, and deletes", function()
      local ch = channel_for(sb)
      local labels, bc = life_labels.new(ch), life_broadcast.new(ch)
      local id = assert(labels:create("vip"))
      local list = assert(labels:list())
      assert.are.same({ "100900", id }, { list[1].label_id, list[2].label_id })
      assert.are.equal("vip", list[2].label_name)
      assert.is_true(labels:modify(id, "gold"))
      assert.are.equal("gold", assert(labels:list())[2].label_name)

      local report = assert(labels:tag(id, "1", { { user_id = F1 }, { user_id = F2 }, { user_id = STRANGER } }))
      assert.are.equal(1, report.calls)
      assert.are.equal(1, report.error_count)
      assert.are.equal(STRANGER, report.error_matchers[1].matcher.user_id)

      assert.are.same({}, assert(bc:label_send({ label_id = id }, TEXT)))
      local d = broadcasts(sb)
      assert.are.equal(1, #d)
      assert.are.equal("label", d[1].audience)
      assert.are.equal(2, d[1].recipients)
      assert.are.same({ F1, F2 }, d[1].ids)
      assert.is_nil(d[1].message_id)
      assert.are.same({ template = "${a}", context = { a = { column_name = "label_id_list", op = "=",
        values = { id } } } }, d[1].payload.filter)

      -- a label users carry is not deleted (the sandbox's reading of LABEL_IS_USED)
      local ok, _, detail = labels:delete(id)
      assert.is_nil(ok)
      assert.are.equal("LABEL_IS_USED", detail.sub_code)
      assert(labels:untag(id, { { user_id = F1 }, { user_id = F2 } }))
      assert.is_true(labels:delete(id))
      assert.are.equal(1, #assert(labels:list()))
    end)

    it("labels users 10 per call", function()
      local labels = life_labels.new(channel_for(sb))
      local users = {}
      for i = 1, 23 do users[i] = { user_id = GENERATED:format(i) } end
      local report = assert(labels:tag("100900", "x", users))
      assert.are.equal(3, report.calls)
      assert.are.equal(0, report.error_count)
      assert.are.equal(3, arrivals(sb, life_labels.METHODS.tag))
      assert(life_broadcast.new(channel_for(sb)):label_send({ label_ids = { "100900" } }, TEXT))
      assert.are.equal(23, broadcasts(sb)[1].recipients)
    end)

    it("answers the official codes of a bad label", function()
      local labels = life_labels.new(channel_for(sb))
      for name, code in pairs { ["a b"] = "LABEL_NAME_HAS_SPACE", ["a,b"] = "LABEL_NAME_HAS_COMMA",
                                seeded = "LABEL_NAME_ALREADY_EXISTS" } do
        local _, _, detail = labels:create(name)
        assert.are.equal(code, detail.sub_code, name)
      end
      local _, _, detail = labels:modify("999999", "x")
      assert.are.equal("LABEL_NOT_EXISTS", detail.sub_code)
      _, _, detail = labels:create("x", { data_type = "number" })
      assert.are.equal("invalid", detail.kind)
      _, _, detail = life_broadcast.new(channel_for(sb)):label_send({ label_id = "999999" }, TEXT)
      assert.are.equal("LABEL_GROUP_LABEL_NOT_EXISTS", detail.sub_code)
      assert.are.equal(0, #broadcasts(sb))
    end)

    it("refuses more than 6 articles in a label send before any call", function()
      local articles = {}
      for i = 1, 7 do articles[i] = ARTICLE end
      local res, _, detail = life_broadcast.new(channel_for(sb)):label_send("100900", { articles = articles })
      assert.is_nil(res)
      assert.are.equal("invalid", detail.kind)
      assert.are.equal(0, arrivals(sb, M.label))
    end)
  end)

  describe("group_send and recall", function()
    it("sends to a group's followers, recalls it once", function()
      local bc = life_broadcast.new(channel_for(sb))
      local res = assert(bc:group_send("G1", { articles = { ARTICLE } }))
      assert.is_string(res.message_id)
      local d = broadcasts(sb)
      assert.are.equal(1, #d)
      assert.are.equal(2, d[1].recipients) -- the stranger does not follow
      assert.is_nil(d[1].recalled_at)
      assert.is_true(bc:recall(res.message_id))
      assert.is_number(broadcasts(sb)[1].recalled_at)
      local ok, _, detail = bc:recall(res.message_id)
      assert.is_nil(ok)
      assert.are.equal("SANDBOX_MSG_ALREADY_RECALLED", detail.sub_code)
      _, _, detail = bc:recall("201905106452100327f456f6-8dd2-4a06-8b0e-ec8a3a85c46a")
      assert.are.equal("PUB.RCD_MSG_NOT_EXIST", detail.sub_code)
      assert.are.equal(1, #broadcasts(sb))
    end)

    it("recalls a total send; GROUP_EMPTY_ERROR and MSG_BATCH_SD_OVER for a group", function()
      local bc = life_broadcast.new(channel_for(limited))
      local res = assert(bc:total_send(TEXT))
      assert.is_true(bc:recall(res.message_id))
      local _, _, detail = bc:group_send("EMPTY", TEXT)
      assert.are.equal("GROUP_EMPTY_ERROR", detail.sub_code)
      assert(bc:group_send("G1", TEXT))
      _, _, detail = bc:group_send("G1", TEXT)
      assert.are.equal("MSG_BATCH_SD_OVER", detail.sub_code)
      assert.are.equal("quota", (classify.classify(detail)))
      assert.are.equal(2, #broadcasts(limited))
    end)
  end)

  it("runs the README's Lua example as written", function()
    local code
    for block in helpers.read("README.md"):gmatch("```lua\n(.-)\n```") do
      if block:find("life_broadcast.new(channel)", 1, true) then code = block end
    end
    assert.is_string(code, "the README's broadcast example")
    local env = setmetatable({ channel = channel_for(sb) }, { __index = _G })
    assert(load(code, "=README", "t", env))()
    local d = broadcasts(sb)
    assert.are.same({ "label", "all" }, { d[1].audience, d[2].audience })
    assert.are.same({ F1 }, d[1].ids)
    assert.is_number(d[2].recalled_at)
  end)

  describe("life_content", function()
    local FIELDS = { title = "秋季新品", cover = "https://example.com/cover.png", content = "<p>正文</p>",
                     could_comment = "T", ctype = "activity", benefit = "满100减10", ext_tags = { "新品", "秋季" },
                     login_ids = "13434343432,xxx@163.com" }

    it("creates and modifies an image-text content", function()
      local contents = life_content.new(channel_for(sb))
      local c = assert(contents:create(FIELDS))
      assert.is_string(c.content_id)
      assert.is_string(c.content_url)
      local m = assert(contents:modify(c.content_id, { title = "新标题", cover = FIELDS.cover, content = "x" }))
      assert.are.equal(c.content_id, m.content_id)
      local _, _, detail = contents:modify("nope", FIELDS)
      assert.are.equal("MSG_CONTENT_NOT_EXISTS", detail.sub_code)
    end)

    it("refuses the documented limits before any call", function()
      local contents = life_content.new(channel_for(sb))
      local function with(k, v)
        local f = {}
        for key, val in pairs(FIELDS) do f[key] = val end
        f[k] = v
        return f
      end
      for _, case in ipairs {
        { with("title", false), "title" }, { with("cover", ""), "cover" }, { with("content", nil), "content" },
        { with("benefit", "一二三四五六七八九十一"), "benefit" }, { with("ext_tags", "a,b,c,d,e,f"), "ext_tags" },
        { with("could_comment", "Y"), "could_comment" }, { with("ctype", "news"), "ctype" },
        { with("login_ids", { "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11" }), "login_ids" },
      } do
        local res, _, detail = contents:create(case[1])
        assert.is_nil(res)
        assert.are.equal("invalid", detail.kind)
        assert.are.equal(case[2], detail.field)
      end
      assert.are.equal(0, arrivals(sb, life_content.METHODS.create))
      assert(contents:create(with("benefit", "一二三四五六七八九十")))
    end)
  end)
end)
