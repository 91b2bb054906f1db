-- Inbound notifications: the protocol vectors, then notifications signed
-- here by a fixture key acting as "Alipay" (the client's alipay_public_key
-- is its public half), refused in every way docs/protocol.md §3 names.
local helpers = require "helpers"
local alipay = require "alipay"
local notify = require "alipay.inbound.notify"
local signature = require "alipay.inbound.signature"
local beijing_time = require "alipay.util.beijing_time"
local core = alipay.core

local APP_ID = "2021000122671080"
local app_key_text = helpers.key_text("app_private_pkcs1.pem")
local app_pub_text = helpers.key_text("app_public.pem")
local alipay_key = assert(core.private_key(app_key_text)) -- "Alipay" in these specs
local NO_TRANSPORT = { request = function() error("notifications make no calls") end }

local function new_client(app_id, alipay_public_key)
  return assert(alipay.new { app_id = app_id or APP_ID, private_key = app_key_text,
                             alipay_public_key = alipay_public_key or app_pub_text, transport = NO_TRANSPORT })
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

local function payment(extra)
  local p = {
    app_id = APP_ID, charset = "utf-8", notify_id = "2024051300222174920064101234567890",
    notify_time = "2024-05-13 17:49:25", notify_type = "trade_status_sync",
    out_trade_no = "20240513174918-42", total_amount = "0.10", trade_status = "TRADE_SUCCESS",
    subject = "语雀空间 500人规模", version = "1.0", sign_type = "RSA2",
  }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- Signs params as Alipay does under `rule` and returns a new table.
local function signed(params, rule, alg)
  local p = copy(params)
  local content = core.sign_content(p, (rule or "V1") == "V1" and { exclude = { "sign_type" } } or nil)
  p.sign = alipay_key:sign(content, alg or p.sign_type or "RSA2")
  return p
end

local function form(params) return core.form_encode(params) end

-- The fixtures are dated 2024-05-13 17:49:25 (Beijing): these specs verify
-- them one minute later. Freshness itself is spec/unit/33.
local FIXTURE_NOW = beijing_time.parse("2024-05-13 17:50:25")
local function at_fixture_time(opts)
  local o = copy(opts or {})
  o.clock = o.clock or function() return FIXTURE_NOW end
  return o
end
local function verify(client, body, opts) return notify.verify(client, body, at_fixture_time(opts)) end
local function read_ngx(client, opts) return notify.read_ngx(client, at_fixture_time(opts)) end

-- Asserts a refusal and that its message is log-safe.
local function refused(reason, params, line, err)
  assert.is_nil(params)
  -- the convention: a one-line string, then the typed detail
  assert.is_string(line)
  assert.are.equal(tostring(err), line)
  assert.are.equal("notify", err.kind)
  assert.are.equal(reason, err.reason, tostring(err))
  assert.is_string(err.msg)
  assert.is_nil(err.msg:find("MII", 1, true), "a key in: " .. err.msg)
  assert.is_nil(err.msg:find("\n", 1, true), "a newline in: " .. err.msg)
  return err
end

describe("notify.verify: protocol vectors", function()
  for _, v in ipairs(helpers.vectors().notify) do
    it(v.name, function()
      local client = new_client(v.params.app_id, helpers.key_text(v.alipay_public_key))
      if v.content then
        local exclude = v.rule == "V1" and { exclude = { "sign_type" } } or nil
        assert.are.equal(v.content, core.sign_content(v.params, exclude))
      end
      if v.rule == "V1" then
        local sent = function() return beijing_time.parse(v.params.notify_time) + 1 end
        for _, body in ipairs { form(v.params), v.params } do
          local params, line, err = verify(client, body, { clock = sent })
          if v.valid then
            assert.is_table(params, tostring(err))
            assert.are.same(v.params, params)
          else
            -- a gateway message: notify_url refuses its kind before any
            -- signature check, and rule V1 itself does not verify it
            refused("misdirected", params, line, err)
            assert.is_false(err.verified)
            local detail = signature.check(client, v.params, "V1", { RSA2 = true }, "RSA2")
            assert.are.equal("forged", detail and detail.reason)
          end
        end
      end
    end)
  end

  it("the V2 message (a service-market order) is refused at notify_url, unverified", function()
    local v = helpers.vectors().notify[2]
    local client = new_client(v.params.app_id, helpers.key_text(v.alipay_public_key))
    local err = refused("misdirected", verify(client, form(v.params)))
    assert.is_false(err.verified)
  end)

  it("there is no rule V2 at notify_url: asking for it is misuse", function()
    local v = helpers.vectors().notify[1]
    local client = new_client(v.params.app_id, helpers.key_text(v.alipay_public_key))
    local ok, why = pcall(notify.verify, client, form(v.params), { rule = "V2" })
    assert.is_false(ok)
    assert.matches("app_gateway", why)
  end)
end)

