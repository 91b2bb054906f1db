-- The messaging commands of bin/alipay (template, subscription, followers,
-- users, send, call), run as child processes (lua5.4) against the sandbox
-- gateway with a temporary channel configuration and store. Each command's
-- success path, its main failures and exit codes, --json and --help.
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local SEED_PATH = "spec/fixtures/sandbox_seed.json"
local LIFE, MINI = "alipaylife123", "mini456"

-- Seed facts (spec/fixtures/sandbox_seed.json).
local F1 = "2088857585575154"                 -- a follower, subscribed to MINI_ORDER (longterm)
local REFUSED = "2088064507100478"            -- refused MINI_ORDER
local STRANGER = "2088999999999999"           -- follows nobody
local CLAIMED = "14330d60f0ab4516853a0900827cee35" -- TM000000223: 订单号, 订单状态, 更新时间
local MINI_ORDER = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM="   -- 3 keywords
local MINI_REFUND = "YjU0ZGJkNzU4MzJmNGVkNGE1ZGY1NzQ4MTQ5OTQ3MzQ="  -- F1: onetime
local MINI_BOOKING = "NzVmYjA1ZDM0NjQ2NDZkNjk0YzBmMjc4OGM3ZDAxNDE="
local MINI_DELETED = "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M="  -- deleted on Alipay, 2 keywords
local FOLLOWERS = 25000
local FOLLOW_METHOD = "alipay.open.public.follow.batchquery"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function life_context(overrides)
  local c = {
    head_color = "#85be53", url = "https://example.com/orders/1", action_name = "查看详情",
    keyword1 = { color = "#85be53", value = "HU7142" },
    keyword2 = { color = "#85be53", value = "已发货" },
    keyword3 = { color = "#85be53", value = "2024-06-07 18:41" },
  }
  for k, v in pairs(overrides or {}) do
    if v == false then c[k] = nil else c[k] = v end
  end
  return cjson.encode(c)
end

