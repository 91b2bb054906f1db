-- Editing the channel file (the JSON that alipay.messaging.channels.load reads)
-- without writing JSON by hand: add or update one channel, remove one, list
-- them. Keys are checked before anything is written; the file only ever
-- holds their paths, stored relative to the channel file so that the
-- directory can move as a whole.
--
--   local channel_file = require "alipay.workspace.channel_file"
--   channel_file.put(path, code, fields, opts) -> result | nil, err, detail
--     fields: kind, app_id, id_type, env | gateway, sign_type, and the files, as
--             paths relative to the working directory (or absolute):
--             private_key_file, alipay_public_key_file | app_cert_file +
--             alipay_cert_file + alipay_root_cert_file, app_public_key_file, ca_file
--     opts:   update = true to change an existing channel (only the given fields
--             change; giving one key mode or endpoint drops the other),
--             names = {field = "--option"} for messages
--     result: {action = "added" | "updated", code =, channel = (as stored), path =}
--   channel_file.remove(path, code) -> {code =, left = n} | nil, err, detail
--   channel_file.list(path) -> rows | nil, err, detail
--     row: {code=, kind=, app_id=, id_type=, mode = "public key" | "certificate", endpoint=}
--
-- Writing is atomic and keeps everything else of the file (the other
-- channels, "store") as it was read; the file is rewritten with sorted keys.
-- A relative path given by the caller is rebased onto the channel file's
-- directory; an absolute path is kept as given (the operator chose a fixed
-- place, e.g. /etc/alipay/).
local cjson = require("cjson.safe").new()
local channels = require "alipay.messaging.channels"
local errors = require "alipay.errors"
local keyfiles = require "alipay.keyfiles"
local fs = require "alipay.util.fs"
local path = require "alipay.util.path"
local is_list = require("alipay.util.table").is_list

local M = {}

M.FILE_FIELDS = { "private_key_file", "alipay_public_key_file", "app_cert_file", "alipay_cert_file",
  "alipay_root_cert_file", "app_public_key_file", "ca_file" }
local CERT_FIELDS = { "app_cert_file", "alipay_cert_file", "alipay_root_cert_file" }
-- Which material each key field holds (alipay.keyfiles).
local MATERIAL = {
  private_key_file = "private_key", alipay_public_key_file = "public_key", app_public_key_file = "public_key",
  app_cert_file = "app_cert", alipay_cert_file = "alipay_cert", alipay_root_cert_file = "root_cert",
}
M.MATERIAL = MATERIAL
local ENVS = { production = true, sandbox = true }
local CODE_PATTERN = "^[%w][%w_.%-]*$"

local function input(fmt, ...)
  return errors.fail("input", select("#", ...) > 0 and fmt:format(...) or fmt)
end

-- ---- JSON out ----

-- Debian's cjson 2.1.0 cannot stop escaping '/'; every "\/" left after
-- encoding is an escaped '/' (a backslash comes out doubled).
local function scalar(v)
  return (assert(cjson.encode(v)):gsub("\\/", "/"))
end

-- Sorted keys and two-space indentation: a stable file that diffs well.
local function pretty(v, indent)
  if type(v) ~= "table" or v == cjson.null then return scalar(v) end
  local inner = indent .. "  "
  local items = {}
  if next(v) ~= nil and is_list(v) then -- {} is written as an object
    for i, item in ipairs(v) do items[i] = inner .. pretty(item, inner) end
    return "[\n" .. table.concat(items, ",\n") .. "\n" .. indent .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  if #keys == 0 then return "{}" end
  table.sort(keys)
  for i, k in ipairs(keys) do items[i] = inner .. scalar(k) .. ": " .. pretty(v[k], inner) end
  return "{\n" .. table.concat(items, ",\n") .. "\n" .. indent .. "}"
end
M.pretty = function(v) return pretty(v, "") .. "\n" end

-- ---- reading and writing ----

-- -> doc {path=, dir=, data=, exists=} | nil, err, detail. A file that is
-- not there yet reads as no channels.
local function read(file)
  if file:match("%.lua$") then
    if not fs.exists(file) then
      return input("%s: channel add writes JSON channel files; give a .json path", file)
    end
  elseif not fs.exists(file) then
    return { path = file, dir = path.dirname(file), data = { channels = {} }, exists = false }
  end
  local data, base_dir, detail = channels.read(file)
  if not data then
    -- on failure the second value is the message
    return errors.wrap(base_dir, detail, "config", { config_file = file })
  end
  if data.channels == nil then data.channels = {} end
  if type(data.channels) ~= "table" then return input("%s: \"channels\" is not an object", file) end
  return { path = file, dir = base_dir, data = data, exists = true, lua = file:match("%.lua$") ~= nil }
