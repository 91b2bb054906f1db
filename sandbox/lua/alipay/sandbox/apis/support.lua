-- What every business handler of the sandbox gateway shares: the one
-- deterministic JSON encoder, business errors (fail, illegal) and the
-- readers of biz fields, which refuse a bad field naming it.
local cjson = require "cjson"
local tables = require "alipay.util.table"
local utf8_text = require "alipay.util.utf8"

local M = {}

-- ---- JSON: one deterministic encoder for everything the sandbox writes ----

-- Arrays that may be empty are marked so they encode as [] (cjson would
-- write {}); everything else is an object when its keys are not 1..n.
local ARRAY = {}
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

local LEADING = { code = 1, msg = 2, sub_code = 3, sub_msg = 4 }
local function key_order(a, b)
  local la, lb = LEADING[a], LEADING[b]
  if la or lb then return (la or 99) < (lb or 99) end
  return a < b
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  return next(t) ~= nil and tables.is_list(t)   -- an empty decoded table is an object here
end

-- Objects get code, msg, sub_code, sub_msg first (Alipay's order), then
-- the other keys sorted: the same bytes under Lua 5.4 and LuaJIT, where
-- cjson's own order follows the hash layout. Scalars go through cjson, so
-- strings are escaped as Alipay escapes them ("/" becomes "\/").
local function encode(v)
  if type(v) ~= "table" then return cjson.encode(v) end
  local out = {}
  if is_array(v) then
    for i = 1, #v do out[i] = encode(v[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys, key_order)
  for i, k in ipairs(keys) do
    out[i] = cjson.encode(k) .. ":" .. encode(v[k])
  end
  return "{" .. table.concat(out, ",") .. "}"
end
M.encode = encode
M.is_array = is_array

-- ---- business errors ----

local BizError = {}
M.BizError = BizError

local function fail(sub_code, sub_msg)
  error(setmetatable({ sub_code = sub_code, sub_msg = sub_msg }, BizError), 0)
end

-- Bad arguments: each method names them with its own code (M.methods,
-- invalid_code, from the method's official code list); M.call fills it in.
local INVALID = "<invalid>"
local function illegal(detail)
  fail(INVALID, "参数有误：" .. detail)
end

-- ---- field readers ----

local null = cjson.null

-- UTF-8 characters, not bytes: the documented limits count characters.
local chars = utf8_text.chars

-- Display width for action_name: an ASCII character counts 1, anything
-- else (CJK) 2, so "8 CJK or 16 ASCII characters" is one limit of 16.
local function width(s)
  local w = 0
  for lead in s:gmatch("[^\128-\191]") do
    w = w + (lead:byte() < 128 and 1 or 2)
  end
  return w
end

-- A string field: absent (nil, null or "") -> nil; another type -> illegal.
local function opt_string(t, key, path)
  local v = t[key]
  if v == nil or v == null or v == "" then return nil end
  if type(v) ~= "string" then illegal((path or key) .. " must be a string") end
  return v
end

local function req_string(t, key, path, max_chars)
  local v = opt_string(t, key, path)
  if not v then illegal((path or key) .. " is required") end
  if max_chars and chars(v) > max_chars then
    illegal(("%s is longer than %d characters"):format(path or key, max_chars))
  end
  return v
end

local function opt_object(t, key, path)
  local v = t[key]
  if v == nil or v == null then return nil end
  if type(v) ~= "table" or is_array(v) then illegal((path or key) .. " must be a JSON object") end
  return v
end

-- The recipient of a call: exactly one of the two id fields, of the type
-- this app uses (an open_id app does not accept user ids, and the other way
-- round): a client must carry the id type, never guess it.
local function recipient(state, biz, user_key, open_key)
  local user_id, open_id = opt_string(biz, user_key), opt_string(biz, open_key)
  if user_id and open_id then illegal(user_key .. " and " .. open_key .. ": give only one") end
  if not user_id and not open_id then illegal(user_key .. " or " .. open_key .. " is required") end
  local id_type, key = "user_id", user_key
  if open_id then id_type, key = "open_id", open_key end
  if id_type ~= state.id_type then
    illegal(("%s: this app identifies users by %s"):format(key, state.id_type))
  end
  return id_type, user_id or open_id, key
end

local function keyword_keys(n)
  local keys = {}
  for i = 1, n do keys[i] = "keyword" .. i end
  return keys
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

M.fail, M.illegal, M.INVALID = fail, illegal, INVALID
M.width, M.opt_string, M.req_string, M.opt_object = width, opt_string, req_string, opt_object
M.recipient, M.keyword_keys, M.sorted_keys = recipient, keyword_keys, sorted_keys

return M
