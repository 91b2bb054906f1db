-- The OpenResty guide (examples/openresty/README.md) as a newcomer runs it:
-- the shipped nginx.conf, started with `nginx -p PREFIX -c nginx.conf`,
-- against the sandbox's HTTPS gateway. Only the listen port is changed (a
-- free one, since specs run concurrently). The example's tree is laid out
-- as in a checkout (copies of lua/ and build/luajit two levels above the
-- prefix).
--
-- Run as root (CI may), this proves what the guide says about privileges:
-- the workers run as the `user` of nginx.conf (www-data), which can read
-- neither the key files, the settings (0600) nor any code, and yet sign and
-- serve every endpoint: the master read and loaded them in init_by_lua. The
-- one file the workers open is the CA bundle (lua_ssl_trusted_certificate
-- is loaded by each worker): it must be readable by www-data, and the spec
-- proves it is and that TLS to the sandbox verifies against it. As another
-- user, the privilege checks are pending.
local helpers = require "helpers"
local cjson = require "cjson"
local beijing_time = require "alipay.util.beijing_time"
local alipay = require "alipay"
local core = alipay.core
local sandbox = require "alipay.sandbox"
local runner = require "alipay.sandbox.nginx"

local ROOT = helpers.cwd()
local APP_ID = "2021000122671080"
local USER = "2088857585575154" -- a follower in the seed
local SHIPPED_TEMPLATE = "14330d60f0ab4516853a0900827cee35" -- claimed in the seed
local WORKER_USER = "www-data"  -- the `user` of examples/openresty/nginx.conf
local SEND = "alipay.open.public.message.single.send"

