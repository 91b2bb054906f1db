-- The default transport (config.transport = nil): picks the ngx transport
-- (cosockets) or the curl transport for each request, from where the
-- request runs, not from where the client was created. A client made in
-- init_worker_by_lua (no cosockets there) and used in a content handler
-- thus never blocks the nginx worker with a libcurl call, and the same
-- client still works from plain Lua, the CLI and nginx phases without
-- cosockets (init_worker, log, header_filter, ...), through curl.
--
--   local t = require("alipay.transport.auto").new(cfg)
--   t:request(req), t:submit(req), t:wait(ms), t:pending(), t:close()
--   t:current() -> "ngx" | "curl"   what a request made here would use
--   t.last                           what the last request used
local runtime = require "alipay.runtime"

local M = {}

-- "ngx" when running inside nginx in a phase that allows cosockets.
local function wanted()
  return runtime.cosockets() and "ngx" or "curl"
end

local Auto = {}
Auto.__index = Auto

-- The transport for `name`, created on first use.
function Auto:get(name)
  local t = self.transports[name]
  if t then return t end
  local err, detail
  t, err, detail = require("alipay.transport." .. name).new(self.cfg)
  if not t then return nil, err, detail end
  self.transports[name] = t
  return t
end

function Auto.current()
  return wanted()
end

function Auto:request(req)
  local name = wanted()
  local t, err, detail = self:get(name)
  if not t then return nil, err, detail end
  self.last = name
  return t:request(req)
end

-- Concurrent form: each submitted request stays on the transport that
-- started it; ids are this object's own, mapped to the inner ones.
function Auto:submit(req)
  local name = wanted()
  local t, err, detail = self:get(name)
  if not t then return nil, err, detail end
  local inner
  inner, err, detail = t:submit(req)
  if not inner then return nil, err, detail end
  self.last_id = self.last_id + 1
  self.ids[name][inner] = self.last_id
  self.last = name
  return self.last_id
end

local function pending_of(t)
  return t and t:pending() or 0
end

-- Collects finished requests of transport `name`, renamed to our ids.
function Auto:collect(name, timeout_ms, out)
  local t = self.transports[name]
  for _, d in ipairs(t:wait(timeout_ms)) do
    d.id, self.ids[name][d.id] = self.ids[name][d.id], nil
    out[#out + 1] = d
  end
end

-- Mostly one transport has requests in flight; when both do (submitted
-- from different phases), curl is polled first without blocking, so the
-- ngx side is never starved.
function Auto:wait(timeout_ms)
  local out = {}
  local on_curl = pending_of(self.transports.curl) > 0
  local on_ngx = pending_of(self.transports.ngx) > 0 and wanted() == "ngx"
  if on_curl then self:collect("curl", on_ngx and 0 or timeout_ms, out) end
  if on_ngx then self:collect("ngx", #out > 0 and 0 or timeout_ms, out) end
  return out
end

function Auto:pending()
  return pending_of(self.transports.curl) + pending_of(self.transports.ngx)
end

function Auto:close()
  for _, t in pairs(self.transports) do t:close() end
  self.transports = {}
end

-- M.new(cfg): cfg is the client's validated config. Nothing is created
-- until the first request. A proxy is refused up front inside nginx,
-- where the cosocket side could not honour it.
function M.new(cfg)
  cfg = cfg or {}
  if cfg.proxy and runtime.in_nginx() then
    local errors = require "alipay.errors"
    return errors.failure(errors.config("proxy", "inside nginx the default transport uses cosockets, which "
      .. 'cannot use a proxy; set transport = "curl" (it blocks the worker) or drop the proxy'))
  end
  return setmetatable({
    name = "auto", cfg = cfg, transports = {}, ids = { ngx = {}, curl = {} }, last_id = 0,
  }, Auto)
end

M.wanted = wanted

return M