describe("notify.verify", function()
  local client = new_client()

  it("accepts a notification signed with RSA2 and returns the decoded params and the raw ones", function()
    local p = signed(payment())
    local params, raw = verify(client, form(p))
    assert.are.same(p, params)
    assert.are.equal(params, raw) -- nothing was converted
  end)

  it("accepts legacy RSA (SHA1withRSA) only when opts.sign_types lists it", function()
    local p = signed(payment { sign_type = "RSA" })
    local migrating = { sign_types = { "RSA2", "RSA" } }
    assert.are.same(p, verify(client, form(p), migrating))
    refused("sign_type", verify(client, form(p)))
    -- an RSA2 signature labelled RSA is not Alipay's
    local relabelled = signed(payment())
    relabelled.sign_type = "RSA"
    refused("forged", verify(client, form(relabelled), migrating))
  end)

  it("decodes the form exactly once: +, %2B, %25 and UTF-8", function()
    local p = signed(payment { subject = "a b+c%d 100%", body = "x%2By" })
    -- built by hand: `+` is a space, %2B a plus, %25 a percent sign
    local body = "app_id=" .. APP_ID .. "&charset=utf-8&notify_id=" .. p.notify_id ..
      "&notify_time=2024-05-13+17%3A49%3A25&notify_type=trade_status_sync&out_trade_no=20240513174918-42" ..
      "&total_amount=0.10&trade_status=TRADE_SUCCESS&version=1.0&sign_type=RSA2" ..
      "&subject=a+b%2Bc%25d+100%25&body=x%252By&sign=" .. core.form_encode(p.sign)
    local params = assert(verify(client, body))
    assert.are.equal("a b+c%d 100%", params.subject)
    assert.are.equal("x%2By", params.body)
    -- the same body with UTF-8 percent-encoded
    local u = signed(payment { subject = "语雀空间 £ ✓" })
    assert.are.equal("语雀空间 £ ✓", assert(verify(client, form(u))).subject)
  end)

  it("verifies JSON values such as fund_bill_list over the string as received", function()
    local p = signed(payment { fund_bill_list = '[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]' })
    assert.are.equal(p.fund_bill_list, assert(verify(client, form(p))).fund_bill_list)
  end)

  it("leaves empty values out of the signed string and out of the params (raw keeps them)", function()
    local p = signed(payment { passback_params = "" })
    local params, raw = verify(client, form(p))
    assert.is_table(params)
    assert.is_nil(params.passback_params)
    assert.are.equal("", raw.passback_params)
  end)

  it("accepts an already decoded table (a return_url query), including nginx's bare flags", function()
    local p = signed(payment())
    assert.are.same(p, verify(client, p))
    local with_flag = copy(p)
    with_flag.flag = true -- ?flag without a value, as ngx.req.get_uri_args gives it
    local params, raw = verify(client, with_flag)
    assert.is_table(params)
    assert.is_nil(params.flag) -- unsigned: not handed over
    assert.are.equal("", raw.flag)
  end)

  it("refuses forgeries: one byte of a value or of the signature changed", function()
    local p = signed(payment())
    local tampered = copy(p)
    tampered.total_amount = "0.11"
    local err = refused("forged", verify(client, form(tampered)))
    assert.is_false(err.verified)
    local bad_sig = copy(p)
    local c = bad_sig.sign:sub(10, 10)
    bad_sig.sign = bad_sig.sign:sub(1, 9) .. (c == "A" and "B" or "A") .. bad_sig.sign:sub(11)
    refused("forged", verify(client, form(bad_sig)))
    local added = copy(p)
    added.extra = "1"
    refused("forged", verify(client, form(added)))
  end)

  it("refuses a signature by another key", function()
    local other = assert(core.private_key(helpers.key_text("app_private_pkcs8.pem")))
    if other:public_base64() == alipay_key:public_base64() then
      -- the fixtures hold one key pair in two formats: check against a stranger's public key
      local stranger = new_client(APP_ID, helpers.key_text("alipay_public_sandbox.pem"))
      refused("forged", verify(stranger, form(signed(payment()))))
    else
      local p = payment()
      p.sign = other:sign(core.sign_content(p, { exclude = { "sign_type" } }))
      refused("forged", verify(client, form(p)))
    end
  end)

  it("refuses unsigned notifications", function()
    refused("unsigned", verify(client, form(payment())))
    local p = payment()
    p.sign = ""
    refused("unsigned", verify(client, form(p)))
  end)

  it("refuses sign types other than RSA2 and RSA", function()
    for _, sign_type in ipairs { "MD5", "rsa2", "SM2", "HMAC-SHA256" } do
      local p = signed(payment { sign_type = sign_type }, "V1", "RSA2")
      local err = refused("unsigned", verify(client, form(p)))
      assert.matches("RSA2 or RSA", err.msg)
    end
    -- a hostile sign_type is not echoed into the message
    local p = signed(payment { sign_type = "<script>\nalert(1)" }, "V1", "RSA2")
    local err = refused("unsigned", verify(client, form(p)))
    assert.is_nil(err.msg:find("script", 1, true))
  end)

  it("refuses a notification without sign_type (Alipay always sends it)", function()
    local p = payment()
    p.sign_type = nil
    p = signed(p, "V1", "RSA2")
    local err = refused("unsigned", verify(client, form(p)))
    assert.matches("sign_type", err.msg)
  end)

  it("refuses a verified notification for another app_id, and says it was verified", function()
    local p = signed(payment { app_id = "2021000000000001" })
    local err = refused("foreign_app", verify(client, form(p)))
    assert.is_true(err.verified)
    assert.matches("2021000000000001", err.msg)
    local missing = payment()
    missing.app_id = nil
    refused("foreign_app", verify(client, form(signed(missing))))
  end)

  it("checks app_id, not auth_app_id (an ISV receives for a merchant's app)", function()
    local p = signed(payment { auth_app_id = "2021000000000009" })
    assert.is_table(verify(client, form(p)))
    local q = signed(payment { app_id = "2021000000000009", auth_app_id = APP_ID })
    refused("foreign_app", verify(client, form(q)))
  end)

  it("refuses malformed bodies", function()
    local p = signed(payment())
    local body = form(p)
    local err = refused("malformed", verify(client, body .. "&subject=again"))
    assert.matches("'subject' appears more than once", err.msg)
    refused("malformed", verify(client, body .. "&sign=" .. core.form_encode(p.sign)))
    refused("malformed", verify(client, body .. "&x=%zz"))
    refused("malformed", verify(client, body .. "&x=%4"))
    refused("malformed", verify(client, body .. "&x=100%"))
    refused("malformed", verify(client, body .. "&=v"))
    refused("malformed", verify(client, ""))
    refused("malformed", verify(client, "&&&"))
    refused("malformed", verify(client, {}))
    refused("malformed", verify(client, { app_id = { APP_ID, "2" } }))
    refused("malformed", verify(client, { app_id = 12 }))
    -- a hostile repeated field name is not echoed
    err = refused("malformed", verify(client, body .. "&%3Cb%3E%0A=1&%3Cb%3E%0A=2"))
    assert.is_nil(err.msg:find("<b>", 1, true))
  end)

  it("raises on misuse: a body that is neither a string nor a table, an unknown rule", function()
    assert.has_error(function() verify(client, nil) end)
    assert.has_error(function() verify(client, 42) end)
    assert.has_error(function() verify(client, "a=1", { rule = "V3" }) end)
    assert.has_error(function() verify(client, "a=1", { rule = "V2" }) end)
  end)

  it("never puts the body, the signature or a key in a message", function()
    local p = signed(payment { subject = "SECRET-SUBJECT" })
    local tampered = copy(p)
    tampered.total_amount = "9.99"
    local foreign = signed(payment { app_id = "2021000000000001", subject = "SECRET-SUBJECT" })
    local key_line = app_pub_text:match("MII%S+"):sub(1, 30)
    for _, body in ipairs { form(tampered), form(tampered) .. "&x=%zz", form(foreign),
                            form(signed(payment { subject = "SECRET-SUBJECT", sign_type = "MD5" }, "V1", "RSA2")) } do
      local _, _, err = verify(client, body)
      local text = tostring(err)
      assert.is_nil(text:find("SECRET", 1, true), text)
      assert.is_nil(text:find(p.sign:sub(1, 20), 1, true), text)
      assert.is_nil(text:find(key_line, 1, true), text)
    end
  end)
end)

