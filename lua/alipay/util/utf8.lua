-- Counting UTF-8 text as Alipay's limits count it: in characters (code
-- points), a CJK character being one. LuaJIT (OpenResty) has no utf8
-- library, so this is done on bytes and runs under both.
local M = {}

-- Characters in s, counted by lead bytes (every byte but the continuation
-- bytes 0x80-0xBF). Exact for well-formed UTF-8; never fails on other bytes.
function M.chars(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

-- Characters in s and its display width (ASCII 1, any other character 2),
-- or nil when s is not well-formed UTF-8 (a stray continuation byte, an
-- overlong two-byte lead, a truncated sequence, a lead above U+10FFFF).
function M.measure(s)
  if not s:find("[\128-\255]") then return #s, #s end
  local chars, width, i, len = 0, 0, 1, #s
  while i <= len do
    local c = s:byte(i)
    local size
    if c < 0x80 then size = 1
    elseif c >= 0xC2 and c <= 0xDF then size = 2
    elseif c >= 0xE0 and c <= 0xEF then size = 3
    elseif c >= 0xF0 and c <= 0xF4 then size = 4
    else return nil end
    for k = i + 1, i + size - 1 do
      local b = s:byte(k)
      if not b or b < 0x80 or b > 0xBF then return nil end
    end
    chars = chars + 1
    width = width + (size == 1 and 1 or 2)
    i = i + size
  end
  return chars, width
end

return M
