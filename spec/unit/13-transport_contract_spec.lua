-- The transport contract (alipay.transport.contract): tier 1 request,
-- tier 2 submit/wait/pending all or none, checked when alipay.new is given
-- a custom transport; the client as the one way to a transport
-- (client:request/submit/wait/pending); and the request validator that
-- the curl and ngx transports share (alipay.transport.request).
-- No network: misuse raises before any I/O, and nginx is simulated.
local helpers = require "helpers"
local core = require "alipay.core"
local errors = require "alipay.errors"
local client_mod = require "alipay.client"
local contract = require "alipay.transport.contract"
local request = require "alipay.transport.request"
local curl = require "alipay.transport.curl"
local auto = require "alipay.transport.auto"
local ngx_transport = require "alipay.transport.ngx"

local APP_ID = "2021000122671080"
local THIS_FILE = "spec/unit/13%-transport_contract_spec.lua:%d+: "

local function fn() end

local function new_client(transport)
  return client_mod.new { app_id = APP_ID, private_key = helpers.key_text("app_private_pkcs1.pem"),
    alipay_public_key = helpers.key_text("app_public.pem"), gateway = "http://127.0.0.1:1/gateway.do",
    transport = transport }
end

-- Runs fn with a stand-in nginx in `phase` (alipay.runtime reads _G.ngx).
local function inside_nginx(phase, f)
  local saved = rawget(_G, "ngx")
  rawset(_G, "ngx", { get_phase = function() return phase end, socket = { tcp = fn },
                      now = os.time, update_time = fn, sleep = fn })
  local ok, err = pcall(f)
  rawset(_G, "ngx", saved)
  if not ok then error(err, 0) end
end

describe("the transport contract", function()
  it("tells tier 1 from tier 2, methods from the table or its metatable", function()
    assert.are.equal(1, contract.check { request = fn })
    assert.are.equal(2, contract.check { request = fn, submit = fn, wait = fn, pending = fn, close = fn })
    local object = setmetatable({}, { __index = { request = fn, submit = fn, wait = fn, pending = fn } })
    assert.are.equal(2, contract.check(object))
  end)

  it("names what is missing", function()
    local tier, msg = contract.check {}
    assert.is_nil(tier)
    local _
    assert.matches("no request function", msg, 1, true)
    assert.matches("request(req) -> res | nil, err, detail", msg, 1, true)
    _, msg = contract.check { request = "yes" }
    assert.matches("request is a string, not a function", msg, 1, true)
    _, msg = contract.check { request = fn, submit = fn }
    assert.matches("has submit but not wait, pending", msg, 1, true)
    assert.matches("wait(timeout_ms) -> ", msg, 1, true)
    _, msg = contract.check { request = fn, submit = fn, wait = fn, pending = 3 }
    assert.matches("has submit, wait but not pending (a number)", msg, 1, true)
    _, msg = contract.check { request = fn, close = true }
    assert.matches("close is a boolean, not a function", msg, 1, true)
  end)

  it("is kept by the built-in transports", function()
    local c = assert(curl.new {})
    assert.are.equal(2, contract.check(c))
    c:close()
    assert.are.equal(2, contract.check(assert(auto.new {})))
    inside_nginx("content", function()
      assert.are.equal(2, contract.check(assert(ngx_transport.new {})))
    end)
  end)

  it("is checked by alipay.new, with a config error naming the field and what is missing", function()
    local function refused(transport, pattern)
      local client, msg, err = new_client(transport)
      assert.is_nil(client)
      assert.are.same({ "config", "transport", false }, { err.kind, err.field, err.retryable })
      assert.matches(pattern, msg, 1, true)
    end
    refused(42, "a table with a request function")
    refused("carrier pigeon", "a table with a request function")
    refused({}, "no request function")
    refused({ request = fn, wait = fn }, "has wait but not submit, pending")
    refused({ request = fn, submit = fn, wait = fn }, "not pending")
    assert(new_client { request = fn })
    assert(new_client { request = fn, submit = fn, wait = fn, pending = fn })
  end)
end)

