-- Campaigns against the sandbox gateway: audiences (CSV with placeholders,
-- duplicates, malformed rows and bindings; JSONL; lists; every follower),
-- exactly-once delivery checked against the sandbox's delivery log, the
-- rate limit under 40005, retries of 20000, unknown outcomes, a template
-- deleted mid-campaign, a configuration stop, mini-program subscriptions,
-- and status / by_code / export.
--
-- Sandboxes: the reference seed (Life Account and mini program on one app),
-- a variant with 3,000 followers, and one whose send handler deletes the
-- claimed template after DELETE_AFTER deliveries (the admin endpoint has no
-- way to delete a template at runtime, so that sandbox loads a small wrapper
-- of alipay.sandbox.apis through its documented lua_path option).
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"
local channels = require "alipay.messaging.channels"
local campaign = require "alipay.campaign"
local mini = require "alipay.messaging.mini"
local workspace = require "alipay.workspace"

local APP_ID = "2021000122671080"
local SEED_PATH = "spec/fixtures/sandbox_seed.json"
local LIFE = "alipaylife123"
local MINI = "mini1"
local TEMPLATE = "14330d60f0ab4516853a0900827cee35" -- TM000000223: 订单号, 订单状态, 更新时间
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=" -- 3 keywords
local SEND = "alipay.open.public.message.single.send"
local MINI_SEND = "alipay.open.app.mini.templatemessage.send"
local SUBSCRIBE_QUERY = "alipay.open.app.messagetemplate.subscribe.query"
local DELETE_AFTER = 50

-- Listed followers of the seed (F1..F4 also carry mini-program subscriptions).
local F = {
  "2088857585575154", "2088088617867163", "2088595874450942", "2088064507100478",
  "2088285649530791", "2088727077415862", "2088648262412892", "2088450403677739",
}
local STRANGER = "2088999999999999"

-- The generated follower n of the seed: prefix 20880000, 8 digits.
local function generated(n) return ("20880000%08d"):format(n) end

local function life_data(overrides)
  local d = {
    head_color = "#85be53", url = "https://example.com/orders/{order_no}", action_name = "查看详情",
    first = { value = "您好", color = "#85be53" },
    keyword1 = { value = "{order_no}", color = "#85be53" },
    keyword2 = { value = "{status}", color = "#85be53" },
    keyword3 = { value = "2024-06-07 18:41", color = "#85be53" },
  }
  for k, v in pairs(overrides or {}) do d[k] = v end
  return d
end

local FIXED = life_data { url = "https://example.com/sale", keyword1 = { value = "SALE", color = "#85be53" },
                          keyword2 = { value = "open", color = "#85be53" } }

local function write_lines(path, lines)
  helpers.write(path, table.concat(lines, "\n") .. "\n")
  return path
end


-- Deliveries of a sandbox by recipient id -> {[id] = count}, total
local function delivered(list)
  local by_id, n = {}, 0
  for _, d in ipairs(list) do
    local id = d.to_user_id or d.to_open_id
    by_id[id] = (by_id[id] or 0) + 1
    n = n + 1
  end
  return by_id, n
end

-- Rows of a campaign by line, through the CSV-free JSONL export.
local function rows_of(c)
  local path = helpers.tmpdir() .. "/export.jsonl"
  assert(c:export(path, "jsonl"))
  local rows, by_id = {}, {}
  for text in io.lines(path) do
    local row = cjson.decode(text)
    for k, v in pairs(row) do if v == cjson.null then row[k] = nil end end
    rows[row.line] = row
    if row.alipay_id and row.status ~= "skipped" then by_id[row.alipay_id] = row end
  end
  return rows, by_id
end

-- Every sent recipient delivered exactly once, nothing delivered that was
-- not sent (or, when allowed, unknown).
local function assert_exactly_once(c, deliveries, opts)
  opts = opts or {}
  local by_id = delivered(deliveries)
  local _, rows = rows_of(c)
  for id, count in pairs(by_id) do
    local row = rows[id]
    assert.is_truthy(row, "delivered to " .. id .. ", who is not in the campaign")
    if row.status == "unknown" and opts.unknown_delivered then
      assert.are.equal(1, count, id)
    else
      assert.are.equal("sent", row.status, "delivered to " .. id .. " but " .. row.status)
      assert.are.equal(opts.twice and opts.twice[id] and 2 or 1, count, "deliveries to " .. id)
    end
  end
  for id, row in pairs(rows) do
    if row.status == "sent" then assert.is_truthy(by_id[id], id .. " is sent but was not delivered") end
  end
end

local function count_arrivals(sb, method, fault)
  local n, answers = 0, {}
  for _, ev in ipairs(sb:arrivals()) do
    if ev.event == "arrive" and ev.method == method then n = n + 1 end
    if ev.event == "answer" and ev.method == method and ev.faults then
      for _, f in ipairs(ev.faults) do answers[f] = (answers[f] or 0) + 1 end
    end
  end
  if fault then return answers[fault] or 0 end
  return n
end

-- Puts campaign id in `status` under a live runner of this host that is not
-- this process; the function returned makes that runner a dead process.
local function held_by_another_process(ctx, id, status)
  local state = require "alipay.campaign.lease"
  local row = assert(ctx.store:campaign_get(id))
  row.status, row.runner, row.heartbeat_at = status, state.identity(), os.time()
  assert(ctx.store:campaign_update(row))
  return function()
    row.runner = state.host .. "/999999999/dead"
    assert(ctx.store:campaign_update(row))
  end
end

