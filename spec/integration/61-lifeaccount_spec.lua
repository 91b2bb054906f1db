-- Life Account messaging against the sandbox gateway: claiming templates,
-- the template industry, single sends checked against the template registry,
-- the follower listing and follow status.
--
-- Three sandboxes: the reference seed (user ids), a variant (no industry yet,
-- a library of 25 templates, the claimed TM000000223 deleted, the older
-- follow.batchquery shape with lists under "data"), and an open_id app.
local helpers = require "helpers"
local cjson = require "cjson"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"
local lifeaccount = require "alipay.messaging.lifeaccount"

local APP_ID = "2021000122671080"
local SEED_PATH = "spec/fixtures/sandbox_seed.json"

-- Seed facts (spec/fixtures/sandbox_seed.json).
local F1 = "2088857585575154"      -- the first listed follower
local F1_OPEN = "0V7KGVDalY9Ks76za6O6goGeF8QreKU60cAqETZaAs3Yp5"
local STRANGER = "2088999999999999" -- follows nobody
local CLAIMED = "14330d60f0ab4516853a0900827cee35"         -- TM000000223, 3 keywords
local CLAIMED_DELETED = "7d5e0c1f2a9b48c6a1e3f0d2b4c6e8a0" -- TM000000226, deleted
local FOLLOWERS = 25000

local M = lifeaccount.METHODS

local function variant_seed()
  local seed = cjson.decode(helpers.read(SEED_PATH))
  seed.industry = nil
  seed.legacy_follow_shape = true
  for i = 1, 25 do
    seed.library[#seed.library + 1] = { template_id = ("TM00000900%02d"):format(i), name = "批量模板" .. i,
                                         industry = "10001/20102", keywords = { "内容", "时间" } }
  end
  seed.claimed[1].deleted = true
  return seed
end

local function open_seed()
  local seed = cjson.decode(helpers.read(SEED_PATH))
  seed.id_type = "open_id"
  return seed
end

local function context(overrides)
  local c = {
    head_color = "#85be53", url = "https://example.com/orders/1", action_name = "查看详情",
    first = { color = "#85be53", value = "您的订单已发货" },
    keyword1 = { color = "#85be53", value = "HU7142" },
    keyword2 = { color = "#85be53", value = "已发货" },
    keyword3 = { color = "#85be53", value = "2024-06-07 18:41" },
    remark = { color = "#85be53", value = "感谢使用" },
  }
  for k, v in pairs(overrides or {}) do
    if v == false then c[k] = nil else c[k] = v end
  end
  return c
end