-- The README's command that writes run/resolver.conf from the system's
-- nameservers (IPv6 ones in brackets, as nginx wants them).
local RESOLVER_COMMAND = [[awk '$1 == "nameserver" { ns = ns " " ($2 ~ /:/ ? "[" $2 "]" : $2) } ]]
  .. [[END { if (ns) print "resolver" ns " valid=300s ipv6=off;" }' /etc/resolv.conf > run/resolver.conf]]

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function run(cmd)
  local ok, out = helpers.run(cmd)
  assert(ok, cmd .. "\n" .. out)
  return out
end

local function is_root()
  return run("id -u"):match("^%s*0%s*$") ~= nil
end

-- Whether WORKER_USER can read path (setpriv switches user without a shell).
local function worker_can_read(path)
  return (helpers.run("setpriv --reuid=" .. WORKER_USER .. " --regid=" .. WORKER_USER
    .. " --init-groups test -r " .. q(path)))
end

local function random_port()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(2)
  f:close()
  return 20000 + (b:byte(1) * 256 + b:byte(2)) % 40000
end

describe("the OpenResty guide (examples/openresty/nginx.conf as shipped)", function()
  local sb, base, prefix, port, master
  local http = assert(core.http { timeout_ms = 30000 })
  local as_root = is_root()

  local function nginx(args)
    return helpers.run("cd " .. q(prefix) .. " && env -u ALIPAY_CONFIG " .. runner.nginx
      .. " -p " .. q(prefix .. "/") .. " -c nginx.conf -e logs/error.log " .. (args or ""))
  end

  local function url(path) return ("http://127.0.0.1:%d%s"):format(port, path) end

  local function error_log() return helpers.read(prefix .. "/logs/error.log") end

  local function post(path, body, content_type)
    local res, err = http:request { method = "POST", url = url(path), body = body,
      headers = { ["Content-Type"] = content_type } }
    assert(res, err)
    return res.status, res.body
  end

  -- The prefix, laid out like the checkout: base/checkout/{lua,build} and
  -- base/checkout/examples/openresty/{nginx.conf,handlers,run,logs}. The
  -- code, the settings and the keys are root's only (0600 files, 0700
  -- directories); the CA bundle is public, and the workers load it (in
  -- nginx's init_worker), so it and the directories above it are readable.
  local function make_prefix()
    base = helpers.tmpdir()
    local checkout = base .. "/checkout"
    prefix = checkout .. "/examples/openresty"
    run("chmod 0711 " .. q(base) .. " && mkdir -p " .. q(prefix .. "/logs") .. " " .. q(prefix .. "/run")
      .. " " .. q(base .. "/keys") .. " " .. q(checkout .. "/build")
      .. " && cp -r " .. q(ROOT .. "/lua") .. " " .. q(checkout .. "/lua")
      .. " && cp -r " .. q(ROOT .. "/build/luajit") .. " " .. q(checkout .. "/build/luajit")
      .. " && cp -r " .. q(ROOT .. "/examples/openresty/handlers") .. " " .. q(prefix .. "/handlers")
      .. " && chmod -R go= " .. q(checkout .. "/lua") .. " " .. q(checkout .. "/build") .. " "
      .. q(prefix .. "/handlers") .. " " .. q(base .. "/keys")
      .. " && chmod 0755 " .. q(checkout) .. " " .. q(checkout .. "/examples") .. " " .. q(prefix)
      .. " " .. q(prefix .. "/run"))
    local app_key, alipay_pub = base .. "/keys/app_private_key.pem", base .. "/keys/alipay_public_key.pem"
    run("install -m 0600 " .. q(ROOT .. "/spec/fixtures/keys/app_private_pkcs1.pem") .. " " .. q(app_key))
    helpers.write(alipay_pub, sb.alipay_public_key)
    local bundle = io.open("/etc/ssl/certs/ca-certificates.crt", "rb")
    local system = bundle and bundle:read("*a") or ""
    if bundle then bundle:close() end
    helpers.write(prefix .. "/run/trusted.pem", system .. "\n" .. helpers.read(sb.ca_file))
    helpers.write(prefix .. "/run/alipay.json", cjson.encode {
      app_id = APP_ID, private_key_file = app_key, alipay_public_key_file = alipay_pub,
      gateway = sb.https_gateway, timeout_ms = 5000,
      example = { shipped_template_id = SHIPPED_TEMPLATE, order_url = "https://shop.example.com/orders/" },
    })
    run("chmod 0600 " .. q(alipay_pub) .. " " .. q(prefix .. "/run/alipay.json")
      .. " && chmod 0644 " .. q(prefix .. "/run/trusted.pem"))
  end

  -- The shipped nginx.conf on a free port; the command of the guide.
  local function start()
    local shipped = helpers.read(ROOT .. "/examples/openresty/nginx.conf")
    local last
    for _ = 1, 10 do
      port = random_port()
      local conf, n = shipped:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
      assert.are.equal(1, n)
      helpers.write(prefix .. "/nginx.conf", conf)
      local ok, out = nginx()
      if ok then
        for _ = 1, 50 do
          local f = io.open(prefix .. "/logs/nginx.pid", "rb")
          master = f and tonumber(f:read("*a"))
          if f then f:close() end
          if master then return end
          run("sleep 0.1")
        end
        error("nginx started but wrote no pid file:\n" .. error_log())
      end
      last = out
      if not out:find("Address already in use", 1, true) then break end
    end
    error("nginx did not start: " .. tostring(last))
  end

  local function stop()
    if not master then return end
    nginx("-s quit")
    for _ = 1, 50 do
      if not helpers.run("kill -0 " .. master) then master = nil return end
      run("sleep 0.1")
    end
    helpers.run("kill -TERM " .. master)
    master = nil
  end

  setup(function()
    sb = assert(sandbox.start {
      app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
      seed = helpers.fixtures .. "/sandbox_seed.json",
    })
    make_prefix()
    start()
  end)

  teardown(function()
    stop()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  -- The error log's tail with a failure: the fastest way to see why.
  local function guarded(fn)
    return function()
      local ok, err = pcall(fn)
      if not ok then error(tostring(err) .. "\n--- error log (tail) ---\n" .. error_log():sub(-3000), 0) end
    end
  end

  before_each(function() sb:reset() end)

  if as_root then
    it("runs its workers as " .. WORKER_USER .. ", who reads the CA but no key, setting or code", guarded(function()
      -- The master's children (uid by pid), from /proc: no procps needed.
      local function children()
        local uids = {}
        for pid in run("ls /proc"):gmatch("%d+") do
          local f = io.open("/proc/" .. pid .. "/status", "rb")
          local status = f and f:read("*a") or ""
          if f then f:close() end
          if tonumber(status:match("\nPPid:%s*(%d+)")) == master then
            uids[pid] = tonumber(status:match("\nUid:%s*(%d+)"))
          end
        end
        return uids
      end
      -- A worker forked a moment ago may not have dropped root yet.
      local worker_uid = tonumber(run("id -u " .. WORKER_USER))
      local uids, workers
      for _ = 1, 50 do
        uids, workers = children(), 0
        for _, uid in pairs(uids) do
          if uid == worker_uid then workers = workers + 1 end
        end
        if workers == 2 then break end
        run("sleep 0.1")
      end
      for pid, uid in pairs(uids) do assert.are.equal(worker_uid, uid, "worker " .. pid) end
      assert.are.equal(2, workers) -- worker_processes 2
      for _, path in ipairs { base .. "/keys/app_private_key.pem", base .. "/keys/alipay_public_key.pem",
        prefix .. "/run/alipay.json", prefix .. "/handlers/notify.lua",
        base .. "/checkout/lua/alipay/init.lua", base .. "/checkout/build/luajit/alipay/core.so" } do
        assert.is_false(worker_can_read(path), WORKER_USER .. " can read " .. path)
      end
      assert.is_true(worker_can_read(prefix .. "/run/trusted.pem"))
    end))
  else
    pending("workers drop to " .. WORKER_USER .. " (needs root: nginx ignores `user` otherwise)")
  end

  it("sends a Life Account template message over HTTPS when an order ships", guarded(function()
    local status, body = post("/orders/shipped", cjson.encode { user_id = USER, order_id = "SO-4201",
      carrier = "SF", tracking_no = "SF123" }, "application/json")
    assert.are.equal(200, status, body)
    assert.is_true(cjson.decode(body).sent)
    local deliveries = assert(sb:deliveries())
    assert.are.equal(1, #deliveries)
    local d = deliveries[1]
    assert.are.same({ SEND, USER, SHIPPED_TEMPLATE }, { d.method, d.to_user_id, d.template_id })
    -- The biz_content the handler posts (README: "What /orders/shipped sends").
    local context = d.payload.template.context
    assert.are.equal(USER, d.payload.to_user_id)
    assert.are.equal("SO-4201", context.keyword1.value)
    assert.are.equal("已发货（SF SF123）", context.keyword2.value)
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d$", context.keyword3.value)
    assert.are.equal("https://shop.example.com/orders/SO-4201", context.url)
    assert.are.same({ "您的订单已发货", "感谢您的惠顾", "查看订单" },
      { context.first.value, context.remark.value, context.action_name })
  end))

  -- Signed with the sandbox's own "Alipay" key, whose public half the
  -- example's settings trust (it is in the sandbox's private config file).
  local function alipay_key()
    local config = cjson.decode(helpers.read(sb.prefix .. "/sandbox.json"))
    return assert(core.private_key(config.alipay_private_key))
  end

  it("answers success to a notification, and again to its replay, processing it once", guarded(function()
    local params = { notify_id = core.random_hex(16), app_id = APP_ID, charset = "utf-8",
      notify_type = "trade_status_sync", notify_time = beijing_time.format(os.time() - 5), out_trade_no = "SO-4202",
      trade_status = "TRADE_SUCCESS", total_amount = "88.00", sign_type = "RSA2", version = "1.0" }
    params.sign = alipay_key():sign(core.sign_content(params, { exclude = { "sign_type" } }))
    local body = core.form_encode(params)
    local form = "application/x-www-form-urlencoded; charset=utf-8"
    assert.are.same({ 200, "success" }, { post("/alipay/notify", body, form) })
    assert.are.same({ 200, "success" }, { post("/alipay/notify", body, form) })
    local _, n = error_log():gsub("alipay notify: trade_status_sync order SO%-4202 ", "")
    assert.are.equal(1, n)
    -- Signed by someone else: refused.
    params.sign = assert(core.private_key(helpers.key_text("app_private_pkcs1.pem"))):sign("x")
    assert.are.same({ 400, "fail" }, { post("/alipay/notify", core.form_encode(params), form) })
  end))

  it("answers the gateway check with the envelope the app key signed", guarded(function()
    -- As Alipay sends it: no app_id field; the XML names the app.
    local params = { charset = "utf-8", sign_type = "RSA2", service = "alipay.service.check",
      biz_content = "<XML><AppId>" .. APP_ID .. "</AppId><EventType>verifygw</EventType></XML>" }
    params.sign = alipay_key():sign(core.sign_content(params))
    local status, body = post("/alipay/gateway", core.form_encode(params), "application/x-www-form-urlencoded")
    assert.are.equal(200, status)
    local inner, sig = body:match("<response>(.-)</response>"), body:match("<sign>(.-)</sign>")
    local app_pub = assert(core.public_key(helpers.key_text("app_public.pem")))
    assert.is_true(app_pub:verify(assert(inner, body), assert(sig, body), "RSA2"))
    assert.matches("^<success>true</success>", inner)
  end))

  it("logged no error, alert or permission problem while serving", guarded(function()
    local log = error_log()
    for _, bad in ipairs { "[error]", "[crit]", "[alert]", "[emerg]", "Permission denied" } do
      assert.is_nil(log:find(bad, 1, true), "the error log has " .. bad)
    end
  end))

  it("accepts the resolver the README's command writes from /etc/resolv.conf", guarded(function()
    assert.is_truthy(helpers.read(ROOT .. "/examples/openresty/README.md"):find(RESOLVER_COMMAND, 1, true),
      "examples/openresty/README.md no longer has the resolver command")
    run("cd " .. q(prefix) .. " && " .. RESOLVER_COMMAND)
    local written = helpers.read(prefix .. "/run/resolver.conf")
    if run("grep -c '^nameserver' /etc/resolv.conf || true"):match("^0") then
      assert.are.equal("", written)
    else
      assert.matches("^resolver [^;]+ valid=300s ipv6=off;\n$", written)
    end
    local ok, out = nginx("-t")
    assert(ok, out)
    -- An IPv6 nameserver comes out in the brackets nginx needs.
    local fake = base .. "/resolv.conf"
    helpers.write(fake, "# comment\nnameserver 127.0.0.53\nnameserver ::1\nsearch example\n")
    local cmd = RESOLVER_COMMAND:gsub("/etc/resolv%.conf", fake)
    run("cd " .. q(prefix) .. " && " .. cmd)
    assert.are.equal("resolver 127.0.0.53 [::1] valid=300s ipv6=off;\n", helpers.read(prefix .. "/run/resolver.conf"))
    ok, out = nginx("-t")
    assert(ok, out)
    os.remove(prefix .. "/run/resolver.conf")
  end))
end)