describe("campaign rules", function()
  local limiter = require "alipay.campaign.limiter"
  local outcome = require "alipay.campaign.outcome"
  local errors = require "alipay.errors"

  it("limiter: halves once per episode, recovers gradually up to the policy's qps", function()
    local lim = limiter.new { qps = 40, now_ms = 0 }
    assert.are.equal(8, lim:available(0))  -- a fifth of a second's burst
    lim:take(8)
    assert.are.equal(0, lim:available(0))
    assert.are.equal(25, lim:next_token_ms(0))
    assert.is_true(lim:throttled(100, 50))
    assert.are.equal(20, lim.rate)
    assert.is_false(lim:throttled(150, 120))  -- the same second: already cut
    assert.is_false(lim:throttled(1200, 90))  -- sent before the cut
    assert.is_true(lim:throttled(1200, 1100))
    assert.are.equal(10, lim.rate)
    lim:tick(2000)
    assert.are.equal(10, lim.rate)            -- too soon after the cut
    lim:tick(3200)
    assert.are.equal(11, lim.rate)            -- +10%, at least +1
    for t = 5200, 60000, 2000 do lim:tick(t) end
    assert.are.equal(40, lim.rate)
    for t = 61000, 200000, 1000 do lim:throttled(t, t) end
    assert.are.equal(1, lim.rate)             -- the floor
  end)

  it("outcome: what each answer does to a recipient", function()
    local rules = { max_attempts = 3, backoff_ms = 100, max_backoff_ms = 1000, now_ms = 1000,
                    random = function() return 1 end, template_id = "T" }
    local row = { line = 1, status = "inflight", attempts = 1, tries = 0, uncertain = false, checked = true }
    local function send(err, over)
      local r = {}
      for k, v in pairs(rules) do r[k] = v end
      for k, v in pairs(over or {}) do r[k] = v end
      return outcome.send(row, nil, err, r)
    end
    local gateway = function(code, sub_code)
      return errors.new(code == "40004" and "business" or "gateway", { code = code, sub_code = sub_code,
                                                                         verified = true })
    end
    local r, e = outcome.send(row, { code = "10000" }, nil, rules)
    assert.are.equal("sent", r.status)
    assert.is_true(e.finished)
    -- certain transient failures: retried with backoff, then failed
    r = send(gateway("20000", "isp.unknow-error"))
    assert.are.same({ "pending", 1, 1100 }, { r.status, r.tries, r.next_attempt_at })
    r = send(errors.transport("refused", "connect"))
    assert.are.equal("pending", r.status)
    assert.is_false(r.uncertain)
    r = outcome.send({ line = 1, status = "inflight", attempts = 3, tries = 2, uncertain = false }, nil,
                     gateway("20000"), rules)
    assert.are.equal("failed", r.status)
    -- throttled: back to pending, not counted
    r, e = send(gateway("40005", "isv.app-call-limited"))
    assert.are.same({ "pending", 0 }, { r.status, r.tries })
    assert.is_true(e.throttled)
    -- unknown outcomes: never re-sent silently
    for _, err in ipairs { errors.transport("timeout", "timeout"), errors.transport("reset", "reset"),
                           errors.new("http", { status = 502 }), errors.new("decode", { msg = "truncated" }) } do
      r = send(err)
      assert.are.equal("unknown", r.status, tostring(err))
      r = send(err, { retry_unknown = true })
      assert.are.equal("pending", r.status)
      assert.is_true(r.uncertain)
    end
    -- a retried unknown that runs out of attempts stays unknown
    r = outcome.send({ line = 1, status = "inflight", attempts = 3, tries = 2, uncertain = true }, nil,
                     gateway("20000"), rules)
    assert.are.equal("unknown", r.status)
    -- recipient, template, configuration
    r, e = send(gateway("40004", "PUB.MSG_SD_NOFOLLOW"))
    assert.are.same({ "failed", "40004", "PUB.MSG_SD_NOFOLLOW" }, { r.status, r.code, r.sub_code })
    assert.is_nil(e.stop)
    r, e = send(gateway("40004", "MSG_TEMPLATE_NOT_EXIST"))
    assert.are.equal("failed", r.status)
    assert.matches("template T", e.stop)
    r, e = send(gateway("40002", "isv.invalid-signature"))
    assert.are.equal("pending", r.status)
    assert.matches("configuration", e.stop)
    r, e = send(errors.new("signature", { msg = "the response signature is not Alipay's" }))
    assert.are.equal("unknown", r.status)
    assert.is_truthy(e.stop)
    -- the string the gateway signed (it holds the message) is never stored
    r = send(errors.new("gateway", { code = "40002", msg = "Invalid Arguments", sub_code = "isv.invalid-signature",
                                     sub_msg = "验签出错 biz_content={...}" }))
    assert.are.equal("Invalid Arguments", r.msg)
  end)
end)