describe("notify.verify: GBK notifications", function()
  local client = new_client()

  -- The notification Alipay would send in `charset`: values in its bytes,
  -- signed over those bytes.
  local function gbk_payment(charset, extra)
    local utf8 = payment(extra)
    utf8.charset = charset
    local p = {}
    for k, v in pairs(utf8) do p[k] = assert(core.iconv("UTF-8", "GBK", v)) end
    return signed(p), utf8
  end

  for _, charset in ipairs { "GBK", "gbk", "GB2312", "gb18030" } do
    it("verifies a " .. charset .. " body over the bytes as received and returns UTF-8", function()
      local p, utf8 = gbk_payment(charset)
      assert.are_not.equal(utf8.subject, p.subject)
      local params, raw = verify(client, form(p))
      assert.is_table(params, tostring(raw))
      assert.are.equal("语雀空间 500人规模", params.subject)
      assert.are.equal(p.subject, raw.subject)
      assert.are.same(p, raw)
      assert.are_not.equal(params, raw)
    end)
  end

  it("uses the iconv CLI's GBK bytes too", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/subject", "麦禾商城模版")
    local ok, out = helpers.run("iconv -f UTF-8 -t GBK '" .. dir .. "/subject'")
    assert(ok, out)
    local p = signed(payment { charset = "GBK", subject = out })
    assert.are.equal("麦禾商城模版", assert(verify(client, form(p))).subject)
    helpers.cleanup()
  end)

  it("refuses a GBK body whose signature covers the UTF-8 text (no conversion before verifying)", function()
    local p, utf8 = gbk_payment("GBK")
    p.sign = signed(utf8).sign
    refused("forged", verify(client, form(p)))
  end)

  it("refuses signed values that are not valid GBK, as malformed and verified", function()
    local p = signed(payment { charset = "GBK", subject = "ok\x81\x20" })
    local err = refused("malformed", verify(client, form(p)))
    assert.is_true(err.verified)
    assert.matches("subject", err.msg)
  end)

  it("leaves UTF-8 notifications untouched", function()
    local p = signed(payment { charset = "UTF-8" })
    local params, raw = verify(client, form(p))
    assert.are.equal(params, raw)
  end)
end)

