-- Mini-program subscription messages against the sandbox gateway: the
-- subscription query (batched by 3), sends with double-encoded data checked
-- against the template registry, invalidation of deleted templates, one-time
-- subscriptions consumed by a send, and the page rules.
local helpers = require "helpers"
local cjson = require "cjson"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"
local mini = require "alipay.messaging.mini"

local APP_ID = "2021000122671080"
local CODE = "mini1"

-- Seed facts (spec/fixtures/sandbox_seed.json).
local F1 = "2088857585575154" -- long-term MINI_A, one-time MINI_C
local F2 = "2088088617867163" -- one-time MINI_A
local F4 = "2088064507100478" -- refused MINI_A (long-term)
local F5 = "2088285649530791" -- refused MINI_B (one-time)
local STRANGER = "2088999999999999"
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=" -- 3 keywords
local MINI_B = "NzVmYjA1ZDM0NjQ2NDZkNjk0YzBmMjc4OGM3ZDAxNDE=" -- 2 keywords
local MINI_C = "YjU0ZGJkNzU4MzJmNGVkNGE1ZGY1NzQ4MTQ5OTQ3MzQ=" -- 4 keywords
local MINI_D = "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M=" -- deleted on Alipay

local M = mini.METHODS

describe("mini", function()
  local sb, client

  -- The sandbox's own subscribe_state values ("1" subscribed, "0" not):
  -- Alipay's are undocumented, so a channel maps them explicitly.
  local SANDBOX_STATES = { ["1"] = true, ["0"] = false }

  local function app(registry, states)
    if states == nil then states = SANDBOX_STATES end
    return mini.new({ code = CODE, kind = "alipaymini", id_type = "user_id", app_id = APP_ID, client = client,
                      subscribed_states = states or nil }, registry)
  end

  local function arrivals(method)
    local n = 0
    for _, ev in ipairs(sb:arrivals()) do
      if ev.event == "arrive" and ev.method == method then n = n + 1 end
    end
    return n
  end

  local function registry()
    local store = assert(require("alipay.store").open(helpers.tmpdir() .. "/t.db"))
    local reg = require("alipay.messaging.templates").new(store)
    assert(reg:import({
      { channel = CODE, kind = "alipaymini", id = MINI_A, name = "订单发货提醒", keywords = { "订单号", "发货时间", "快递公司" } },
      { channel = CODE, kind = "alipaymini", id = MINI_B, name = "预约成功通知", keywords = { "预约项目", "预约时间" } },
      { channel = CODE, kind = "alipaymini", id = MINI_D, name = "活动开始提醒", keywords = { "活动名称", "开始时间" } },
    }))
    return reg
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

  it("refuses a channel of the other kind", function()
    assert.has_error(function() mini.new { code = "life", kind = "alipaylife", client = client } end)
  end)

  describe("subscriptions", function()
    it("one template, one call", function()
      local subs = assert(app():subscriptions({ user_id = F1 }, { MINI_A }))
      assert.are.same({ [MINI_A] = { subscribed = true, type = "longterm", state = "1", keep_state = "0",
                                     show = false } }, subs)
      assert.are.equal(1, arrivals(M.subscriptions))
    end)

    it("three templates in one call, seven in three", function()
      local subs = assert(app():subscriptions({ user_id = F1 }, { MINI_A, MINI_B, MINI_C }))
      assert.is_true(subs[MINI_A].subscribed)
      assert.is_false(subs[MINI_B].subscribed)
      assert.is_true(subs[MINI_C].subscribed)
      assert.are.equal("onetime", subs[MINI_C].type)
      assert.are.equal(1, arrivals(M.subscriptions))
      local seven = { MINI_A, MINI_B, MINI_C, MINI_D, "tpl-5", "tpl-6", "tpl-7", MINI_A } -- one duplicate
      subs = assert(app():subscriptions({ user_id = F1 }, seven))
      assert.are.equal(1 + 3, arrivals(M.subscriptions))
      local n = 0
      for _ in pairs(subs) do n = n + 1 end
      assert.are.equal(7, n)
      assert.are.same({ subscribed = false }, subs["tpl-7"])
      assert.is_true(subs[MINI_A].subscribed)
    end)

    it("a user who never answered has no subscription", function()
      local subs = assert(app():subscriptions({ user_id = STRANGER }, { MINI_A, MINI_B }))
      assert.are.same({ [MINI_A] = { subscribed = false }, [MINI_B] = { subscribed = false } }, subs)
    end)

    it("a refusal is reported with its type and raw state", function()
      local subs = assert(app():subscriptions({ user_id = F4 }, { MINI_A }))
      assert.is_false(subs[MINI_A].subscribed)
      assert.are.equal("longterm", subs[MINI_A].type)
      assert.are.equal("0", subs[MINI_A].state)
      subs = assert(app():subscriptions({ user_id = F5 }, { MINI_B }))
      assert.is_false(subs[MINI_B].subscribed)
      assert.are.equal("onetime", subs[MINI_B].type)
      assert.are.equal("0", subs[MINI_B].state)
    end)

    it("tells one-time from long-term", function()
      assert.are.equal("longterm", assert(app():subscriptions({ user_id = F1 }, { MINI_A }))[MINI_A].type)
      assert.are.equal("onetime", assert(app():subscriptions({ user_id = F2 }, { MINI_A }))[MINI_A].type)
    end)

    it("returns the error of a failed batch with what was answered before it", function()
      sb:faults { error_rate = 1, count = 1, methods = { M.subscriptions } }
      local subs, _, err, partial = app():subscriptions({ user_id = F1 }, { MINI_A })
      assert.is_nil(subs)
      assert.are.equal("20000", err.code)
      assert.are.same({}, partial)
      sb:faults {}
      local _, _, bad = app():subscriptions({ user_id = F1, open_id = "0x" }, { MINI_A })
      assert.are.equal("invalid", bad.kind)
    end)

    -- No public source says what subscribe_state's values mean
    -- (docs/conformance.md): a client that guessed would misreport every
    -- user the day Alipay's values differ from the guess.
    describe("undocumented subscribe_state values", function()
      local function with_states(values)
        sb:stop()
        local seed = cjson.decode((assert(helpers.read("spec/fixtures/sandbox_seed.json"))))
        seed.subscribe_states = values
        local path = helpers.tmpdir() .. "/seed.json"
        helpers.write(path, cjson.encode(seed))
        sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                    seed = path })
        client = assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs8.pem"),
                                     alipay_public_key = sb.alipay_public_key, gateway = sb.gateway,
                                     timeout_ms = 5000 })
      end

      teardown(function()
        with_states(nil) -- the suite's sandbox again, for the tests after these
      end)

      it("are reported raw, subscribed unknown, when the channel does not map them", function()
        local subs = assert(app(nil, false):subscriptions({ user_id = F1 }, { MINI_A, MINI_B, MINI_C }))
        assert.are.same({ type = "longterm", state = "1", keep_state = "0", show = false }, subs[MINI_A])
        assert.is_nil(subs[MINI_C].subscribed)
        assert.are.equal("1", subs[MINI_C].state)
        -- The one documented fact: no relation means never subscribed.
        assert.are.same({ subscribed = false }, subs[MINI_B])
        subs = assert(app(nil, false):subscriptions({ user_id = F4 }, { MINI_A }))
        assert.is_nil(subs[MINI_A].subscribed)
        assert.are.equal("0", subs[MINI_A].state)
      end)

      it("other values than the sandbox's defaults never turn subscribers into refusals", function()
        with_states { subscribed = "0", not_subscribed = "1" } -- swapped: as plausible as the defaults
        local subs = assert(app(nil, false):subscriptions({ user_id = F1 }, { MINI_A }))
        assert.is_nil(subs[MINI_A].subscribed)
        assert.are.equal("0", subs[MINI_A].state)
        -- a channel told the real values reads them
        local told = { ["0"] = true, ["1"] = false }
        assert.is_true(assert(app(nil, told):subscriptions({ user_id = F1 }, { MINI_A }))[MINI_A].subscribed)
        assert.is_false(assert(app(nil, told):subscriptions({ user_id = F4 }, { MINI_A }))[MINI_A].subscribed)
        -- opts.subscribed_states overrides the channel's for one query
        subs = assert(app():subscriptions({ user_id = F1 }, { MINI_A }, { subscribed_states = told }))
        assert.is_true(subs[MINI_A].subscribed)
      end)

      it("a map that is not state -> boolean is misuse", function()
        assert.has_error(function() app(nil, { ["1"] = "yes" }):subscriptions({ user_id = F1 }, { MINI_A }) end,
          "subscribed_states must map state strings to true or false")
      end)
    end)

    it("prepare/finish: queries for many users in flight at once on the transport", function()
      local a = app()
      local waiting = {}
      for _, user in ipairs { F1, F2, F4, STRANGER } do
        local req, ctx = assert(a:prepare_subscriptions({ user_id = user }, { MINI_A }))
        waiting[assert(client.transport:submit(req))] = { ctx = ctx, user = user }
      end
      local results, rounds = {}, 0
      while next(waiting) and rounds < 100 do
        rounds = rounds + 1
        for _, d in ipairs(client.transport:wait(100)) do
          local w = waiting[d.id]
          waiting[d.id] = nil
          results[w.user] = assert(a:finish_subscriptions(w.ctx, d.res, d.err))[MINI_A]
        end
      end
      assert.is_nil(next(waiting))
      assert.are.equal("longterm", results[F1].type)
      assert.are.equal("onetime", results[F2].type)
      assert.is_false(results[F4].subscribed)
      assert.are.same({ subscribed = false }, results[STRANGER])
      assert.are.equal(4, arrivals(M.subscriptions))
      -- One query holds 1 to 3 ids (subscriptions splits longer lists).
      for _, ids in ipairs { { MINI_A, MINI_B, MINI_C, MINI_D }, {} } do
        local req, _, err = a:prepare_subscriptions({ user_id = F1 }, ids)
        assert.is_nil(req)
        assert.are.equal("invalid", err.kind)
        assert.matches("1 to 3 template ids", err.msg)
      end
      assert.are.equal(4, arrivals(M.subscriptions))
    end)
  end)

  describe("send", function()
    it("double-encodes data given as a list of values", function()
      local res, _, err = app(registry()):send({ user_id = F1 }, MINI_A, { "SF1024", "2024-06-07 18:41", "顺丰速运" },
                                            { page = "pages/order/detail?id=42" })
      assert.is_nil(err)
      assert.are.equal("10000", res.code)
      local d = sb:deliveries()[1]
      assert.are.equal(M.send, d.method)
      assert.are.equal(F1, d.to_user_id)
      assert.are.equal(MINI_A, d.payload.user_template_id)
      assert.are.equal("pages/order/detail?id%3D42", d.payload.page)
      assert.are.equal("string", type(d.payload.data))
      assert.are.equal('{"keyword1":{"value":"SF1024"},"keyword2":{"value":"2024-06-07 18:41"},'
        .. '"keyword3":{"value":"顺丰速运"}}', d.payload.data)
    end)

    it("takes named keywords, bare values, and passes form_id", function()
      assert(app():send({ user_id = F1 }, { id = MINI_A },
        { keyword1 = { value = "SF1024" }, keyword2 = "2024-06-07", keyword3 = 42 }, { form_id = "MjA4ODAw" }))
      local d = sb:deliveries()[1]
      assert.are.same({ keyword1 = { value = "SF1024" }, keyword2 = { value = "2024-06-07" },
                        keyword3 = { value = "42" } }, cjson.decode(d.payload.data))
      assert.are.equal("MjA4ODAw", d.payload.form_id)
      assert.is_nil(d.payload.page)
    end)

    it("USER_TEMPLATE_LACK_KEYWORD, USER_KEYWORD_LENGTH_ERROR: local with a registry, from Alipay without", function()
      local reg = registry()
      local short = { "SF1024", "2024-06-07" }
      local long = { "SF1024", "2024-06-07", ("长"):rep(51) }
      for _, data in ipairs { short, long } do
        local _, _, err = app(reg):send({ user_id = F1 }, MINI_A, data)
        assert.are.equal("invalid", err.kind)
        assert.are.equal("data", err.reason)
      end
      assert.are.equal(0, arrivals(M.send))
      local _, _, err = app():send({ user_id = F1 }, MINI_A, short)
      assert.are.equal("business", err.kind)
      assert.are.equal("USER_TEMPLATE_LACK_KEYWORD", err.sub_code)
      _, _, err = app():send({ user_id = F1 }, MINI_A, long)
      assert.are.equal("USER_KEYWORD_LENGTH_ERROR", err.sub_code)
      -- 50 CJK characters is within the limit, with or without the registry
      assert(app(reg):send({ user_id = F1 }, MINI_A, { "SF1024", "2024-06-07", ("长"):rep(50) }))
      assert.are.equal(1, #sb:deliveries())
    end)

    it("USER_TEMPLATE_ILLEGAL marks the template invalid; the next send is refused without a call", function()
      local reg = registry()
      local _, _, err = app(reg):send({ user_id = F1 }, MINI_D, { "夏日活动", "2024-07-01" })
      assert.are.equal("business", err.kind)
      assert.are.equal("USER_TEMPLATE_ILLEGAL", err.sub_code)
      assert.is_nil(reg:usable(CODE, MINI_D))
      local before = arrivals(M.send)
      _, _, err = app(reg):send({ user_id = F1 }, MINI_D, { "夏日活动", "2024-07-01" })
      assert.are.equal("invalid", err.kind)
      assert.are.equal("template", err.reason)
      assert.are.equal(before, arrivals(M.send))
    end)

    it("a one-time subscription is consumed by one send", function()
      local a = app(registry())
      local data = { "SF1024", "2024-06-07", "顺丰速运" }
      assert.is_true(assert(a:subscriptions({ user_id = F2 }, { MINI_A }))[MINI_A].subscribed)
      assert(a:send({ user_id = F2 }, MINI_A, data))
      local _, _, err = a:send({ user_id = F2 }, MINI_A, data)
      assert.are.equal("business", err.kind)
      assert.are.equal("MSG_UNSUBSCRIBED", err.sub_code)
      local sub = assert(a:subscriptions({ user_id = F2 }, { MINI_A }))[MINI_A]
      assert.is_false(sub.subscribed)
      assert.are.equal("onetime", sub.type)
      -- a long-term one stays
      assert(a:send({ user_id = F1 }, MINI_A, data))
      assert(a:send({ user_id = F1 }, MINI_A, data))
      assert.is_true(assert(a:subscriptions({ user_id = F1 }, { MINI_A }))[MINI_A].subscribed)
    end)

    it("encodes the page's query as one string (Alipay's FAQ) and holds it to 128 characters", function()
      local a = app()
      local data = { "SF1024", "2024-06-07", "顺丰速运" }
      assert(a:send({ user_id = F1 }, MINI_A, data, { page = "pages/order/detail?id=42&name=张 三&q=%E4%BD%A0" }))
      assert.are.equal("pages/order/detail?id%3D42%26name%3D%E5%BC%A0%20%E4%B8%89%26q%3D%25E4%25BD%25A0",
                       sb:deliveries()[1].payload.page)
      local exactly = "pages/p?x=" .. ("a"):rep(116)
      assert.are.equal(128, #mini.encode_page(exactly))
      assert(a:send({ user_id = F1 }, MINI_A, data, { page = exactly }))
      local before = arrivals(M.send)
      local _, _, err = a:send({ user_id = F1 }, MINI_A, data, { page = exactly .. "a" })
      assert.are.equal("invalid", err.kind)
      assert.are.equal("page", err.field)
      -- 23 characters as written, 129 once encoded: the encoded length counts
      _, _, err = a:send({ user_id = F1 }, MINI_A, data, { page = "pages/p?x=" .. ("张"):rep(13) })
      assert.are.equal("page", err.field)
      assert.are.equal(before, arrivals(M.send))
      assert(a:send({ user_id = F1 }, MINI_A, data, { page = "pages/p?x=" .. ("张"):rep(12) })) -- 120
      local deliveries = sb:deliveries()
      assert.are.equal("pages/p?x%3D" .. ("%E5%BC%A0"):rep(12), deliveries[#deliveries].payload.page)
    end)

    it("refuses bad arguments locally", function()
      local a = app(registry())
      local cases = {
        { "recipient", { user_id = F1, open_id = "0x" }, MINI_A, { "a", "b", "c" } },
        { "request", { user_id = F1 }, {}, { "a", "b", "c" } },
        { "template", { user_id = F1 }, "not-imported", { "a", "b", "c" } },
        { "request", { user_id = F1 }, ("x"):rep(65), { "a", "b", "c" } },
        { "data", { user_id = F1 }, MINI_A, "a,b,c" },
        { "data", { user_id = F1 }, MINI_A, {} },
        { "data", { user_id = F1 }, MINI_A, { "a", "b", keyword3 = { value = "c" } } },
        { "data", { user_id = F1 }, MINI_A, { "a", "b", { colour = "red" } } },
        { "data", { user_id = F1 }, MINI_A, { "a", "b", "c", "d" } },
      }
      for i, case in ipairs(cases) do
        local res, _, err = a:send(case[2], case[3], case[4])
        assert.is_nil(res, "case " .. i)
        assert.are.equal("invalid", err.kind, "case " .. i .. ": " .. tostring(err))
        assert.are.equal(case[1], err.reason, "case " .. i .. ": " .. tostring(err))
      end
      local _, _, err = app():send({ user_id = F1 }, MINI_A, { "a", "b", ("x"):rep(2100) })
      assert.are.equal("data", err.reason) -- over 2048 even without a registry
      _, _, err = app():send({ user_id = F1 }, MINI_A, { "a", "b", "c" }, { form_id = 7 })
      assert.are.equal("form_id", err.field)
      assert.are.equal(0, arrivals(M.send))
    end)
  end)

  describe("encode_page", function()
    it("encodes everything after ? as one string, as Alipay's FAQ shows, and keeps a query so encoded", function()
      local cases = {
        { "pages/index/index", "pages/index/index" },
        { "pages/a?", "pages/a" },
        -- the FAQ's own example, written out and already encoded
        { "pages/component/index?key1=value1&key2=value2", "pages/component/index?key1%3Dvalue1%26key2%3Dvalue2" },
        { "pages/component/index?key1%3dvalue1%26key2%3dvalue2",
          "pages/component/index?key1%3dvalue1%26key2%3dvalue2" },
        { "pages/a?q=a b", "pages/a?q%3Da%20b" },
        { "pages/a?q=a%20b", "pages/a?q%3Da%2520b" }, -- the caller's own encoding survives one decode
        { "pages/a?q=50%", "pages/a?q%3D50%25" },
        { "pages/a?q=1+1", "pages/a?q%3D1%2B1" },
        { "pages/a?url=https://x.com/?a=1", "pages/a?url%3Dhttps%3A%2F%2Fx.com%2F%3Fa%3D1" },
        { "pages/a?flag&x=", "pages/a?flag%26x%3D" },
        { "pages/a?名=值", "pages/a?%E5%90%8D%3D%E5%80%BC" },
      }
      for _, case in ipairs(cases) do
        assert.are.equal(case[2], mini.encode_page(case[1]))
      end
    end)
  end)
end)
