-- core.http against a real server: Debian's nginx with the Lua module on
-- loopback, started by alipay.sandbox.nginx. No test leaves the machine.
local helpers = require "helpers"
local core = require "alipay.core"
local runner = require "alipay.sandbox.nginx"

-- The locations every test talks to; the TLS server serves the same ones.
local LOCATIONS = [[
    location = /echo {
      content_by_lua_block {
        ngx.req.read_body()
        local body = ngx.req.get_body_data() or ""
        local h = ngx.req.get_headers()
        ngx.header["X-Method"] = ngx.req.get_method()
        ngx.header["X-Got-Test"] = h["x-test"]
        ngx.header["X-Got-Expect"] = h["expect"] or "none"
        ngx.header["X-Mixed-Case"] = "yes"
        ngx.header["X-Repeated"] = { "a", "b" }
        ngx.print(body)
      }
    }
    location = /headers {
      content_by_lua_block {
        local lines = {}
        for name, value in pairs(ngx.req.get_headers()) do
          if type(value) == "table" then value = table.concat(value, ",") end
          lines[#lines + 1] = name .. ": " .. value
        end
        table.sort(lines)
        ngx.print(table.concat(lines, "\n"))
      }
    }
    location = /status {
      content_by_lua_block {
        ngx.status = tonumber(ngx.var.arg_code)
        ngx.print("status ", ngx.var.arg_code)
      }
    }
    location = /connection {
      content_by_lua_block { ngx.print(ngx.var.connection) }
    }
    location = /sized {
      content_by_lua_block {
        local n = tonumber(ngx.var.arg_n)
        ngx.header["Content-Length"] = n
        ngx.print(string.rep("x", n))
      }
    }
    location = /chunked {
      content_by_lua_block {
        for _ = 1, tonumber(ngx.var.arg_n) / 1000 do
          ngx.print(string.rep("y", 1000))
          ngx.flush(true)
        end
      }
    }
    location = /sleep {
      content_by_lua_block {
        ngx.sleep(tonumber(ngx.var.arg_ms) / 1000)
        ngx.print("slept")
      }
    }
    location = /concurrent {
      content_by_lua_block {
        -- Counts requests in the handler at once, per key; one worker and no
        -- yield between the reads and writes, so no race.
        local d, key = ngx.shared.concurrency, ngx.var.arg_key
        local now = d:incr(key .. ":now", 1, 0)
        if now > (d:get(key .. ":max") or 0) then d:set(key .. ":max", now) end
        ngx.sleep(tonumber(ngx.var.arg_ms) / 1000)
        d:incr(key .. ":now", -1)
        ngx.print(d:get(key .. ":max"))
      }
    }
    location = /close { return 444; }
    location = /truncated {
      content_by_lua_block {
        ngx.header["Content-Length"] = 1000
        ngx.print(string.rep("z", 100))
        ngx.flush(true)
        ngx.exit(ngx.ERROR)
      }
    }
    location = /request-line {
      content_by_lua_block { ngx.print(ngx.var.request) }
    }
]]

local function server_conf(port, tls_port, _, tls)
  local parts = {
    "lua_shared_dict concurrency 1m;",
    -- Request bodies stay in memory, where ngx.req.get_body_data() sees them.
    "client_body_buffer_size 1m;",
    "client_max_body_size 1m;",
    ("server {\n    listen 127.0.0.1:%d;\n%s  }"):format(port, LOCATIONS),
  }
  if tls then
    -- 127.0.0.2 is outside the certificate's names: host verification.
    parts[#parts + 1] = ([[server {
    listen 127.0.0.1:%d ssl;
    listen 127.0.0.2:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
%s  }]]):format(tls_port, tls_port, tls.cert_file, tls.key_file, LOCATIONS)
  end
  return table.concat(parts, "\n")
end

local srv, base, tls_base, engine

local function url(path) return base .. path end

-- Drains every submitted transfer; returns results by id and the number of
-- wait() calls it took.
local function wait_all(e, timeout_ms)
  local by_id, rounds = {}, 0
  while e:pending() > 0 do
    rounds = rounds + 1
    assert(rounds < 100, "wait loop does not converge")
    for _, r in ipairs(e:wait(timeout_ms or 5000)) do by_id[r.id] = r end
  end
  return by_id, rounds
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

