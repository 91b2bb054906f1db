-- The sandbox on every core: nginx runs several workers, and they keep one
-- state (alipay.sandbox.replica). Requests in flight at once land on
-- different workers (listen reuseport); what each of them changes is seen by
-- all: deliveries numbered once, one-time subscriptions used up once, a
-- quota and a fault count shared, followers changed by an event, callback
-- records, a reset everywhere.
local helpers = require "helpers"
local cjson = require "cjson"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local SEED_PATH = "spec/fixtures/sandbox_seed.json"
local SEND = "alipay.open.public.message.single.send"
local MINI_SEND = "alipay.open.app.mini.templatemessage.send"
local CLAIMED = "14330d60f0ab4516853a0900827cee35" -- TM000000223, 3 keywords
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM="
local F3 = "2088595874450942" -- three one-time subscriptions to MINI_A
local WORKERS = 2

local function generated(n) return ("20880000%08d"):format(n) end

local function life_biz(user_id)
  local kw = { value = "x", color = "#000000" }
  return { to_user_id = user_id, template = { template_id = CLAIMED, context = {
    head_color = "#85be53", url = "https://example.com/", action_name = "查看详情",
    keyword1 = kw, keyword2 = kw, keyword3 = kw } } }
end

local function mini_biz(user_id)
  return { to_user_id = user_id, user_template_id = MINI_A,
           data = cjson.encode { keyword1 = { value = "a" }, keyword2 = { value = "b" }, keyword3 = { value = "c" } } }
end

local function start(seed)
  return assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = seed or SEED_PATH, workers = WORKERS })
end

local function client_of(sb)
  return assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs8.pem"),
                             alipay_public_key = sb.alipay_public_key, gateway = sb.gateway, timeout_ms = 20000 })
end

-- Submits every call at once, then waits for all. -> {node | false (with
-- err.sub_code or err.code)} in the order of `calls`.
local function all_at_once(client, calls)
  local waiting, results = {}, {}
  for i, call in ipairs(calls) do
    local req, ctx = assert(client:prepare_v2(call[1], call[2]))
    waiting[assert(client:submit(req))] = { i = i, ctx = ctx }
  end
  local rounds = 0
  while next(waiting) and rounds < 600 do
    rounds = rounds + 1
    for _, d in ipairs(client:wait(100)) do
      local w = waiting[d.id]
      waiting[d.id] = nil
      local node, _, detail = client:finish_v2(w.ctx, d.res, d.err, d.detail)
      results[w.i] = node or { failed = true, code = detail and (detail.sub_code or detail.code) }
    end
  end
  assert(next(waiting) == nil, "transfers never finished")
  return results
end

local function count(results, pred)
  local n = 0
  for _, r in ipairs(results) do if pred(r) then n = n + 1 end end
  return n
end

local function workers_seen(sb, method)
  local seen = {}
  for _, ev in ipairs(assert(sb:arrivals())) do
    if ev.event == "arrive" and ev.method == method then seen[ev.worker] = true end
  end
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  return n
end

