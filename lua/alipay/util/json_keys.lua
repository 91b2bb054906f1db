-- The repeated key of a JSON object's text. lua-cjson keeps the last of
-- {"user_id":"1","user_id":"2"} without a word; where the key picks who
-- gets a message, a repeat is ambiguous and must be refused instead.
-- Runs on Lua 5.4 and LuaJIT.
--
--   local json_keys = require "alipay.util.json_keys"
--   json_keys.repeated(text, decoded) -> the first key that appears twice at
--     the top level of the object | nil
--
-- text must be valid JSON (decode it first): the scan only tells strings
-- from structure. `decoded` (that decoding, a table) makes the usual case
-- cheap: when the text has no more `":` than the object has keys and no
-- value is itself an object or array, no key can appear twice (every key
-- is followed by one), and nothing is scanned. Keys are compared decoded,
-- so "user_id" and "user\u005fid" are the same key.
local cjson = require("cjson.safe").new()

local M = {}

local function decoded_key(raw)
  if not raw:find("\\", 1, true) then return raw end
  return cjson.decode('"' .. raw .. '"') or raw
end

-- The end of the string whose opening quote is at `open` -> the position of
-- its closing quote.
local function string_end(text, open)
  local pos = open + 1
  while true do
    local q = text:find('["\\]', pos)
    if not q then return #text end
    if text:byte(q) == 92 then -- a backslash: the next byte is escaped
      pos = q + 2
    else
      return q
    end
  end
end

local function cheap_answer(text, decoded)
  if type(decoded) ~= "table" then return false end
  local keys = 0
  for _, v in pairs(decoded) do
    if type(v) == "table" then return false end
    keys = keys + 1
  end
  local _, colons = text:gsub('"%s*:', "")
  return colons <= keys
end

function M.repeated(text, decoded)
  if cheap_answer(text, decoded) then return nil end
  local seen, depth, pos = {}, 0, 1
  while true do
    local i = text:find('["{}%[%]]', pos)
    if not i then return nil end
    local c = text:byte(i)
    if c == 34 then -- a string: a key when it is at depth 1 and a colon follows
      local close = string_end(text, i)
      if depth == 1 and text:find("^%s*:", close + 1) then
        local key = decoded_key(text:sub(i + 1, close - 1))
        if seen[key] then return key end
        seen[key] = true
      end
      pos = close + 1
    else
      depth = depth + ((c == 123 or c == 91) and 1 or -1)
      pos = i + 1
    end
  end
end

return M
