-- Store locations given as URLs (docs/architecture.md §8): which backend a
-- location names, its parts, and the form that may be shown. A plain path
-- is an SQLite file; postgresql:// and postgres:// name a PostgreSQL
-- database. The password a URL may carry never leaves this module except
-- in parse()'s result, which only the backend's connect reads.
--
--   local url = require "alipay.store.url"
--   url.is_url("postgresql://u@h/db")       -- true (any scheme://)
--   url.backend("postgres://u@h/db")        -- "postgres"; a path: "sqlite"; another scheme: nil, err
--   url.parse("postgresql://u:pw@h:5433/db") -- {scheme=, user=, password=, host=, port=, database=} | nil, err
--   url.redact("postgresql://u:pw@h/db")    -- "postgresql://u@h/db": for every message and log
local M = {}

M.SCHEMES = { postgresql = "postgres", postgres = "postgres" }

-- Whether s is a URL (scheme://...) rather than a file path. A relative
-- path such as "a:b/c" is not: a URL needs the two slashes.
function M.is_url(s)
  return type(s) == "string" and s:match("^%a[%w+.-]*://") ~= nil
end

-- The backend a store location names -> name | nil, err.
function M.backend(s)
  if not M.is_url(s) then return "sqlite" end
  local scheme = s:match("^(%a[%w+.-]*)://"):lower()
  local name = M.SCHEMES[scheme]
  if not name then
    return nil, ("unknown store URL scheme %s:// (known: postgresql://, postgres://; a file path is SQLite)")
      :format(scheme)
  end
  return name
end

-- The URL without its password (and without a query string's values):
-- the form every message, log line and status output uses.
function M.redact(s)
  if not M.is_url(s) then return s end
  local scheme, rest = s:match("^([^:]+)://(.*)$")
  local authority, tail = rest:match("^([^/?#]*)(.*)$")
  local userinfo, hostport = authority:match("^(.*)@(.-)$")
  if userinfo then authority = (userinfo:match("^([^:]*)") or "") .. "@" .. hostport end
  tail = tail:gsub("%?.*$", "")
  return scheme .. "://" .. authority .. tail
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- postgresql://[user[:password]@][host][:port]/database -> parts | nil, err.
-- err never repeats the URL (it may hold a password). host "" (or a
-- missing one) is libpq's default, the local socket.
function M.parse(s)
  if not M.is_url(s) then return nil, "not a URL: postgresql://USER@HOST:PORT/DATABASE" end
  local scheme, rest = s:match("^([^:]+)://(.*)$")
  scheme = scheme:lower()
  if not M.SCHEMES[scheme] then return nil, ("unknown scheme %s://"):format(scheme) end
  if rest:find("[?#]") then
    return nil, "the URL has a query string or fragment, which lua-alipay does not read (give user, host, port, "
      .. "database only; the password may come from PGPASSWORD)"
  end
  local authority, path = rest:match("^([^/]*)(.*)$")
  local userinfo, hostport = authority:match("^(.*)@(.-)$")
  if not userinfo then hostport = authority end
  local user, password
  if userinfo then
    user, password = userinfo:match("^([^:]*):(.*)$")
    if not user then user = userinfo end
    user, password = unescape(user), password and unescape(password)
  end
  local host, port
  if hostport:sub(1, 1) == "[" then
    host, port = hostport:match("^%[([^%]]*)%]:?(%d*)$")
  else
    host, port = hostport:match("^([^:]*):?(%d*)$")
  end
  if not host then return nil, "the URL's host:port is malformed" end
  if port ~= "" then
    port = tonumber(port)
    if port < 1 or port > 65535 then return nil, "the URL's port must be 1 to 65535" end
  else
    port = nil
  end
  local database = path:match("^/(.+)$")
  if not database or database:find("/", 1, true) then
    return nil, "the URL must name a database: postgresql://USER@HOST:PORT/DATABASE"
  end
  return {
    scheme = scheme, user = user ~= "" and user or nil, password = password ~= "" and password or nil,
    host = host ~= "" and unescape(host) or nil, port = port, database = unescape(database),
  }
end

return M
