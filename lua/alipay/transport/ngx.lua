-- The OpenResty transport: HTTP/1.1 over ngx.socket.tcp (docs/architecture.md §6).
-- Inside nginx a blocking libcurl call would stall every request of the
-- worker; cosockets yield to the event loop instead, so one worker keeps
-- many calls in flight.
--
--   local t = require("alipay.transport.ngx").new(cfg)  -- the client's validated config
--   t:request{method=, url=, headers=, body=, timeout_ms=, idempotent=} -> res | nil, err
--   t:submit(req) -> id;  t:wait(timeout_ms) -> {{id=, res=} | {id=, err=}, ...}
--   t:pending(), t:close()
--
-- res = {status=, headers= (lowercased names), body=, connects=, reused=, time_ms=}
-- err = a typed "transport" error with the curl transport's `reason`s:
-- timeout, connect, resolve, tls, reset, too_large, send, recv, other.
--
-- TLS: certificates are always verified, against the nginx directive
-- lua_ssl_trusted_certificate (cosockets have no per-socket CA), so the
-- client's ca_file does not apply here; host names are checked too (for an
-- IP-literal URL, only the chain: nginx matches DNS names). Host names
-- need a `resolver` directive. Connections are kept alive per worker and
-- host:port:scheme. A kept-alive connection that dies before the request
-- was written whole is retried once on another one (the server cannot act
-- on part of a request); one that dies after, before any byte of the
-- answer, is retried only for a request marked idempotent (a query):
-- anything else may have arrived and is reason "reset", unknown, never sent
-- twice behind the caller's back (the curl engine holds the same rule).
-- LuaJIT only: no integer division, no goto, no utf8 library.
local errors = require "alipay.errors"
local runtime = require "alipay.runtime"
local request = require "alipay.transport.request"

local M = {}

-- ngx.get_phase() values where cosockets work (alipay.runtime decides).
M.COSOCKET_PHASES = runtime.COSOCKET_PHASES

local DEFAULT_PORTS = { http = 80, https = 443 }
local KEEPALIVE_IDLE_MS = 30000 -- below the usual server idle timeouts (nginx: 75 s)
local POOL_SIZE = 64            -- idle connections kept per host:port:scheme
local READ_CHUNK = 65536

local transport_error = errors.transport

-- The same words as the curl engine's (src/http.c).
local NOT_RESENT = "the connection closed after the request was sent, before any answer; "
  .. "not resent (it may have arrived)"

local now_ms = runtime.now_ms

-- ---- requests: validation (alipay.transport.request: misuse raises, as
-- with curl) and the URL ----

-- {scheme=, host=, port=, target=, authority=} or nil, message. The
-- message names the scheme or the part that is wrong, never the query
-- (it carries the signature).
local function parse_url(url)
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil, "not an absolute http(s) URL" end
  scheme = scheme:lower()
  if not DEFAULT_PORTS[scheme] then return nil, "unsupported URL scheme " .. scheme end
  if authority:find("@", 1, true) then return nil, "credentials in the URL are not supported" end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$") -- IPv6 literal
  if not host then host, port = authority:match("^([%w.-]+):?(%d*)$") end
  if not host then return nil, "no valid host in the URL" end
  port = port ~= "" and tonumber(port) or DEFAULT_PORTS[scheme]
  if port < 1 or port > 65535 then return nil, "bad port in the URL" end
  local target = rest:match("^[^#]*")
  -- A space or a line break would end the request line early (and could
  -- smuggle a header): such a URL is refused, as curl refuses it.
  if target:find("[%s%c]") then return nil, "the URL contains spaces or control characters" end
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  local shown = host:find(":", 1, true) and ("[" .. host .. "]") or host
  return {
    scheme = scheme, host = host, port = port, target = target,
    connect_host = shown, -- nginx parses an IPv6 literal only in brackets
    -- The Host header and the names in messages: the port only when it is not the default.
    authority = port == DEFAULT_PORTS[scheme] and shown or (shown .. ":" .. port),
    ip = host:find("^[%d.]+$") ~= nil or host:find(":", 1, true) ~= nil,
  }