local function count_lines(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local _, n = f:read("a"):gsub("\n", "")
  f:close()
  return n
end

-- Asserts a follower file: a header (CSV), FOLLOWERS distinct ids, F1 first.
local function check_export(path, format)
  local ids, count, first, header = {}, 0, nil, nil
  for line in io.lines(path) do
    if format == "csv" and not header then
      header = line
    else
      local id, id_type
      if format == "csv" then
        id, id_type = line:match("^([^,]+),([%w_]+)$")
      else
        local row = cjson.decode(line)
        id, id_type = row.id, row.id_type
      end
      assert.equal("user_id", id_type)
      assert.is_nil(ids[id], "duplicate id " .. tostring(id))
      ids[id], count = true, count + 1
      first = first or id
    end
  end
  if format == "csv" then assert.equal("id,id_type", header) end
  assert.equal(FOLLOWERS, count)
  assert.equal(F1, first)
end

describe("bin/alipay messaging commands", function()
  local sb, pub_file, dir, config

  -- A channel of the sandbox's app; keys are files, as the configuration requires.
  local function channel(kind, extra)
    local c = { kind = kind, app_id = APP_ID, private_key_file = "app.pem",
                alipay_public_key_file = pub_file, gateway = sb.gateway, timeout_ms = 10000 }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  local function write_config(path, channels)
    helpers.write(path, cjson.encode { store = "state.db", channels = channels })
    return path
  end

  -- Runs bin/alipay; returns the exit status, stdout and stderr.
  local function run(args, env)
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local cmd = ("ALIPAY_CONFIG=%s %s lua5.4 bin/alipay %s >%s 2>%s; echo $?")
      :format(q(config), env or "", args, q(out), q(err))
    local p = io.popen(cmd)
    local status = tonumber(p:read("*a"):match("(%d+)%s*$"))
    p:close()
    return status, helpers.read(out), helpers.read(err)
  end

  local function run_json(args)
    local status, out, err = run(args .. " --json")
    local ok, value = pcall(cjson.decode, out)
    assert(ok, "not JSON: " .. out .. err)
    return status, value, err
  end

  -- A Life Account and a mini program of the same sandbox app.
  -- The mini channel maps the sandbox's own subscribe_state values;
  -- Alipay's are undocumented (docs/messaging.md §3.2).
  local SANDBOX_STATES = { ["1"] = true, ["0"] = false }

  local function both()
    return { [LIFE] = channel("alipaylife"),
             [MINI] = channel("alipaymini", { subscribed_states = SANDBOX_STATES }) }
  end

  local function import_seed_templates()
    local file = dir .. "/templates.json"
    helpers.write(file, cjson.encode {
      { id = CLAIMED, channel = LIFE, name = "订单状态提醒", keywords = { "订单号", "订单状态", "更新时间" } },
      { id = MINI_ORDER, channel = MINI, name = "订单发货提醒", keywords = { "订单号", "发货时间", "快递公司" } },
      { id = MINI_DELETED, channel = MINI, name = "活动开始提醒", keywords = { "活动名称", "开始时间" } },
    })
    local status, _, err = run("template import " .. q(file))
    assert.equal(0, status, err)
  end

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = SEED_PATH })
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    assert(sb:reset())
    assert(sb:faults({}))
    dir = helpers.tmpdir()
    pub_file = dir .. "/alipay_public.pem"
    helpers.write(pub_file, sb.alipay_public_key)
    helpers.write(dir .. "/app.pem", helpers.key_text("app_private_pkcs1.pem"))
    config = write_config(dir .. "/alipay.json", both())
  end)

  it("prints help for every command and action", function()
    for _, args in ipairs {
      "template --help", "template claim --help", "template import --help", "template list --help",
      "subscription --help", "subscription query --help", "followers --help", "followers export --help",
      "users --help", "users upload --help", "users show --help", "send --help", "call --help",
    } do
      local status, out = run(args)
      assert.equal(0, status, args)
      assert.matches("Usage: alipay", out, 1, true)
      if args:match("^%a+ %a+ %-%-help$") or args:match("^send") or args:match("^call") then
        assert.matches("--config", out, 1, true)
      end
    end
    local _, out = run("followers export --help")
    assert.not_matches("max%-pages", out) -- a test hook, not for operators
  end)

  describe("the configuration", function()
    it("names the channel and the field of a bad configuration, and exits 1", function()
      write_config(config, { [LIFE] = channel("alipaylife", { private_key_file = "missing.pem" }) })
      local status, out, err = run("template list")
      assert.equal(1, status)
      assert.equal("", out)
      assert.matches("channel alipaylife123: private_key_file", err, 1, true)
      assert.matches(config, err, 1, true)

      write_config(config, { [LIFE] = channel("alipaylife", { colour = "red" }) })
      local _
      status, _, err = run("users show zhangsan")
      assert.equal(1, status)
      assert.matches("channel alipaylife123: colour: unknown field", err, 1, true)

      -- A key written into the configuration is refused, and never echoed.
      local spec = channel("alipaylife")
      spec.private_key_file, spec.private_key = nil, "MIIEvQIBADANBg"
      write_config(config, { [LIFE] = spec })
      status, _, err = run("template list --json")
      assert.equal(1, status)
      assert.matches("private_key_file or private_key_env", err, 1, true)
      assert.not_matches("MIIEvQIBADANBg", err, 1, true)
    end)

    it("says where it looked when there is no configuration", function()
      local p = io.popen(("cd %s && env -u ALIPAY_CONFIG lua5.4 %s/bin/alipay users show x 2>&1; echo \"exit=$?\"")
        :format(q(helpers.tmpdir()), q(os.getenv("PWD") or ".")))
      local text = p:read("*a")
      p:close()
      assert.matches("exit=1", text, 1, true)
      assert.matches("./alipay.json", text, 1, true)
      assert.matches("ALIPAY_CONFIG", text, 1, true)
      -- --config wins over $ALIPAY_CONFIG
      local other = write_config(dir .. "/other.json", { only = channel("alipaylife") })
      local status, _, err = run("call alipay.open.public.setting.category.query --config " .. q(other))
      assert.equal(0, status, err)
    end)

    it("refuses an unknown channel, a channel of the wrong kind, and an ambiguous default", function()
      local status, _, err = run("template claim TM000000223 --channel nope")
      assert.equal(1, status)
      assert.matches("unknown channel nope (configured: alipaylife123, mini456)", err, 1, true)

      status, _, err = run("subscription query --user-id " .. F1 .. " --channel " .. LIFE .. " " .. MINI_ORDER)
      assert.equal(1, status)
      assert.matches("this command needs a mini program (alipaymini) channel", err, 1, true)

      status, _, err = run("call alipay.open.public.setting.category.query")
      assert.equal(2, status)
      assert.matches("choose one with --channel", err, 1, true)
    end)

    it("reports errors as JSON with --json", function()
      local status, value = run_json("template claim TM000000223 --channel nope")
      assert.equal(1, status)
      assert.is_false(value.ok)
      assert.equal("config", value.error.kind)
      assert.equal("channel", value.error.field)
    end)
  end)

  describe("template", function()
    it("claims a template and imports it with the answer's name and keywords", function()
      local status, out, err = run("template claim TM000000223")
      assert.equal(0, status, err)
      assert.matches(CLAIMED, out, 1, true)
      assert.matches("订单号, 订单状态, 更新时间", out, 1, true)

      local value
      status, value = run_json("template claim TM000000224 --keywords a,b")
      assert.equal(0, status)
      assert.same({ "变动类型", "变动金额" }, value.keywords) -- the answer wins over --keywords
      assert.equal("账户变动通知", value.name)

      status, value = run_json("template list")
      assert.equal(0, status)
      assert.equal(2, #value.templates)
      assert.equal(CLAIMED, value.templates[1].id)
      assert.equal("TM000000223", value.templates[1].library_id)
      assert.equal("alipaylife", value.templates[1].kind)
    end)

    it("reports Alipay's refusal of a claim", function()
      local status, _, err = run("template claim TM000000301")
      assert.equal(1, status)
      assert.matches("TEMPLATE_MESSAGE_ID_INVAILD", err, 1, true)
    end)

    it("imports a file, filling channels and kinds, and lists entries by position", function()
      local file = dir .. "/t.json"
      helpers.write(file, cjson.encode { templates = {
        { id = MINI_ORDER, name = "订单发货提醒", keywords = { "订单号", "发货时间", "快递公司" } },
        { id = "no-keywords" },
        { id = "x1", channel = "nope", keywords = { "a" } },
        { id = CLAIMED, channel = LIFE, keywords = { "订单号", "订单状态", "更新时间" } },
      } })
      local status, out = run("template import " .. q(file) .. " --channel " .. MINI)
      assert.equal(1, status)
      assert.matches("#1 imported " .. MINI_ORDER, out, 1, true)
      assert.matches("#2 failed   no-keywords: keywords", out, 1, true)
      assert.matches("#3 failed   x1: channel nope is not configured", out, 1, true)
      assert.matches("#4 imported " .. CLAIMED, out, 1, true)
      assert.matches("2 imported, 2 failed", out, 1, true)

      local value
      status, value = run_json("template list --channel " .. MINI)
      assert.equal(0, status)
      assert.equal(1, #value.templates)
      assert.equal("alipaymini", value.templates[1].kind) -- from the channel, not the default

      status, value = run_json("template import " .. q(file) .. " --channel " .. MINI)
      assert.equal(1, status)
      assert.same({ 1, 4 }, { value.imported[1].index, value.imported[2].index })
      assert.same({ 2, 3 }, { value.failed[1].index, value.failed[2].index })

      local status2, _, err = run("template import " .. q(dir .. "/missing.json"))
      assert.equal(1, status2)
      assert.matches("cannot read", err, 1, true)
    end)

    it("lists only usable templates unless --all, with the invalid code and time", function()
      import_seed_templates()
      local status, _, err = run(("send --template %s --to-user-id %s --data %s")
        :format(q(MINI_DELETED), "2088727077415862", q('{"keyword1":{"value":"a"},"keyword2":{"value":"b"}}')))
      assert.equal(1, status)
      assert.matches("USER_TEMPLATE_ILLEGAL", err, 1, true)
      assert.matches("now marked invalid", err, 1, true)

      local out
      status, out = run("template list --channel " .. MINI)
      assert.equal(0, status)
      assert.not_matches(MINI_DELETED, out, 1, true)
      status, out = run("template list --all --channel " .. MINI)
      assert.equal(0, status)
      assert.matches("INVALID CODE", out, 1, true)
      assert.matches(MINI_DELETED .. "%s+活动开始提醒.-invalid%s+USER_TEMPLATE_ILLEGAL%s+%d+%-%d+%-%d+ [%d:]+ UTC", out)
      local value
      status, value = run_json("template list --all")
      assert.equal(0, status)
      assert.equal(3, #value.templates)
      status, value = run_json("template list --channel nobody --store " .. q(dir .. "/state.db"))
      assert.equal(0, status)
      assert.same({}, value.templates)
      assert.matches('"templates":%[%]', (select(2, run("template list --json --channel nobody --store "
        .. q(dir .. "/state.db")))))
    end)

    it("asks for --keywords when the claim's answer has none", function()
      -- In-process: the sandbox always answers with keywords, so the
      -- answer is replaced here.
      local lifeaccount = require "alipay.messaging.lifeaccount"
      local cli = require "alipay.cli"
      local real_new = lifeaccount.new
      lifeaccount.new = function(...)
        local life = real_new(...)
        function life.claim_template() return { msg_template_id = "abc123", template = "not JSON" } end
        return life
      end
      finally(function() lifeaccount.new = real_new end)
      local function main(argv)
        local out, err = io.tmpfile(), io.tmpfile()
        local status = cli.main(argv, { stdout = out, stderr = err })
        out:seek("set")
        err:seek("set")
        return status, out:read("a"), err:read("a")
      end
      local status, _, err = main { "template", "claim", "TM000000223", "--config", config }
      assert.equal(2, status)
      assert.matches("abc123", err, 1, true)
      assert.matches("--keywords K1,K2", err, 1, true)

      local out
      status, out, err = main { "template", "claim", "TM000000223", "--config", config, "--name", "订单",
                                "--keywords", "订单号, 状态" }
      assert.equal(0, status, err)
      assert.matches("imported 订单 with 2 keywords: 订单号, 状态", out, 1, true)
    end)

    it("reads keywords from the shapes a template's JSON may take", function()
      local answer_fields = require("alipay.cli.template").answer_fields
      local name, keywords = answer_fields { name = "n", keywords = {
        { key = "keyword2", name = "b" }, { key = "keyword1", name = "a" } } }
      assert.equal("n", name)
      assert.same({ "a", "b" }, keywords)
      assert.same({ "x", "y" }, select(2, answer_fields { keywords = { "x", "y" } }))
      assert.is_nil(select(2, answer_fields { keywords = {} }))
      assert.is_nil(select(2, answer_fields "text"))
    end)
  end)

  describe("subscription query", function()
    it("prints each template's subscription, batching past 3", function()
      local status, out, err = run(("subscription query --user-id %s %s %s %s %s"):format(F1, MINI_ORDER,
        MINI_BOOKING, MINI_REFUND, MINI_DELETED))
      assert.equal(0, status, err)
      assert.matches(MINI_ORDER .. "%s+yes%s+longterm", out)
      assert.matches(MINI_REFUND .. "%s+yes%s+onetime", out)
      assert.matches(MINI_BOOKING .. "%s+no %(never answered%)", out)
      local arrivals = 0
      for _, ev in ipairs(assert(sb:arrivals())) do
        if ev.event == "arrive" and ev.method == "alipay.open.app.messagetemplate.subscribe.query" then
          arrivals = arrivals + 1
        end
      end
      assert.equal(2, arrivals)

      local value
      status, value = run_json(("subscription query --user-id %s %s"):format(REFUSED, MINI_ORDER))
      assert.equal(0, status)
      assert.equal(MINI, value.channel)
      assert.equal(MINI_ORDER, value.subscriptions[1].template_id)
      assert.is_false(value.subscriptions[1].subscribed)
      assert.equal("0", value.subscriptions[1].state)
    end)

    it("says unknown for a state the channel does not map, and JSON null", function()
      write_config(config, { [MINI] = channel("alipaymini") })
      local status, out, err = run(("subscription query --user-id %s %s %s"):format(F1, MINI_ORDER, MINI_BOOKING))
      assert.equal(0, status, err)
      assert.matches(MINI_ORDER .. "%s+unknown %(state 1%)%s+longterm", out)
      assert.matches(MINI_BOOKING .. "%s+no %(never answered%)", out)
      local value
      status, value = run_json(("subscription query --user-id %s %s"):format(F1, MINI_ORDER))
      assert.equal(0, status)
      assert.equal(cjson.null, value.subscriptions[1].subscribed)
      assert.equal("1", value.subscriptions[1].state)
    end)

    it("needs exactly one of --user-id and --open-id", function()
      local status, _, err = run("subscription query " .. MINI_ORDER)
      assert.equal(2, status)
      assert.matches("--user-id ID or --open-id ID", err, 1, true)
      status = run("subscription query --user-id 1 --open-id 2 " .. MINI_ORDER)
      assert.equal(2, status)
      status = run("subscription query --user-id " .. F1)
      assert.equal(2, status)
    end)
  end)

  describe("users", function()
    it("uploads a CSV, keeps the good rows, and reports the bad ones by line", function()
      local file = dir .. "/users.csv"
      helpers.write(file, table.concat({
        "userid,alipaylife_userid,alipaylife_openid",
        "zhangsan,2088102146158132,",
        "lisi,12345,",
        "",
        "wangwu,,",
        '"zhaoliu",' .. F1 .. ",",
      }, "\n") .. "\n")
      local status, out = run("users upload " .. q(file) .. " --channel " .. LIFE)
      assert.equal(1, status)
      assert.matches("2 rows uploaded, 2 failed", out, 1, true)
      assert.matches("line 3: userid lisi: INVALID_ALIPAY_ID", out, 1, true)
      assert.matches("line 5: userid wangwu: INVALID_ALIPAY_ID", out, 1, true)

      status, out = run("users show zhangsan")
      assert.equal(0, status)
      assert.matches(LIFE .. "%s+alipaylife%s+user_id%s+2088102146158132", out)
      local value
      status, value = run_json("users show zhaoliu")
      assert.equal(0, status)
      assert.same({ { channel = LIFE, kind = "alipaylife", id_type = "user_id", alipay_id = F1 } }, value.bindings)
      local _, err
      status, _, err = run("users show lisi")
      assert.equal(1, status)
      assert.matches("user lisi has no bindings", err, 1, true)

      -- A CSV needs its channel when several are configured.
      status, _, err = run("users upload " .. q(file))
      assert.equal(2, status)
      assert.matches("--channel", err, 1, true)
    end)

    it("keeps them in PostgreSQL: --store URL (password from PGPASSWORD), or the file's store URL", function()
      local pg = require "support.postgres"
      finally(function() pg.stop() end)
      local u = assert(pg.url(false))
      local file = dir .. "/users.csv"
      helpers.write(file, "userid,alipaylife_userid\nzhangsan,2088102146158132\n")
      local pw = "PGPASSWORD=" .. q(pg.PASSWORD)
      local status, out, err = run("users upload " .. q(file) .. " --channel " .. LIFE .. " --store " .. q(u), pw)
      assert.equal(0, status, err)
      assert.matches("1 rows uploaded, 0 failed", out, 1, true)
      assert.is_nil(io.open(dir .. "/state.db")) -- the file's SQLite store was not used
      status, out = run("users show zhangsan --store " .. q(u), pw)
      assert.equal(0, status)
      assert.matches(LIFE .. "%s+alipaylife%s+user_id%s+2088102146158132", out)
      -- The channel file's "store" as a URL, password and all: used as written.
      local with_pw = pg.url_of(u:match("/([^/]+)$"))
      helpers.write(config, cjson.encode { store = with_pw, channels = both() })
      status, out = run("users show zhangsan")
      assert.equal(0, status)
      assert.matches("2088102146158132", out, 1, true)
      -- A wrong password: a failure that names the database, never the password.
      status, out, err = run("users show zhangsan --store " .. q(u), "PGPASSWORD=wrong-pw-123456")
      assert.equal(1, status)
      assert.matches("postgresql://alipay@127.0.0.1:%d+/t%d+", err)
      assert.is_nil((out .. err):find("wrong-pw-123456", 1, true))
      local wrong = ("postgresql://%s:Wrong-Pass-987@127.0.0.1:%d/%s"):format(pg.USER, pg.port(), u:match("/([^/]+)$"))
      helpers.write(config, cjson.encode { store = wrong, channels = both() })
      status, out, err = run("users show zhangsan")
      assert.equal(1, status)
      assert.is_nil((out .. err):find("Wrong-Pass-987", 1, true))
    end)

    it("uploads UMS JSON rows, reporting failures by position, with --json", function()
      local file = dir .. "/users.json"
      helpers.write(file, cjson.encode {
        { userid = "zhangsan", set = { alipaylife = { [LIFE] = "2088102146158132" } } },
        { userid = "x", set = { alipaylife = { nope = "2088102146158132" } } },
        { userid = "zhangsan", add = { alipaymini = { [MINI] = { open_id = "0V7KGVDalY9Ks76za6O6goGeF8QreK" } } } },
      })
      local status, value = run_json("users upload " .. q(file))
      assert.equal(1, status)
      assert.equal(2, value.success_count)
      assert.same({ { row = 2, userid = "x", errcode = "UNKNOWN_CHANNEL",
                      errmsg = "set.alipaylife.nope: no channel nope is configured" } }, value.fail)
      status, value = run_json("users show zhangsan")
      assert.equal(0, status)
      assert.equal(2, #value.bindings)
      assert.equal("open_id", value.bindings[2].id_type)

      local _, err
      status, _, err = run("users upload " .. q(file) .. " --op add")
      assert.equal(2, status)
      assert.matches("CSV", err, 1, true)
      status = run("users upload " .. q(dir .. "/users.txt"))
      assert.equal(2, status)
    end)
  end)

  describe("send", function()
    it("sends a Life Account message to an id or to a bound user", function()
      import_seed_templates()
      local status, out, err = run(("send --template %s --to-user-id %s --data %s")
        :format(CLAIMED, F1, q(life_context())))
      assert.equal(0, status, err)
      assert.matches("sent template " .. CLAIMED .. " to user_id " .. F1 .. " on channel " .. LIFE, out, 1, true)

      local file = dir .. "/u.csv"
      helpers.write(file, "userid,alipaylife_userid\nzhaoliu," .. F1 .. "\n")
      assert.equal(0, (run("users upload " .. q(file) .. " --channel " .. LIFE)))
      helpers.write(dir .. "/ctx.json", life_context())
      local value
      status, value = run_json(("send --template %s --user zhaoliu --data-file %s")
        :format(CLAIMED, q(dir .. "/ctx.json")))
      assert.equal(0, status)
      assert.is_true(value.ok)
      assert.equal(F1, value.id)
      assert.equal("10000", value.result.code)
      local deliveries = assert(sb:deliveries())
      assert.equal(2, #deliveries)
    end)

    it("sends a mini-program message with a page", function()
      import_seed_templates()
      local status, out, err = run(("send --template %s --to-user-id %s --page %s --data %s"):format(q(MINI_ORDER),
        F1, q("pages/order?id=1 2"), q('{"keyword1":{"value":"HU7142"},"keyword2":{"value":"18:41"},'
          .. '"keyword3":{"value":"顺丰"}}')))
      assert.equal(0, status, err)
      assert.matches("on channel " .. MINI, out, 1, true)
      local d = assert(sb:deliveries())[1]
      assert.equal("pages/order?id%3D1%202", d.payload.page)
    end)

    it("refuses bad content, unknown users and misplaced options before any call", function()
      import_seed_templates()
      local status, _, err = run(("send --template %s --to-user-id %s --data %s")
        :format(CLAIMED, F1, q(life_context { keyword3 = false, url = "" })))
      assert.equal(1, status)
      assert.matches("keyword3 (更新时间): missing", err, 1, true)
      assert.matches("url: must not be empty", err, 1, true)

      status, _, err = run(("send --template %s --user nobody --data %s"):format(CLAIMED, q(life_context())))
      assert.equal(1, status)
      assert.matches("user nobody has no binding for channel " .. LIFE, err, 1, true)

      status, _, err = run(("send --template %s --to-user-id %s --page p --data %s")
        :format(CLAIMED, F1, q(life_context())))
      assert.equal(2, status)
      assert.matches("--page applies to mini-program messages", err, 1, true)

      status = run(("send --template %s --to-user-id %s --data %s"):format(CLAIMED, F1, q("{bad")))
      assert.equal(2, status)
      status = run(("send --template %s --data %s"):format(CLAIMED, q(life_context())))
      assert.equal(2, status)
      status, _, err = run(("send --template unknown --to-user-id %s --data {}"):format(F1))
      assert.equal(1, status)
      assert.matches("not imported on any channel", err, 1, true)
      assert.equal(0, #assert(sb:deliveries()))
    end)

    it("prints Alipay's error, as JSON too", function()
      import_seed_templates()
      local status, value, err = run_json(("send --template %s --to-user-id %s --data %s")
        :format(CLAIMED, STRANGER, q(life_context())))
      assert.equal(1, status)
      assert.is_false(value.ok)
      assert.equal("business", value.error.kind)
      assert.equal("MSG_SD_NOFOLLOW", value.error.sub_code)
      assert.matches("MSG_SD_NOFOLLOW", err, 1, true)
    end)
  end)

  describe("call", function()
    it("calls a v2 method and a v3 path and prints the verified answer", function()
      local status, value = run_json(("call alipay.open.public.user.follow.query %s --channel %s")
        :format(q('{"user_id":"' .. F1 .. '"}'), LIFE))
      assert.equal(0, status)
      assert.equal("T", value.is_follow)

      helpers.write(dir .. "/q.json", cjson.encode { user_id = F1, template_id_list = { MINI_ORDER } })
      local out, err
      status, out, err = run(("call --v3 post /v3/alipay/open/app/messagetemplate/subscribe/query @%s --channel %s")
        :format(q(dir .. "/q.json"), MINI))
      assert.equal(0, status, err)
      value = cjson.decode(out)
      assert.equal("1", value.subscribe_relations[1].subscribe_state)
    end)

    it("reports gateway errors and bad arguments", function()
      local status, _, err = run("call alipay.no.such.method '{}' --channel " .. LIFE)
      assert.equal(1, status)
      assert.matches("isv.invalid-method", err, 1, true)
      status = run("call alipay.open.public.user.follow.query '{bad' --channel " .. LIFE)
      assert.equal(2, status)
      status = run("call --v3 FETCH /v3/x --channel " .. LIFE)
      assert.equal(2, status)
      status = run("call --channel " .. LIFE)
      assert.equal(2, status)
    end)
  end)

  describe("followers export", function()
    it("exports every follower to CSV and to JSON lines", function()
      local csv = dir .. "/followers.csv"
      local status, out, err = run("followers export --channel " .. LIFE .. " --output " .. q(csv))
      assert.equal(0, status, err)
      assert.matches("exported 25000 followers", out, 1, true)
      assert.matches("page 3: 5000 followers (25000 in total)", err, 1, true)
      check_export(csv, "csv")

      local jsonl = dir .. "/followers.jsonl"
      local value
      status, value = run_json("followers export --channel " .. LIFE .. " --output " .. q(jsonl))
      assert.equal(0, status)
      assert.same({ ok = true, channel = LIFE, output = jsonl, format = "jsonl", followers = FOLLOWERS,
                    pages = 3, complete = true, resumed = false }, value)
      check_export(jsonl, "jsonl")
    end)

    it("resumes a stopped export from its last complete page, dropping a partial one", function()
      local file = dir .. "/f.csv"
      local status, out = run("followers export --channel " .. LIFE .. " --max-pages 1 --output " .. q(file))
      assert.equal(0, status)
      assert.matches("stopped after 1 page", out, 1, true)
      assert.equal(10001, count_lines(file))
      -- What a kill in the middle of writing page 2 leaves behind.
      local f = assert(io.open(file, "ab"))
      f:write("20880000000001,user_id\n2088000")
      f:close()

      local _, err
      status, _, err = run("followers export --channel " .. LIFE .. " --resume --output " .. q(file))
      assert.equal(0, status, err)
      assert.matches("dropping 30 bytes", err, 1, true)
      assert.matches("resuming after page 1", err, 1, true)
      check_export(file, "csv")
      local fetched = 0
      for _, ev in ipairs(assert(sb:arrivals())) do
        if ev.event == "arrive" and ev.method == FOLLOW_METHOD then fetched = fetched + 1 end
      end
      assert.equal(3, fetched) -- page 1 once, then pages 2 and 3

      -- Complete: a resume has nothing left to do.
      status, _, err = run("followers export --channel " .. LIFE .. " --resume --output " .. q(file))
      assert.equal(0, status)
      assert.matches("already complete", err, 1, true)
      status = run("followers export --channel " .. LIFE .. " --resume --format jsonl --output " .. q(file))
      assert.equal(2, status)
    end)

    it("resumes after the process is killed between pages", function()
      local file = dir .. "/killed.jsonl"
      assert(sb:faults { latency_ms = 700, methods = { FOLLOW_METHOD } })
      local p = io.popen(("ALIPAY_CONFIG=%s lua5.4 bin/alipay followers export --channel %s --output %s "
        .. ">/dev/null 2>&1 & echo $!"):format(q(config), LIFE, q(file)))
      local pid = p:read("*l")
      p:close()
      local lines = 0
      for _ = 1, 200 do
        os.execute("sleep 0.02")
        lines = count_lines(file)
        if lines >= 10000 then break end
      end
      os.execute("kill -9 " .. pid .. " 2>/dev/null; sleep 0.1")
      assert.equal(10000, lines) -- killed while waiting for page 2
      assert(sb:faults({}))

      local status, _, err = run("followers export --channel " .. LIFE .. " --resume --output " .. q(file))
      assert.equal(0, status, err)
      check_export(file, "jsonl")
    end)

    it("keeps its place when a page fails, and says how to go on", function()
      local file = dir .. "/f.csv"
      assert(sb:faults { error_rate = 1, methods = { FOLLOW_METHOD } })
      local status, _, err = run("followers export --channel " .. LIFE .. " --output " .. q(file))
      assert.equal(1, status)
      assert.matches("20000", err, 1, true)
      assert.matches("--resume", err, 1, true)
      assert(sb:faults({}))
      status, _, err = run("followers export --channel " .. LIFE .. " --resume --output " .. q(file))
      assert.equal(0, status, err)
      check_export(file, "csv")
    end)

    it("needs a Life Account channel", function()
      local status, _, err = run("followers export --channel " .. MINI .. " --output " .. q(dir .. "/x.csv"))
      assert.equal(1, status)
      assert.matches("needs a Life Account (alipaylife) channel", err, 1, true)
      write_config(config, { [MINI] = channel("alipaymini") })
      status, _, err = run("followers export --output " .. q(dir .. "/x.csv"))
      assert.equal(1, status)
      assert.matches("configures no Life Account (alipaylife) channel", err, 1, true)
    end)
  end)
end)