lazy_setup(function()
  local err
  srv, err = runner.start { conf = server_conf, tls = true, lua = true }
  assert(srv, err)
  base = "http://127.0.0.1:" .. srv.port
  tls_base = "https://127.0.0.1:" .. srv.tls_port
  engine = assert(core.http { timeout_ms = 5000 })
end)

lazy_teardown(function()
  if engine then engine:close() end
  runner.stop_all()
  helpers.cleanup()
end)

describe("core.http engine", function()
  it("is a userdata with a name, closed idempotently", function()
    local e = assert(core.http())
    assert.matches("^alipay%.http %(0 pending%)$", tostring(e))
    e:close()
    e:close()
    assert.matches("closed", tostring(e))
    assert.has_error(function() e:request { url = url("/echo") } end,
      "the http engine has been closed")
    assert.has_error(function() e:pending() end)
    -- __close and __gc share close(): a second call is harmless.
    getmetatable(e).__close(e)
    getmetatable(e).__gc(e)
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.http("x") end)
    assert.has_error(function() core.http { timeout_ms = "1000" } end)
    assert.has_error(function() core.http { timeout_ms = 0 } end)
    assert.has_error(function() core.http { max_response_bytes = 1.5 } end)
    assert.has_error(function() core.http { ca_file = 42 } end)
    assert.has_error(function() engine:request() end)
    assert.has_error(function() engine:request {} end, "http: field 'url' is required")
    assert.has_error(function() engine:request { url = 1 } end)
    assert.has_error(function() engine:request { url = url("/echo"), method = "GE T" } end)
    assert.has_error(function() engine:request { url = url("/echo"), headers = "x" } end)
    assert.has_error(function() engine:request { url = url("/echo"), headers = { ["Bad Name"] = "v" } } end)
    assert.has_error(function() engine:submit { url = url("/echo"), timeout_ms = -1 } end)
    assert.has_error(function() engine:wait(-1) end)
  end)

  it("never echoes a header value in an error", function()
    local ok, err = pcall(engine.request, engine,
      { url = url("/echo"), headers = { Authorization = "secret\r\nX-Injected: 1" } })
    assert.is_false(ok)
    assert.is_nil(tostring(err):find("secret", 1, true))
    assert.is_nil(tostring(err):find("Injected", 1, true))
    -- The engine is still usable after the raise.
    assert.equal(200, assert(engine:request { url = url("/echo") }).status)
  end)

  it("reports an unreadable ca_file at construction", function()
    local e, err = core.http { ca_file = "/nonexistent/ca.pem" }
    assert.is_nil(e)
    assert.matches("ca_file", err)
  end)
end)