describe("campaign", function()
  local sb, many_sb, deleting_sb
  local key_dir

  -- The channel configuration of sandbox s (a table: its paths are relative to the repository).
  -- states: the mini channel's subscribed_states; by default the sandbox's
  -- own "1"/"0" (Alipay's values are undocumented), false for none.
  local function channel_config(s, states)
    local file = key_dir .. "/alipay_public_" .. s.port .. ".pem"
    helpers.write(file, s.alipay_public_key)
    local function ch(kind)
      return { kind = kind, app_id = APP_ID, private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
               alipay_public_key_file = file, gateway = s.gateway, timeout_ms = 5000 }
    end
    local mini_channel = ch("alipaymini")
    if states == nil then states = { ["1"] = true, ["0"] = false } end
    mini_channel.subscribed_states = states or nil
    return { channels = { [LIFE] = ch("alipaylife"), [MINI] = mini_channel } }
  end

  -- A fresh store, registry and bindings over the channels of sandbox s.
  local function context(s, states)
    local ws = assert(workspace.open { config = channel_config(s, states),
                                       store = helpers.tmpdir() .. "/state.db" })
    assert(ws.registry:import {
      { channel = LIFE, kind = "alipaylife", id = TEMPLATE, name = "订单状态提醒",
        keywords = { "订单号", "订单状态", "更新时间" } },
      { channel = MINI, kind = "alipaymini", id = MINI_A, name = "订单发货提醒",
        keywords = { "订单号", "发货时间", "快递公司" } },
    })
    return assert(ws:campaign_ctx { mini = mini.new(assert(ws.channels:get(MINI))) })
  end

  setup(function()
    key_dir = helpers.tmpdir()
    local pem = helpers.key_text("app_public.pem")
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = pem, seed = SEED_PATH })
    local seed = cjson.decode(helpers.read(SEED_PATH))
    seed.followers.generate.count = 3000 - #seed.followers.list
    many_sb = assert(sandbox.start { app_id = APP_ID, app_public_key = pem, seed = seed })
    -- The wrapper: the real module, whose send handler deletes the claim
    -- of the template it just delivered once DELETE_AFTER deliveries are made.
    local shim = helpers.tmpdir()
    os.execute("mkdir -p " .. shim .. "/alipay/sandbox")
    helpers.write(shim .. "/alipay/sandbox/apis.lua", ([[
      local real = dofile(%q)
      local send = real.methods[%q]
      local handler, count, deleted = send.handler, 0, false
      send.handler = function(state, biz, ctx)
        local fields = handler(state, biz, ctx)
        count = count + 1
        if count >= %d and not deleted then
          deleted = true
          state:delete_claim(biz.template.template_id)
        end
        return fields
      end
      return real
    ]]):format(helpers.cwd() .. "/sandbox/lua/alipay/sandbox/apis/init.lua", SEND, DELETE_AFTER))
    deleting_sb = assert(sandbox.start { app_id = APP_ID, app_public_key = pem, seed = SEED_PATH,
                                         lua_path = shim .. "/?.lua" })
  end)

  teardown(function()
    for _, s in ipairs { sb, many_sb, deleting_sb } do s:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    assert(sb:reset())
  end)

  describe("create", function()
    it("refuses a channel whose transport has request only, before anything is stored or sent", function()
      local requests = 0
      local single = { request = function() requests = requests + 1; return nil, "not used" end }
      local ws = assert(workspace.open { config = channel_config(sb), store = helpers.tmpdir() .. "/state.db",
                                         transport = single })
      local ctx = assert(ws:campaign_ctx())
      local spec = { id = "single-tier", channel = LIFE, template = TEMPLATE, audience = { userids = { "a" } },
                     data = FIXED }
      local c, err, detail = campaign.create(ctx, spec)
      assert.is_nil(c)
      assert.matches("request only", err)
      assert.are.same({ "config", "transport" }, { detail.kind, detail.field })
      assert.is_nil(ws.store:campaign_get("single-tier"))
      -- Made with a full transport, then run on the request-only one: the
      -- run stops with the reason and every recipient is still pending.
      local full = context(sb)
      assert(campaign.create(full, { id = "single-run", channel = LIFE, template = TEMPLATE,
                                  audience = { recipients = { { user_id = F[1] } } }, data = FIXED }))
      local summary = assert(campaign.open({ store = full.store, channels = ctx.channels, registry = full.registry,
                                             users = full.users }, "single-run"):run())
      assert.are.equal("stopped", summary.status)
      assert.matches("request only", summary.stop_reason)
      assert.are.equal(1, summary.counts.pending)
      assert.are.equal(0, requests)
      ws:close()
    end)

    it("refuses a bad definition, naming the field, and stores nothing", function()
      local ctx = context(sb)
      local base = { channel = LIFE, template = TEMPLATE, audience = { userids = { "a" } }, data = FIXED }
      local function with(over)
        local s = {}
        for k, v in pairs(base) do s[k] = v end
        for k, v in pairs(over) do s[k] = v end
        return s
      end
      local cases = {
        { with { id = "bad id!" }, "^campaign: id:" },
        { with { channel = "nope" }, "unknown channel nope" },
        { with { template = "not-imported" }, "not imported" },
        { with { audience = { userids = {}, followers = true } }, "exactly one of" },
        { with { policy = { qps = 0 } }, "policy.qps" },
        { with { policy = { burst = 1 } }, "policy.burst: unknown field" },
        { with { policy = { max_throttled_s = 0 } }, "policy.max_throttled_s" },
        { with { page = "pages/x" }, "only mini%-program messages have a page" },
        { with { data = { head_color = "#85be53", url = "u", action_name = "a",
                          keyword1 = { value = "1", color = "#85be53" },
                          keyword2 = { value = "2", color = "#85be53" } } }, "keyword3" },
        { with { data = { head_color = "", url = "u", action_name = "a",
                          keyword1 = { value = "1", color = "#85be53" }, keyword2 = { value = "2", color = "#85be53" },
                          keyword3 = { value = "3", color = "#85be53" } } }, "head_color" },
      }
      for _, case in ipairs(cases) do
        local c, err, detail = campaign.create(ctx, case[1])
        assert.is_nil(c)
        assert.matches(case[2], err)
        -- The typed error comes third; only an unknown template is a matter of state.
        assert.are.equal(err, tostring(detail))
        assert.are.equal(case[2] == "not imported" and "state" or "input", detail.kind, err)
      end
      assert.are.same({}, campaign.list(ctx))
      assert.are.equal(0, #sb:deliveries())
    end)

    it("refuses a placeholder that names no column, and an existing id", function()
      local ctx = context(sb)
      local dir = helpers.tmpdir()
      local path = write_lines(dir .. "/a.csv", { "user_id,order_no", F[1] .. ",A1" })
      local c, err = campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { file = path },
                                            data = life_data() })
      assert.is_nil(c)
      assert.matches("{status} names no column", err, 1, true)
      assert(campaign.create(ctx, { id = "once", channel = LIFE, template = TEMPLATE, audience = { file = path },
                                    data = FIXED }))
      c, err = campaign.create(ctx, { id = "once", channel = LIFE, template = TEMPLATE,
                                      audience = { file = path }, data = FIXED })
      assert.is_nil(c)
      assert.matches("already exists", err)
      c, err = campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { file = dir .. "/none.csv" },
                                      data = FIXED })
      assert.is_nil(c)
      assert.matches("cannot read the audience", err)
      assert.are.equal(1, #campaign.list(ctx))
    end)

    it("refuses an audience without recipients, naming it, before anything is stored or sent", function()
      local ctx = context(sb)
      local dir = helpers.tmpdir()
      -- {file name or audience table, file content, what the error says}
      local cases = {
        { "empty.csv", "", "empty.csv has no recipients (the file is empty)" },
        { "header.csv", "user_id,order_no\n", "header.csv has no recipients (only a header row)" },
        { "empty.jsonl", "", "empty.jsonl has no recipients (the file is empty or has only blank lines)" },
        { "blank.jsonl", "\n   \n\n", "blank.jsonl has no recipients (the file is empty or has only blank lines)" },
        { { userids = {} }, nil, "audience.userids has no recipients (an empty list)" },
        { { recipients = {} }, nil, "audience.recipients has no recipients (an empty list)" },
      }
      for _, case in ipairs(cases) do
        local a = case[1]
        if type(a) == "string" then
          helpers.write(dir .. "/" .. a, case[2])
          a = { file = dir .. "/" .. a }
        end
        local c, err = campaign.create(ctx, { id = "nobody", channel = LIFE, template = TEMPLATE,
                                              audience = a, data = FIXED })
        assert.is_nil(c)
        assert.truthy(err:find(case[3], 1, true), err)
        assert.is_nil(campaign.open(ctx, "nobody"))
      end
      assert.are.same({}, campaign.list(ctx))
      assert.are.equal(0, #ctx.store:query("rows", "SELECT campaign FROM campaign_recipients"))
      assert.are.equal(0, #sb:deliveries())
      -- One recipient is enough: the first entry, read ahead, is not lost.
      local one = write_lines(dir .. "/one.csv", { "user_id", F[1] })
      local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, data = FIXED,
                                              audience = { file = one } }))
      local summary = assert(c:run())
      assert.are.equal(1, summary.counts.sent)
    end)

    it("refuses a follower audience of a Life Account without followers", function()
      local audience = require "alipay.campaign.audience"
      -- The listing of an account without followers, as alipay.messaging.lifeaccount
      -- ends it: the first page is the end (done, no error).
      local life = { followers = function()
        return setmetatable({ done = false }, { __call = function(self)
          self.done = true
          return nil
        end })
      end }
      local spec = { followers = true }
      local source = assert(audience.open(spec, { life = life }))
      local nonempty, err = audience.nonempty(source, spec)
      assert.is_nil(nonempty)
      assert.are.equal("the Life Account has no followers: the audience has no recipients", err)
    end)
  end)

  describe("a CSV audience", function()
    local function audience_file()
      local long = ("长"):rep(2049) -- past this library's own bound (Alipay documents none)
      return write_lines(helpers.tmpdir() .. "/audience.csv", {
        "user_id,userid,order_no,status",      -- 1
        F[1] .. ",,A100,已发货",                 -- 2  sent
        F[2] .. ",,A101,已发货",                 -- 3  sent
        F[1] .. ",,A102,已发货",                 -- 4  duplicate of line 2
        "2088123,,A103,已发货",                  -- 5  invalid id
        STRANGER .. ",,A104,已发货",             -- 6  failed: does not follow
        ",zhangsan,A105,已发货",                 -- 7  bound to F3: sent
        ",lisi,A106,已发货",                     -- 8  no binding
        F[4] .. ",,A107",                        -- 9  3 fields
        F[5] .. ',,A108,"两行',                  -- 10 sent (a quoted field over two lines)
        '的状态"',                               -- 11
        F[6] .. ",," .. long .. ",已发货",       -- 12 keyword1 too long
        "",                                      -- 13 (empty)
        F[7] .. ',,"A109,已发货',                -- 14 unterminated quote
        F[8] .. ",,A110,已发货",                 -- 15 sent
        ",wangwu,A111,已发货",                   -- 16 bound to F2: duplicate of line 3
        generated(42) .. ",,A112,已发货",        -- 17 sent
        ",,A113,已发货",                         -- 18 no id
      })
    end

    local EXPECTED = {
      [2] = { "sent" }, [3] = { "sent" }, [4] = { "skipped", "DUPLICATE", "duplicate of line 2" },
      [5] = { "skipped", "INVALID_ID", "16 digits" }, [6] = { "failed", "40004", "MSG_SD_NOFOLLOW" },
      [7] = { "sent" }, [8] = { "skipped", "NO_BINDING", "no binding" },
      [9] = { "skipped", "INVALID_ROW", "3 fields, the header has 4" }, [10] = { "sent" },
      [12] = { "skipped", "INVALID_DATA", "2049 characters; Alipay documents no limit" },
      [14] = { "skipped", "INVALID_ROW", "unterminated quoted field" }, [15] = { "sent" },
      [16] = { "skipped", "DUPLICATE", "duplicate of line 3" }, [17] = { "sent" },
      [18] = { "skipped", "INVALID_ID", "no recipient id" },
    }

    it("accounts for every line, and delivers each sent recipient exactly once", function()
      local ctx = context(sb)
      local bound = ctx.users:upload {
        { userid = "zhangsan", set = { alipaylife = { [LIFE] = F[3] } } },
        { userid = "wangwu", set = { alipaylife = { [LIFE] = F[2] } } },
      }
      assert.are.equal(2, #bound.success)
      local logged = {}
      ctx.log = function(level, msg) logged[#logged + 1] = level .. " " .. msg end
      local c = assert(campaign.create(ctx, { id = "csv", channel = LIFE, template = TEMPLATE,
                                              audience = { file = audience_file() }, data = life_data() }))
      local created = c:status()
      assert.are.equal("created", created.status)
      assert.are.equal(15, created.total)
      assert.are.same({ pending = 7, inflight = 0, sent = 0, failed = 0, skipped = 8, unknown = 0 }, created.counts)
      assert.are.equal(0, #sb:deliveries())

      local progress = {}
      local summary = assert(c:run { on_progress = function(s) progress[#progress + 1] = s end })
      assert.are.equal("completed", summary.status)
      assert.are.same({ pending = 0, inflight = 0, sent = 6, failed = 1, skipped = 8, unknown = 0 }, summary.counts)
      assert.are.equal(15, summary.total)
      assert.is_true(#progress >= 1)
      assert.are.equal("completed", progress[#progress].status)

      local rows = rows_of(c)
      local lines = 0
      for line, want in pairs(EXPECTED) do
        lines = lines + 1
        local row = rows[line]
        assert.is_truthy(row, "line " .. line)
        assert.are.equal(want[1], row.status, "line " .. line)
        if want[2] then assert.are.equal(want[2], row.code, "line " .. line) end
        if want[3] then
          assert.is_truthy((tostring(row.msg) .. " " .. tostring(row.sub_code)):find(want[3], 1, true),
            ("line %d: %s / %s"):format(line, tostring(row.msg), tostring(row.sub_code)))
        end
      end
      local exported = 0
      for _ in pairs(rows) do exported = exported + 1 end
      assert.are.equal(lines, exported)
      assert.are.equal("zhangsan", rows[7].userid)
      assert.are.equal(F[3], rows[7].alipay_id)
      assert.are.equal(1, rows[2].attempts)
      assert.are.equal(0, rows[4].attempts)

      -- Each sent recipient delivered once, with its own values.
      local deliveries = sb:deliveries()
      assert.are.equal(6, #deliveries)
      assert_exactly_once(c, deliveries)
      local by_user = {}
      for _, d in ipairs(deliveries) do by_user[d.to_user_id] = d.payload.template end
      assert.are.equal(TEMPLATE, by_user[F[1]].template_id)
      assert.are.equal("A100", by_user[F[1]].context.keyword1.value)
      assert.are.equal("https://example.com/orders/A100", by_user[F[1]].context.url)
      assert.are.equal("A105", by_user[F[3]].context.keyword1.value)
      assert.are.equal("两行\n的状态", by_user[F[5]].context.keyword2.value)
      assert.are.equal("A112", by_user[generated(42)].context.keyword1.value)

      -- status and by_code
      local st = c:status()
      assert.are.equal("completed", st.status)
      assert.are.equal(LIFE, st.channel)
      assert.are.equal(TEMPLATE, st.template)
      assert.is_number(st.created_at)
      assert.is_true(st.finished_at >= st.started_at)
      local codes = {}
      for _, b in ipairs(st.by_code) do
        codes[b.status .. " " .. tostring(b.code) .. " " .. tostring(b.sub_code)] = b.count
      end
      assert.are.same({
        ["sent 10000 nil"] = 6, ["failed 40004 MSG_SD_NOFOLLOW"] = 1, ["skipped DUPLICATE nil"] = 2,
        ["skipped INVALID_ID nil"] = 2, ["skipped INVALID_ROW nil"] = 2, ["skipped NO_BINDING nil"] = 1,
        ["skipped INVALID_DATA nil"] = 1,
      }, codes)

      -- The CSV export: a header, one row per line, quoted where needed.
      local path = helpers.tmpdir() .. "/export.csv"
      assert.are.equal(15, c:export(path, "csv"))
      local text = helpers.read(path)
      local first, second = text:match("^([^\n]*)\n([^\n]*)\n")
      assert.are.equal("line,userid,id_type,alipay_id,status,code,sub_code,msg,attempts,updated_at,unknown_reason",
        first)
      assert.matches("^2,,user_id," .. F[1] .. ",sent,10000,,,1,%d+,$", second)
      assert.truthy(text:find("\n4,,user_id," .. F[1] .. ",skipped,DUPLICATE,,duplicate of line 2,0,", 1, true))
      local fh = io.open(path, "rb")
      local n = 0
      for _ in fh:lines() do n = n + 1 end
      fh:close()
      assert.are.equal(16, n)

      -- list, newest first; the log names no message content
      assert(campaign.create(ctx, { id = "later", channel = LIFE, template = TEMPLATE,
                                    audience = { userids = { "zhangsan" } }, data = FIXED }))
      local list = campaign.list(ctx)
      assert.are.equal("later", list[1].id)
      assert.are.equal("csv", list[2].id)
      assert.are.equal("completed", list[2].status)
      for _, line in ipairs(logged) do
        assert.is_falsy(line:find("A100", 1, true))
        assert.is_falsy(line:find("PRIVATE KEY", 1, true))
      end
    end)

    it("running a completed campaign again sends nothing", function()
      local ctx = context(sb)
      local path = write_lines(helpers.tmpdir() .. "/a.csv", { "user_id", F[1], F[2] })
      local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { file = path },
                                              data = FIXED }))
      assert.are.equal("completed", assert(c:run()).status)
      local again = assert(campaign.open(ctx, c.id))
      local summary = assert(again:run())
      assert.are.equal("completed", summary.status)
      assert.are.equal(2, summary.counts.sent)
      assert.are.equal(2, #sb:deliveries())
    end)
  end)

  it("reads a JSONL audience: ids as strings only, per-line values, bad lines reported", function()
    local ctx = context(sb)
    local path = write_lines(helpers.tmpdir() .. "/a.jsonl", {
      cjson.encode { user_id = F[1], order_no = "J1", status = "ok" },              -- 1 sent
      '{"user_id": 2088088617867163, "order_no": "J2", "status": "ok"}',             -- 2 a number
      "{not json",                                                                   -- 3
      "",                                                                            -- 4
      cjson.encode { alipay_id = F[2], id_type = "user_id", order_no = 42, status = "ok" }, -- 5 sent
      cjson.encode { user_id = F[3], order_no = "J6" },                              -- 6 no {status}
      cjson.encode { open_id = "0V7KGVDalY9Ks76za6O6goGeF8QreKU60cAqETZaAs3Yp5",
                     order_no = "J7", status = "ok" },                               -- 7 wrong id type for this app
      "[1, 2]",                                                                      -- 8
    })
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { file = path },
                                            data = life_data() }))
    local summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    local rows = rows_of(c)
    assert.are.equal("sent", rows[1].status)
    assert.are.equal("INVALID_ID", rows[2].code)
    assert.matches("must be a string", rows[2].msg)
    assert.are.equal("INVALID_ROW", rows[3].code)
    assert.is_nil(rows[4])
    assert.are.equal("sent", rows[5].status)
    assert.are.equal("INVALID_DATA", rows[6].code)
    assert.matches("no value for {status}", rows[6].msg, 1, true)
    assert.are.equal("failed", rows[7].status)
    assert.are.equal("ILLEGAL_ARGUMENT_PARAMS", rows[7].sub_code)
    assert.are.equal("INVALID_ROW", rows[8].code)
    local deliveries = sb:deliveries()
    assert.are.equal(2, #deliveries)
    assert_exactly_once(c, deliveries)
    for _, d in ipairs(deliveries) do
      if d.to_user_id == F[2] then assert.are.equal("42", d.payload.template.context.keyword1.value) end
    end
  end)

  it("sends to lists of business user ids and of recipients", function()
    local ctx = context(sb)
    ctx.users:upload { { userid = "u1", set = { alipaylife = { [LIFE] = F[1] } } },
                       { userid = "u2", set = { alipaylife = { [LIFE] = F[2] } } } }
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE,
                                            audience = { userids = { "u1", "u2", "u3", "u1", 7 } }, data = FIXED }))
    assert.are.same({ pending = 0, inflight = 0, sent = 2, failed = 0, skipped = 3, unknown = 0 },
                    assert(c:run()).counts)
    local rows = rows_of(c)
    assert.are.equal("NO_BINDING", rows[3].code)
    assert.are.equal("duplicate of line 1", rows[4].msg)
    assert.are.equal("INVALID_ROW", rows[5].code)
    local r = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, data = life_data(),
      audience = { recipients = { { user_id = F[3], order_no = "R1", status = "s" },
                                  { open_id = "0SandboxGeneratedFollower000000000000000001", order_no = "R2",
                                    status = "s" } } } }))
    local summary = assert(r:run())
    assert.are.equal(1, summary.counts.sent)
    assert.are.equal(1, summary.counts.failed) -- the sandbox app identifies users by user_id
    assert.are.equal(3, #sb:deliveries())
  end)

  it("sends to every follower of the Life Account, once each", function()
    local ctx = context(many_sb)
    assert(many_sb:reset())
    local c = assert(campaign.create(ctx, { id = "followers", channel = LIFE, template = TEMPLATE,
                                            audience = { followers = true }, data = FIXED,
                                            policy = { in_flight = 16, qps = 5000 } }))
    assert.are.equal(3000, c:status().total)
    local t0 = require("alipay.campaign.clock").now_ms()
    local summary = assert(c:run())
    local seconds = (require("alipay.campaign.clock").now_ms() - t0) / 1000
    assert.are.equal("completed", summary.status)
    assert.are.equal(3000, summary.counts.sent)
    local deliveries = many_sb:deliveries()
    assert.are.equal(3000, #deliveries)
    assert_exactly_once(c, deliveries)
    -- 1 follower page + 3000 sends: nothing sent twice
    assert.are.equal(3000, count_arrivals(many_sb, SEND))
    print(("\n    [followers] 3000 recipients in %.2f s: %.0f sends/s"):format(seconds, 3000 / seconds))
  end)

  it("halves its rate on 40005 and still sends everyone once", function()
    local ctx = context(sb)
    local ids = {}
    for i = 1, 100 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { recipients = ids },
                                            data = FIXED, policy = { qps = 50, in_flight = 8, backoff_ms = 200 } }))
    -- A rate the client exceeds, also when it runs slowed down (valgrind).
    assert(sb:faults { throttle_qps = math.max(1, 20 // helpers.time_scale), methods = { SEND } })
    local lowest = math.huge
    local summary = assert(c:run { progress_every_ms = 100, on_progress = function(s)
      lowest = math.min(lowest, s.qps)
    end })
    assert(sb:faults {})
    assert.are.equal("completed", summary.status)
    assert.are.equal(100, summary.counts.sent)
    assert.is_true(lowest <= 25, "the limit never went below 25/s: " .. lowest)
    assert.is_true(count_arrivals(sb, SEND, "throttle_qps") > 0)
    local deliveries = sb:deliveries()
    assert.are.equal(100, #deliveries)
    assert_exactly_once(c, deliveries)
    print(("\n    [throttled] 100 recipients in %.1f s, %d answers 40005, limit down to %.1f/s"):format(
      summary.elapsed_s, count_arrivals(sb, SEND, "throttle_qps"), lowest))
  end)

  it("retries 20000 with backoff until sent", function()
    local ctx = context(sb)
    local ids = {}
    for i = 1, 40 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { recipients = ids },
                                            data = FIXED, policy = { backoff_ms = 20, max_backoff_ms = 200,
                                                                     max_attempts = 10 } }))
    assert(sb:faults { error_rate = 1, count = 15, methods = { SEND } })
    local summary = assert(c:run())
    assert(sb:faults {})
    assert.are.equal("completed", summary.status)
    assert.are.equal(40, summary.counts.sent)
    local attempts = 0
    for _, row in pairs(rows_of(c)) do attempts = attempts + row.attempts end
    assert.are.equal(40 + 15, attempts)
    assert.are.equal(55, count_arrivals(sb, SEND))
    local deliveries = sb:deliveries()
    assert.are.equal(40, #deliveries)
    assert_exactly_once(c, deliveries)
  end)

  it("fails a recipient after max_attempts certain failures", function()
    local ctx = context(sb)
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = { { user_id = F[1] } } }, data = FIXED,
                                            policy = { backoff_ms = 10, max_attempts = 3 } }))
    assert(sb:faults { error_rate = 1, methods = { SEND } })
    local summary = assert(c:run())
    assert(sb:faults {})
    assert.are.equal("completed", summary.status)
    assert.are.equal(1, summary.counts.failed)
    local row = rows_of(c)[1]
    assert.are.equal("20000", row.code)
    assert.are.equal(3, row.attempts)
    assert.are.equal(0, #sb:deliveries())
  end)

  -- MSG_SINGLE_SD_OVER is a quota code of single.send's official list: the
  -- campaign stops with everyone left pending instead of failing them one
  -- by one, and goes on when the quota is back (here: the sandbox's reset).
  it("stops, resumable, on a spent sending quota (MSG_SINGLE_SD_OVER), without failing anyone", function()
    local seed = cjson.decode((assert(helpers.read(SEED_PATH))))
    seed.quotas = { single_send = 4 }
    local limited = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                           seed = seed })
    local ok, err = pcall(function()
      local ctx = context(limited)
      local ids = {}
      for i = 1, 10 do ids[i] = { user_id = generated(i) } end
      local c = assert(campaign.create(ctx, { id = "spent", channel = LIFE, template = TEMPLATE,
                                              audience = { recipients = ids }, data = FIXED,
                                              policy = { in_flight = 3 } }))
      local arrived, runs = {}, 0
      local summary
      repeat
        runs = runs + 1
        summary = assert(c:run())
        for _, d in ipairs(limited:deliveries()) do arrived[#arrived + 1] = d end
        local refusals = count_arrivals(limited, SEND) - #limited:deliveries()
        if summary.status == "stopped" then
          assert.matches("quota is spent", summary.stop_reason)
          assert.matches("MSG_SINGLE_SD_OVER", summary.stop_reason)
          assert.are.equal(0, summary.counts.failed)
          -- stopping costs at most the requests already in flight, not a call per row left
          assert.is_true(refusals >= 1 and refusals <= 3, tostring(refusals))
        end
        assert(limited:reset()) -- the quota is back; deliveries collected above
      until summary.status ~= "stopped" or runs > 5
      assert.are.equal("completed", summary.status)
      assert.are.equal(3, runs) -- 4 + 4 + 2
      assert.are.equal(10, summary.counts.sent)
      assert_exactly_once(c, arrived)
    end)
    limited:stop()
    assert(ok, err)
  end)

  it("stops, resumable, when every answer for max_throttled_s was a throttle (a quota used up)", function()
    local ctx = context(sb)
    local ids = {}
    for i = 1, 10 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { id = "quota", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = ids }, data = FIXED,
                                            policy = { backoff_ms = 50, max_throttled_s = 1 } }))
    assert(sb:faults { throttle = 1, methods = { SEND } })
    local summary = assert(c:run())
    assert(sb:faults {})
    assert.are.equal("stopped", summary.status)
    assert.matches("every answer for 1 s was a throttle", summary.stop_reason)
    assert.matches("run the campaign again later", summary.stop_reason)
    assert.are.equal(10, summary.counts.pending)
    assert.is_true(count_arrivals(sb, SEND, "throttle") > 1)
    assert.are.equal(0, #sb:deliveries())
    local answered = 0
    for line in pairs(rows_of(c)) do
      local row = assert(ctx.store:recipient_get("quota", line))
      assert.are.equal(0, row.tries) -- throttles use up no attempts
      -- A slow client (valgrind) may not reach every row within the second.
      if row.code then
        assert.are.equal("40005", row.code)
        answered = answered + 1
      end
    end
    assert.is_true(answered > 0)
    summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    assert.are.equal(10, summary.counts.sent)
    assert_exactly_once(c, sb:deliveries())
  end)

  it("records unknown outcomes without re-sending, and re-sends them with retry_unknown", function()
    local ctx = context(sb)
    local ids = {}
    for i = 1, 20 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { id = "resets", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = ids }, data = FIXED }))
    assert(sb:faults { reset = 1, count = 3, methods = { SEND } })
    local summary = assert(c:run())
    assert(sb:faults {})
    assert.are.equal("completed", summary.status)
    assert.are.same({ pending = 0, inflight = 0, sent = 17, failed = 0, skipped = 0, unknown = 3 }, summary.counts)
    local unknown = {}
    for _, row in pairs(rows_of(c)) do
      if row.status == "unknown" then
        unknown[#unknown + 1] = row.alipay_id
        assert.are.equal("TRANSPORT", row.code)
        assert.are.equal(1, row.attempts)
      end
    end
    -- a reset answer was never executed: not delivered
    assert.are.equal(17, #sb:deliveries())
    -- a plain run leaves them alone
    assert.are.equal(3, assert(c:run()).counts.unknown)
    assert.are.equal(20, count_arrivals(sb, SEND))
    -- retry_unknown sends them again
    summary = assert(c:run { retry_unknown = true })
    assert.are.same({ pending = 0, inflight = 0, sent = 20, failed = 0, skipped = 0, unknown = 0 }, summary.counts)
    local deliveries = sb:deliveries()
    assert.are.equal(20, #deliveries)
    assert_exactly_once(c, deliveries)
    local _, by_id = rows_of(c)
    for _, id in ipairs(unknown) do assert.are.equal(2, by_id[id].attempts) end

    -- A truncated answer came after the send was executed: unknown, and
    -- delivered. retry_unknown then delivers it a second time: the price of
    -- asking for it, which is why it is off by default.
    assert(sb:reset())
    local t = assert(campaign.create(ctx, { id = "truncated", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = { { user_id = F[1] }, { user_id = F[2] },
                                                                        { user_id = F[3] } } },
                                            data = FIXED, policy = { in_flight = 1 } }))
    assert(sb:faults { truncate = 1, count = 1, methods = { SEND } })
    summary = assert(t:run())
    assert(sb:faults {})
    assert.are.equal(1, summary.counts.unknown)
    assert.are.equal(3, #sb:deliveries())
    local twice = {}
    for id, row in pairs(select(2, rows_of(t))) do
      if row.status == "unknown" then
        twice[id] = true
        assert.are.equal("TRANSPORT", row.code)
        assert.are.equal("reset", row.sub_code)
      end
    end
    assert_exactly_once(t, sb:deliveries(), { unknown_delivered = true })
    summary = assert(t:run { retry_unknown = true })
    assert.are.equal(3, summary.counts.sent)
    assert_exactly_once(t, sb:deliveries(), { twice = twice })
  end)

  it("retries unknown outcomes in the run when the policy says so", function()
    local ctx = context(sb)
    local ids = {}
    for i = 1, 10 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { recipients = ids },
                                            data = FIXED, policy = { retry_unknown = true, backoff_ms = 10 } }))
    assert(sb:faults { http_502 = 1, count = 2, methods = { SEND } })
    local summary = assert(c:run())
    assert(sb:faults {})
    assert.are.equal(10, summary.counts.sent)
    assert.are.equal(12, count_arrivals(sb, SEND))
    assert_exactly_once(c, sb:deliveries())
  end)

  it("stops cleanly when the template is deleted mid-campaign, and resumes once fixed", function()
    local ctx = context(deleting_sb)
    assert(deleting_sb:reset())
    local ids = {}
    for i = 1, 200 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { id = "deleted", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = ids }, data = FIXED,
                                            policy = { in_flight = 4, qps = 200 } }))
    local summary = assert(c:run())
    assert.are.equal("stopped", summary.status)
    assert.matches("MSG_TEMPLATE_NOT_EXIST", summary.stop_reason)
    assert.are.equal(DELETE_AFTER, summary.counts.sent)
    assert.is_true(summary.counts.failed >= 1 and summary.counts.failed <= 4)
    assert.are.equal(0, summary.counts.inflight)
    assert.are.equal(200 - DELETE_AFTER - summary.counts.failed, summary.counts.pending)
    assert.are.equal("invalid", ctx.registry:get(LIFE, TEMPLATE).status)
    for _, row in pairs(rows_of(c)) do
      if row.status == "failed" then assert.are.equal("MSG_TEMPLATE_NOT_EXIST", row.sub_code) end
    end
    local st = c:status()
    assert.are.equal("stopped", st.status)
    assert.are.equal(summary.stop_reason, st.stop_reason)
    local before = deleting_sb:deliveries()
    assert.are.equal(DELETE_AFTER, #before)
    local arrivals = count_arrivals(deleting_sb, SEND)

    -- Run again before fixing: refused at once, nothing sent.
    summary = assert(c:run())
    assert.are.equal("stopped", summary.status)
    assert.matches("marked invalid", summary.stop_reason)
    assert.are.equal(arrivals, count_arrivals(deleting_sb, SEND))

    -- Fixed (the template is back on the gateway and imported again): resume.
    assert(deleting_sb:reset())
    assert(ctx.registry:import { { channel = LIFE, kind = "alipaylife", id = TEMPLATE,
                                   keywords = { "订单号", "订单状态", "更新时间" } } })
    local failed = c:status().counts.failed
    summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    assert.are.equal(200 - failed, summary.counts.sent)
    local all = {}
    for _, d in ipairs(before) do all[#all + 1] = d end
    for _, d in ipairs(deleting_sb:deliveries()) do all[#all + 1] = d end
    assert.are.equal(200 - failed, #all)
    assert_exactly_once(c, all)
  end)

  it("stops on a configuration error: the maybe-delivered recipient is unknown, the rest resume", function()
    local ctx = context(sb)
    local ids = {}
    for i = 1, 30 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { recipients = ids },
                                            data = FIXED, policy = { in_flight = 1 } }))
    assert(sb:faults { bad_sign = 1, count = 1, methods = { SEND } })
    local summary = assert(c:run())
    assert(sb:faults {})
    assert.are.equal("stopped", summary.status)
    assert.matches("configuration", summary.stop_reason)
    assert.are.same({ pending = 29, inflight = 0, sent = 0, failed = 0, skipped = 0, unknown = 1 }, summary.counts)
    assert.are.equal("SIGNATURE", rows_of(c)[1].code)
    summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    assert.are.equal(29, summary.counts.sent)
    -- the bad signature was on an executed send: the unknown one was delivered, once
    local deliveries = sb:deliveries()
    assert.are.equal(30, #deliveries)
    assert_exactly_once(c, deliveries, { unknown_delivered = true })
  end)

  it("stops instead of failing everyone when the gateway is unreachable, and resumes", function()
    local ctx = context(sb)
    local down = assert(channels.load { channels = { [LIFE] = {
      kind = "alipaylife", app_id = APP_ID, private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
      alipay_public_key_file = key_dir .. "/alipay_public_" .. sb.port .. ".pem",
      gateway = "http://127.0.0.1:1/gateway.do", timeout_ms = 2000 } } })
    local ids = {}
    for i = 1, 40 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { id = "down", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = ids }, data = FIXED,
                                            policy = { in_flight = 2, backoff_ms = 10 } }))
    local broken = { store = ctx.store, channels = down, registry = ctx.registry, users = ctx.users }
    local summary = assert(assert(campaign.open(broken, "down")):run())
    assert.are.equal("stopped", summary.status)
    assert.matches("the gateway keeps failing", summary.stop_reason)
    assert.matches("connect", summary.stop_reason)
    assert.are.equal(0, summary.counts.failed)
    assert.are.equal(0, summary.counts.unknown)
    assert.are.equal(40, summary.counts.pending)
    -- the gateway is back: everyone is sent, once
    summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    assert.are.equal(40, summary.counts.sent)
    assert.are.equal(40, #sb:deliveries())
    assert_exactly_once(c, sb:deliveries())
  end)

  it("stops when on_progress returns false, and resumes where it stopped", function()
    local ctx = context(sb)
    local ids = {}
    for i = 1, 60 do ids[i] = { user_id = generated(i) } end
    local c = assert(campaign.create(ctx, { channel = LIFE, template = TEMPLATE, audience = { recipients = ids },
                                            data = FIXED, policy = { qps = 100, in_flight = 4 } }))
    local summary = assert(c:run { progress_every_ms = 0, on_progress = function(s)
      if s.status == "running" and s.counts.sent >= 10 then return false end
    end })
    assert.are.equal("stopped", summary.status)
    assert.matches("on_progress", summary.stop_reason)
    assert.are.equal(0, summary.counts.inflight)
    assert.is_true(summary.counts.sent >= 10 and summary.counts.sent < 60)
    assert.are.equal(60, summary.counts.sent + summary.counts.pending)
    summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    assert.are.equal(60, summary.counts.sent)
    assert_exactly_once(c, sb:deliveries())
    assert.are.equal(60, #sb:deliveries())
  end)

  it("refuses to run a campaign another live process runs; a dead runner reads interrupted", function()
    local ctx = context(sb)
    local c = assert(campaign.create(ctx, { id = "busy", channel = LIFE, template = TEMPLATE,
                                            audience = { recipients = { { user_id = generated(903) } } },
                                            data = FIXED }))
    local runner_dies = held_by_another_process(ctx, "busy", "running")
    assert.are.equal("running", c:status().status)
    local summary, err, detail = c:run()
    assert.is_nil(summary)
    assert.matches("is already running in another process %(.+%): wait for it to finish$", err)
    assert.are.equal("state", detail.kind)
    assert.are.equal("running", detail.reason)
    runner_dies()
    local st = c:status()
    assert.are.equal("interrupted", st.status)
    assert.matches("run it again to resume", st.stop_reason)
    assert.are.equal("completed", assert(c:run()).status)
  end)

  it("deletes a campaign: never one a live process holds, one with results only when forced", function()
    local ctx = context(sb)
    local spec = { id = "doomed", channel = LIFE, template = TEMPLATE, data = FIXED,
                   audience = { recipients = { { user_id = generated(901) }, { user_id = generated(902) } } } }
    local c = assert(campaign.create(ctx, spec))
    -- An import under way in another process, then killed.
    local importer_dies = held_by_another_process(ctx, "doomed", "importing")
    local counts, err = c:delete()
    assert.is_nil(counts)
    assert.matches("importing its audience", err)
    local summary, detail
    summary, err, detail = c:run()
    assert.is_nil(summary)
    assert.matches("still importing its audience in another process %(.+%): wait for it to finish$", err)
    assert.are.equal("importing", detail.reason)
    importer_dies()
    local st = c:status()
    assert.are.equal("interrupted", st.status)
    assert.matches("delete the campaign, then create it again", st.stop_reason)
    -- Running it cannot help: the one step is to delete it.
    summary, err, detail = c:run()
    assert.is_nil(summary)
    assert.matches("import was interrupted; delete the campaign, then create it again$", err)
    assert.is_nil(err:find("resume", 1, true))
    assert.are.equal("import_interrupted", detail.reason)
    counts = assert(c:delete())
    assert.are.equal(2, counts.pending)
    assert.is_nil(campaign.open(ctx, "doomed"))
    assert.is_nil(c:status())

    -- The id is free again; a campaign that sent refuses to go without force.
    c = assert(campaign.create(ctx, spec))
    assert.are.equal("completed", assert(c:run()).status)
    counts, err = c:delete()
    assert.is_nil(counts)
    assert.matches("2 recipients with results %(sent 2, failed 0, unknown 0, inflight 0%)", err)
    assert.are.equal(2, c:status().counts.sent)
    counts = assert(c:delete { force = true })
    assert.are.equal(2, counts.sent)
    local left = assert(ctx.store:query("spec", "SELECT count(*) AS n FROM campaign_recipients WHERE campaign = ?",
      "doomed"))
    assert.are.equal(0, tonumber(left[1].n))
  end)

  it("mini program: queries subscriptions, skips the unsubscribed, consumes one-time ones", function()
    local ctx = context(sb)
    local recipients = {
      { user_id = F[1], order = "M1" },    -- long-term
      { user_id = F[2], order = "M2" },    -- one-time
      { user_id = F[3], order = "M3" },    -- one-time x3
      { user_id = F[4], order = "M4" },    -- refused
      { user_id = STRANGER, order = "M5" }, -- never answered
      { user_id = F[1], order = "M6" },    -- duplicate
    }
    local c = assert(campaign.create(ctx, { id = "mini", channel = MINI, template = MINI_A,
                                            audience = { recipients = recipients },
                                            data = { "{order}", "2024-06-07 18:41", "顺丰速运" },
                                            page = "pages/order?id={order}&from=活动" }))
    local created = c:status()
    assert.are.equal(5, created.counts.pending)
    local summary = assert(c:run())
    assert.are.equal("completed", summary.status)
    assert.are.same({ pending = 0, inflight = 0, sent = 3, failed = 0, skipped = 3, unknown = 0 }, summary.counts)
    local rows = rows_of(c)
    assert.are.equal("NOT_SUBSCRIBED", rows[4].code)
    assert.matches("longterm", rows[4].msg)
    assert.are.equal("NOT_SUBSCRIBED", rows[5].code)
    assert.are.equal("DUPLICATE", rows[6].code)
    assert.are.equal(5, count_arrivals(sb, SUBSCRIBE_QUERY))
    assert.are.equal(3, count_arrivals(sb, MINI_SEND))
    local deliveries = sb:deliveries()
    assert.are.equal(3, #deliveries)
    assert_exactly_once(c, deliveries)
    for _, d in ipairs(deliveries) do
      assert.are.equal(MINI_SEND, d.method)
      assert.are.equal(MINI_A, d.payload.user_template_id)
      assert.is_string(d.payload.data) -- double-encoded: a JSON string inside the JSON
      local data = cjson.decode(d.payload.data)
      local order = ({ [F[1]] = "M1", [F[2]] = "M2", [F[3]] = "M3" })[d.to_user_id]
      assert.are.equal(order, data.keyword1.value)
      assert.are.equal("顺丰速运", data.keyword3.value)
      assert.are.equal("pages/order?id%3D" .. order .. "%26from%3D%E6%B4%BB%E5%8A%A8", d.payload.page)
    end
    -- F2's one-time subscription was consumed by the send; F3 has two left.
    local subs = assert(ctx.mini:subscriptions({ user_id = F[2] }, { MINI_A }))
    assert.is_false(subs[MINI_A].subscribed)
    local again = assert(campaign.create(ctx, { channel = MINI, template = MINI_A,
                                                audience = { recipients = { { user_id = F[2] }, { user_id = F[3] } } },
                                                data = { "X", "Y", "Z" } }))
    summary = assert(again:run())
    assert.are.equal(1, summary.counts.sent)
    assert.are.equal(1, summary.counts.skipped)
    assert.are.equal("NOT_SUBSCRIBED", rows_of(again)[1].code)
  end)

  -- Alipay documents subscribe_state's field but not its values. A
  -- campaign that guessed "1" would skip every subscriber of an app whose
  -- answers say "0"; unread states go out and Alipay's answer decides.
  it("mini program: subscription states nobody documented never skip a subscriber", function()
    local seed = cjson.decode((assert(helpers.read(SEED_PATH))))
    seed.subscribe_states = { subscribed = "0", not_subscribed = "1" }
    local swapped = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                           seed = seed })
    local ok, err = pcall(function()
      local ctx = context(swapped, false) -- a channel told nothing about the states
      local recipients = {
        { user_id = F[1], order = "M1" },    -- long-term
        { user_id = F[2], order = "M2" },    -- one-time
        { user_id = F[4], order = "M4" },    -- refused
        { user_id = STRANGER, order = "M5" }, -- never answered
      }
      local c = assert(campaign.create(ctx, { id = "unread", channel = MINI, template = MINI_A,
                                              audience = { recipients = recipients },
                                              data = { "{order}", "2024-06-07 18:41", "顺丰速运" } }))
      local summary = assert(c:run())
      assert.are.same({ pending = 0, inflight = 0, sent = 2, failed = 1, skipped = 1, unknown = 0 }, summary.counts)
      local rows = rows_of(c)
      assert.are.same({ "sent", "sent", "failed", "skipped" },
                      { rows[1].status, rows[2].status, rows[3].status, rows[4].status })
      assert.are.equal("MSG_REJECTED", rows[3].sub_code) -- Alipay's own refusal, not our guess
      assert.are.equal("NOT_SUBSCRIBED", rows[4].code)   -- absent from the answer: documented
      assert.are.equal(4, count_arrivals(swapped, SUBSCRIBE_QUERY))
      assert.are.equal(3, count_arrivals(swapped, MINI_SEND))
      assert_exactly_once(c, swapped:deliveries())
    end)
    swapped:stop()
    assert(ok, err)
  end)
end)
