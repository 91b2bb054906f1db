-- The sandbox talks back (alipay.sandbox.callback): it POSTs signed
-- notifications and app-gateway messages to endpoints this spec starts on
-- 127.0.0.1, in a test nginx that serves the OpenResty example's own
-- handlers (examples/openresty/handlers: the client's alipay.inbound
-- notify and app gateway) and a few recording endpoints. Each signature is
-- also checked by the openssl command line over a string to sign this spec
-- builds itself from the raw body the endpoint received. Retries run on
-- Alipay's schedule scaled down (time_scale); nothing here depends on how
-- fast the machine is, only on the order of events.
local helpers = require "helpers"
local cjson = require "cjson"
local alipay = require "alipay"
local sandbox = require "alipay.sandbox"
local runner = require "alipay.sandbox.nginx"

local ROOT = helpers.cwd()
local APP_ID = "2021000122671080"
local LISTED = { "2088000000000001", "2088000000000002" }
local NEWCOMER = "2088000000000099"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function nginx_string(s)
  return '"' .. s:gsub("[\\\"]", "\\%0") .. '"'
end

-- The endpoints under test. /record/<name> keeps every body it receives
-- (shared dict: count and bodies) and answers by plan: "success", or
-- "fail" until the attempt given in ?until=N, or a long noisy answer.
local ENDPOINTS = [==[
local cjson = require "cjson"
local M = {}
local dict = ngx.shared.t27

function M.record()
  ngx.req.read_body()
  local name = ngx.var.uri:match("^/record/([%w_]+)$") or "none"
  local n = dict:incr(name .. ":n", 1, 0)
  dict:set(name .. ":" .. n, ngx.req.get_body_data() or "")
  dict:set(name .. ":ct:" .. n, ngx.var.content_type or "")
  local plan = ngx.var.arg_plan or "success"
  if plan == "noise" then
    return ngx.print(("\1\2<html>" .. ("x"):rep(100) .. "\n"):rep(50))
  end
  local upto = tonumber(ngx.var.arg_until or "1")
  if plan == "fail" then return ngx.print("fail") end
  ngx.print(n >= upto and "success" or "fail")
end

function M.seen()
  local name = ngx.var.arg_name
  local n = tonumber(ngx.var.arg_n)
  ngx.header["Content-Type"] = "application/json"
  if not n then return ngx.print(cjson.encode({ count = dict:get(name .. ":n") or 0 })) end
  ngx.print(cjson.encode({ body = dict:get(name .. ":" .. n), content_type = dict:get(name .. ":ct:" .. n) }))
end

return M
]==]

local function start_endpoints(example_settings)
  return assert(runner.start {
    lua = true,
    conf = function(port, _, prefix)
      helpers.write(prefix .. "/t27_endpoints.lua", ENDPOINTS)
      helpers.write(prefix .. "/example.json", cjson.encode(example_settings))
      local lua_path = table.concat({ ROOT .. "/lua/?.lua", ROOT .. "/lua/?/init.lua",
        ROOT .. "/examples/openresty/?.lua", prefix .. "/?.lua" }, ";") .. ";;"
      return table.concat({
        "  lua_package_path " .. nginx_string(lua_path) .. ";",
        "  lua_package_cpath " .. nginx_string(helpers.nginx_lua_cpath()) .. ";",
        "  lua_shared_dict t27 1m;",
        "  lua_shared_dict alipay_notify_seen 1m;",
        "  lua_shared_dict alipay_gateway_seen 1m;",
        "  lua_shared_dict alipay_followers 1m;",
        "  lua_socket_log_errors off;",
        "  init_by_lua_block { require('handlers.client').load(" .. ("%q"):format(prefix .. "/example.json") .. ") }",
        "  init_worker_by_lua_block { require('handlers.client').init() }",
        "  server {",
        ("    listen 127.0.0.1:%d;"):format(port),
        "    location = /alipay/notify { content_by_lua_block { require('handlers.notify').serve() } }",
        "    location = /alipay/gateway { content_by_lua_block { require('handlers.gateway').serve() } }",
        "    location = /followers {",
        "      content_by_lua_block { ngx.print(ngx.shared.alipay_followers:get(ngx.var.arg_user) or 'none') } }",
        "    location /record/ { content_by_lua_block { require('t27_endpoints').record() } }",
        "    location = /seen { content_by_lua_block { require('t27_endpoints').seen() } }",
        "  }",
      }, "\n")
    end,
  })
