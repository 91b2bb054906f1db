-- What the curl and ngx transports both accept, checked in one place:
-- the request table of transport:request / submit, and the transport
-- options taken from the client's config (defaults included), so that the
-- two refuse the same misuse with the same message and apply the same
-- limits. The C engine behind curl checks requests again (it hands the
-- strings to libcurl as C strings); these checks come first and agree with it.
--
--   local request = require "alipay.transport.request"
--   request.check(req, default_timeout_ms[, level]) -> timeout_ms   raises on misuse
--   request.options(cfg) -> {timeout_ms=, connect_timeout_ms=, max_response_bytes=, user_agent=}
--
-- req = {method=, url=, headers=, body=, timeout_ms=, idempotent=}: url
-- required; method an HTTP token (default POST with a body, GET without);
-- body a string; headers a table of token names to string or number values
-- without line breaks or NUL; timeout_ms a whole number of milliseconds, 1
-- to 24 h; idempotent a boolean: true tells the transport that sending the
-- request twice is harmless (a query), so it may resend it by itself after
-- a reused connection dies unanswered. Without it a request is never sent
-- twice: such a failure is reason "reset", unknown (it may have arrived).
-- Messages never quote a header, the URL or the body: they may carry
-- credentials or a signature.
-- LuaJIT too: no integer division.
local M = {}

M.MAX_TIMEOUT_MS = 24 * 3600 * 1000
M.MAX_RESPONSE_LIMIT = 2 ^ 40 -- the C engine's cap on max_response_bytes
-- The header block of one response, at most (and at most max_response_bytes):
-- the C engine's cap (libcurl refuses a longer header line), kept by ngx too.
M.MAX_HEADER_BYTES = 100 * 1024

-- The defaults of the C engine (src/http.c), for both transports.
M.DEFAULTS = {
  timeout_ms = 15000,
  connect_timeout_ms = 5000,
  max_response_bytes = 4 * 1024 * 1024,
  user_agent = "lua-alipay",
}

local function is_token(s)
  return type(s) == "string" and s ~= "" and s:find("^[%w!#$%%&'*+.^_`|~-]+$") ~= nil
end
M.is_token = is_token

local function whole_in(v, lo, hi)
  return type(v) == "number" and v >= lo and v <= hi and v == math.floor(v)
end

-- level: as error()'s, counted from the function that calls check (2, the
-- default, blames that function's caller).
function M.check(req, default_timeout, level)
  level = (level or 2) + 1
  if type(req) ~= "table" then error("http: the request must be a table", level) end
  if req.url == nil then error("http: field 'url' is required", level) end
  if type(req.url) ~= "string" then error("http: field 'url' must be a string, got " .. type(req.url), level) end
  if req.url:find("%z") then error("http: field 'url' contains a NUL byte", level) end
  if req.method ~= nil and not is_token(req.method) then
    error("http: field 'method' is not an HTTP method", level)
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    error("http: field 'body' must be a string, got " .. type(req.body), level)
  end
  if req.idempotent ~= nil and type(req.idempotent) ~= "boolean" then
    error("http: field 'idempotent' must be a boolean, got " .. type(req.idempotent), level)
  end
  local timeout = req.timeout_ms
  if timeout == nil then timeout = default_timeout end
  if type(timeout) ~= "number" then
    error("http: field 'timeout_ms' must be a number, got " .. type(timeout), level)
  end
  if not whole_in(timeout, 1, M.MAX_TIMEOUT_MS) then
    error("http: field 'timeout_ms' must be an integer from 1 to " .. M.MAX_TIMEOUT_MS, level)
  end
  if req.headers ~= nil then
    if type(req.headers) ~= "table" then error("http: field 'headers' must be a table", level) end
    for name, value in pairs(req.headers) do
      if type(name) ~= "string" then error("http: header names must be strings", level) end
      local vt = type(value)
      if vt ~= "string" and vt ~= "number" then
        error("http: header values must be strings or numbers", level)
      end
      if not is_token(name) then error("http: invalid header name", level) end
      if tostring(value):find("[\r\n%z]") then
        error("http: invalid header value (line break or NUL)", level)
      end
    end
  end
  return timeout
end

-- The transport options of a config (the client's validated one, or a
-- table given to a transport's new directly), with the defaults.
function M.options(cfg)
  cfg = cfg or {}
  local out = {}
  for _, field in ipairs { "timeout_ms", "connect_timeout_ms", "max_response_bytes" } do
    local v = cfg[field]
    if v == nil then v = M.DEFAULTS[field] end
    local hi = field == "max_response_bytes" and M.MAX_RESPONSE_LIMIT or M.MAX_TIMEOUT_MS
    if not whole_in(v, 1, hi) then
      error(("transport: %s must be an integer from 1 to %.0f"):format(field, hi), 3)
    end
    out[field] = v
  end
  local ua = cfg.user_agent
  if ua ~= nil and (type(ua) ~= "string" or ua:find("[\r\n%z]")) then
    error("transport: user_agent must be a string without line breaks or NUL", 3)
  end
  out.user_agent = ua or M.DEFAULTS.user_agent
  return out
end

return M
