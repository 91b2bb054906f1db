-- The plain-Lua transport: the C core's libcurl engine (keep-alive, TLS
-- session reuse, curl multi), with its failures turned into typed errors.
-- Blocking per request; submit/wait for many transfers in flight.
local core = require "alipay.core"
local errors = require "alipay.errors"
local request = require "alipay.transport.request"

local Transport = {}
Transport.__index = Transport

local transport_error = errors.transport

local M = {}

-- M.new{ca_file=, proxy=, connect_timeout_ms=, timeout_ms=, max_response_bytes=, user_agent=}
-- (the defaults and limits of alipay.transport.request, shared with ngx)
function M.new(opts)
  local o = request.options(opts)
  local engine, err = core.http {
    ca_file = opts.ca_file, proxy = opts.proxy, connect_timeout_ms = o.connect_timeout_ms,
    timeout_ms = o.timeout_ms, max_response_bytes = o.max_response_bytes,
    user_agent = o.user_agent,
    insecure_skip_verify = opts.insecure_skip_tls_verify == true or nil,
  }
  if not engine then return errors.fail("config", { msg = "transport: " .. tostring(err) }) end
  return setmetatable({ engine = engine, name = "curl", timeout_ms = o.timeout_ms }, Transport)
end

-- req = {method=, url=, headers=, body=, timeout_ms=} -> res | nil, err, detail
-- Misuse (alipay.transport.request.check) raises, in the caller.
function Transport:request(req)
  request.check(req, self.timeout_ms)
  local res, err, reason = self.engine:request(req)
  if not res then return errors.failure(transport_error(err, reason)) end
  return res
end

-- Starts a transfer; its result comes from wait().
function Transport:submit(req)
  request.check(req, self.timeout_ms)
  local id, err, reason = self.engine:submit(req)
  if not id then return errors.failure(transport_error(err, reason or "other")) end
  return id
end

-- Finished transfers as {id=, res=} or {id=, err=<one line>, detail=<typed error>}; detail.answer_began
-- is true when response bytes had arrived before the failure.
function Transport:wait(timeout_ms)
  local done = self.engine:wait(timeout_ms)
  for _, d in ipairs(done) do
    if d.err then
      d.detail = transport_error(d.err, d.code)
      -- Response bytes arrived before the failure (a cut answer).
      if d.began then d.detail.answer_began = true end
      d.began = nil
      d.err = tostring(d.detail)
    end
  end
  return done
end

function Transport:pending()
  return self.engine:pending()
end

function Transport:close()
  self.engine:close()
end

return M