describe("the sandbox on several workers", function()
  local sb, client

  setup(function()
    sb = start()
    client = client_of(sb)
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function() assert(sb:reset()) end)

  it("runs the workers it was asked for, and accepts only a sane count", function()
    assert.are.equal(WORKERS, assert(sb:health()).workers)
    for _, bad in ipairs { 0, 1.5, "many", 65 } do
      local s, err = sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                     workers = bad }
      assert.is_nil(s)
      assert.matches("workers", err)
    end
  end)

  it("numbers the deliveries of concurrent sends once, whichever worker took them", function()
    local calls = {}
    for i = 1, 64 do calls[i] = { SEND, life_biz(generated(i)) } end
    local results = all_at_once(client, calls)
    assert.are.equal(64, count(results, function(r) return r.code == "10000" end))
    assert.are.equal(WORKERS, workers_seen(sb, SEND))
    local deliveries = assert(sb:deliveries())
    assert.are.equal(64, #deliveries)
    local users, seqs = {}, {}
    for _, d in ipairs(deliveries) do
      assert.is_nil(users[d.to_user_id], "delivered twice: " .. d.to_user_id)
      assert.is_nil(seqs[d.seq])
      users[d.to_user_id], seqs[d.seq] = true, true
    end
    for i = 1, 64 do assert.is_true(seqs[i]) end
    -- every worker's replica answers the same
    for _ = 1, 4 do assert.are.equal(64, #assert(sb:deliveries())) end
  end)

  it("uses up a one-time subscription once across workers", function()
    local calls = {}
    for i = 1, 16 do calls[i] = { MINI_SEND, mini_biz(F3) } end
    local results = all_at_once(client, calls)
    assert.are.equal(3, count(results, function(r) return r.code == "10000" end))
    assert.are.equal(13, count(results, function(r) return r.code == "MSG_UNSUBSCRIBED" end))
    assert.are.equal(3, #assert(sb:deliveries()))
  end)

  it("shares a fault count: exactly count requests are faulted", function()
    assert(sb:faults { error_rate = 1, count = 5, methods = { SEND } })
    local calls = {}
    for i = 1, 24 do calls[i] = { SEND, life_biz(generated(i)) } end
    local results = all_at_once(client, calls)
    assert.are.equal(5, count(results, function(r) return r.failed end))
    assert.are.equal(19, #assert(sb:deliveries()))
    assert.are.equal(0, assert(sb:faults()).count)
  end)

  it("resets every worker's state", function()
    local calls = {}
    for i = 1, 16 do calls[i] = { SEND, life_biz(generated(i)) } end
    all_at_once(client, calls)
    assert.are.equal(16, #assert(sb:deliveries()))
    assert(sb:reset())
    for _ = 1, 4 do assert.are.equal(0, #assert(sb:deliveries())) end
    -- and the workers go on from the same reset state
    local again = all_at_once(client, { { MINI_SEND, mini_biz(F3) }, { MINI_SEND, mini_biz(F3) } })
    assert.are.equal(2, count(again, function(r) return r.code == "10000" end))
  end)

  it("shares a follow event and the callback records with every worker", function()
    local stranger = "2088999999999999"
    -- nothing listens there: the attempt fails, the follow itself is made
    local record = assert(sb:event("http://127.0.0.1:1/gateway", { type = "follow", user_id = stranger },
                                   { delays = {} }))
    assert.are.equal("added", record.follower)
    -- Reads until every worker has answered some (each round on fresh
    -- connections, which the kernel spreads over the workers).
    local calls = {}
    for i = 1, 16 do calls[i] = { "alipay.open.public.user.follow.query", { user_id = stranger } } end
    local rounds = 0
    repeat
      rounds = rounds + 1
      local results = all_at_once(client_of(sb), calls)
      assert.are.equal(16, count(results, function(r) return r.is_follow == "T" end))
    until workers_seen(sb, "alipay.open.public.user.follow.query") == WORKERS or rounds == 20
    assert.are.equal(WORKERS, workers_seen(sb, "alipay.open.public.user.follow.query"))
    for _ = 1, 6 do assert.are.equal(record.id, assert(sb:callbacks(record.id)).id) end
    assert(sb:reset())
    assert.are.same({}, assert(sb:callbacks()))
  end)

  it("shares a sending quota between the workers", function()
    local seed = cjson.decode((assert(helpers.read(SEED_PATH))))
    seed.quotas = { single_send = 7 }
    local limited = start(seed)
    local ok, err = pcall(function()
      local calls = {}
      for i = 1, 24 do calls[i] = { SEND, life_biz(generated(i)) } end
      local results = all_at_once(client_of(limited), calls)
      assert.are.equal(7, count(results, function(r) return r.code == "10000" end))
      assert.are.equal(17, count(results, function(r) return r.code == "MSG_SINGLE_SD_OVER" end))
      assert.are.equal(7, #assert(limited:deliveries()))
    end)
    limited:stop()
    assert(ok, err)
  end)
end)
