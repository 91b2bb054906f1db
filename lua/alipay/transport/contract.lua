-- The transport contract: what alipay.new accepts as config.transport,
-- and what the built-in transports (curl, ngx, auto) provide. The client
-- signs the request, hands it to the transport, and verifies and types
-- what comes back (alipay.client); a transport only moves bytes.
--
-- Tier 1, required: one blocking (or, in nginx, yielding) exchange.
--   transport:request(req) -> res | nil, err, detail
--     req    = {method=, url=, headers=, body=, timeout_ms=, idempotent=}
--              (alipay.transport.request: what curl and ngx accept).
--              idempotent = true marks a query: a transport may send it
--              again by itself; any other request it must send at most
--              once (a failure after it was written is reason "reset").
--     res    = {status=<number>, headers=<table, lowercased names>, body=<string>, ...}
--              (curl and ngx add connects=, reused=, time_ms=)
--     err    = a one-line message; detail = a typed error (alipay.errors,
--              kind "transport" with a reason: timeout, connect, resolve,
--              tls, reset, too_large, send, recv, other). A custom transport
--              may return only a message, or the typed error as err: the
--              client types it ("transport", reason "other").
--     Misuse (a request that is not one) raises.
--
-- Tier 2, optional (concurrency: campaigns, many queries in flight): all
-- three or none.
--   transport:submit(req) -> id | nil, err, detail   starts the exchange
--   transport:wait(timeout_ms) -> list              finished exchanges: as
--     soon as one has finished, at the timeout (nil: until one finishes;
--     0: never waits), or at once when nothing is in flight; possibly
--     empty; each entry {id=, res=} or {id=, err=, detail=} with err and
--     detail as in tier 1. Every id submitted comes back once.
--   transport:pending() -> number   submitted, not yet returned by wait
--
-- Optional: transport:close(), called once by client:close().
--
--   local contract = require "alipay.transport.contract"
--   contract.check(t) -> tier (1 or 2) | nil, message naming what is missing
local M = {}

M.TIER1 = { "request" }
M.TIER2 = { "submit", "wait", "pending" }
M.OPTIONAL = { "close" }

local SIGNATURES = {
  request = "request(req) -> res | nil, err, detail",
  submit = "submit(req) -> id | nil, err, detail",
  wait = "wait(timeout_ms) -> {{id=, res=} | {id=, err=, detail=}, ...}",
  pending = "pending() -> number",
  close = "close()",
}
M.SIGNATURES = SIGNATURES

-- A method may come from the table or its metatable (__index): an object.
local function has(t, name)
  return type(t[name]) == "function"
end

function M.check(t)
  if type(t) ~= "table" then return nil, "a transport must be a table with a request function" end
  if not has(t, "request") then
    local msg = "the transport table has no request function (tier 1 needs " .. SIGNATURES.request .. ")"
    if t.request ~= nil then msg = "the transport's request is a " .. type(t.request) .. ", not a function" end
    return nil, msg
  end
  local present, missing = {}, {}
  for _, name in ipairs(M.TIER2) do
    if has(t, name) then
      present[#present + 1] = name
    else
      missing[#missing + 1] = t[name] == nil and name or (name .. " (a " .. type(t[name]) .. ")")
    end
  end
  for _, name in ipairs(M.OPTIONAL) do
    if t[name] ~= nil and not has(t, name) then
      return nil, "the transport's " .. name .. " is a " .. type(t[name]) .. ", not a function"
    end
  end
  if #present == 0 then return 1 end
  if #missing == 0 then return 2 end
  local needed = {}
  for _, name in ipairs(missing) do needed[#needed + 1] = SIGNATURES[name:match("^%w+")] end
  return nil, ("the transport has %s but not %s: concurrency (tier 2) needs submit, wait and pending "
    .. "together; add %s, or drop %s to use request only"):format(
    table.concat(present, ", "), table.concat(missing, ", "), table.concat(needed, "; "),
    table.concat(present, ", "))
end

return M