end
M.read = read

local function write(doc)
  if doc.lua then
    return input("%s is a Lua channel file: edit it by hand (channel add and remove write JSON files)", doc.path)
  end
  local ok, err = fs.write_atomic(doc.path, M.pretty(doc.data))
  if not ok then return errors.fail("io", ("%s: cannot write: %s"):format(doc.path, tostring(err))) end
  return true
end

-- ---- add / update ----

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

local function check_values(code, fields, names)
  local function name(f) return names[f] or f end
  if type(code) ~= "string" or #code > 64 or not code:match(CODE_PATTERN) then
    return input("%s is not a channel code (letters, digits, '_', '.', '-'; at most 64)", tostring(code))
  end
  if fields.kind and not channels.KINDS[fields.kind] then
    return input('%s must be "alipaylife" or "alipaymini"', name("kind"))
  end
  if fields.id_type and not channels.ID_TYPES[fields.id_type] then
    return input('%s must be "user_id" or "open_id"', name("id_type"))
  end
  if fields.app_id and not fields.app_id:match("^%d+$") then
    return input("%s must be the app's numeric id, e.g. 2021000122671080", name("app_id"))
  end
  if fields.env and not ENVS[fields.env] then return input('%s must be "sandbox" or "production"', name("env")) end
  if fields.env and fields.gateway then return input("give %s or %s, not both", name("env"), name("gateway")) end
  if fields.gateway and not fields.gateway:match("^https?://[^/?#]+/[^?#]*$") then
    return input("%s must be an http(s) URL with a path, e.g. https://openapi.alipay.com/gateway.do", name("gateway"))
  end
  local certs = 0
  for _, f in ipairs(CERT_FIELDS) do if fields[f] then certs = certs + 1 end end
  if certs > 0 and fields.alipay_public_key_file then
    return input("give %s or the three certificates (%s, %s, %s), not both", name("alipay_public_key_file"),
      name("app_cert_file"), name("alipay_cert_file"), name("alipay_root_cert_file"))
  end
  for _, f in ipairs(M.FILE_FIELDS) do
    if fields[f] ~= nil and (type(fields[f]) ~= "string" or fields[f] == "") then
      return input("%s must be a file path", name(f))
    end
  end
end

-- The stored spec: the old one (on update) with the given fields over it.
-- Giving one key mode drops the other, and one endpoint the other.
local function merged(old, fields)
  local spec = copy(old)
  if fields.private_key_file then spec.private_key_env = nil end
  if fields.alipay_public_key_file then
    for _, f in ipairs(CERT_FIELDS) do spec[f] = nil end
  end
  for _, f in ipairs(CERT_FIELDS) do
    if fields[f] then spec.alipay_public_key_file, spec.alipay_public_key_env = nil, nil end
  end
  if fields.env then spec.gateway = nil end
  if fields.gateway then spec.env = nil end
  for k, v in pairs(fields) do spec[k] = v end
  return spec
end