describe("lifeaccount", function()
  local sb, variant, open_sb

  local function client_for(s)
    return assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs8.pem"),
                               alipay_public_key = s.alipay_public_key, gateway = s.gateway, timeout_ms = 5000 })
  end

  local function life_on(s, registry, id_type)
    return lifeaccount.new({ code = "alipaylife123", kind = "alipaylife", id_type = id_type or "user_id",
                             app_id = APP_ID, client = client_for(s) }, registry)
  end

  local function arrivals(s, method)
    local n = 0
    for _, ev in ipairs(s:arrivals()) do
      if ev.event == "arrive" and (method == nil or ev.method == method) then n = n + 1 end
    end
    return n
  end

  -- A fresh registry in a temporary store, with the claimed templates of
  -- the seed imported under the channel code.
  local function registry()
    local store = assert(require("alipay.store").open(helpers.tmpdir() .. "/t.db"))
    local reg = require("alipay.messaging.templates").new(store)
    assert(reg:import({
      { channel = "alipaylife123", kind = "alipaylife", id = CLAIMED, name = "订单状态提醒",
        keywords = { "订单号", "订单状态", "更新时间" } },
      { channel = "alipaylife123", kind = "alipaylife", id = CLAIMED_DELETED, name = "系统维护通知",
        keywords = { "维护时间", "影响范围" } },
    }))
    return reg
  end

  setup(function()
    local pub = helpers.key_text("app_public.pem")
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = pub, seed = SEED_PATH })
    variant = assert(sandbox.start { app_id = APP_ID, app_public_key = pub, seed = variant_seed() })
    open_sb = assert(sandbox.start { app_id = APP_ID, app_public_key = pub, seed = open_seed() })
  end)

  teardown(function()
    for _, s in ipairs { sb, variant, open_sb } do s:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    for _, s in ipairs { sb, variant, open_sb } do assert(s:reset()) end
  end)

  it("refuses a channel of the other kind", function()
    assert.has_error(function()
      lifeaccount.new { code = "mini1", kind = "alipaymini", client = client_for(sb) }
    end)
  end)

  describe("claim_template", function()
    it("claims a library template and decodes its JSON text", function()
      local life = life_on(sb)
      local claim, _, err = life:claim_template("TM000000224")
      assert.is_nil(err)
      assert.is_string(claim.msg_template_id)
      assert.are.equal(32, #claim.msg_template_id)
      assert.are.equal("table", type(claim.template))
      assert.are.equal("账户变动通知", claim.template.name)
      assert.are.equal(2, #claim.template.keywords)
      -- claiming it again gives the same id
      assert.are.equal(claim.msg_template_id, assert(life:claim_template("TM000000224")).msg_template_id)
    end)

    it("TEMPLATE_MESSAGE_ID_INVAILD for an unknown id or one of another industry", function()
      local life = life_on(sb)
      for _, id in ipairs { "TM999999999", "TM000000301" } do
        local claim, _, err = life:claim_template(id)
        assert.is_nil(claim)
        assert.are.equal("business", err.kind)
        assert.are.equal("TEMPLATE_MESSAGE_ID_INVAILD", err.sub_code)
      end
    end)

    it("NEED_SELECT_INDUSTRY before an industry is set", function()
      local _, _, err = life_on(variant):claim_template("TM000000223")
      assert.are.equal("NEED_SELECT_INDUSTRY", err.sub_code)
    end)

    it("EXCEED_MAX_TEMPLATE_NUM past 20 claimed templates", function()
      local life = life_on(variant)
      -- exactly what alipay-easysdk's testSetIndustry sends
      assert(life:set_industry { primary_industry_code = "10001/20102", primary_industry_name = "IT科技/IT软件与服务",
        secondary_industry_code = "10001/20102", secondary_industry_name = "IT科技/IT软件与服务" })
      for i = 1, 20 do
        assert(life:claim_template(("TM00000900%02d"):format(i)))
      end
      local claim, _, err = life:claim_template("TM0000090021")
      assert.is_nil(claim)
      assert.are.equal("business", err.kind)
      assert.are.equal("EXCEED_MAX_TEMPLATE_NUM", err.sub_code)
    end)

    it("refuses an id over 20 characters without a call", function()
      local life = life_on(sb)
      local before = arrivals(sb)
      local claim, _, err = life:claim_template("TM" .. ("0"):rep(19))
      assert.is_nil(claim)
      assert.are.equal("invalid", err.kind)
      assert.are.equal("template_id", err.field)
      claim, _, err = life:claim_template("")
      assert.is_nil(claim)
      assert.are.equal("invalid", err.kind)
      assert.are.equal(before, arrivals(sb))
    end)
  end)

  describe("industry", function()
    -- The main industry and the deputy one, each a level-1/level-2 pair
    -- (the official model's field docs; alipay-easysdk's testSetIndustry
    -- sends exactly IT科技/IT软件与服务 for both).
    local AVIATION = { primary_industry_code = "10003/20301", primary_industry_name = "交通运输/航空",
                       secondary_industry_code = "10001/20102", secondary_industry_name = "IT科技/IT软件与服务" }

    it("reads the current industry (main and deputy, as name pairs), changes it once, then 3002", function()
      local life = life_on(sb)
      assert.are.same({ primary_category = "IT科技/IT软件与服务", secondary_category = "IT科技/IT软件与服务" },
                      assert(life:industry()))
      assert(life:set_industry(AVIATION))
      assert.are.same({ primary_category = "交通运输/航空", secondary_category = "IT科技/IT软件与服务" },
                      assert(life:industry()))
      local res, _, err = life:set_industry(AVIATION)
      assert.is_nil(res)
      assert.are.equal("business", err.kind)
      assert.are.equal("3002", err.sub_code)
    end)

    it("refuses a single level where Alipay expects the pair, without a call", function()
      local before = arrivals(sb)
      local _, _, err = life_on(sb):set_industry { primary_industry_code = "10001", primary_industry_name = "IT科技",
        secondary_industry_code = "20102", secondary_industry_name = "IT软件与服务" }
      assert.are.equal("invalid", err.kind)
      assert.are.equal("primary_industry_code", err.field)
      assert.matches("10001/20102", err.msg)
      assert.are.equal(before, arrivals(sb))
    end)

    it("has no categories before the first choice", function()
      assert.are.same({}, assert(life_on(variant):industry()))
    end)

    it("refuses an incomplete industry without a call", function()
      local before = arrivals(sb)
      local _, _, err = life_on(sb):set_industry { primary_industry_code = "10003/20301" }
      assert.are.equal("invalid", err.kind)
      assert.are.equal("primary_industry_name", err.field)
      assert.are.equal(before, arrivals(sb))
    end)
  end)

  describe("send", function()
    it("delivers the exact context", function()
      local reg = registry()
      local life = life_on(sb, reg)
      local tpl = assert(reg:get("alipaylife123", CLAIMED))
      local ctx = context()
      local res, _, err = life:send({ user_id = F1 }, tpl, ctx)
      assert.is_nil(err)
      assert.are.equal("10000", res.code)
      local deliveries = sb:deliveries()
      assert.are.equal(1, #deliveries)
      local d = deliveries[1]
      assert.are.equal(M.send, d.method)
      assert.are.equal(F1, d.to_user_id)
      assert.are.equal(CLAIMED, d.template_id)
      assert.are.same({ to_user_id = F1, template = { template_id = CLAIMED, context = ctx } }, d.payload)
    end)

    it("sends without a registry, to an open id on an open_id app", function()
      local life = life_on(open_sb, nil, "open_id")
      assert(life:send({ open_id = F1_OPEN }, { id = CLAIMED }, context()))
      local d = open_sb:deliveries()[1]
      assert.are.equal(F1_OPEN, d.to_open_id)
      assert.is_nil(d.payload.to_user_id)
    end)

    it("catches every invalid argument locally, without a call", function()
      local reg = registry()
      local life = life_on(sb, reg)
      local tpl = assert(reg:get("alipaylife123", CLAIMED))
      local cases = {
        { "recipient", { user_id = F1, open_id = F1_OPEN }, tpl, context() },
        { "recipient", {}, tpl, context() },
        { "recipient", F1, tpl, context() },
        { "request", { user_id = F1 }, {}, context() },
        { "template", { user_id = F1 }, "unknown-template", context() },
        { "data", { user_id = F1 }, tpl, "not a table" },
        { "data", { user_id = F1 }, tpl, context { keyword2 = false } },
        { "data", { user_id = F1 }, tpl, context { keyword4 = { color = "#000000", value = "x" } } },
        { "data", { user_id = F1 }, tpl, context { keyword1 = { value = "no colour" } } },
        { "data", { user_id = F1 }, tpl, context { keyword1 = { color = "#000000", value = ("长"):rep(2049) } } },
        { "data", { user_id = F1 }, tpl, context { head_color = "" } },
        { "data", { user_id = F1 }, tpl, context { url = false } },
        { "data", { user_id = F1 }, tpl, context { action_name = "查看订单详情信息" .. "a" } },
        { "data", { user_id = F1 }, tpl, context { action_name = ("a"):rep(17) } },
      }
      local before = arrivals(sb)
      for i, case in ipairs(cases) do
        local res, _, err = life:send(case[2], case[3], case[4])
        assert.is_nil(res, "case " .. i)
        assert.are.equal("invalid", err.kind, "case " .. i .. ": " .. tostring(err))
        assert.are.equal(case[1], err.reason, "case " .. i .. ": " .. tostring(err))
        assert.is_string(err.msg)
        assert.is_false(err.retryable)
      end
      assert.are.equal(before, arrivals(sb))
      assert.are.equal(0, #sb:deliveries())
      -- the limits are inclusive: 8 CJK characters and 16 ASCII ones pass
      assert(life:send({ user_id = F1 }, tpl, context { action_name = "查看订单详情信息" }))
      assert(life:send({ user_id = F1 }, tpl, context { action_name = ("a"):rep(16) }))
      -- Alipay documents no other limit, so longer values, urls and colours go out
      assert(life:send({ user_id = F1 }, tpl, context { keyword1 = { color = "#000000", value = ("长"):rep(300) },
                                                        url = "https://example.com/" .. ("a"):rep(600),
                                                        head_color = "#85be53aaaaa" }))
      assert.are.equal(3, #sb:deliveries())
    end)

    it("MSG_SD_NOFOLLOW for a user who does not follow the account", function()
      local reg = registry()
      local res, _, err = life_on(sb, reg):send({ user_id = STRANGER }, assert(reg:get("alipaylife123", CLAIMED)),
                                                context())
      assert.is_nil(res)
      assert.are.equal("business", err.kind)
      assert.are.equal("MSG_SD_NOFOLLOW", err.sub_code)
      assert.is_truthy(reg:usable("alipaylife123", CLAIMED)) -- a recipient problem, not the template's
    end)

    it("MSG_TEMPLATE_NOT_EXIST marks the template invalid; the next send is refused without a call", function()
      local reg = registry()
      local life = life_on(sb, reg)
      local tpl = assert(reg:get("alipaylife123", CLAIMED_DELETED))
      local ctx = context { keyword3 = false }
      local _, _, err = life:send({ user_id = F1 }, tpl, ctx)
      assert.are.equal("business", err.kind)
      assert.are.equal("MSG_TEMPLATE_NOT_EXIST", err.sub_code)
      assert.is_nil(reg:usable("alipaylife123", CLAIMED_DELETED))
      assert.are.equal("invalid", reg:get("alipaylife123", CLAIMED_DELETED).status)
      local before = arrivals(sb, M.send)
      _, _, err = life:send({ user_id = F1 }, tpl, ctx)
      assert.are.equal("invalid", err.kind)
      assert.are.equal("template", err.reason)
      assert.are.equal(CLAIMED_DELETED, err.template_id)
      assert.are.equal(before, arrivals(sb, M.send))
    end)

    it("notices a template deleted on Alipay between two sends", function()
      -- The variant sandbox is the same app after the operator deleted
      -- TM000000223's claim in the console.
      local reg = registry()
      local before, after = life_on(sb, reg), life_on(variant, reg)
      local tpl = assert(reg:get("alipaylife123", CLAIMED))
      assert(before:send({ user_id = F1 }, tpl, context()))
      local _, _, err = after:send({ user_id = F1 }, tpl, context())
      assert.are.equal("MSG_TEMPLATE_NOT_EXIST", err.sub_code)
      local calls = arrivals(sb, M.send) + arrivals(variant, M.send)
      for _, life in ipairs { before, after } do
        _, _, err = life:send({ user_id = F1 }, tpl, context())
        assert.are.equal("invalid", err.kind)
        assert.are.equal("template", err.reason)
      end
      assert.are.equal(calls, arrivals(sb, M.send) + arrivals(variant, M.send))
      assert.are.equal(1, #sb:deliveries())
    end)

    it("splits into prepare and finish for sends in flight together", function()
      local reg = registry()
      local life = life_on(sb, reg)
      local tpl = assert(reg:get("alipaylife123", CLAIMED))
      local transport = life.client.transport
      local pending = {}
      for i = 1, 5 do
        local req, ctx = assert(life:prepare_send({ user_id = ("208800000000000%d"):format(i) }, tpl, context()))
        pending[assert(transport:submit(req))] = ctx
      end
      local done = 0
      while next(pending) do
        for _, r in ipairs(transport:wait(5000)) do
          assert(life:finish_send(pending[r.id], r.res, r.err))
          pending[r.id] = nil
          done = done + 1
        end
      end
      assert.are.equal(5, done)
      assert.are.equal(5, #sb:deliveries())
    end)
  end)

  describe("followers", function()
    local function collect(life, opts)
      local pages = life:followers(opts)
      local sizes, ids, seen = {}, {}, {}
      for page, cursor in pages do
        assert.are.equal(page.next, cursor)
        sizes[#sizes + 1] = #page.ids
        for _, id in ipairs(page.ids) do
          assert.is_nil(seen[id], "a follower listed twice: " .. id)
          seen[id] = true
          ids[#ids + 1] = id
        end
        ids.id_type = page.id_type
      end
      return ids, sizes, pages
    end

    it("lists 25,000 user ids in three pages", function()
      local ids, sizes, pages = collect(life_on(sb))
      assert.is_nil(pages.err)
      assert.is_true(pages.done)
      assert.are.same({ 10000, 10000, 5000 }, sizes)
      assert.are.equal(FOLLOWERS, #ids)
      assert.are.equal("user_id", ids.id_type)
      assert.are.equal(F1, ids[1])
      assert.are.equal(3, arrivals(sb, M.followers))
    end)

    it("lists open ids on an open_id app", function()
      local ids, sizes = collect(life_on(open_sb, nil, "open_id"))
      assert.are.same({ 10000, 10000, 5000 }, sizes)
      assert.are.equal("open_id", ids.id_type)
      assert.are.equal(F1_OPEN, ids[1])
    end)

    it("reads the older shape with the lists under data", function()
      local ids, sizes, pages = collect(life_on(variant))
      assert.is_nil(pages.err)
      assert.are.same({ 10000, 10000, 5000 }, sizes)
      assert.are.equal(FOLLOWERS, #ids)
      assert.are.equal("user_id", ids.id_type)
    end)

    it("resumes from a cursor", function()
      local life = life_on(sb)
      local first = life:followers()()
      assert.is_string(first.next)
      local rest, sizes = collect(life, { start = first.next })
      assert.are.same({ 10000, 5000 }, sizes)
      assert.are.equal(first.next, rest[1])
    end)

    it("stops on an error and resumes where it stopped", function()
      local life = life_on(sb)
      local pages = life:followers()
      local got = 0
      for page in pages do
        got = got + #page.ids
        if got == 10000 then sb:faults { error_rate = 1 } end
      end
      sb:faults {}
      assert.are.equal(10000, got)
      assert.are.equal("string", type(pages.err))
      assert.are.equal("gateway", pages.detail.kind)
      assert.are.equal("20000", pages.detail.code)
      assert.are.equal(tostring(pages.detail), pages.err)
      assert.is_string(pages.cursor)
      -- called directly, the iterator keeps answering nil, err
      local page, err, detail = pages()
      assert.is_nil(page)
      assert.are.equal(pages.err, err)
      assert.are.equal(pages.detail, detail)
      local rest = collect(life, { start = pages.cursor })
      assert.are.equal(FOLLOWERS - 10000, #rest)
    end)

    it("stops with an error when a cursor comes back", function()
      local life = life_on(sb)
      -- A gateway that answers the second page with the first page's cursor.
      local real, first_cursor, calls = life.client, nil, 0
      life.client = setmetatable({ execute = function(_, method, biz, opts)
        local res, err, detail = real:execute(method, biz, opts)
        calls = calls + 1
        if res and calls == 1 then first_cursor = res.next_user_id end
        if res and calls == 2 then res.next_user_id = first_cursor end
        return res, err, detail
      end }, { __index = real })
      local _, sizes, pages = collect(life)
      assert.are.same({ 10000, 10000 }, sizes)
      assert.are.equal(2, calls)
      assert.are.equal("decode", pages.detail.kind)
      assert.are.equal("cursor_repeated", pages.detail.reason)
      assert.is_false(pages.detail.retryable)
      assert.matches("again: stopping instead of looping", pages.err)
    end)

    it("each_follower visits everyone, or stops when asked", function()
      local life = life_on(sb)
      local n = 0
      local ok, count = life:each_follower(function(id, id_type)
        n = n + 1
        assert.are.equal("user_id", id_type)
        assert.is_string(id)
      end)
      assert.is_true(ok)
      assert.are.equal(FOLLOWERS, count)
      assert.are.equal(FOLLOWERS, n)
      ok, count = life:each_follower(function() return false end)
      assert.is_true(ok)
      assert.are.equal(1, count)
      sb:faults { error_rate = 1 }
      local msg, err, cursor
      ok, msg, err, cursor = life:each_follower(function() end, { start = F1 })
      sb:faults {}
      assert.is_nil(ok)
      assert.are.equal(tostring(err), msg)
      assert.are.equal("20000", err.code)
      assert.are.equal(F1, cursor)
    end)
  end)

  describe("is_following", function()
    it("answers true or false", function()
      local life = life_on(sb)
      assert.is_true(life:is_following { user_id = F1 })
      assert.is_false(life:is_following { user_id = STRANGER })
      assert.is_true(life_on(open_sb, nil, "open_id"):is_following { open_id = F1_OPEN })
      assert.is_true(life:is_following { id_type = "user_id", id = F1 })
    end)

    it("returns the error of a call and refuses a recipient without an id type", function()
      local life = life_on(sb)
      local res, _, err = life:is_following { open_id = F1_OPEN } -- a user_id app
      assert.is_nil(res)
      assert.are.equal("business", err.kind)
      assert.are.equal("ILLEGAL_BIZ_PARAMS", err.sub_code)
      res, _, err = life:is_following(F1)
      assert.is_nil(res)
      assert.are.equal("invalid", err.kind)
      assert.are.equal("recipient", err.reason)
    end)
  end)
end)
