-- The business side of the sandbox gateway: one handler per messaging method
-- (docs/messaging.md §2, §3), shared by v2 and v3, plus the table that routes v2 method
-- names and v3 paths to them. Handlers see only a decoded biz table and the
-- state; signatures, encryption and wire shapes are openapi.lua's job.
-- The methods live by domain in alipay.sandbox.apis.<domain> (DOMAINS), each
-- a table of method -> {handler, invalid_code, path, verbs}.
--
--   local fields = apis.call(method, state, biz, ctx)
--     -> fields (business fields of a success) | nil, {sub_code=, sub_msg=}
--   ctx = {api = "v2"|"v3", app_id =, method =, now = unix seconds,
--          certs = the gateway's Alipay certificates, SN -> PEM}
--
-- Every rejection is a 40004 business error with the sub_code of the
-- method's official list (docs/conformance.md); bad or missing business
-- fields get the method's invalid_code, with a sub_msg that names the field
-- (as the real gateway's "参数有误" messages do).
local support = require "alipay.sandbox.apis.support"

local M = {}

M.array, M.encode = support.array, support.encode

-- (Each in parentheses: Lua 5.4's require also returns the file it loaded,
-- which the last item of a table constructor would add to the list.)
local DOMAINS = {
  (require "alipay.sandbox.apis.life"),
  (require "alipay.sandbox.apis.mini"),
  (require "alipay.sandbox.apis.cert"),
  (require "alipay.sandbox.apis.life_broadcast"),
  (require "alipay.sandbox.apis.life_labels"),
  (require "alipay.sandbox.apis.life_content"),
  (require "alipay.sandbox.apis.mini_templates"),
  (require "alipay.sandbox.apis.mini_batch"),
}

M.methods = {}
for _, domain in ipairs(DOMAINS) do
  for method, api in pairs(domain) do
    assert(not M.methods[method], "sandbox: " .. method .. " is defined twice")
    M.methods[method] = api
  end
end

M.by_path = {}
for method, api in pairs(M.methods) do
  M.by_path[api.path] = method
end

function M.known(method)
  return M.methods[method] ~= nil
end

-- The v3 route of path: method, api | nil
function M.route(path)
  local method = M.by_path[path]
  return method, method and M.methods[method]
end

-- Runs the handler of method. Business errors come back as values; any
-- other error is a bug of the sandbox and is raised as such.
function M.call(method, state, biz, ctx)
  local ok, res = pcall(M.methods[method].handler, state, biz, ctx)
  if ok then return res end
  if getmetatable(res) == support.BizError then
    local sub_code = res.sub_code
    if sub_code == support.INVALID then
      sub_code = M.methods[method].invalid_code or error("sandbox: " .. method .. " has no invalid_code", 0)
    end
    return nil, { sub_code = sub_code, sub_msg = res.sub_msg }
  end
  error(res, 0)
end

return M
