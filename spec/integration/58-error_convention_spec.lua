-- The error convention (docs/errors.md) in the messaging, store, campaign
-- and CLI layers: a public function that fails returns nil, a one-line
-- string that names what is wrong, and the typed detail, so that the
-- README's `assert(...)`, `"x" .. err` and ngx.say/ngx.log print the
-- message instead of "unknown error" or raising.
local helpers = require "helpers"
local errors = require "alipay.errors"
local sandbox = require "alipay.sandbox"
local store_mod = require "alipay.store"
local templates = require "alipay.messaging.templates"
local users_mod = require "alipay.messaging.users"
local channels = require "alipay.messaging.channels"
local lifeaccount = require "alipay.messaging.lifeaccount"
local mini = require "alipay.messaging.mini"
local campaign = require "alipay.campaign"
local csv = require "alipay.util.csv"

local APP_ID = "2021000122671080"
local LIFE, MINI = "alipaylife123", "mini456"
local TEMPLATE = "14330d60f0ab4516853a0900827cee35"

-- The checks every failure must pass: res nil, err a one-line string,
-- detail of `kind` that prints as err, and err naming each of `names`.
local function check_failure(kind, names, res, err, detail)
  assert.is_nil(res)
  assert.are.equal("string", type(err), "err is " .. type(err))
  assert.is_nil(err:find("[\r\n]"), err)
  assert.are.equal("table", type(detail), "detail is " .. type(detail) .. " for: " .. tostring(err))
  assert.is_true(errors.is_error(detail))
  assert.are.equal(kind, detail.kind, err)
  assert.are.equal(err, tostring(detail))
  assert.are.equal("failed: " .. err, "failed: " .. err) -- concatenation never raises on a string
  assert.are.equal("x" .. err, "x" .. detail)
  -- What error(err) raises is the string itself, which ngx_lua can log
  -- (busted replaces the global assert, so Lua's own is not reachable here).
  local ok, raised = pcall(error, err, 0)
  assert.is_false(ok)
  assert.are.equal(err, raised)
  assert.are.equal(err, ("%s"):format(err))
  for _, name in ipairs(names) do
    assert.is_truthy(err:find(name, 1, true), ("%q does not name %q"):format(err, name))
  end
end

local function arrivals(sb)
  local n = 0
  for _, ev in ipairs(sb:arrivals()) do
    if ev.event == "arrive" then n = n + 1 end
  end
  return n
end

describe("the error convention", function()
  local sb, dir, set

  setup(function()
    dir = helpers.tmpdir()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = "spec/fixtures/sandbox_seed.json" })
    local pub = dir .. "/alipay_public.pem"
    helpers.write(pub, sb.alipay_public_key)
    local function ch(kind)
      return { kind = kind, app_id = APP_ID, private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
               alipay_public_key_file = pub, gateway = sb.gateway, timeout_ms = 5000 }
    end
    set = assert(channels.load { channels = { [LIFE] = ch("alipaylife"), [MINI] = ch("alipaymini") } })
  end)

  teardown(function()
    if set then set:close() end
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  local function fresh_store()
    return assert(store_mod.open(helpers.tmpdir() .. "/state.db"))
  end

  describe("store", function()
    it("store.open of a file in a missing directory: io, naming the directory", function()
      check_failure("io", { "store.open", dir .. "/missing" }, store_mod.open(dir .. "/missing/state.db"))
    end)

    it("an unknown driver: input; a bad argument: input; a closed store: state", function()
      check_failure("input", { "unknown driver", "redis" }, store_mod.open { path = "x.db", driver = "redis" })
      local st = fresh_store()
      check_failure("input", { "binding_put", "id_type" }, st:binding_put("u", LIFE, "2088102146158132", "uid"))
      st:close()
      check_failure("state", { "meta_get", "closed" }, st:meta_get("k"))
    end)

    it("a database failure: store", function()
      local path = dir .. "/junk.db"
      helpers.write(path, ("not a database "):rep(100))
      check_failure("store", { "junk.db", "not a database" }, store_mod.open(path))
    end)
  end)

  describe("templates", function()
    it("registry:usable of an unknown template: state, naming the template and the channel", function()
      local reg = templates.new(fresh_store())
      check_failure("state", { "nope", LIFE, "not imported" }, reg:usable(LIFE, "nope"))
    end)

    it("registry:usable of a template marked invalid: state, with the code", function()
      local reg = templates.new(fresh_store())
      assert(reg:import({ { id = TEMPLATE, keywords = { "a", "b" } } }, { channel = LIFE }))
      assert(reg:mark_invalid(LIFE, TEMPLATE, "MSG_TEMPLATE_NOT_EXIST"))
      local res, err, detail = reg:usable(LIFE, TEMPLATE)
      check_failure("state", { TEMPLATE, "marked invalid", "MSG_TEMPLATE_NOT_EXIST" }, res, err, detail)
      assert.are.equal(LIFE, detail.channel)
      assert.are.equal(TEMPLATE, detail.template)
    end)

    it("registry:import of a missing file: io; of bad JSON: input", function()
      local reg = templates.new(fresh_store())
      check_failure("io", { "import", "absent.json" }, reg:import(dir .. "/absent.json"))
      check_failure("input", { "import", "not valid JSON" }, reg:import("[ {"))
    end)

    it("a context that does not fit the template: input, naming the field", function()
      local reg = templates.new(fresh_store())
      assert(reg:import({ { id = TEMPLATE, keywords = { "a" } } }, { channel = LIFE }))
      local t = assert(reg:get(LIFE, TEMPLATE))
      check_failure("input", { "head_color" }, reg:check_life_context(t, { url = "u", action_name = "a",
        keyword1 = { value = "v", color = "#000" } }))
    end)
  end)

  describe("users and csv", function()
    it("users:upload_csv of a missing file: io, naming the file", function()
      local u = assert(users_mod.new(fresh_store(), set:channels_info()))
      check_failure("io", { "upload_csv", "nothere.csv" }, u:upload_csv(dir .. "/nothere.csv", { channel = LIFE }))
    end)

    it("users:upload_csv of an unknown channel: input; upload_json of bad JSON: input", function()
      local u = assert(users_mod.new(fresh_store(), set:channels_info()))
      check_failure("input", { "upload_csv", "nochannel" }, u:upload_csv(dir .. "/x.csv", { channel = "nochannel" }))
      check_failure("input", { "upload_json", "not valid JSON" }, u:upload_json("[ {"))
    end)

    it("users:resolve answers false, msg (no detail) for a missing binding", function()
      local u = assert(users_mod.new(fresh_store(), set:channels_info()))
      local id, msg, detail = u:resolve("zhangsan", LIFE)
      assert.is_false(id)
      assert.matches("zhangsan has no binding", msg)
      assert.is_nil(detail)
    end)

    it("a CSV record that never ends: input, at its line", function()
      local path = dir .. "/open_quote.csv"
      helpers.write(path, 'userid\n"zhang\n')
      local fh = assert(io.open(path, "rb"))
      local records = csv.reader(fh)
      assert(records())
      check_failure("input", { "line 2", "unterminated" }, records())
      fh:close()
      assert.are.equal("input", records.detail.kind)
    end)
  end)

  describe("channels", function()
    it("channels.load of a bad file: config, naming the file", function()
      local path = dir .. "/broken.json"
      helpers.write(path, "{ not json")
      check_failure("config", { "broken.json", "not a JSON object" }, channels.load(path))
    end)

    it("set:get of an unknown code: config, with the configured codes", function()
      local res, err, detail = set:get("alipaylife999")
      check_failure("config", { "alipaylife999", LIFE, MINI }, res, err, detail)
      assert.are.equal("channel", detail.field)
    end)

    it("channels.recipient of a recipient without an id: input", function()
      check_failure("input", { "user_id or open_id" }, channels.recipient {})
    end)
  end)

  describe("sends refused before any call", function()
    before_each(function() assert(sb:reset()) end)

    it("life:send without a recipient id: invalid, and nothing reaches the gateway", function()
      local life = lifeaccount.new(assert(set:get(LIFE)))
      local res, err, detail = life:send({}, TEMPLATE, {})
      check_failure("invalid", { "alipay.open.public.message.single.send", "user_id or open_id" }, res, err, detail)
      assert.are.equal("recipient", detail.reason)
      assert.is_false(detail.unknown)
      assert.are.equal(0, arrivals(sb))
    end)

    it("life:send of a template the registry does not know: invalid (template), nothing sent", function()
      local life = lifeaccount.new(assert(set:get(LIFE)), templates.new(fresh_store()))
      local res, err, detail = life:send({ user_id = "2088102146158132" }, "unknown-template", {})
      check_failure("invalid", { "unknown-template", "not imported" }, res, err, detail)
      assert.are.equal("template", detail.reason)
      assert.are.equal("state", detail.cause.kind)
      assert.are.equal(0, arrivals(sb))
    end)

    it("mini:subscriptions with a bad template id list: invalid, nothing sent", function()
      local app = mini.new(assert(set:get(MINI)))
      local res, err, detail = app:subscriptions({ open_id = "0a1b2c3d4e5f6a7b8c9d" }, { "t1", 42 })
      check_failure("invalid", { "template_ids[2]" }, res, err, detail)
      assert.are.equal("template_ids", detail.field)
      assert.are.equal(0, arrivals(sb))
    end)

    it("mini:send with data that is not a table: invalid (data)", function()
      local app = mini.new(assert(set:get(MINI)))
      local res, err, detail = app:send({ open_id = "0a1b2c3d4e5f6a7b8c9d" }, "t1", 42)
      check_failure("invalid", { "data must be a table" }, res, err, detail)
      assert.are.equal("data", detail.reason)
      assert.are.equal(0, arrivals(sb))
    end)
  end)

  describe("campaigns", function()
    local function context()
      local st = fresh_store()
      local registry = templates.new(st)
      assert(registry:import({ { id = TEMPLATE, keywords = { "订单号", "订单状态", "更新时间" } } },
        { channel = LIFE }))
      return { store = st, channels = set, registry = registry, users = assert(users_mod.new(st, set:channels_info())) }
    end
    local DATA = {
      head_color = "#85be53", url = "https://shop.example/orders/1", action_name = "查看详情",
      keyword1 = { value = "HU7142", color = "#85be53" }, keyword2 = { value = "已发货", color = "#85be53" },
      keyword3 = { value = "2026-11-22", color = "#85be53" },
    }

    it("campaign.create with a bad audience: input, naming the field", function()
      check_failure("input", { "campaign", "audience" }, campaign.create(context(), {
        channel = LIFE, template = TEMPLATE, data = DATA, audience = { file = "a.csv", userids = { "u" } } }))
    end)

    it("campaign.create with a missing audience file: io, naming the file", function()
      check_failure("io", { "cannot read the audience", "none.csv" }, campaign.create(context(), {
        channel = LIFE, template = TEMPLATE, data = DATA, audience = { file = dir .. "/none.csv" } }))
    end)

    it("campaign.create on an unknown channel: input; with a template not imported: state", function()
      check_failure("input", { "campaign", "nochannel" }, campaign.create(context(), {
        channel = "nochannel", template = TEMPLATE, data = DATA, audience = { userids = { "u" } } }))
      check_failure("state", { "other-template", "not imported" }, campaign.create(context(), {
        channel = LIFE, template = "other-template", data = DATA, audience = { userids = { "u" } } }))
    end)

    it("campaign.open of an unknown id: state, naming the id; a second create of an id: state", function()
      local ctx = context()
      check_failure("state", { "no-such-campaign", "does not exist" }, campaign.open(ctx, "no-such-campaign"))
      local spec = { id = "once", channel = LIFE, template = TEMPLATE, data = DATA,
                     audience = { recipients = { { user_id = "2088102146158132" } } } }
      local c = assert(campaign.create(ctx, spec))
      check_failure("state", { "once", "already exists" }, campaign.create(ctx, spec))
      check_failure("input", { "export", "format" }, c:export(dir .. "/out.csv", "xml"))
      check_failure("io", { "export", "cannot write" }, c:export(dir .. "/no/such/dir/out.csv", "csv"))
    end)
  end)
end)