describe("the client, the one way to its transport", function()
  it("types a failure a custom transport gave as a string, keeping the string", function()
    local c = assert(new_client { request = function() return nil, "the pigeon got lost" end })
    local res, msg, err = c:request { url = "http://127.0.0.1:1/" }
    assert.is_nil(res)
    assert.are.equal("the pigeon got lost", msg)
    assert.are.same({ "transport", "other", true }, { err.kind, err.reason, err.retryable })
    -- and a typed error given as the second value
    local typed = errors.transport("timed out", "timeout")
    c = assert(new_client { request = function() return nil, typed end })
    res, msg, err = c:request { url = "http://127.0.0.1:1/" }
    assert.is_nil(res)
    assert.are.equal(typed, err)
    assert.are.equal(tostring(typed), msg)
    -- an answer passes as it is
    local answer = { status = 200, headers = {}, body = "" }
    c = assert(new_client { request = function() return answer end })
    assert.are.equal(answer, c:request { url = "http://127.0.0.1:1/" })
  end)

  it("refuses submit and wait with a request-only transport, and has nothing pending", function()
    local c = assert(new_client { request = fn })
    assert.are.equal(0, c:pending())
    local ok, err = pcall(function() c:submit { url = "http://127.0.0.1:1/" } end)
    assert.is_false(ok)
    assert.matches("^" .. THIS_FILE .. "client:submit: this client's transport has no submit/wait/pending", err)
    assert.has_error(function() c:wait(0) end)
  end)

  it("submits and waits through the transport, with every failure typed", function()
    local queue = {}
    local t = { n = 0 }
    function t.request() error("not used") end
    function t.submit(_, req)
      if req.url:find("refuse") then return nil, "no room" end
      t.n = t.n + 1
      queue[#queue + 1] = t.n
      return t.n
    end
    function t.wait()
      local out = {
        { id = queue[1], res = { status = 200, headers = {}, body = "ok" } },
        { id = queue[2], err = "dropped" },
        { id = queue[3], err = errors.transport("reset by peer", "reset") },
      }
      queue = {}
      return out
    end
    function t.pending() return #queue end
    local c = assert(new_client(t))
    for _ = 1, 3 do assert(c:submit { url = "http://127.0.0.1:1/" }) end
    assert.are.equal(3, c:pending())
    local id, msg, err = c:submit { url = "http://127.0.0.1:1/refuse" }
    assert.are.same({ "no room", "transport" }, { msg, err.kind })
    assert.is_nil(id)
    local done = c:wait(10)
    assert.are.same({ 1, 2, 3 }, { done[1].id, done[2].id, done[3].id })
    assert.are.equal("ok", done[1].res.body)
    assert.is_nil(done[1].err)
    assert.are.same({ "dropped", "transport", "other" }, { done[2].err, done[2].detail.kind, done[2].detail.reason })
    assert.are.equal("string", type(done[3].err))
    assert.are.same({ "transport", "reset" }, { done[3].detail.kind, done[3].detail.reason })
    assert.are.equal(0, c:pending())
  end)

  it("refuses every exchange once closed", function()
    local c = assert(new_client { request = fn, submit = fn, wait = fn, pending = fn })
    c:close()
    for _, call in ipairs {
      function() c:request { url = "http://x/" } end, function() c:submit { url = "http://x/" } end,
      function() c:wait(0) end, function() c:pending() end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("^" .. THIS_FILE .. "this alipay client has been closed", err)
    end
  end)

  -- Signing, verification and error typing live in the client: code above
  -- it (messaging, campaigns, the doctor) calls client:request or
  -- client:submit/wait, never the transport behind the client's back.
  it("is the only caller of a client's transport in the library", function()
    local ok, out = helpers.run("cd lua && grep -rlE '\\.transport:(request|submit|wait|pending)\\b' alipay"
      .. " | grep -v '^alipay/client.lua$'")
    assert.are.equal("", ok and out or "", "these modules call client.transport directly:\n" .. out)
    -- the check can fail
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/x.lua", "local res = self.client.transport:request(req)\n")
    ok = helpers.run("grep -qE '\\.transport:(request|submit|wait|pending)\\b' " .. dir .. "/x.lua")
    assert.is_true(ok)
    helpers.cleanup()
  end)
end)

describe("the request validator curl and ngx share", function()
  local url = "http://127.0.0.1:1/"
  local BAD = {
    { "http: field 'url' is required", {} },
    { "http: field 'url' must be a string, got number", { url = 5 } },
    { "http: field 'url' contains a NUL byte", { url = url .. "\0" } },
    { "http: field 'method' is not an HTTP method", { url = url, method = "GE T" } },
    { "http: field 'method' is not an HTTP method", { url = url, method = "" } },
    { "http: field 'body' must be a string, got table", { url = url, body = {} } },
    { "http: field 'timeout_ms' must be an integer from 1 to 86400000", { url = url, timeout_ms = 0 } },
    { "http: field 'timeout_ms' must be an integer from 1 to 86400000", { url = url, timeout_ms = 1.5 } },
    { "http: field 'timeout_ms' must be a number, got string", { url = url, timeout_ms = "5" } },
    { "http: field 'headers' must be a table", { url = url, headers = "Accept: */*" } },
    { "http: header names must be strings", { url = url, headers = { "x" } } },
    { "http: header values must be strings or numbers", { url = url, headers = { Accept = true } } },
    { "http: invalid header name", { url = url, headers = { ["Bad Name"] = "x" } } },
    { "http: invalid header value (line break or NUL)", { url = url, headers = { X = "a\r\nInjected: 1" } } },
    { "http: invalid header value (line break or NUL)", { url = url, headers = { X = "a\0b" } } },
  }

  -- The message of what f raised, and whether it blamed this file's line.
  local function raised(f)
    local ok, err = pcall(f)
    assert.is_false(ok, "no error")
    err = tostring(err)
    local blamed = err:find("^" .. THIS_FILE) ~= nil
    return (err:gsub("^[^:]+:%d+: ", "")), blamed
  end

  it("refuses the same misuse with the same message in curl, ngx and the C engine", function()
    local c = assert(curl.new {})
    local engine = assert(core.http {})
    inside_nginx("content", function()
      local n = assert(ngx_transport.new {})
      for _, case in ipairs(BAD) do
        local want, req = case[1], case[2]
        for name, f in pairs {
          -- (no tail calls: the error must find this file's frame)
          ["curl request"] = function() local _ = c:request(req) end,
          ["curl submit"] = function() local _ = c:submit(req) end,
          ["ngx request"] = function() local _ = n:request(req) end,
          ["ngx submit"] = function() local _ = n:submit(req) end,
          ["request.check"] = function() local _ = request.check(req, 1000, 1) end, -- 1: blames this line
        } do
          local msg, blamed = raised(f)
          assert.are.equal(want, msg, name)
          assert.is_true(blamed, name .. " blames its caller: " .. msg)
        end
        local msg = raised(function()
          -- the engine checks headers only when it builds the transfer
          local id = engine:submit(req)
          if id then engine:wait(0) end
        end)
        assert.are.equal(want, msg, "C engine")
      end
      assert.are.equal("http: the request must be a table", (raised(function() return n:request("x") end)))
      assert.are.equal("http: the request must be a table", (raised(function() return c:request("x") end)))
    end)
    assert.are.equal(0, c:pending())
    c:close()
    engine:close()
  end)

  it("gives both transports the same defaults and limits", function()
    assert.are.same({ timeout_ms = 15000, connect_timeout_ms = 5000, max_response_bytes = 4194304,
                      user_agent = "lua-alipay" }, request.options {})
    inside_nginx("content", function()
      local n = assert(ngx_transport.new {})
      assert.are.same({ 15000, 5000, 4194304, "lua-alipay" },
        { n.timeout_ms, n.connect_timeout_ms, n.max_response_bytes, n.user_agent })
      n = assert(ngx_transport.new { timeout_ms = 2000, user_agent = "shop/1" })
      assert.are.same({ 2000, "shop/1" }, { n.timeout_ms, n.user_agent })
      assert.has_error(function() ngx_transport.new { timeout_ms = 1.5 } end,
        "transport: timeout_ms must be an integer from 1 to 86400000")
    end)
    assert.has_error(function() curl.new { max_response_bytes = 0 } end,
      "transport: max_response_bytes must be an integer from 1 to 1099511627776")
    assert.has_error(function() curl.new { user_agent = "a\r\nX-Injected: 1" } end,
      "transport: user_agent must be a string without line breaks or NUL")
    assert.are.equal(15000, assert(curl.new {}).timeout_ms)
  end)
end)