describe("notify.verify: certificate mode", function()
  local base = new_client()
  local alipay_cert_sn = assert(core.cert_sn(helpers.key_text("alipay_cert.crt")))
  -- A certificate-mode configuration whose "Alipay certificate" has the
  -- fixture SN while its key is the spec's "Alipay" key.
  local client = { config = setmetatable({ cert_mode = true, alipay_cert_sn = alipay_cert_sn },
                                         { __index = base.config }) }

  it("accepts a notification that carries the configured alipay_cert_sn", function()
    local p = signed(payment { alipay_cert_sn = alipay_cert_sn })
    assert.are.same(p, verify(client, form(p)))
  end)

  it("accepts a notification without alipay_cert_sn", function()
    assert.is_table(verify(client, form(signed(payment()))))
  end)

  it("refuses another SN with reason cert_sn and names both", function()
    local other = "0123456789abcdef0123456789abcdef"
    local err = refused("cert_sn", verify(client, form(signed(payment { alipay_cert_sn = other }))))
    assert.matches(other, err.msg)
    assert.matches(alipay_cert_sn, err.msg)
    assert.matches("rotated", err.msg)
  end)

  it("ignores alipay_cert_sn in public-key mode", function()
    local p = signed(payment { alipay_cert_sn = "0123456789abcdef0123456789abcdef" })
    assert.is_table(verify(base, form(p)))
  end)
end)

