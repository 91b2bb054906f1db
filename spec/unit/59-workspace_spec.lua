-- alipay.workspace: channels, store, registry and users from one channel
-- file, and the campaign engine's context. Building a channel reads its key
-- files but calls nobody, so no server is needed.
local helpers = require "helpers"
local cjson = require "cjson"
local workspace = require "alipay.workspace"
local campaign = require "alipay.campaign"
local fs = require "alipay.util.fs"

local APP_ID = "2021000122671080"
local LIFE, MINI = "alipaylife123", "mini456"
local TEMPLATE = "14330d60f0ab4516853a0900827cee35"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

describe("alipay.workspace", function()
  local dir, cwd

  -- A channel file in dir/conf whose key paths are relative to it.
  local function write_config(fields)
    local function ch(kind)
      return { kind = kind, app_id = APP_ID, private_key_file = "../keys/app.pem",
               alipay_public_key_file = "../keys/alipay_public.pem", gateway = "http://127.0.0.1:9/gateway.do" }
    end
    local data = { channels = { [LIFE] = ch("alipaylife"), [MINI] = ch("alipaymini") } }
    for k, v in pairs(fields or {}) do data[k] = v end
    helpers.write(dir .. "/conf/alipay.json", cjson.encode(data))
    return dir .. "/conf/alipay.json"
  end

  local function getenv_with(vars)
    return function(name) return vars[name] end
  end

  before_each(function()
    dir = helpers.tmpdir()
    cwd = helpers.cwd()
    assert(helpers.run("mkdir -p " .. q(dir .. "/conf") .. " " .. q(dir .. "/keys")))
    helpers.write(dir .. "/keys/app.pem", helpers.key_text("app_private_pkcs8.pem"))
    helpers.write(dir .. "/keys/alipay_public.pem", helpers.key_text("app_public.pem"))
  end)
  after_each(function() helpers.cleanup() end)

  it("opens every part from one file, the store relative to the file", function()
    local config = write_config { store = "data.db" }
    local ws = assert(workspace.open { config = config })
    assert.equal(config, ws.config)
    assert.equal("option", ws.config_source)
    assert.same({ LIFE, MINI }, { ws.channels:list()[1].code, ws.channels:list()[2].code })
    assert.equal(dir .. "/conf/data.db", ws:store_path())
    assert.is_true(fs.exists(dir .. "/conf/data.db"))
    assert.is_table(ws.store)
    assert.is_function(ws.registry.import)
    assert.is_function(ws.users.resolve)
    -- The parts share the store: what the registry imports, the store holds.
    assert(ws.registry:import({ { id = TEMPLATE, name = "订单状态提醒", keywords = { "订单号" } } },
      { channel = LIFE }))
    assert.equal(TEMPLATE, ws.store:template_get(LIFE, TEMPLATE).id)
    assert.is_true(ws:close())
  end)

  it("uses the caller's default when the file names no store, and an override before both", function()
    local config = write_config()
    local ws = assert(workspace.open { config = config, default_store = dir .. "/default.db" })
    assert.equal(dir .. "/default.db", ws:store_path())
    assert.is_true(fs.exists(dir .. "/default.db"))
    ws:close()

    config = write_config { store = "data.db" }
    ws = assert(workspace.open { config = config, default_store = dir .. "/default.db", lazy = true })
    assert.equal(dir .. "/conf/data.db", ws:store_path())   -- the file's store before the default
    ws:close()
    ws = assert(workspace.open { config = config, store = dir .. "/override.db" })
    assert.equal(dir .. "/override.db", ws:store_path())
    assert.is_true(fs.exists(dir .. "/override.db"))
    assert.is_false(fs.exists(dir .. "/conf/data.db"))
    ws:close()
  end)

  it("takes the channel file from $ALIPAY_CONFIG, else ./alipay.json", function()
    local config = write_config { store = "data.db" }
    local ws = assert(workspace.open { getenv = getenv_with { ALIPAY_CONFIG = config }, lazy = true })
    assert.equal(config, ws.config)
    assert.equal("ALIPAY_CONFIG", ws.config_source)
    assert.equal(dir .. "/conf/data.db", ws:store_path())
    ws:close()
    -- An empty variable counts as unset; the config option wins over the variable.
    assert.same({ "./alipay.json", "default" }, { workspace.config_path(nil, getenv_with { ALIPAY_CONFIG = "" }) })
    assert.same({ "x.json", "option" }, { workspace.config_path("x.json", getenv_with { ALIPAY_CONFIG = config }) })

    -- The real environment, in a process of its own, from the file's directory's parent.
    -- The ordinary build, not the one this process loaded: under `make asan`
    -- that one needs the sanitizer runtime, which children do not get.
    local cpath = cwd .. "/build/lua5.4/?.so"
    local script = "local ws = assert(require('alipay.workspace').open{}) print(ws.config, ws:store_path()) ws:close()"
    local ok, out = helpers.run(("cd %s && ALIPAY_CONFIG=conf/alipay.json lua5.4 -e %s"):format(q(dir),
      q(("package.path=%q..package.path package.cpath=%q..package.cpath %s"):format(
        cwd .. "/lua/?.lua;" .. cwd .. "/lua/?/init.lua;", cpath .. ";", script))))
    assert(ok, out)
    assert.equal("conf/alipay.json\tconf/data.db\n", out)
  end)

  it("takes a table, its paths relative to base_dir", function()
    local data = cjson.decode(helpers.read(write_config { store = "t.db" }))
    local ws = assert(workspace.open { config = data, base_dir = dir .. "/conf" })
    assert.equal("table", ws.config_source)
    assert.equal(dir .. "/conf/t.db", ws:store_path())
    ws:close()
  end)

  it("fails for a missing or bad file with a message that names it", function()
    local missing = dir .. "/conf/absent.json"
    local ws, err, detail = workspace.open { config = missing }
    assert.is_nil(ws)
    assert.equal("config", detail.kind)
    assert.equal(missing, detail.config_file)
    assert.matches("cannot read " .. missing, err, 1, true)

    helpers.write(dir .. "/conf/broken.json", "{ not json")
    ws, err, detail = workspace.open { config = dir .. "/conf/broken.json" }
    assert.is_nil(ws)
    assert.equal("config", detail.kind)
    assert.matches(dir .. "/conf/broken.json: not a JSON object", err, 1, true)
    -- named once, not twice
    local _, times = err:gsub((dir .. "/conf/broken.json"):gsub("%p", "%%%0"), "")
    assert.equal(1, times)

    local config = write_config()
    local data = cjson.decode(helpers.read(config))
    data.channels[LIFE].colour = "red"
    helpers.write(config, cjson.encode(data))
    ws, err, detail = workspace.open { config = config }
    assert.is_nil(ws)
    assert.equal(config .. ": channel alipaylife123: colour: unknown field", detail.msg)
    assert.matches(detail.msg, err, 1, true)
    assert.equal(LIFE, detail.channel)
    assert.equal("colour", detail.field)

    -- The hint is for the default file only, and only when it is not there.
    ws, _, detail = workspace.open { getenv = getenv_with {}, missing_hint = "give --config FILE" }
    assert.is_nil(ws)
    assert.equal("./alipay.json", detail.config_file)
    assert.matches("^cannot read %./alipay%.json: .* %(give %-%-config FILE%)$", detail.msg)
    ws, err = workspace.open { config = missing, missing_hint = "give --config FILE" }
    assert.is_nil(ws)
    assert.not_matches("give --config", err, 1, true)
  end)

  it("fails for a store it cannot open, naming its path", function()
    local config = write_config { store = "missing/dir/state.db" }
    local ws, err, detail = workspace.open { config = config }
    assert.is_nil(ws)
    assert.equal("io", detail.kind)
    assert.matches("^store " .. dir .. "/conf/missing/dir/state.db: ", err)
  end)

  describe("with a PostgreSQL store URL", function()
    local pg = require "support.postgres"
    teardown(function() pg.stop() end)

    it("takes it from the file as written (never joined to the file's directory) and opens it", function()
      local u = assert(pg.url())
      local config = write_config { store = u }
      local ws = assert(workspace.open { config = config })
      assert.equal(u, ws:store_path())
      assert.equal(pg.url_of(u:match("/([^/]+)$"), false), ws.store.path)
      assert.equal(1, ws.registry:import({ { id = TEMPLATE, channel = LIFE, keywords = { "a" } } }).imported)
      ws:close()
      local st = assert(require("alipay.store").open(u))
      assert.equal(TEMPLATE, st:template_get(LIFE, TEMPLATE).id)
      st:close()
    end)

    it("takes it as store = (the CLI's --store), with the password from PGPASSWORD", function()
      local u = assert(pg.url(false)) -- no password in the URL
      -- A process of its own, for its environment (see above for the cpath).
      local script = ("local ctx = require('alipay.cli.common').context { config = 'absent.json', store = %q } "
        .. "local reg, err = ctx:registry() print(reg and 'opened' or err) ctx:close()"):format(u)
      local function child(env)
        return helpers.run(("cd %s && %s lua5.4 -e %s"):format(q(dir), env, q(("package.path=%q..package.path "
          .. "package.cpath=%q..package.cpath %s"):format(cwd .. "/lua/?.lua;" .. cwd .. "/lua/?/init.lua;",
          cwd .. "/build/lua5.4/?.so;", script))))
      end
      local ok, out = child("PGPASSWORD=" .. q(pg.PASSWORD))
      assert(ok, out)
      assert.equal("opened\n", out)
      ok, out = child("PGPASSWORD=wrong-password-xyz")
      assert(ok, out)
      assert.matches("^store postgresql://alipay@127.0.0.1:%d+/t%d+: store.open: cannot connect", out)
      assert.is_nil(out:find("wrong-password-xyz", 1, true))
    end)

    it("never shows the password when the store cannot be opened", function()
      local secret = "Not-The-Password-77"
      local u = ("postgresql://%s:%s@127.0.0.1:%d/absent_db"):format(pg.USER, secret, assert(pg.start()) and
        pg.port())
      local ws, err, detail = workspace.open { config = write_config { store = u } }
      assert.is_nil(ws)
      assert.equal("store", detail.kind)
      assert.matches("^store postgresql://alipay@127.0.0.1:%d+/absent_db: store.open: cannot connect", err)
      assert.is_nil(err:find(secret, 1, true))
    end)
  end)

  it("builds lazily: no store until asked for, no channel file for an overridden store", function()
    local config = write_config { store = "data.db" }
    local ws = workspace.open { config = config, lazy = true }
    assert(ws:get("channels"))
    assert.is_false(fs.exists(dir .. "/conf/data.db"))
    assert.is_table(ws.registry)            -- a field builds it
    assert.is_true(fs.exists(dir .. "/conf/data.db"))
    ws:close()

    ws = workspace.open { config = dir .. "/absent.json", store = dir .. "/only.db", lazy = true }
    assert(ws:get("registry"))
    local set, err = ws:get("users")          -- needs the channels: fails, and says why
    assert.is_nil(set)
    assert.matches("absent.json", err, 1, true)
    assert.is_nil(ws.channels)
    -- a failure is kept: the file is not read again
    helpers.write(dir .. "/absent.json", helpers.read(config))
    assert.is_nil(ws:get("channels"))
    ws:close()
  end)

  it("is what the facade and the CLI's context open, lazily", function()
    assert.equal(workspace, require("alipay").workspace)
    local common = require "alipay.cli.common"
    local config = write_config { store = "data.db" }
    local ctx = common.context { config = config }
    assert(ctx:channels())
    assert.is_false(fs.exists(dir .. "/conf/data.db"))   -- listing channels creates no store
    assert.same({ config, "--config" }, { ctx:config_path() })
    assert(ctx:campaign_ctx())
    assert.is_true(fs.exists(dir .. "/conf/data.db"))
    ctx:close()
    ctx = common.context { config = dir .. "/absent.json", store = dir .. "/given.db" }
    assert(ctx:registry())                                -- --store: no channel file needed
    local _, err = ctx:users()
    assert.matches("absent.json", err, 1, true)
    ctx:close()
  end)

  it("closes the store and the clients, on close and at the end of a <close> scope", function()
    local config = write_config { store = "data.db" }
    local ws = assert(workspace.open { config = config })
    local st, set = ws.store, ws.channels
    local life = assert(set:get(LIFE))
    assert.is_true(ws:close())
    assert.is_true(ws:close())               -- idempotent
    assert.is_nil(ws.store)
    local _, err, detail = ws:get("store")
    assert.equal("state", detail.kind)
    assert.matches("closed", err)
    assert.is_nil(st:meta_get("x"))
    assert.matches("closed", select(2, st:meta_get("x")))
    local ok, why = pcall(life.client.execute, life.client, "alipay.open.public.setting.category.query", {})
    assert.is_false(ok)
    assert.matches("closed", why)

    do
      local scoped <close> = assert(workspace.open { config = config })
      st = scoped.store
      assert(st:meta_put("k", "v"))
    end
    assert.matches("closed", select(2, st:meta_get("k")))
    assert.has_error(function() ws:get("nope") end)
    assert.has_error(function() workspace.open { config = 42 } end)
  end)

  it("hands out a context the campaign engine accepts", function()
    local config = write_config { store = "data.db" }
    local ws <close> = assert(workspace.open { config = config })
    assert(ws.registry:import({ { id = TEMPLATE, name = "订单状态提醒", keywords = { "订单号", "订单状态" } } },
      { channel = LIFE }))
    local logged = {}
    local ctx = assert(ws:campaign_ctx { log = function(level) logged[#logged + 1] = level end })
    assert.equal(ws.store, ctx.store)
    assert.equal(ws.channels, ctx.channels)
    assert.equal(ws.registry, ctx.registry)
    assert.equal(ws.users, ctx.users)
    assert.is_function(ctx.log)
    local c = assert(campaign.create(ctx, { id = "ws-check", channel = LIFE, template = TEMPLATE,
      audience = { recipients = { { user_id = "2088102146158132", order_no = "HU1" } } },
      data = { head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看详情",
               keyword1 = { value = "{order_no}", color = "#85be53" },
               keyword2 = { value = "已发货", color = "#85be53" } },
    }))
    local st = assert(c:status())
    assert.equal(1, st.total)
    assert.equal("ws-check", assert(campaign.list(ctx))[1].id)
    -- A context whose parts cannot be built is a failure, not a half context.
    local broken = workspace.open { config = dir .. "/absent.json", lazy = true }
    local none, err, detail = broken:campaign_ctx()
    assert.is_nil(none)
    assert.equal("config", detail.kind)
    assert.matches("absent.json", err, 1, true)
    broken:close()
  end)
end)