end

-- ---- this spec's own reading of what was sent ----

local function url_decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- A form body decoded here, without alipay.core.
local function decode_form(body)
  local fields = {}
  for pair in body:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    fields[url_decode(k)] = url_decode(v)
  end
  return fields
end

-- Alipay's string to sign, built here: sorted names, sign (and under V1
-- sign_type) left out, empty values left out.
local function string_to_sign(fields, rule)
  local names = {}
  for k, v in pairs(fields) do
    if k ~= "sign" and not (rule == "V1" and k == "sign_type") and v ~= "" then names[#names + 1] = k end
  end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. fields[k] end
  return table.concat(parts, "&")
end

describe("the sandbox talks back", function()
  local sb, srv, http, dir, client, state_file

  local function url(path) return ("http://127.0.0.1:%d%s"):format(srv.port, path) end

  local function get_json(path)
    local res = assert(http:request { method = "GET", url = url(path) })
    assert.are.equal(200, res.status, res.body)
    return cjson.decode(res.body)
  end

  local function received(name, n)
    return get_json("/seen?name=" .. name .. "&n=" .. n)
  end

  -- The openssl command line's verdict on sign over content, with the
  -- sandbox's public key: "Verified OK" or "Verification failure".
  local function openssl_verify(content, sign, sign_type)
    helpers.write(dir .. "/content.txt", content)
    helpers.write(dir .. "/sig.b64", sign)
    helpers.write(dir .. "/pub.pem", sb.alipay_public_key)
    local ok, out = helpers.run("openssl base64 -d -A -in " .. q(dir .. "/sig.b64") .. " -out " .. q(dir .. "/sig.bin"))
    assert(ok, out)
    local _, verdict = helpers.run("openssl dgst -" .. (sign_type == "RSA" and "sha1" or "sha256") .. " -verify "
      .. q(dir .. "/pub.pem") .. " -signature " .. q(dir .. "/sig.bin") .. " " .. q(dir .. "/content.txt"))
    -- openssl writes the verdict to stdout, the error stack to stderr (first).
    return verdict:match("Verified OK") or verdict:match("Verification failure") or verdict
  end

  local function cli(args)
    local ok, out = helpers.run("cd " .. q(ROOT) .. " && bin/alipay sandbox " .. args .. " --state " .. q(state_file))
    return ok, out
  end

  setup(function()
    sb = assert(sandbox.start {
      app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
      seed = { followers = { list = { { user_id = LISTED[1] }, { user_id = LISTED[2] } } } },
    })
    dir = helpers.tmpdir()
    srv = start_endpoints {
      app_id = APP_ID, private_key_file = ROOT .. "/spec/fixtures/keys/app_private_pkcs1.pem",
      alipay_public_key = sb.alipay_public_key, gateway = sb.gateway, timeout_ms = 5000, example = {},
    }
    http = assert(alipay.core.http { timeout_ms = 30000 })
    client = assert(alipay.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
      alipay_public_key = sb.alipay_public_key, gateway = sb.gateway, timeout_ms = 10000 })
    state_file = dir .. "/sandbox.json"
    helpers.write(state_file, cjson.encode(sb:describe()))
  end)

  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  -- The error logs' tails with a failure.
  local function guarded(fn)
    return function()
      local ok, err = pcall(fn)
      if not ok then
        error(tostring(err) .. "\n--- sandbox log ---\n" .. sb:error_log():sub(-2000) .. "\n--- endpoint log ---\n"
          .. srv:error_log():sub(-2000), 0)
      end
    end
  end

  describe("notifications (rule V1)", function()
    it("are accepted by the example's notify endpoint (alipay.inbound.notify) on the first attempt",
      guarded(function()
        local record = assert(sb:notify(url("/alipay/notify"), { out_trade_no = "SO-1001",
          trade_no = "2024051322001400001", trade_status = "TRADE_SUCCESS", total_amount = "88.00" }))
        assert.are.equal("delivered", record.state)
        assert.are.equal(1, #record.attempts)
        assert.are.equal(200, record.attempts[1].status)
        assert.are.equal("success", record.attempts[1].answer)
        assert.are.equal("V1", record.rule)
        assert.are.equal("SO-1001", record.params.out_trade_no)
      end))

    it("are refused by the example when they are for another app: fail, and no attempt is left", guarded(function()
      local record = assert(sb:notify(url("/alipay/notify"), { app_id = "2021000000000000", out_trade_no = "SO-2" },
        { delays = {} }))
      assert.are.equal("failed", record.state)
      assert.are.equal(1, #record.attempts)
      assert.are.equal("fail", record.attempts[1].answer)
    end))

    it("verify with the openssl command line over the string to sign built here", guarded(function()
      local record = assert(sb:notify(url("/record/v1"), { out_trade_no = "SO-3", subject = "鞋 & 袜 = 2+2%",
        total_amount = "9.99" }))
      assert.are.equal("delivered", record.state)
      local got = received("v1", 1)
      assert.are.equal(record.body, got.body)
      assert.matches("^application/x%-www%-form%-urlencoded", got.content_type)
      local fields = decode_form(got.body)
      assert.are.equal("鞋 & 袜 = 2+2%", fields.subject)
      assert.are.equal("RSA2", fields.sign_type)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", fields.notify_time)
      for _, name in ipairs { "notify_id", "notify_type", "app_id", "charset", "version" } do
        assert.is_string(fields[name], name)
      end
      local content = string_to_sign(fields, "V1")
      assert.are.equal("Verified OK", openssl_verify(content, fields.sign, "RSA2"))
      -- The check can fail: the V2 string (sign_type kept) or one changed byte do not verify.
      assert.are.equal("Verification failure", openssl_verify(string_to_sign(fields, "V2"), fields.sign, "RSA2"))
      assert.are.equal("Verification failure", openssl_verify((content:gsub("9%.99", "0.01")), fields.sign, "RSA2"))
    end))

    it("are repeated until the endpoint answers success: fail, fail, success is 3 attempts", guarded(function()
      local record = assert(sb:notify(url("/record/flaky?until=3"), { out_trade_no = "SO-4" }, { time_scale = 0.001 }))
      assert.are.equal("retrying", record.state)
      assert.are.equal(1, #record.attempts)
      assert.are.same({ 0.24, 0.6, 0.6, 3.6, 7.2, 21.6, 54 }, record.schedule_s)
      assert.are.equal(8, record.max_attempts)
      local final = assert(sb:wait_callback(record.id))
      assert.are.equal("delivered", final.state)
      assert.are.equal(3, #final.attempts)
      assert.are.same({ "fail", "fail", "success" },
        { final.attempts[1].answer, final.attempts[2].answer, final.attempts[3].answer })
      -- The waits follow the scaled schedule (at least; a timer is never early).
      assert.is_true(final.attempts[2].at_ms - final.attempts[1].at_ms >= 240 - 5)
      assert.is_true(final.attempts[3].at_ms - final.attempts[2].at_ms >= 600 - 5)
      -- The endpoint saw exactly three posts of the same message (same notify_id).
      assert.are.equal(3, get_json("/seen?name=flaky").count)
      local ids = {}
      for n = 1, 3 do ids[n] = decode_form(received("flaky", n).body).notify_id end
      assert.are.equal(ids[1], ids[2])
      assert.are.equal(ids[1], ids[3])
    end))

    it("give up after the last attempt of the schedule", guarded(function()
      local record = assert(sb:notify(url("/record/never?plan=fail"), {}, { delays = { 0.05, 0.05 }, wait = true }))
      assert.are.equal("failed", record.state)
      assert.are.equal(3, #record.attempts)
      assert.are.equal(3, get_json("/seen?name=never").count)
    end))

    it("record an endpoint's answer truncated, control characters blanked", guarded(function()
      local record = assert(sb:notify(url("/record/noisy?plan=noise"), {}, { delays = {} }))
      local a = record.attempts[1]
      assert.are.equal(200, a.status)
      assert.is_true(a.truncated)
      assert.is_true(#a.answer <= 256)
      assert.is_true(a.answer_bytes > 5000)
      assert.is_nil(a.answer:find("%c"))
      assert.are.equal("failed", record.state)
    end))

    it("record an endpoint that does not answer, and refuse URLs the sandbox cannot reach", guarded(function()
      -- A port this spec had a server on, stopped: nothing answers there now.
      local gone = assert(runner.start { conf = function(port)
        return ("server { listen 127.0.0.1:%d; return 200 'success'; }"):format(port)
      end })
      local port = gone.port
      gone:stop()
      local record = assert(sb:notify(("http://127.0.0.1:%d/nothing"):format(port), {}, { delays = {} }))
      assert.are.equal("failed", record.state)
      -- Refused, as a rule; another process of this machine may have taken
      -- the port since, and then it does not answer HTTP: either is a
      -- failed attempt with the reason recorded.
      local why = record.attempts[1].error
      assert.is_truthy(why:match("^connect: ") or why:match("sent no HTTP answer"), why)
      for _, bad in ipairs { "https://127.0.0.1/x", "http://example.com/x" } do
        local r, err = sb:notify(bad, {})
        assert.is_nil(r)
        assert.matches("notify: url: ", err)
      end
    end))

    it("refuse a schedule they cannot keep, before sending anything", guarded(function()
      local before = get_json("/seen?name=refused").count
      for _, case in ipairs {
        { { time_scale = 2 }, "time_scale" }, { { time_scale = 0 }, "time_scale" },
        { { delays = { -1 } }, "delays%[1%]" }, { { delays = { 1, "x" } }, "delays%[2%]" },
        { { timeout_ms = 0 }, "timeout_ms" }, { { wait = "yes" }, "wait" }, { { sign_type = "MD5" }, "sign_type" },
      } do
        local r, err = sb:notify(url("/record/refused"), {}, case[1])
        assert.is_nil(r)
        assert.matches("HTTP 400: notify: " .. case[2], err)
      end
      assert.are.equal(before, get_json("/seen?name=refused").count)
    end))
  end)

  describe("app-gateway messages (rule V2)", function()
    it("the gateway check is answered by the example's gateway with the envelope signed by the app's key",
      guarded(function()
        local record = assert(sb:event(url("/alipay/gateway"), { type = "verifygw" }))
        assert.are.equal("check", record.kind)
        assert.are.equal("verified", record.state)
        assert.are.same({ envelope = true, success = true, signature = true, public_key = true }, record.check)
        -- An endpoint that answers "success" to a check has not passed it.
        local wrong = assert(sb:event(url("/record/check"), { type = "verifygw" }))
        assert.are.equal("failed", wrong.state)
        assert.is_false(wrong.check.envelope)
      end))

    it("a follow adds a follower the sandbox then lists; the example records it; unfollow removes it",
      guarded(function()
        sb:reset()
        local before = assert(client:execute("alipay.open.public.follow.batchquery", {}))
        assert.are.equal("2", tostring(before.count))
        local record = assert(sb:event(url("/alipay/gateway"), { type = "follow", user_id = NEWCOMER }))
        assert.are.equal("delivered", record.state)
        assert.are.equal("added", record.follower)
        assert.are.equal("follow", record.event)
        local res = assert(http:request { method = "GET", url = url("/followers?user=" .. NEWCOMER) })
        assert.are.equal("follow", res.body)
        local after = assert(client:execute("alipay.open.public.follow.batchquery", {}))
        assert.are.equal("3", tostring(after.count))
        assert.are.equal(NEWCOMER, after.user_id_list[3])
        local query = assert(client:execute("alipay.open.public.user.follow.query", { user_id = NEWCOMER }))
        assert.are.equal("T", query.is_follow)

        local gone = assert(sb:event(url("/alipay/gateway"), { type = "unfollow", user_id = NEWCOMER }))
        assert.are.equal("removed", gone.follower)
        assert.are.equal("delivered", gone.state)
        assert.are.equal("unfollow", http:request { method = "GET", url = url("/followers?user=" .. NEWCOMER) }.body)
        query = assert(client:execute("alipay.open.public.user.follow.query", { user_id = NEWCOMER }))
        assert.are.equal("F", query.is_follow)
        local again = assert(sb:event(url("/alipay/gateway"), { type = "unfollow", user_id = NEWCOMER }))
        assert.are.equal("unchanged", again.follower)
      end))

    it("a Life Account event verifies with openssl over its V2 string (sign_type signed)", guarded(function()
      local record = assert(sb:event(url("/record/v2"), { type = "click", user_id = LISTED[1], action_param = "m1" }))
      assert.are.equal("delivered", record.state)
      local fields = decode_form(received("v2", 1).body)
      assert.are.equal("alipay.mobile.public.message.notify", fields.service)
      assert.matches("<EventType><!%[CDATA%[click%]%]></EventType>", fields.biz_content)
      assert.matches("<FromUserId><!%[CDATA%[" .. LISTED[1] .. "%]%]></FromUserId>", fields.biz_content)
      assert.are.equal("Verified OK", openssl_verify(string_to_sign(fields, "V2"), fields.sign, "RSA2"))
      assert.are.equal("Verification failure", openssl_verify(string_to_sign(fields, "V1"), fields.sign, "RSA2"))
    end))

    it("refuses an event it does not know", guarded(function()
      local r, err = sb:event(url("/alipay/gateway"), { type = "subscribe", user_id = "1" })
      assert.is_nil(r)
      assert.matches("event%.type", err)
    end))
  end)

  describe("the record and the command line", function()
    it("lists every callback under GET /__sandbox/callbacks: url, body, attempts, state", guarded(function()
      local record = assert(sb:notify(url("/record/listed"), { out_trade_no = "SO-9" }))
      local list = assert(sb:callbacks())
      local found
      for _, r in ipairs(list) do
        if r.id == record.id then found = r end
      end
      assert.is_table(found)
      assert.are.equal(url("/record/listed"), found.url)
      assert.are.equal(record.body, found.body)
      assert.are.equal("delivered", found.state)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", found.attempts[1].at)
      local res = assert(http:request { method = "GET", url = sb.admin .. "/callbacks?id=" .. record.id })
      assert.are.equal(200, res.status)
      assert.are.equal(record.id, cjson.decode(res.body).id)
      local none = assert(http:request { method = "GET", url = sb.admin .. "/callbacks?id=cb-999999" })
      assert.are.equal(404, none.status)
    end))

    it("`alipay sandbox notify` prints what was sent and what the endpoint answered", guarded(function()
      local ok, out = cli("notify --to " .. q(url("/alipay/notify")) .. " --param out_trade_no=SO-CLI"
        .. " --param trade_status=TRADE_SUCCESS")
      assert(ok, out)
      assert.matches("notification %(rule V1%) to " .. url("/alipay/notify"):gsub("%p", "%%%0"), out)
      assert.matches("sent: [^\n]*out_trade_no=SO%-CLI", out)
      assert.matches('attempt 1 at [^\n]*HTTP 200, answered "success"', out)
      assert.matches("state: delivered", out)
      ok, out = cli("notify --json --to " .. q(url("/record/cli?plan=fail")) .. " --delays ''")
      assert.is_false(ok) -- exit 1: the endpoint did not accept it
      local record = cjson.decode(out)
      assert.are.equal("failed", record.state)
      assert.are.equal("fail", record.attempts[1].answer)
    end))

    it("`alipay sandbox event` sends a follow and a gateway check; `callbacks --id` shows one", guarded(function()
      local ok, out = cli("event --json --to " .. q(url("/alipay/gateway"))
        .. " --event follow --user-id 2088000000000077")
      assert(ok, out)
      local record = cjson.decode(out)
      assert.are.equal("delivered", record.state)
      assert.are.equal("added", record.follower)
      ok, out = cli("event --to " .. q(url("/alipay/gateway")) .. " --event verifygw")
      assert(ok, out)
      assert.matches("gateway check %(rule V2%)", out)
      assert.matches("app signature true", out)
      assert.matches("state: verified", out)
      ok, out = cli("callbacks --json --id " .. record.id)
      assert(ok, out)
      assert.are.equal(record.id, cjson.decode(out).id)
      ok, out = cli("event --to " .. q(url("/alipay/gateway")) .. " --event follow")
      assert.is_false(ok)
      assert.matches("%-%-user%-id", out)
    end))
  end)
end)