end

-- The request head and body as a list of strings for sock:send. Our own
-- Host, Content-Length and User-Agent unless the caller set them; the
-- body is never sent chunked.
local function encode_request(req, url, user_agent)
  local method = req.method or (req.body and "POST" or "GET")
  local given, names, close = {}, {}, false
  for name, value in pairs(req.headers or {}) do
    local lower = name:lower()
    if lower ~= "content-length" and lower ~= "transfer-encoding" then
      given[lower] = true
      names[#names + 1] = name
    end
    if lower == "connection" and tostring(value):lower():find("close", 1, true) then close = true end
  end
  table.sort(names) -- a stable order, easier to read in captures
  local out = { method, " ", url.target, " HTTP/1.1\r\n" }
  local function add(name, value)
    out[#out + 1] = name
    out[#out + 1] = ": "
    out[#out + 1] = tostring(value)
    out[#out + 1] = "\r\n"
  end
  if not given.host then add("Host", url.authority) end
  if not given["user-agent"] then add("User-Agent", user_agent) end
  for _, name in ipairs(names) do add(name, req.headers[name]) end
  local body = req.body
  if body or method == "POST" or method == "PUT" or method == "PATCH" then
    add("Content-Length", body and #body or 0)
  end
  out[#out + 1] = "\r\n"
  if body and body ~= "" then out[#out + 1] = body end
  return out, method, close
end

-- ---- responses: a small buffered reader with one deadline ----
--
-- Every read is bounded by what is left of the request's timeout, and
-- reads return as soon as any bytes arrive (receiveany), so a server that
-- trickles one byte at a time cannot stretch a call past timeout_ms.

local Reader = {}
Reader.__index = Reader

local function new_reader(sock, deadline)
  return setmetatable({ sock = sock, deadline = deadline, buf = "", pos = 1, got = 0 }, Reader)
end

-- Appends what the socket has; nil, "timeout" | cosocket error.
function Reader:fill()
  local left = math.floor(self.deadline - now_ms())
  if left < 1 then return nil, "timeout" end
  self.sock:settimeouts(left, left, left)
  local data, err = self.sock:receiveany(READ_CHUNK)
  if not data then return nil, err end
  self.got = self.got + #data
  if self.pos > #self.buf then
    self.buf = data
  else
    self.buf = self.buf:sub(self.pos) .. data
  end
  self.pos = 1
  return true
end

-- One line without its CRLF (a bare LF is accepted too); nil,
-- "too_large" once more than `limit` bytes wait without a line end.
function Reader:line(limit)
  while true do
    local nl = self.buf:find("\n", self.pos, true)
    if nl then
      local line = self.buf:sub(self.pos, nl - 1)
      self.pos = nl + 1
      if line:sub(-1) == "\r" then line = line:sub(1, -2) end
      return line
    end
    if #self.buf - self.pos + 1 > limit then return nil, "too_large" end
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Appends exactly n bytes to the list out.
function Reader:bytes(n, out)
  while n > 0 do
    local avail = #self.buf - self.pos + 1
    if avail > 0 then
      local take = avail < n and avail or n
      out[#out + 1] = self.buf:sub(self.pos, self.pos + take - 1)
      self.pos = self.pos + take
      n = n - take
    else
      local ok, err = self:fill()
      if not ok then return nil, err end
    end
  end
  return true
end

-- Appends everything until the server closes; nil, "too_large" past limit.
function Reader:rest(out, limit)
  local size = 0
  while true do
    local avail = #self.buf - self.pos + 1
    if avail > 0 then
      size = size + avail
      if size > limit then return nil, "too_large" end
      out[#out + 1] = self.buf:sub(self.pos)
      self.pos = #self.buf + 1
    end
    local ok, err = self:fill()
    if not ok then
      if err == "closed" then return true end
      return nil, err
    end
  end
end

function Reader:leftover()
  return #self.buf - self.pos + 1
end

-- ---- the HTTP/1.1 response ----

-- A failure while reading, with the reason curl would give.
local function read_failure(err, what)
  if err == "timeout" then return "timeout", what .. " timed out" end
  if err == "too_large" then return "too_large", "response larger than max_response_bytes" end
  if err == "closed" or err == "connection reset by peer" or err == "broken pipe" then
    return "reset", "the server closed the connection " .. what
  end
  return "recv", what .. ": " .. tostring(err)
end

-- Header fields into a table of lowercased names; repeated fields are
-- joined with ", " and obsolete folded lines with " " (as curl's engine).
local function read_headers(reader, limit)
  local headers, last = {}, nil
  local size = 0
  while true do
    local line, err = reader:line(limit - size)
    if not line then return nil, err end
    size = size + #line + 2
    if size > limit then return nil, "too_large" end
    if line == "" then return headers end
    if line:find("^[ \t]") then
      local more = line:match("^%s*(.-)%s*$")
      if last and more ~= "" then headers[last] = headers[last] .. " " .. more end
    else
      local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
      if not name then return nil, "malformed header line" end
      name = name:lower()
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
      last = name
    end
  end
end

-- The body framing: "none", "chunked", "length" (with n) or "close".
local function framing(method, status, headers)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return "none"
  end
  local te = headers["transfer-encoding"]
  if te and te:lower():find("chunked%s*$") then return "chunked" end
  if te then return "close" end -- another coding: the body runs to the close
  local cl = headers["content-length"]
  if cl then
    -- A repeated Content-Length is only fine when every copy agrees.
    local first
    for v in cl:gmatch("[^,]+") do
      v = v:match("^%s*(.-)%s*$")
      if not v:find("^%d+$") or (first and v ~= first) then return nil, "bad Content-Length" end
      first = v
    end
    if not first then return nil, "bad Content-Length" end -- empty, blank or only commas
    return "length", tonumber(first)
  end
  return "close"
end

-- A chunk-size line (hex digits, maybe ";extensions") is short, and a
-- chunk ends right after its data: anything else is a framing error.
local MAX_CHUNK_LINE = 1024

local function read_chunked(reader, out, limit)
  local size = 0
  while true do
    local line, err = reader:line(MAX_CHUNK_LINE)
    if not line then return nil, err == "too_large" and "bad chunk size" or err end
    local hex = line:match("^%s*(%x+)")
    if not hex or #hex > 12 then return nil, "bad chunk size" end
    local n = tonumber(hex, 16)
    if n == 0 then
      -- Trailer fields, ignored, up to the empty line; they count against the cap.
      repeat
        line, err = reader:line(limit - size)
        if not line then return nil, err end
        size = size + #line + 2
        if size > limit then return nil, "too_large" end
      until line == ""
      return true
    end
    size = size + n
    if size > limit then return nil, "too_large" end
    local ok
    ok, err = reader:bytes(n, out)
    if not ok then return nil, err end
    line, err = reader:line(2)
    if not line then return nil, err == "too_large" and "bad chunk end" or err end
    if line ~= "" then return nil, "bad chunk end" end
  end
end

-- A header block over its cap is named for what it is, with the cap.
local function header_failure(err, what, header_limit)
  if err == "too_large" then
    return "too_large", ("response headers too large (over %d bytes)"):format(header_limit)
  end
  return read_failure(err, what)
end

-- Reads one response. Returns res, keepalive or nil, reason, message.
-- The header block (status line included) is held to header_limit bytes,
-- the body to limit.
local function read_response(reader, method, limit, header_limit)
  local line, err, status, major, minor
  repeat -- interim 1xx answers (100 Continue, 103) come before the real one
    line, err = reader:line(header_limit)
    if not line then
      local reason, msg = header_failure(err, "before the status line", header_limit)
      return nil, reason, msg
    end
    major, minor, status = line:match("^HTTP/(%d)%.(%d) (%d%d%d)")
    if not status then return nil, "recv", "not an HTTP/1.x response" end
    status = tonumber(status)
    if status < 200 and status ~= 101 then
      local ok
      ok, err = read_headers(reader, header_limit - #line - 2)
      if not ok then
        local reason, msg = header_failure(err, "in the headers", header_limit)
        return nil, reason, msg
      end
    end
  until status >= 200 or status == 101
  local headers
  headers, err = read_headers(reader, header_limit - #line - 2)
  if not headers then
    if err == "malformed header line" then return nil, "recv", err end
    local reason, msg = header_failure(err, "in the headers", header_limit)
    return nil, reason, msg
  end
  local mode, length = framing(method, status, headers)
  if not mode then return nil, "recv", length end
  local body, ok = {}, true
  if mode == "length" then
    if length > limit then return nil, "too_large", "response larger than max_response_bytes" end
    ok, err = reader:bytes(length, body)
  elseif mode == "chunked" then
    ok, err = read_chunked(reader, body, limit)
  elseif mode == "close" then
    ok, err = reader:rest(body, limit)
  end
  if not ok then
    if err == "bad chunk size" or err == "bad chunk end" then return nil, "recv", err end
    local reason, msg = read_failure(err, "in the body")
    return nil, reason, msg
  end
  local conn = (headers.connection or ""):lower()
  local keepalive = mode ~= "close" and status ~= 101 and not conn:find("close", 1, true)
    and (major .. "." .. minor ~= "1.0" or conn:find("keep-alive", 1, true) ~= nil)
  return { status = status, headers = headers, body = table.concat(body) }, keepalive
end

-- ---- one exchange on one connection ----

local Transport = {}
Transport.__index = Transport

local function connect_failure(err, where)
  if err == "timeout" then return "timeout", "connecting to " .. where .. " timed out" end
  if err:find("resolve", 1, true) or err:find("resolver", 1, true) then
    return "resolve", "cannot resolve " .. where .. ": " .. err
  end
  return "connect", "cannot connect to " .. where .. ": " .. err
end

local function send_failure(err)
  if err == "timeout" then return "timeout", "sending the request timed out" end
  if err == "closed" or err == "broken pipe" or err == "connection reset by peer" then
    return "reset", "the server closed the connection while the request was sent"
  end
  return "send", "sending the request failed: " .. tostring(err)
end

-- Runs the request on one connection (pooled or new). Returns res or nil,
-- reason, message, stale. stale says how a reused connection died:
-- "unsent" (while the request was written: it did not arrive whole, and a
-- retry on another connection is harmless) or "unanswered" (after it was
-- written, before any byte of the answer: a retry sends it twice).
function Transport:exchange(url, payload, method, close_after, deadline)
  local sock = ngx.socket.tcp()
  local left = math.floor(deadline - now_ms())
  if left < 1 then return nil, "timeout", "timed out before connecting" end
  local connect_ms = self.connect_timeout_ms < left and self.connect_timeout_ms or left
  sock:settimeouts(connect_ms, left, left)
  -- Pools belong to the nginx worker, shared by every client in it. A TLS
  -- connection was verified once, when it was made, against the
  -- lua_ssl_trusted_certificate of the location that made it.
  local pool = url.scheme .. "://" .. url.host .. ":" .. url.port
  local ok, err = sock:connect(url.connect_host, url.port, { pool = pool, pool_size = POOL_SIZE })
  if not ok then
    sock:close()
    return nil, connect_failure(err, url.authority)
  end
  local reused = sock:getreusedtimes() or 0
  local function fail(reason, msg, stale)
    sock:close()
    return nil, reason, msg, stale
  end
  if url.scheme == "https" and reused == 0 then
    left = math.floor(deadline - now_ms())
    if left < 1 then return fail("timeout", "timed out before the TLS handshake") end
    sock:settimeouts(left, left, left)
    -- SNI and the name check need a host name; an IP literal is checked
    -- through the certificate chain only (nginx matches DNS names).
    local server_name = not url.ip and url.host or nil
    -- pcall: when the handshake completes at once but the certificate is
    -- refused, the resty.core of Debian 12 (0.1.25 with lua-nginx-module
    -- 0.10.23) raises "assertion failed!" instead of returning the error.
    -- verify = false only with insecure_skip_tls_verify (alipay.config warns)
    local done, session, herr = pcall(sock.sslhandshake, sock, self.sessions[pool], server_name,
                                      not self.insecure_skip_tls_verify)
    if not done then session, herr = nil, "the certificate was refused (verification or host name)" end
    if not session then
      if herr == "timeout" then return fail("timeout", "the TLS handshake timed out") end
      return fail("tls", "TLS handshake with " .. url.authority .. " failed: " .. tostring(herr)
        .. " (nginx verifies against lua_ssl_trusted_certificate)")
    end
    self.sessions[pool] = session
  end
  left = math.floor(deadline - now_ms())
  if left < 1 then return fail("timeout", "timed out before sending") end
  sock:settimeouts(connect_ms, left, left)
  local sent
  sent, err = sock:send(payload)
  if not sent then
    local reason, msg = send_failure(err)
    return fail(reason, msg, reused > 0 and reason == "reset" and "unsent" or nil)
  end
  local reader = new_reader(sock, deadline)
  local res, detail, msg = read_response(reader, method, self.max_response_bytes, self.max_header_bytes)
  if not res then
    local reason = detail
    return fail(reason, msg, reused > 0 and reason == "reset" and reader.got == 0 and "unanswered" or nil)
  end
  local keepalive = detail
  res.connects = reused == 0 and 1 or 0
  res.reused = reused
  if keepalive and not close_after and reader:leftover() == 0 then
    sock:setkeepalive(KEEPALIVE_IDLE_MS, POOL_SIZE)
  else
    sock:close()
  end
  return res
end

-- ---- the transport ----

-- nginx raises "API disabled in the context of ..." for cosockets and
-- light threads outside their phases; a typed error says what to do.
local function phase_error()
  if runtime.cosockets() then return nil end
  local phase = runtime.phase()
  return errors.new("transport", { reason = "other", retryable = false,
    msg = "cosockets are not available in nginx's " .. tostring(phase) .. " phase; "
      .. "leave config.transport unset (auto) to use curl there, or call from a timer" })
end

-- req = {method=, url=, headers=, body=, timeout_ms=} -> res | nil, err
function Transport:request(req)
  if self.closed then error("the ngx transport has been closed", 2) end
  local timeout = request.check(req, self.timeout_ms)
  local phase_err = phase_error()
  if phase_err then return errors.failure(phase_err) end
  local started = now_ms()
  local deadline = started + timeout
  local url, uerr = parse_url(req.url)
  if not url then return errors.failure(transport_error(uerr, "other")) end
  local payload, method, close_after = encode_request(req, url, self.user_agent)
  local res, reason, msg, stale = self:exchange(url, payload, method, close_after, deadline)
  if not res and (stale == "unsent" or (stale == "unanswered" and req.idempotent)) then
    res, reason, msg = self:exchange(url, payload, method, close_after, deadline)
  elseif not res and stale == "unanswered" then
    msg = NOT_RESENT
  end
  if not res then return errors.failure(transport_error(msg, reason)) end
  res.time_ms = now_ms() - started
  return res
end

-- ---- many requests in flight: light threads ----
--
-- submit() spawns one light thread per request; each one puts its outcome
-- on the done list and posts a semaphore that wait() sleeps on. Threads
-- run in the coroutine that submitted them: a campaign keeps N requests in
-- flight inside one nginx request handler or timer.

local semaphore do
  local ok, mod = pcall(require, "ngx.semaphore")
  semaphore = ok and mod or nil
end

local function run_submitted(self, entry, req)
  local ok, res, err, detail = pcall(self.request, self, req)
  if not ok then
    detail = transport_error("the request failed: " .. tostring(res), "other")
    res, err = nil, tostring(detail)
  end
  self.running[entry.id] = nil
  self.finished[#self.finished + 1] = entry
  self.done[#self.done + 1] = { id = entry.id, res = res, err = err, detail = detail }
  if self.sema then self.sema:post(1) end
end

-- Starts a request; its result comes from wait(). Returns id or nil, err.
function Transport:submit(req)
  if self.closed then error("the ngx transport has been closed", 2) end
  request.check(req, self.timeout_ms) -- misuse raises here, in the caller
  local phase_err = phase_error()
  if phase_err then return errors.failure(phase_err) end
  if not self.sema and semaphore then self.sema = semaphore.new(0) end
  self.last_id = self.last_id + 1
  local entry = { id = self.last_id, parent = coroutine.running() }
  self.running[entry.id] = entry
  local thread, err = ngx.thread.spawn(run_submitted, self, entry, req)
  if not thread then
    self.running[entry.id] = nil
    return errors.failure(transport_error("cannot start a light thread: " .. tostring(err), "other"))
  end
  entry.thread = thread
  return entry.id
end

-- Waits for the semaphore (or polls without ngx.semaphore) until something
-- is done or the time is up; timeout_ms nil waits until one finishes.
function Transport:sleep_until_done(timeout_ms)
  local deadline = timeout_ms and (now_ms() + timeout_ms)
  while #self.done == 0 and next(self.running) do
    local left = deadline and (deadline - now_ms()) or 1000
    if left <= 0 then return end
    if self.sema then
      self.sema:wait(left / 1000)
    else
      runtime.sleep_ms(math.min(left, 5))
    end
  end
end

-- A finished light thread stays a "zombie" (its coroutine referenced)
-- until its parent waits for it or the nginx request ends; a long campaign
-- in one handler would pile them up. Threads finish right after posting,
-- so waiting here returns at once. Only the parent may wait.
function Transport:reap()
  local me = coroutine.running()
  for i = 1, #self.finished do
    local entry = self.finished[i]
    if entry.thread and entry.parent == me then pcall(ngx.thread.wait, entry.thread) end
  end
  self.finished = {}
end

-- Finished requests as {id=, res=} or {id=, err=<string>, detail=<typed>}: returns as soon as one
-- has finished, at the timeout (possibly empty), or at once when nothing
-- is in flight.
function Transport:wait(timeout_ms)
  if timeout_ms ~= nil and (type(timeout_ms) ~= "number" or timeout_ms < 0) then
    error("wait: timeout_ms must be a number of milliseconds >= 0", 2)
  end
  if #self.done == 0 and timeout_ms ~= 0 then self:sleep_until_done(timeout_ms) end
  local done = self.done
  self.done = {}
  self:reap()
  return done
end

-- Submitted requests whose result wait() has not returned yet.
function Transport:pending()
  local n = #self.done
  for _ in pairs(self.running) do n = n + 1 end
  return n
end

-- Kills the light threads this coroutine started and drops every result;
-- idle pooled connections stay with nginx (they time out by themselves).
function Transport:close()
  if self.closed then return end
  self.closed = true
  local me = coroutine.running()
  for _, entry in pairs(self.running) do
    if entry.thread and entry.parent == me then ngx.thread.kill(entry.thread) end
  end
  self.running, self.done, self.finished = {}, {}, {}
end

-- M.new(cfg): cfg is the client's validated config (timeout_ms,
-- connect_timeout_ms, max_response_bytes, user_agent; ca_file is nginx's
-- lua_ssl_trusted_certificate here). Returns a transport or nil, err.
function M.new(cfg)
  cfg = cfg or {}
  if cfg.proxy then
    return errors.failure(errors.config("proxy", "the ngx transport (cosockets) cannot use a proxy; "
      .. 'use transport = "curl" (which blocks the nginx worker) or reach the gateway directly'))
  end
  local ngx = runtime.ngx()
  if not ngx or not ngx.socket or not ngx.socket.tcp then
    return errors.failure(errors.config("transport", "the ngx transport needs OpenResty (ngx.socket.tcp)"))
  end
  local o = request.options(cfg)
  return setmetatable({
    name = "ngx",
    timeout_ms = o.timeout_ms,
    connect_timeout_ms = o.connect_timeout_ms,
    max_response_bytes = o.max_response_bytes,
    max_header_bytes = math.min(o.max_response_bytes, request.MAX_HEADER_BYTES),
    user_agent = o.user_agent,
    insecure_skip_tls_verify = cfg.insecure_skip_tls_verify == true,
    sessions = {}, -- TLS sessions per pool, resumed on new connections
    running = {}, done = {}, finished = {}, last_id = 0,
  }, Transport)
end

-- Exposed for the specs.
M.parse_url = parse_url

return M