describe("notify.verify: replays", function()
  local client = new_client()

  it("refuses the second identical notification, after accepting the first", function()
    local seen = notify.memory_store(100)
    local body = form(signed(payment()))
    assert.is_table(verify(client, body, { seen = seen }))
    local err = refused("replay", verify(client, body, { seen = seen }))
    assert.is_true(err.verified)
    -- another notify_id is new
    assert.is_table(verify(client, form(signed(payment { notify_id = "2" })), { seen = seen }))
  end)

  it("does not let forged, unsigned or foreign messages poison the store", function()
    local seen = notify.memory_store(100)
    local p = signed(payment())
    local forged = copy(p)
    forged.total_amount = "1000.00"
    refused("forged", verify(client, form(forged), { seen = seen }))
    local unsigned = copy(p)
    unsigned.sign = nil
    refused("unsigned", verify(client, form(unsigned), { seen = seen }))
    refused("foreign_app", verify(client, form(signed(payment { app_id = "2021000000000001" })),
                                         { seen = seen }))
    assert.is_table(verify(client, form(p), { seen = seen }))
    refused("replay", verify(client, form(p), { seen = seen }))
  end)

  it("lets a forgotten notification through again (processing failed, Alipay retries)", function()
    local seen = notify.memory_store(100)
    local body = form(signed(payment()))
    local params = assert(verify(client, body, { seen = seen }))
    seen:delete(notify.replay_key(params))
    assert.is_table(verify(client, body, { seen = seen }))
  end)

  it("does not deduplicate what has no notify_id and was let in (return_url)", function()
    local seen = notify.memory_store(100)
    local p = payment()
    p.notify_id = nil
    local body = form(signed(p))
    local opts = { seen = seen, allow_no_notify_id = true }
    assert.is_table(verify(client, body, opts))
    assert.is_table(verify(client, body, opts))
    assert.are.equal(0, seen.count)
  end)

  it("reports a failing store as retryable, not as a replay", function()
    local broken = { add = function() return nil, "disk full" end }
    local err = refused("store", verify(client, form(signed(payment())), { seen = broken }))
    assert.is_true(err.retryable)
  end)

  it("passes opts.ttl to the store", function()
    local got
    local store = { add = function(_, key, ttl) got = { key, ttl } return true end }
    verify(client, form(signed(payment())), { seen = store, ttl = 6000 })
    assert.are.same({ "notify_url:trade_status_sync:2024051300222174920064101234567890", 6000 }, got)
    verify(client, form(signed(payment())), { seen = store })
    assert.are.equal(notify.DEFAULT_TTL, got[2])
  end)
end)

describe("notify.memory_store", function()
  it("remembers keys until their ttl passes", function()
    local now = 1000
    local store = notify.memory_store(10, { clock = function() return now end })
    assert.is_true(store:add("a", 60))
    assert.is_false(store:add("a", 60))
    now = now + 59
    assert.is_false(store:add("a", 60))
    now = now + 1
    assert.is_true(store:add("a", 60))
    assert.is_true(store:add("forever"))
    now = now + 1e9
    assert.is_false(store:add("forever"))
  end)

  it("is bounded: when every key is live it refuses a new one instead of forgetting one", function()
    local now = 0
    local store = notify.memory_store(3, { clock = function() return now end })
    for _, k in ipairs { "a", "b", "c" } do assert.is_true(store:add(k, 60)) end
    local ok, err = store:add("d", 60)
    assert.is_nil(ok)
    assert.matches("full", err)
    assert.is_false(store:add("a", 60)) -- still remembered
    assert.are.equal(3, store.count)
    now = 60 -- all expired: room again
    assert.is_true(store:add("d", 60))
    assert.are.equal(1, store.count)
  end)

  it("stays bounded over many keys, expired ones making room", function()
    local now = 0
    local store = notify.memory_store(100, { clock = function() return now end })
    for i = 1, 10000 do
      now = i
      assert.is_true(store:add("k" .. i, 50))
    end
    assert.is_true(store.count <= 100)
    local n = 0
    for _ in pairs(store.index) do n = n + 1 end
    assert.are.equal(store.count, n)
    assert.is_false(store:add("k10000", 50))
    assert.is_true(store:add("k1", 50))
  end)

  it("deletes keys", function()
    local store = notify.memory_store(3)
    store:add("a", 60)
    store:add("b", 60)
    store:delete("a")
    store:delete("missing")
    assert.are.equal(1, store.count)
    assert.is_true(store:add("a", 60))
    store:delete("a")
    store:delete("b")
    assert.are.equal(0, store.count)
    assert.is_nil(store.head)
    assert.is_nil(store.tail)
  end)

  it("refuses a bound that is not a positive whole number", function()
    assert.has_error(function() notify.memory_store(0) end)
    assert.has_error(function() notify.memory_store(1.5) end)
    assert.has_error(function() notify.memory_store("10") end)
  end)
end)