local function check_complete(code, spec, names, is_new)
  local function name(f) return names[f] or f end
  local missing = {}
  for _, f in ipairs { "kind", "app_id" } do
    if not spec[f] then missing[#missing + 1] = name(f) end
  end
  if not spec.private_key_file and not spec.private_key_env then missing[#missing + 1] = name("private_key_file") end
  local certs = 0
  for _, f in ipairs(CERT_FIELDS) do if spec[f] then certs = certs + 1 end end
  if certs == 0 and not spec.alipay_public_key_file and not spec.alipay_public_key_env then
    missing[#missing + 1] = ("%s (or %s, %s and %s)"):format(name("alipay_public_key_file"), name("app_cert_file"),
      name("alipay_cert_file"), name("alipay_root_cert_file"))
  elseif certs > 0 and certs < 3 then
    for _, f in ipairs(CERT_FIELDS) do
      if not spec[f] then missing[#missing + 1] = name(f) end
    end
  end
  if #missing > 0 then
    return input("channel %s%s needs %s", code, is_new and " is new: it" or "", table.concat(missing, ", "))
  end
end

-- Checks every given key file (named by its option) before anything else.
local function check_keys(fields, names, sign_type)
  local info = {}
  for field, what in pairs(MATERIAL) do
    if fields[field] then
      local got, err, detail = keyfiles.check(fields[field], what,
        { name = names[field] or field, sign_type = sign_type })
      if not got then return nil, err, detail end
      info[field] = got
    end
  end
  return info
end

-- The app public key (or certificate) and the private key of the stored
-- spec are a pair, when this call gave either of them.
local function check_pair(spec, fields, doc, names)
  local public_field = spec.app_cert_file and "app_cert_file" or spec.app_public_key_file and "app_public_key_file"
  if not (public_field and spec.private_key_file) then return end
  if not (fields[public_field] or fields.private_key_file) then return end
  local function at(p) return path.is_absolute(p) and p or (doc.dir .. "/" .. p) end
  local private = keyfiles.check(at(spec.private_key_file), "private_key", { sign_type = spec.sign_type })
  local public = keyfiles.check(at(spec[public_field]), MATERIAL[public_field], { sign_type = spec.sign_type })
  if private and public and not keyfiles.pair(private, public) then
    local function shown(f) return (names[f] or f) .. " " .. (fields[f] or spec[f]) end
    return input("%s is not the public half of %s: they are not a key pair", shown(public_field),
      shown("private_key_file"))
  end
end

-- Paths as the channel file stores them: relative to its directory.
local function rebase(fields, doc)
  local out = copy(fields)
  local cwd, err = path.cwd()
  if not cwd then return errors.fail("io", err) end
  local dir = path.absolute(doc.dir, cwd)
  for _, f in ipairs(M.FILE_FIELDS) do
    local p = out[f]
    if p and not path.is_absolute(p) then out[f] = path.relative(dir, path.absolute(p, cwd)) end
  end
  return out
end

function M.put(file, code, fields, opts)
  opts = opts or {}
  local names = opts.names or {}
  local _, err, detail = check_values(code, fields, names)
  if err then return nil, err, detail end
  local doc
  doc, err, detail = read(file)
  if not doc then return nil, err, detail end
  local old = doc.data.channels[code]
  if old ~= nil and type(old) ~= "table" then return input("%s: channel %s is not an object", file, code) end
  if old and not opts.update then
    return errors.fail("state", ("channel %s is already in %s: give --update to change it"):format(code, file))
  end
  local spec = merged(old, fields)
  _, err, detail = check_complete(code, spec, names, old == nil)
  if err then return nil, err, detail end
  _, err, detail = check_keys(fields, names, spec.sign_type)
  if err then return nil, err, detail end
  local stored
  stored, err, detail = rebase(fields, doc)
  if not stored then return nil, err, detail end
  spec = merged(old, stored)
  _, err, detail = check_pair(spec, fields, doc, names)
  if err then return nil, err, detail end

  -- The channel as alipay.messaging.channels.load will read it (this channel only:
  -- the others may name environment variables this shell does not have).
  local set, lerr, ldetail = channels.load({ channels = { [code] = spec } }, { base_dir = doc.dir })
  if not set then
    return errors.fail("config", { channel = code, field = ldetail and ldetail.field, config_file = file,
      msg = ("the channel would not load: %s"):format(tostring(ldetail and ldetail.msg or lerr)) })
  end
  set:close()
  doc.data.channels[code] = spec
  local ok
  ok, err, detail = write(doc)
  if not ok then return nil, err, detail end
  return { action = old and "updated" or "added", code = code, channel = spec, path = file }
end

-- ---- remove, list ----

function M.remove(file, code)
  if not fs.exists(file) then return errors.fail("io", ("%s: no such channel file"):format(file)) end
  local doc, err, detail = read(file)
  if not doc then return nil, err, detail end
  if doc.data.channels[code] == nil then
    return errors.fail("state", ("channel %s is not in %s"):format(tostring(code), file))
  end
  doc.data.channels[code] = nil
  local ok
  ok, err, detail = write(doc)
  if not ok then return nil, err, detail end
  local left = 0
  for _ in pairs(doc.data.channels) do left = left + 1 end
  return { code = code, left = left, path = file }
end

function M.list(file)
  if not fs.exists(file) then return errors.fail("io", ("%s: no such channel file"):format(file)) end
  local doc, err, detail = read(file)
  if not doc then return nil, err, detail end
  local rows = {}
  for code, spec in pairs(doc.data.channels) do
    if type(spec) == "table" then
      local cert = spec.app_cert_file or spec.alipay_cert_file or spec.alipay_root_cert_file
      rows[#rows + 1] = { code = tostring(code), kind = spec.kind, app_id = spec.app_id,
        id_type = spec.id_type or "user_id", mode = cert and "certificate" or "public key",
        endpoint = spec.gateway or spec.env or "production" }
    end
  end
  table.sort(rows, function(a, b) return a.code < b.code end)
  return rows
end

return M
