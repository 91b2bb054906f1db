-- Alipay's wall-clock times: "yyyy-MM-dd HH:mm:ss" in Beijing time (UTC+8,
-- no daylight saving; docs/protocol.md §1.1), whatever the host's zone.
-- Requests carry one as `timestamp`, notifications as `notify_time`.
local beijing_time = {}

local OFFSET_S = 8 * 3600

-- beijing_time.format([now]) -> "yyyy-MM-dd HH:mm:ss" of the Unix seconds
-- `now` (default os.time()): "!" formats without the local zone.
function beijing_time.format(now)
  return os.date("!%Y-%m-%d %H:%M:%S", (now or os.time()) + OFFSET_S)
end

-- Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
-- days_from_civil): exact for every year, independent of os.time's zone.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local floor = math.floor -- not //: this module runs on LuaJIT (nginx) too
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

local MONTH_DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- beijing_time.parse(text) -> Unix seconds | nil when `text` is not exactly
-- a valid "yyyy-MM-dd HH:mm:ss" (no other form is accepted: a signed time
-- that parses loosely could mean two instants).
function beijing_time.parse(text)
  if type(text) ~= "string" then return nil end
  local y, mo, d, h, mi, s = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)$")
  if not y then return nil end
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  if mo < 1 or mo > 12 or d < 1 or d > MONTH_DAYS[mo] or (mo == 2 and d == 29 and not leap)
    or h > 23 or mi > 59 or s > 59 then
    return nil
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - OFFSET_S
end

return beijing_time
