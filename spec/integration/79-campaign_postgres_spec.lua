-- A campaign end to end on a PostgreSQL store: `alipay campaign run`,
-- `status` (a read-only open), `list`, `export` and `delete` as child
-- processes against the sandbox gateway, the store given by --store URL
-- with the password in PGPASSWORD (spec/support/postgres.lua starts the
-- server). What spec/integration/72 checks on SQLite, in brief.
local helpers = require "helpers"
local cjson = require "cjson"
local pg = require "support.postgres"

local APP_ID = "2021000122671080"
local CHANNEL = "alipaylife_pg"
local TEMPLATE = "0spec0order0template000000000001"

local function follower(i) return ("20880000%08d"):format(i) end
local function stranger(i) return ("20889999%08d"):format(i) end
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

describe("alipay campaign on a PostgreSQL store", function()
  local sandbox = require "alipay.sandbox"
  local sb, dir, config, url

  local function alipay(args)
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local _, _, code = os.execute(("PGPASSWORD=%s lua5.4 bin/alipay %s --store %s >%s 2>%s")
      :format(q(pg.PASSWORD), args, q(url), q(out), q(err)))
    local stdout, stderr = helpers.read(out), helpers.read(err)
    -- whatever it printed, never the password
    assert.is_nil((stdout .. stderr):find(pg.PASSWORD, 1, true), args)
    return code, stdout, stderr
  end

  setup(function()
    dir = helpers.tmpdir()
    url = assert(pg.url(false))
    sb = assert(sandbox.start {
      app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
      seed = {
        industries = { { code = "10001/20102", name = "IT科技/IT软件与服务" } },
        industry = { primary = "10001/20102" },
        library = { { template_id = "TM000000223", name = "订单状态提醒", industry = "10001/20102",
                      keywords = { "订单号", "订单状态", "更新时间" } } },
        claimed = { { template_id = "TM000000223", msg_template_id = TEMPLATE } },
        followers = { generate = { count = 100, user_id_prefix = "20880000" } },
      },
    })
    helpers.write(dir .. "/alipay_public_key.pem", sb.alipay_public_key)
    config = dir .. "/alipay.json"
    helpers.write(config, cjson.encode {
      channels = { [CHANNEL] = { kind = "alipaylife", app_id = APP_ID,
        private_key_file = helpers.cwd() .. "/" .. helpers.fixtures .. "/keys/app_private_pkcs1.pem",
        alipay_public_key_file = dir .. "/alipay_public_key.pem", gateway = sb.gateway } },
    })
    local templates = dir .. "/templates.json"
    helpers.write(templates, cjson.encode {
      { id = TEMPLATE, channel = CHANNEL, name = "订单状态提醒", keywords = { "订单号", "订单状态", "更新时间" } },
    })
    local code, _, err = alipay("template import " .. q(templates) .. " --config " .. q(config))
    assert(code == 0, err)
  end)

  teardown(function()
    if sb then sb:stop() end
    pg.stop()
    helpers.cleanup()
  end)

  it("runs to completion, each follower once; status, list, export and delete read the same store", function()
    local lines = {}
    for i = 1, 40 do lines[#lines + 1] = follower(i) .. ",,HU" .. i end
    for i = 1, 3 do lines[#lines + 1] = stranger(i) .. ",,NF" .. i end
    lines[#lines + 1] = lines[1]
    local audience = dir .. "/audience.csv"
    helpers.write(audience, "user_id,userid,order_no\n" .. table.concat(lines, "\n") .. "\n")
    local data = cjson.encode {
      head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看订单",
      keyword1 = { value = "{order_no}", color = "#85be53" }, keyword2 = { value = "已发货", color = "#85be53" },
      keyword3 = { value = "2026-11-22 10:00", color = "#85be53" },
    }
    local _
    local code, out, err = alipay(("campaign run --config %s --channel %s --template %s --audience %s --data %s "
      .. "--id pg1 --json --progress=none --in-flight 8"):format(q(config), CHANNEL, TEMPLATE, q(audience), q(data)))
    assert.equal(0, code, err)
    local status = cjson.decode(out)
    assert.same({ "completed", 44, 40, 3, 1 }, { status.status, status.total, status.counts.sent,
      status.counts.failed, status.counts.skipped })
    local count = {}
    for _, d in ipairs(assert(sb:deliveries())) do count[d.to_user_id] = (count[d.to_user_id] or 0) + 1 end
    for i = 1, 40 do assert.equal(1, count[follower(i)]) end
    for i = 1, 3 do assert.is_nil(count[stranger(i)]) end

    code, out, err = alipay("campaign status pg1 --json --config " .. q(config))
    assert.equal(0, code, err)
    assert.equal(40, cjson.decode(out).counts.sent)
    code, out = alipay("campaign list --config " .. q(config))
    assert.equal(0, code)
    assert.truthy(out:find("pg1", 1, true))
    code, _, err = alipay("campaign export pg1 --output " .. q(dir .. "/pg1.csv") .. " --config " .. q(config))
    assert.equal(0, code, err)
    local rows = 0
    for _ in io.lines(dir .. "/pg1.csv") do rows = rows + 1 end
    assert.equal(45, rows) -- a header and every line
    code, _, err = alipay("campaign delete pg1 --force --config " .. q(config))
    assert.equal(0, code, err)
    code, _, err = alipay("campaign status pg1 --config " .. q(config))
    assert.equal(1, code)
    assert.truthy(err:find("pg1", 1, true))
  end)
end)
