-- `alipay template sync|library|apply` and `alipay batchsend` as child
-- processes (lua5.4 bin/alipay) against the sandbox gateway: what a sync
-- prints and writes (also as --json), a Life Account refused by name, the
-- library with Alipay's filters and the local --keyword, applying, batch
-- sends, and every command of README.md's mini-program template section run
-- as written (its placeholders filled in from the seed).
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local LIFE, MINI = "alipaylife123", "mini456"
local MINI_A = "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM="
local MINI_B = "NzVmYjA1ZDM0NjQ2NDZkNjk0YzBmMjc4OGM3ZDAxNDE="
local MINI_C = "YjU0ZGJkNzU4MzJmNGVkNGE1ZGY1NzQ4MTQ5OTQ3MzQ="
local MINI_D = "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M="
local F1 = "2088857585575154"
local BATCH = "alipay.open.app.mini.templatemessage.batchsend"

-- The README's placeholders and the seed values they stand for.
local PLACEHOLDERS = { LIB_CODE = "LIB_ORDER_SHIPPED", TEMPLATE_ID = MINI_A, CROWD_CODE = "CROWD_VIP" }

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

describe("bin/alipay mini-program template commands", function()
  local sb, dir, config

  local function write_config(channels)
    local pub = dir .. "/alipay_public.pem"
    helpers.write(pub, sb.alipay_public_key)
    helpers.write(dir .. "/app.pem", helpers.key_text("app_private_pkcs1.pem"))
    local set = {}
    for code, kind in pairs(channels) do
      set[code] = { kind = kind, app_id = APP_ID, private_key_file = "app.pem", alipay_public_key_file = pub,
                    gateway = sb.gateway, timeout_ms = 10000 }
    end
    config = dir .. "/alipay.json"
    helpers.write(config, cjson.encode { store = "state.db", channels = set })
  end

  local function run(args)
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local cmd = ("ALIPAY_CONFIG=%s lua5.4 bin/alipay %s >%s 2>%s; echo $?"):format(q(config), args, q(out), q(err))
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

  local function import(items)
    local file = dir .. "/templates.json"
    helpers.write(file, cjson.encode(items))
    local status, _, err = run("template import --channel " .. MINI .. " " .. q(file))
    assert.equal(0, status, err)
  end

  local function batch_deliveries()
    local out = {}
    for _, d in ipairs(assert(sb:deliveries())) do
      if d.method == BATCH then out[#out + 1] = d end
    end
    return out
  end

  setup(function()
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                seed = "spec/fixtures/sandbox_seed.json" })
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    assert(sb:reset())
    assert(sb:faults({}))
    dir = helpers.tmpdir()
    write_config { [LIFE] = "alipaylife", [MINI] = "alipaymini" }
  end)

  it("prints help for the new actions", function()
    for _, args in ipairs { "template sync --help", "template library --help", "template apply --help",
                            "batchsend --help" } do
      local status, out = run(args)
      assert.equal(0, status, args)
      assert.matches("--channel", out, 1, true)
    end
  end)

  describe("template sync", function()
    it("shows what changed and writes it to the registry", function()
      import {
        { id = MINI_A, name = "订单发货提醒", keywords = { "订单号", "发货时间" } },
        { id = MINI_D, name = "活动开始提醒", keywords = { "活动名称", "开始时间" } },
      }
      local status, out, err = run("template sync")
      assert.equal(0, status, err)
      assert.matches("changed   " .. MINI_A .. " 订单发货提醒 keywords [订单号,发货时间] -> [订单号,发货时间,快递公司]",
        out, 1, true)
      assert.matches("added     " .. MINI_B, out, 1, true)
      assert.matches("gone      " .. MINI_D, out, 1, true)
      assert.matches("channel mini456: 3 listed; 2 added, 1 changed, 0 revived, 1 gone, 0 unchanged", out, 1, true)
      local _, list = run_json("template list --all --channel " .. MINI)
      local by_id = {}
      for _, t in ipairs(list.templates) do by_id[t.id] = t end
      assert.are.same({ "valid", "valid", "valid", "invalid" },
        { by_id[MINI_A].status, by_id[MINI_B].status, by_id[MINI_C].status, by_id[MINI_D].status })
      assert.equal("NOT_LISTED", by_id[MINI_D].invalid_code)
    end)

    it("--json lists each change; a second sync finds everything unchanged", function()
      assert.equal(0, (run("template sync")))
      assert(sb:delete_template(MINI_B))
      local status, r = run_json("template sync")
      assert.equal(0, status)
      assert.are.same({ true, MINI, 3 - 1 }, { r.ok, r.channel, r.listed })
      assert.are.same({}, r.added)
      assert.equal(MINI_B, r.gone[1].id)
      assert.are.same({ MINI_A, MINI_C }, { r.unchanged[1].id, r.unchanged[2].id })
      assert.are.same({ "订单号", "发货时间", "快递公司" }, r.unchanged[1].keywords)
    end)

    it("refuses an empty listing unless --allow-empty", function()
      assert.equal(0, (run("template sync")))
      for _, id in ipairs { MINI_A, MINI_B, MINI_C } do assert(sb:delete_template(id)) end
      local status, _, err = run("template sync")
      assert.equal(1, status)
      assert.matches("Alipay lists no templates for channel mini456", err, 1, true)
      local st, r = run_json("template sync --allow-empty")
      assert.equal(0, st)
      assert.equal(3, #r.gone)
    end)

    it("refuses a Life Account by name, before any call", function()
      local status, out, err = run("template sync --channel " .. LIFE)
      assert.equal(1, status)
      assert.equal("", out)
      assert.matches("channel alipaylife123 is a Life Account: Alipay has no API that lists", err, 1, true)
      local _, r = run_json("template sync --channel " .. LIFE)
      assert.is_false(r.ok)
      assert.equal("config", r.error.kind)
      write_config { [LIFE] = "alipaylife" }
      status, _, err = run("template sync")
      assert.equal(1, status)
      assert.matches("configures no mini program (alipaymini) channel", err, 1, true)
      for _, ev in ipairs(assert(sb:arrivals())) do
        assert.are_not.equal("alipay.open.mini.message.template.batchquery", ev.method)
      end
    end)
  end)

  describe("template library and apply", function()
    it("lists the library, filtered by Alipay and by --keyword", function()
      local status, r = run_json("template library")
      assert.equal(0, status)
      assert.equal(4, #r.library)
      local _, k = run_json("template library --keyword 预约")
      assert.are.same({ "LIB_BOOKING_OK" }, { k.library[1].code, k.library[2] })
      local _, p = run_json("template library --has-push")
      assert.are.same({ "LIB_REFUND_DONE" }, { p.library[1].code, p.library[2] })
      local _, out = run("template library --scene-rule long_term_subscribe")
      assert.matches("LIB_BOOKING_OK", out, 1, true)
      assert.not_matches("LIB_ORDER_SHIPPED", out, 1, true)
    end)

    it("applies and imports; a refused application exits 1", function()
      local status, r = run_json("template apply LIB_ORDER_SHIPPED --keywords 订单号,收货地址")
      assert.equal(0, status)
      assert.is_true(r.imported)
      local _, list = run_json("template list --channel " .. MINI)
      assert.equal(r.id, list.templates[1].id)
      assert.are.same({ "订单号", "收货地址" }, list.templates[1].keywords)
      local st, _, err = run("template apply LIB_ORDER_SHIPPED --keywords 订单号")
      assert.equal(1, st)
      assert.matches("2 to 5", err, 1, true)
      st, _, err = run("template apply LIB_CLOSED --keywords 名称,时间")
      assert.equal(1, st)
      assert.matches("SANDBOX_LIB_NOT_SELECTABLE", err, 1, true)
    end)
  end)

  describe("batchsend", function()
    it("sends once, to a crowd and scheduled, and refuses bad data locally", function()
      assert.equal(0, (run("template sync")))
      local status, out, err = run("batchsend " .. MINI_A .. " --crowd CROWD_VIP --at '2024-06-08 09:00:00' "
        .. "--data '[\"HU7142\", \"12:00\", \"顺丰\"]'")
      assert.equal(0, status, err)
      assert.matches("crowd CROWD_VIP, scheduled for 2024-06-08 09:00:00", out, 1, true)
      local d = batch_deliveries()
      assert.are.same({ { F1 } }, { d[1].recipients })
      local st, r = run_json("batchsend " .. MINI_A .. " --data '[\"a\", \"b\"]'")
      assert.equal(1, st)
      assert.are.same({ "invalid", "data" }, { r.error.kind, r.error.reason })
      assert.equal(1, #batch_deliveries())
    end)

    it("says when a failed send may have been executed", function()
      assert.equal(0, (run("template sync")))
      sb:faults { reset = 1, methods = { BATCH } }
      local status, _, err = run("batchsend " .. MINI_A .. " --data '[\"a\", \"b\", \"c\"]'")
      assert.equal(1, status)
      assert.matches("may have been executed", err, 1, true)
    end)
  end)

  it("runs README.md's mini-program template commands as written", function()
    local readme = helpers.read("README.md")
    local section = readme:match("\n## Mini%-program templates and batch sends\n(.-)\n## ")
    assert(section, "README.md has no section \"Mini-program templates and batch sends\"")
    local block = section:match("```sh\n(.-)\n```")
    assert(block, "the section has no sh block")
    local n = 0
    for line in (block .. "\n"):gmatch("(.-)\n") do
      if line:match("^alipay ") then
        local cmd = line:gsub("%u[%u_]+_[%u_]+", function(word) return PLACEHOLDERS[word] or word end)
        local status, _, err = run(cmd:sub(#"alipay " + 1))
        assert.equal(0, status, line .. "\n" .. err)
        n = n + 1
      end
    end
    assert.is_true(n >= 5, "too few commands in the README block")
    -- Two batchsend commands and a campaign of a crowd: one batch send each.
    assert.equal(3, #batch_deliveries())
  end)

  it("runs README.md's Lua example of the section", function()
    local readme = helpers.read("README.md")
    local section = readme:match("\n## Mini%-program templates and batch sends\n(.-)\n## ")
    local code = assert(section:match("```lua\n(.-)\n```"), "the section has no lua block")
    helpers.write(dir .. "/example.lua", code .. "\nprint('example done')\n")
    local repo = helpers.cwd()
    local cmd = ("cd %s && LUA_PATH=%s LUA_CPATH=%s lua5.4 example.lua 2>&1"):format(q(dir),
      q(repo .. "/lua/?.lua;" .. repo .. "/lua/?/init.lua;;"), q(repo .. "/build/lua5.4/?.so;;"))
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    assert.matches("example done", out, 1, true)
    local d = batch_deliveries()
    assert.equal(1, #d)
    assert.are.same({ "CROWD_VIP", "2026-11-23 09:00:00" }, { d[1].crowd_code, d[1].schedule_send_time })
  end)
end)
