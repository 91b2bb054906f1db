-- `alipay call`: any Open Platform API, signed and verified like every
-- other call, for the APIs the other commands do not cover and for
-- looking at an answer as Alipay sent it.
--   alipay call alipay.open.public.user.follow.query '{"user_id":"2088..."}'
--   alipay call --v3 POST /v3/alipay/open/app/messagetemplate/subscribe/query @query.json
-- The request JSON is sent as written (only checked to be an object), so
-- large numbers keep their digits.
local common = require "alipay.cli.common"

local M = { summary = "Call any API (v2 method or v3 path) and print the verified answer as JSON." }

local V3_METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

local function looks_like_body(s)
  return s ~= nil and (s:match("^%s*[{%[]") or s:sub(1, 1) == "@") ~= nil
end

-- The request body: JSON text, or @FILE. -> text | nil | nil, err
local function body_of(arg)
  if arg == nil then return nil end
  local text, what = arg, "the request"
  if arg:sub(1, 1) == "@" then
    local err, detail
    text, err, detail = common.read_text(arg:sub(2), "@" .. arg:sub(2))
    if not text then return nil, err, detail end
    what = arg:sub(2)
  end
  local decoded, err = common.decode_json(text, what)
  if not decoded then return nil, common.usage("%s", err) end
  return text
end

local function call(ctx, args, out)
  local method, body_arg = args.method, args.body
  -- With --v3 the method name is optional: `call --v3 POST /v3/... '{...}'`.
  if args.v3 and body_arg == nil and looks_like_body(method) then method, body_arg = nil, method end
  if not args.v3 and not method then
    return nil, common.usage("give a method name (e.g. alipay.open.public.user.follow.query), or --v3 "
      .. "HTTP_METHOD PATH")
  end
  if method and not method:match("^%a[%w_]*%.[%w_.]*%w$") then
    return nil, common.usage("%s is not a method name such as alipay.open.public.user.follow.query", method)
  end
  local http_method, path
  if args.v3 then
    http_method, path = args.v3[1]:upper(), args.v3[2]
    if not V3_METHODS[http_method] then
      return nil, common.usage("--v3: %s is not an HTTP method (GET, POST, PUT, PATCH, DELETE)", args.v3[1])
    end
    if path:sub(1, 4) ~= "/v3/" then return nil, common.usage("--v3: the path must start with /v3/") end
  end
  local body, err, detail = body_of(body_arg)
  if err then return nil, err, detail end
  local channel
  channel, err, detail = ctx:channel(nil)
  if not channel then return nil, err, detail end

  local answer
  if args.v3 then
    answer, err, detail = channel.client:v3(http_method, path, body)
  else
    answer, err, detail = channel.client:execute(method, body)
  end
  if not answer then return nil, err, detail end
  common.json(out, answer)
  return true
end

function M.configure(cmd, cli)
  cmd:argument("method", "The v2 method name, e.g. alipay.open.public.user.follow.query (optional with --v3)."):
    args("?")
  cmd:argument("body", "The request as JSON (biz_content for v2, the body for v3), or @FILE to read it "
    .. "from a file."):args("?"):argname("<json|@file>")
  cmd:option("--v3", "Call the v3 API instead: the HTTP method and the path (with its query), e.g. "
    .. "--v3 POST /v3/alipay/open/app/messagetemplate/subscribe/query."):args(2)
    :argname { "<http_method>", "<path>" }
  common.options(cmd, cli, { channel = true, channel_help = "The channel whose app makes the call "
    .. "(default: the only channel)." })
end

M.run = common.runner(call)

return M