describe("core.http requests", function()
  it("GETs with headers, lowercasing response header names", function()
    local res = assert(engine:request { url = url("/echo"), headers = { ["X-Test"] = "hello" } })
    assert.equal(200, res.status)
    assert.equal("", res.body)
    assert.equal("GET", res.headers["x-method"])
    assert.equal("hello", res.headers["x-got-test"])
    assert.equal("yes", res.headers["x-mixed-case"])
    assert.equal("a, b", res.headers["x-repeated"])
    assert.is_number(res.time_ms)
    assert.is_true(res.time_ms >= 0)
  end)

  it("keeps its sockets out of the processes the application starts (close-on-exec)", function()
    local e = core.http {}
    assert(e:request { url = url("/echo") })
    local p = io.popen("ls -l /proc/self/fd | grep -c socket")
    local inherited = tonumber(p:read("*a"))
    p:close()
    e:close()
    assert.are.equal(0, inherited)
  end)

  it("POSTs a body (binary safe) and gets it back", function()
    local body = "a=1&b=\0\255\r\n" .. string.rep("z", 100000)
    local res = assert(engine:request {
      method = "POST", url = url("/echo"), body = body,
      headers = { ["Content-Type"] = "application/octet-stream" },
    })
    assert.equal(200, res.status)
    assert.equal("POST", res.headers["x-method"])
    assert.equal(#body, #res.body)
    assert.is_true(body == res.body)
    -- No "Expect: 100-continue" round trip for large bodies.
    assert.equal("none", res.headers["x-got-expect"])
  end)

  it("defaults to POST when a body is given, and sends other methods", function()
    assert.equal("POST", assert(engine:request { url = url("/echo"), body = "x" }).headers["x-method"])
    local put = assert(engine:request { method = "PUT", url = url("/echo"), body = "p" })
    assert.equal("PUT", put.headers["x-method"])
    assert.equal("p", put.body)
    local delete = assert(engine:request { method = "DELETE", url = url("/echo") })
    assert.equal("DELETE", delete.headers["x-method"])
    local head = assert(engine:request { method = "HEAD", url = url("/echo") })
    assert.equal(200, head.status)
    assert.equal("", head.body)
  end)

  it("sends header values as given, numbers and empty values included", function()
    local res = assert(engine:request {
      url = url("/headers"),
      headers = { ["X-Number"] = 42, ["X-Empty"] = "", ["User-Agent"] = "spec-agent" },
    })
    assert.matches("\nx%-number: 42", "\n" .. res.body)
    assert.matches("\nx%-empty: \n", "\n" .. res.body .. "\n")
    assert.matches("\nuser%-agent: spec%-agent", "\n" .. res.body)
  end)

  it("uses the engine's user agent by default", function()
    local e = assert(core.http { user_agent = "custom-agent/1" })
    local res = assert(e:request { url = url("/headers") })
    e:close()
    assert.matches("\nuser%-agent: custom%-agent/1", "\n" .. res.body)
  end)

  it("keeps only the final response's headers after 100 Continue", function()
    local res = assert(engine:request {
      url = url("/echo"), body = "waited", headers = { Expect = "100-continue" },
    })
    assert.equal(200, res.status)
    assert.equal("waited", res.body)
    assert.equal("100-continue", res.headers["x-got-expect"])
    assert.equal("POST", res.headers["x-method"])
  end)

  it("returns HTTP error statuses as responses", function()
    local res, err = engine:request { url = url("/status?code=502") }
    assert.is_nil(err)
    assert.equal(502, res.status)
    assert.equal("status 502", res.body)
    assert.equal(404, assert(engine:request { url = url("/nowhere") }).status)
  end)

  it("reuses one connection for sequential requests", function()
    local e = assert(core.http())
    local first
    for i = 1, 20 do
      local res = assert(e:request { url = url("/connection") })
      if i == 1 then
        first = res.body
        assert.equal(1, res.connects)
      else
        assert.equal(first, res.body)
        assert.equal(0, res.connects)
      end
    end
    e:close()
  end)

  it("goes through an HTTP proxy", function()
    -- nginx plays the proxy: it answers the absolute-form request itself,
    -- so the made-up host is never resolved.
    local e = assert(core.http { proxy = base })
    local res = assert(e:request { url = "http://upstream.invalid/request-line" })
    e:close()
    assert.equal("GET http://upstream.invalid/request-line HTTP/1.1", res.body)
  end)
end)

describe("core.http failures", function()
  it("caps the response size announced by Content-Length", function()
    local e = assert(core.http { max_response_bytes = 2000 })
    local res = assert(e:request { url = url("/sized?n=2000") })
    assert.equal(2000, #res.body)
    local none, err, code = e:request { url = url("/sized?n=2001") }
    assert.is_nil(none)
    assert.equal("too_large", code)
    assert.matches("2000", err)
    -- HEAD announces a length but carries no body.
    assert.equal(200, assert(e:request { method = "HEAD", url = url("/sized?n=100000") }).status)
    e:close()
  end)

  it("caps a chunked response while it streams", function()
    local e = assert(core.http { max_response_bytes = 5000 })
    assert.equal(5000, #assert(e:request { url = url("/chunked?n=5000") }).body)
    local none, _, code = e:request { url = url("/chunked?n=20000") }
    assert.is_nil(none)
    assert.equal("too_large", code)
    -- The engine is fine afterwards.
    assert.equal(200, assert(e:request { url = url("/echo") }).status)
    e:close()
  end)

  it("times out well before a slow response", function()
    local started = os.time()
    local res, err, code = engine:request { url = url("/sleep?ms=5000"), timeout_ms = 200 }
    assert.is_nil(res)
    assert.equal("timeout", code)
    assert.matches("[Tt]imed out", err)
    assert.is_true(os.time() - started <= 2)
  end)

  it("reports a connection closed without a response", function()
    local res, err, code = engine:request { url = url("/close") }
    assert.is_nil(res)
    assert.is_string(err)
    assert.equal("reset", code)
  end)

  it("reports a connection closed in the middle of the body", function()
    local res, err, code = engine:request { url = url("/truncated") }
    assert.is_nil(res)
    assert.is_string(err)
    assert.equal("reset", code)
  end)

  it("reports a refused connection", function()
    local gone = assert(runner.start { conf = function(port)
      return ("server { listen 127.0.0.1:%d; return 200; }"):format(port)
    end })
    local port = gone.port
    gone:stop()
    local res, err, code = engine:request { url = "http://127.0.0.1:" .. port .. "/" }
    assert.is_nil(res)
    assert.equal("connect", code)
    assert.matches(tostring(port), err)
  end)

  it("reports a URL it cannot use", function()
    local res, err, code = engine:request { url = "file:///etc/passwd" }
    assert.is_nil(res)
    assert.is_string(err)
    assert.equal("other", code)
  end)
end)

describe("core.http over TLS", function()
  -- Handshakes are slow under valgrind: generous limits, as the failures
  -- expected here are verification failures, not timeouts.
  local function tls_engine(opts)
    opts = opts or {}
    opts.connect_timeout_ms, opts.timeout_ms = 60000, 60000
    return assert(core.http(opts))
  end

  it("verifies the server with the given CA and reuses the connection", function()
    local e = tls_engine { ca_file = srv.ca_file }
    local first = assert(e:request { url = tls_base .. "/connection" })
    assert.equal(200, first.status)
    assert.equal(1, first.connects)
    local again = assert(e:request { url = tls_base .. "/connection" })
    assert.equal(first.body, again.body)
    assert.equal(0, again.connects)
    local by_name = assert(e:request { url = "https://localhost:" .. srv.tls_port .. "/echo", body = "tls" })
    assert.equal("tls", by_name.body)
    e:close()
  end)

  it("refuses a server signed by another CA", function()
    local other = assert(runner.make_ca(helpers.tmpdir(), "other"))
    local e = tls_engine { ca_file = other.cert }
    local res, err, code = e:request { url = tls_base .. "/echo" }
    e:close()
    assert.is_nil(res)
    assert.is_string(err)
    assert.equal("tls", code)
  end)

  it("refuses a certificate that does not name the host", function()
    local e = tls_engine { ca_file = srv.ca_file }
    local res, _, code = e:request { url = "https://127.0.0.2:" .. srv.tls_port .. "/echo" }
    e:close()
    assert.is_nil(res)
    assert.equal("tls", code)
  end)

  it("refuses the test CA when it is not configured", function()
    local e = tls_engine()
    local res, _, code = e:request { url = tls_base .. "/echo" }
    e:close()
    assert.is_nil(res)
    assert.equal("tls", code)
  end)
end)

describe("core.http concurrency", function()
  it("returns nothing at once when nothing is pending", function()
    local e = assert(core.http())
    assert.same({}, e:wait())
    assert.same({}, e:wait(0))
    assert.equal(0, e:pending())
    e:close()
  end)

  it("runs submitted transfers at the same time", function()
    local e = assert(core.http())
    local ids = {}
    for i = 1, 16 do
      -- A second of server time: long enough for all sixteen to arrive even
      -- on a loaded machine (valgrind), where 300 ms is not always.
      ids[i] = assert(e:submit { url = url("/concurrent?key=all16&ms=1000") })
    end
    assert.equal(16, e:pending())
    assert.matches("16 pending", tostring(e))
    local results = wait_all(e)
    assert.equal(16, count(results))
    local max_seen = 0
    for _, id in ipairs(ids) do
      local r = results[id]
      assert.equal(id, r.id)
      assert.is_nil(r.err)
      assert.equal(200, r.res.status)
      max_seen = math.max(max_seen, tonumber(r.res.body))
    end
    -- All sixteen were inside the server's handler at the same moment.
    assert.equal(16, max_seen)
    assert.equal(0, e:pending())
    e:close()
  end)

  it("holds to max_connections per host", function()
    local e = assert(core.http { max_connections = 2 })
    for _ = 1, 6 do assert(e:submit { url = url("/concurrent?key=capped&ms=150") }) end
    local results = wait_all(e)
    assert.equal(6, count(results))
    for _, r in pairs(results) do assert.is_true(tonumber(r.res.body) <= 2) end
    e:close()
  end)

  it("returns at the timeout with what has finished", function()
    local e = assert(core.http())
    local slow = assert(e:submit { url = url("/sleep?ms=10000") })
    local fast = assert(e:submit { url = url("/echo") })
    local got = {}
    for _ = 1, 100 do
      for _, r in ipairs(e:wait(100)) do got[#got + 1] = r end
      if #got > 0 then break end
    end
    assert.equal(1, #got)
    assert.equal(fast, got[1].id)
    assert.same({}, e:wait(50)) -- the slow one is still sleeping
    assert.equal(1, e:pending())
    e:close() -- aborts the slow one
    assert.is_number(slow)
  end)

  it("reports failures of submitted transfers", function()
    local e = assert(core.http { max_response_bytes = 100 })
    local timeout = e:submit { url = url("/sleep?ms=3000"), timeout_ms = 100 }
    local big = e:submit { url = url("/sized?n=1000") }
    local reset = e:submit { url = url("/close") }
    local results = wait_all(e)
    e:close()
    assert.equal("timeout", results[timeout].code)
    assert.equal("too_large", results[big].code)
    assert.equal("reset", results[reset].code)
    for _, r in pairs(results) do
      assert.is_nil(r.res)
      assert.is_string(r.err)
    end
  end)

  it("keeps submitted results that finish during a blocking request", function()
    local e = assert(core.http())
    local ids = {}
    for i = 1, 3 do ids[i] = assert(e:submit { url = url("/sleep?ms=100"), body = "n" .. i }) end
    local res = assert(e:request { url = url("/sleep?ms=1000") })
    assert.equal("slept", res.body)
    -- They finished while request() drove the multi handle, and are queued.
    assert.equal(3, e:pending())
    local results = e:wait(0)
    assert.equal(3, #results)
    local seen = {}
    for _, r in ipairs(results) do
      assert.equal(200, r.res.status)
      seen[r.id] = true
    end
    for _, id in ipairs(ids) do assert.is_true(seen[id]) end
    assert.equal(0, e:pending())
    e:close()
  end)

  it("frees in-flight transfers when collected", function()
    local e = assert(core.http())
    for _ = 1, 4 do assert(e:submit { url = url("/sleep?ms=2000") }) end
    e:wait(50)
    e = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
  end)
end)

describe("alipay.sandbox.nginx", function()
  local function plain(port)
    return ("server { listen 127.0.0.1:%d; return 200 'up'; }"):format(port)
  end

  local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
  end

  it("stops idempotently, removing its prefix and keeping its log", function()
    local s = assert(runner.start { conf = plain })
    assert.equal("up", assert(engine:request { url = "http://127.0.0.1:" .. s.port .. "/" }).body)
    assert.is_true(exists(s.prefix .. "/nginx.conf"))
    assert.matches("start worker process", s:error_log())
    assert.is_true(s:stop())
    assert.is_true(s:stop())
    assert.is_false(exists(s.prefix .. "/nginx.conf"))
    assert.matches("start worker process", s:error_log())
    assert.matches("stopped", tostring(s))
  end)

  it("retries on another port when the one it picked is taken", function()
    local attempts = 0
    local s = assert(runner.start { conf = function(port)
      attempts = attempts + 1
      return plain(attempts == 1 and srv.port or port) -- the first one is busy
    end })
    -- Usually two; a random port can be busy too (the range overlaps the
    -- ephemeral ports of client connections).
    assert.is_true(attempts >= 2)
    assert.are_not.equal(srv.port, s.port)
    assert.equal(200, assert(engine:request { url = "http://127.0.0.1:" .. s.port .. "/" }).status)
    s:stop()
  end)

  it("returns nginx's own words when it cannot start", function()
    local s, err = runner.start { conf = function() return "no_such_directive;" end }
    assert.is_nil(s)
    assert.matches('unknown directive "no_such_directive"', err)
  end)
end)
