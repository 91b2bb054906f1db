-- One delivery attempt of a sandbox callback: an HTTP POST of a form body
-- over an nginx cosocket, inside the sandbox's worker (a request handler
-- or an ngx.timer). Plain HTTP to an IP literal (or localhost): the
-- sandbox has no resolver and no CA for the endpoint, and it is meant for
-- endpoints on this host.
--
--   sender.parse_url(url)            -> {host =, port =, path =, authority =} | nil, err
--   sender.post(target, body, opts)  -> {status =, answer =, answer_bytes =, truncated =} |
--                                       {error = "..."}
--     opts.timeout_ms (default 10000), opts.max_answer_bytes (default 256):
--     the answer is kept up to that length, control characters blanked
--     (it is recorded and printed, and it comes from anywhere).
local M = {}

M.DEFAULT_TIMEOUT_MS = 10000
M.MAX_ANSWER_BYTES = 256
local READ_LIMIT = 64 * 1024 -- more is read and dropped, never kept
local DRAIN_LIMIT = 1024 * 1024 -- past this the connection is closed: an answer that never ends
local USER_AGENT = "lua-alipay-sandbox"

local function ipv4(host)
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, n in ipairs { a, b, c, d } do
    if tonumber(n) > 255 then return false end
  end
  return true
end

function M.parse_url(url)
  if type(url) ~= "string" or url == "" then return nil, "url: expected http://HOST:PORT/PATH" end
  if #url > 2048 then return nil, "url: longer than 2048 characters" end
  if url:find("[%s%c]") then return nil, "url: contains spaces or control characters" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "url: expected http://HOST:PORT/PATH" end
  scheme = scheme:lower()
  if scheme ~= "http" then
    return nil, "url: the sandbox delivers over plain http only (" .. scheme ..
      " is not supported: it has no CA for the endpoint); serve the endpoint on http://127.0.0.1"
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if path == "" then path = "/" end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  path = path:gsub("#.*$", "")
  local host, port = authority:match("^([^:]+):(%d+)$")
  if not host then host, port = authority, "80" end
  port = tonumber(port)
  if not port or port < 1 or port > 65535 then return nil, "url: the port must be 1-65535" end
  local connect_host = host
  if host:lower() == "localhost" then
    connect_host = "127.0.0.1"
  elseif not ipv4(host) then
    return nil, "url: the host must be an IPv4 address or localhost (the sandbox resolves no names)"
  end
  return { host = connect_host, port = port, path = path, authority = authority }
end

-- The answer as recorded: at most max bytes, control characters blanked.
local function clip(text, max)
  local truncated = #text > max
  if truncated then text = text:sub(1, max) end
  return (text:gsub("%c", " ")), truncated
end

-- A chunked body, decoded; nil when it is not well formed.
local function dechunk(raw)
  local out, pos = {}, 1
  while true do
    local size_hex, after = raw:match("^(%x+)[^\r\n]*\r\n()", pos)
    if not size_hex then return nil end
    local size = tonumber(size_hex, 16)
    if size == 0 then return table.concat(out) end
    out[#out + 1] = raw:sub(after, after + size - 1)
    pos = after + size + 2
    if pos > #raw + 1 then return table.concat(out) end
  end
end

local function read_all(sock)
  local parts, total, seen = {}, 0, 0
  while true do
    local data, err, partial = sock:receive(8192)
    local piece = data or partial
    if piece and #piece > 0 and total < READ_LIMIT then
      parts[#parts + 1] = piece
      total = total + #piece
    end
    seen = seen + (piece and #piece or 0)
    if seen > DRAIN_LIMIT then return table.concat(parts) end
    if not data then
      if err == "closed" then return table.concat(parts) end
      return table.concat(parts), err
    end
  end
end

-- HTTP/1.0 with Connection: close: the endpoint answers and closes, with
-- or without Content-Length, and (nginx) never chunked; a chunked answer
-- from another server is decoded all the same.
function M.post(target, body, opts)
  opts = opts or {}
  local sock = ngx.socket.tcp()
  sock:settimeout(opts.timeout_ms or M.DEFAULT_TIMEOUT_MS)
  local ok, err = sock:connect(target.host, target.port)
  if not ok then return { error = "connect: " .. tostring(err) } end
  local request = table.concat {
    "POST ", target.path, " HTTP/1.0\r\n",
    "Host: ", target.authority, "\r\n",
    "User-Agent: ", USER_AGENT, "\r\n",
    "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n",
    "Content-Length: ", tostring(#body), "\r\n",
    "Connection: close\r\n\r\n",
    body,
  }
  ok, err = sock:send(request)
  if not ok then
    sock:close()
    return { error = "send: " .. tostring(err) }
  end
  local raw, rerr = read_all(sock)
  sock:close()
  local head, rest = raw:match("^(.-)\r?\n\r?\n(.*)$")
  if not head then
    return { error = rerr and ("receive: " .. tostring(rerr)) or "the endpoint sent no HTTP answer" }
  end
  local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return { error = "the endpoint's answer is not HTTP" } end
  local lower = head:lower()
  local answer = rest
  if lower:find("\ntransfer%-encoding:%s*chunked") then
    answer = dechunk(rest) or rest
  else
    local length = tonumber(lower:match("\ncontent%-length:%s*(%d+)"))
    if length and #answer > length then answer = answer:sub(1, length) end
  end
  local max = opts.max_answer_bytes or M.MAX_ANSWER_BYTES
  local clipped, truncated = clip(answer, max)
  return { status = status, answer = clipped, answer_bytes = #answer, truncated = truncated or nil,
    exact = answer, error = rerr and ("receive: " .. tostring(rerr)) or nil }
end

return M
