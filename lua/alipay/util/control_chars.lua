-- The one check for control characters in what we send or store: template
-- values, URLs, pages, ids. A NUL cuts a C string short in some hop we do
-- not control, and an ESC (ANSI escape sequence) repaints the terminal of
-- whoever reads a log or an export; neither is ever meant in a message.
-- Runs on Lua 5.4 and LuaJIT (bytes only).
--
--   local control_chars = require "alipay.util.control_chars"
--   control_chars.find(s, text) -> nil | byte position, "NUL" | "ESC" | "U+0007" ...
--   control_chars.check(field, value) -> true | nil, msg, field_path
--
-- What is refused: every C0 character (U+0000-U+001F: NUL, ESC, CR, ...),
-- DEL (U+007F) and the C1 characters (U+0080-U+009F, UTF-8 C2 80-C2 9F:
-- U+009B is the one-byte form of an ESC [ sequence). The exception is
-- `text`: text shown to a person (the `value` of a template keyword, first
-- or remark) may hold a tab and a line feed, since a message may wrap a
-- line there. Nothing else (ids, URLs, pages, colors, action_name: one line
-- that a program or a button reads) may hold any.
--
-- check(field, value) walks a string or a nested table (a Life Account
-- context, mini-program data): the leaves named `value` are text, every
-- other leaf and every key is not. msg names the first bad field
-- ("context.keyword1.value: a control character (NUL) at byte 3 is refused"),
-- field_path is that field's name alone. Keys are visited in sorted order so
-- the same value always names the same field.
local M = {}

local NAMES = { [0] = "NUL", [9] = "TAB", [10] = "LF", [13] = "CR", [27] = "ESC", [127] = "DEL" }

-- A C1 character's code point is its second UTF-8 byte (C2 9B is U+009B).
local function name_of(b, second)
  if second then return ("U+%04X"):format(second) end
  return NAMES[b] or ("U+%04X"):format(b)
end

-- The first refused character of s -> byte position, its name | nil.
-- `text` lets a tab and a line feed through.
function M.find(s, text)
  local pos = 1
  while true do
    local i = s:find("[%z\1-\31\127\194]", pos)
    if not i then return nil end
    local b = s:byte(i)
    if b == 194 then
      local c = s:byte(i + 1)
      if c and c >= 0x80 and c <= 0x9F then return i, name_of(b, c) end
    elseif not (text and (b == 9 or b == 10)) then
      return i, name_of(b)
    end
    pos = i + 1
  end
end

local function problem(path, s, text)
  local at, what = M.find(s, text)
  if not at then return nil end
  return ("%s: a control character (%s) at byte %d is refused"):format(path, what, at)
end

local function walk(path, value, text)
  if type(value) == "string" then
    local bad = problem(path, value, text)
    if bad then return bad, path end
    return nil
  end
  if type(value) ~= "table" then return nil end
  local keys = {}
  for k in pairs(value) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  for _, k in ipairs(keys) do
    local child = path .. (type(k) == "number" and ("[" .. k .. "]") or ("." .. tostring(k)))
    if type(k) == "string" then
      local bad = problem(path .. " (a field name)", k, false)
      if bad then return bad, path end
    end
    local bad, where = walk(child, value[k], k == "value")
    if bad then return bad, where end
  end
  return nil
end

-- Any refused character anywhere, in no particular order: the cheap pass
-- every send and every campaign row makes; only a value that has one is
-- walked again in order, to name its first field.
local function any(value, text)
  if type(value) == "string" then return M.find(value, text) ~= nil end
  if type(value) ~= "table" then return false end
  for k, v in pairs(value) do
    if (type(k) == "string" and M.find(k, false)) or any(v, k == "value") then return true end
  end
  return false
end

function M.check(field, value)
  if not any(value, false) then return true end
  local bad, where = walk(field, value, false)
  if bad then return nil, bad, where end
  return true
end

return M
