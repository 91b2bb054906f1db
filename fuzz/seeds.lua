-- Seed inputs for the fuzz targets, from spec/fixtures/vectors.json and
-- spec/fixtures/keys/. As a module: require("seeds").build(root) ->
-- { target = { name = bytes, ... }, ... }. As a script:
--   lua5.4 fuzz/seeds.lua [OUTDIR]   (default fuzz/corpus)
-- writes OUTDIR/<target>/<name>. Run from the repository root.
local cjson = require "cjson"

local M = {}

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local KEY_FILES = {
  "alipay_cert.crt", "alipay_notify_public_v1.txt", "alipay_notify_public_v2.pem",
  "alipay_public_sandbox.pem", "alipay_public_stable.txt", "alipay_root_cert.crt",
  "app_cert.crt", "app_private_pkcs1.pem", "app_private_pkcs8.pem", "app_public.pem",
}

-- A status line byte: see harness.lua (bit 0 HEAD, bit 1 timeout at the
-- end, bit 2 reused, bits 3-7 chunk size).
local function ngx_seeds(bodies)
  local s = {}
  local body = bodies[1] or "{}"
  local function add(name, ctl, text) s[name] = string.char(ctl) .. text end
  add("length", 255, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    .. #body .. "\r\n\r\n" .. body)
  add("length_trickle", 0, "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
  local chunks = {}
  for i = 1, #body, 7 do
    local piece = body:sub(i, i + 6)
    chunks[#chunks + 1] = string.format("%x;ext=1\r\n%s\r\n", #piece, piece)
  end
  add("chunked", 8 * 3, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    .. table.concat(chunks) .. "0\r\nX-Trailer: 1\r\n\r\n")
  add("close_http10", 8 * 31 + 2, "HTTP/1.0 502 Bad Gateway\r\nConnection: keep-alive\r\n"
    .. "X-Folded: a\r\n  b\r\nX-Rep: 1\r\nX-Rep: 2\r\n\r\n" .. body)
  add("continue_head", 8 * 31 + 1, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
    .. "Link: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
  add("bad_length", 8 * 31, "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd")
  add("stale_reused", 4, "")
  add("bare_lf", 8 * 31, "HTTP/1.1 301 Moved\nLocation: /x\nContent-Length: 0\n\n")
  return s
end

function M.build(root)
  root = root or "."
  local v = cjson.decode(slurp(root .. "/spec/fixtures/vectors.json"))
  local out = { extract = {}, keys = {}, form = {}, codec = {}, ngx = {} }
  local bodies = {}
  for i, e in ipairs(v.extract or {}) do
    out.extract["extract_" .. i] = e.body
    bodies[#bodies + 1] = e.body
  end
  for i, e in ipairs(v.response_verify or {}) do
    out.extract["response_" .. i] = e.body
    bodies[#bodies + 1] = e.body
  end
  for _, name in ipairs(KEY_FILES) do
    local f = io.open(root .. "/spec/fixtures/keys/" .. name, "rb")
    if f then
      out.keys[name] = f:read("*a")
      f:close()
    end
  end
  for i, e in ipairs(v.notify or {}) do
    local fields = {}
    for k, val in pairs(e.params or {}) do fields[#fields + 1] = { k, val } end
    table.sort(fields, function(a, b) return a[1] < b[1] end)
    local parts = {}
    for _, kv in ipairs(fields) do
      parts[#parts + 1] = (kv[1]:gsub("[^%w._~-]", function(c) return string.format("%%%02X", c:byte()) end))
        .. "=" .. (tostring(kv[2]):gsub("[^%w._~ -]", function(c)
          return string.format("%%%02X", c:byte()) end):gsub(" ", "+"))
    end
    out.form["notify_" .. i] = table.concat(parts, "&")
    if e.content then out.form["content_" .. i] = e.content end
  end
  out.form.small = "a=1&b=%41%42+c&empty=&flag"
  for i, e in ipairs(v.aes or {}) do
    out.codec["aes_" .. i] = e.cipher
    out.codec["key_" .. i] = e.key
  end
  for i, e in ipairs(v.request_sign or {}) do out.codec["sign_" .. i] = e.sign end
  out.codec.wrapped = "QUJD\r\nREVG\n R0g=\t"
  out.ngx = ngx_seeds(bodies)
  return out
end

-- Script: write the files.
if arg and type(arg[0]) == "string" and arg[0]:find("seeds%.lua$") then
  local dir = arg[1] or "fuzz/corpus"
  local n = 0
  for target, files in pairs(M.build(".")) do
    os.execute("mkdir -p '" .. dir .. "/" .. target .. "'")
    for name, bytes in pairs(files) do
      local f = assert(io.open(dir .. "/" .. target .. "/" .. name, "wb"))
      f:write(bytes)
      f:close()
      n = n + 1
    end
  end
  io.stderr:write("seeds: ", n, " files in ", dir, "\n")
end

return M