describe("notify.shared_dict_store", function()
  -- ngx.shared.DICT's safe_add/delete contract (add would evict live keys
  -- when the dict is full; the store must not call it).
  local function fake_dict(fail)
    local d = { data = {} }
    function d.add() error("the store must use safe_add, which never evicts live keys") end
    function d:safe_add(key, value, ttl)
      if fail then return false, fail end
      if self.data[key] ~= nil then return false, "exists" end
      self.data[key] = { value, ttl }
      return true
    end
    function d:delete(key) self.data[key] = nil end
    return d
  end

  it("adds with the ttl and reports existing keys as seen", function()
    local dict = fake_dict()
    local store = notify.shared_dict_store(dict)
    assert.is_true(store:add("k", 30))
    assert.are.same({ true, 30 }, dict.data.k)
    assert.is_false(store:add("k", 30))
    store:delete("k")
    assert.is_true(store:add("k", 30))
  end)

  it("turns dict failures into nil, err; a full dict says to raise its size", function()
    local ok, err = notify.shared_dict_store(fake_dict("no memory")):add("k", 30)
    assert.is_nil(ok)
    assert.matches("full", err)
    assert.matches("lua_shared_dict", err)
    ok, err = notify.shared_dict_store(fake_dict("bad zone")):add("k", 30)
    assert.is_nil(ok)
    assert.matches("bad zone", err)
  end)
end)

describe("notify.read_ngx", function()
  local client = new_client()

  -- Enough of ngx for read_ngx_body.
  local function fake_ngx(req)
    return {
      var = { content_type = req.content_type, content_length = req.content_length },
      req = {
        get_method = function() return req.method or "POST" end,
        read_body = function() req.read = true end,
        get_body_data = function() return req.data end,
        get_body_file = function() return req.file end,
      },
    }
  end

  it("verifies a form POST", function()
    local p = signed(payment())
    local ngx = fake_ngx { content_type = "application/x-www-form-urlencoded; charset=utf-8", data = form(p) }
    assert.are.same(p, read_ngx(client, { ngx = ngx }))
  end)

  it("reads a body nginx buffered to a file", function()
    local p = signed(payment())
    local path = helpers.tmpdir() .. "/body"
    helpers.write(path, form(p))
    local ngx = fake_ngx { content_type = "Application/X-WWW-Form-Urlencoded", file = path }
    assert.are.same(p, read_ngx(client, { ngx = ngx }))
    helpers.cleanup()
  end)

  it("refuses other methods and content types without reading the body", function()
    local req = { method = "GET", content_type = "application/x-www-form-urlencoded" }
    refused("malformed", read_ngx(client, { ngx = fake_ngx(req) }))
    assert.is_nil(req.read)
    for _, ct in ipairs { "application/json", "text/plain", "multipart/form-data; boundary=x" } do
      req = { content_type = ct, data = "a=1" }
      refused("malformed", read_ngx(client, { ngx = fake_ngx(req) }))
      assert.is_nil(req.read)
    end
    refused("malformed", read_ngx(client, { ngx = fake_ngx {} }))
  end)

  it("refuses an empty body", function()
    local ngx = fake_ngx { content_type = "application/x-www-form-urlencoded" }
    refused("malformed", read_ngx(client, { ngx = ngx }))
  end)
end)
