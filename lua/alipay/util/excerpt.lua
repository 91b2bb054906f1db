-- A short, printable prefix of an input value for an error message. A
-- message that echoes a whole value grows with the input (a 1 MB CSV header
-- gave 1 MB of stderr) and copies control characters into a terminal; this
-- keeps at most `max` bytes (default 40), cut on a UTF-8 character
-- boundary, shows each control character as "?", and says how long the
-- value really was. Runs on Lua 5.4 and LuaJIT.
--
--   local excerpt = require "alipay.util.excerpt"
--   excerpt("order_no")               -> "order_no"
--   excerpt(("x"):rep(1000000))       -> "xxxx…(40 of 1000000 bytes)"
local DEFAULT_MAX = 40

return function(s, max)
  s = tostring(s)
  max = max or DEFAULT_MAX
  local shown = s
  if #s > max then
    local cut = max
    -- Step back over continuation bytes so that no character is split.
    while cut > 0 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) <= 0xBF do
      cut = cut - 1
    end
    shown = s:sub(1, cut)
  end
  shown = shown:gsub("[%z\1-\31\127]", "?")
  if #s > max then return ("%s…(%d of %d bytes)"):format(shown, #shown, #s) end
  return shown
end
