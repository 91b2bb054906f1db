-- What the soak counts: the store's recipients of one campaign against the
-- sandbox's delivery log (sb:deliveries(): one entry per message the gateway
-- accepted, with to_user_id).
--
--   lost        a recipient the store says `sent` that the sandbox never
--               delivered, or one the sandbox delivered that the store shows
--               `pending`, `failed` or `skipped` (its answer was lost);
--   duplicated  a recipient the sandbox delivered more than once, beyond one
--               extra delivery per retry of an `unknown` outcome the soak
--               itself asked for (`--retry-unknown`; `excused` counts them).
-- `unknown` (delivered or not) and `sent` delivered once are what the
-- campaign promises; they count as neither.
--
--   local tally = require "soak.tally"
--   tally.count(rows, deliveries, ids, excused)
--     rows: the store's recipients (campaign export: alipay_id, status)
--     deliveries: the sandbox's log; only entries to `ids` (set) are counted
--     excused: {alipay_id = n} extra deliveries allowed (optional)
--   -> { checked =, lost =, duplicated =, duplicated_unknown =, statuses = {status = n}, examples = {"..."} }
--   (duplicated_unknown: the duplicated that the store shows `unknown`, which
--   a transport that detects a resend, rather than prevents it, leaves)
local M = {}

local ANSWER_LOST = { pending = true, failed = true, skipped = true }
local MAX_EXAMPLES = 5

function M.count(rows, deliveries, ids, excused)
  excused = excused or {}
  local delivered = {}
  for _, d in ipairs(deliveries) do
    local to = d.to_user_id or d.to_open_id
    if to and ids[to] then delivered[to] = (delivered[to] or 0) + 1 end
  end
  local result = M.empty()
  local function example(fmt, ...)
    if #result.examples < MAX_EXAMPLES then result.examples[#result.examples + 1] = fmt:format(...) end
  end
  local seen = {}
  for _, row in ipairs(rows) do
    local id = row.alipay_id
    if id and ids[id] and not seen[id] then
      seen[id] = true
      local n, status = delivered[id] or 0, tostring(row.status)
      result.checked = result.checked + 1
      result.statuses[status] = (result.statuses[status] or 0) + 1
      if status == "sent" and n == 0 then
        result.lost = result.lost + 1
        example("lost: %s is sent in the store, never delivered", id)
      elseif n > 0 and ANSWER_LOST[status] then
        result.lost = result.lost + 1
        example("lost: %s delivered %d time(s), the store shows %s", id, n, status)
      end
      if n > 1 + (excused[id] or 0) then
        result.duplicated = result.duplicated + 1
        if status == "unknown" then result.duplicated_unknown = result.duplicated_unknown + 1 end
        example("duplicated: %s delivered %d times, the store shows %s after %d attempt(s)", id, n, status,
          math.floor(tonumber(row.attempts) or 0))
      end
    end
  end
  -- A delivery to a recipient the store does not hold at all: the store lost
  -- the row (counted once per recipient, and as a duplicate when repeated).
  for id, n in pairs(delivered) do
    if not seen[id] then
      result.checked = result.checked + 1
      result.lost = result.lost + 1
      if n > 1 + (excused[id] or 0) then result.duplicated = result.duplicated + 1 end
      example("lost: %s delivered %d time(s), not in the store", id, n)
    end
  end
  return result
end

-- Adds b's counts into a (both results of count).
function M.add(a, b)
  a.checked, a.lost, a.duplicated = a.checked + b.checked, a.lost + b.lost, a.duplicated + b.duplicated
  a.duplicated_unknown = a.duplicated_unknown + b.duplicated_unknown
  for status, n in pairs(b.statuses) do a.statuses[status] = (a.statuses[status] or 0) + n end
  for _, e in ipairs(b.examples) do
    if #a.examples < MAX_EXAMPLES then a.examples[#a.examples + 1] = e end
  end
  return a
end

function M.empty()
  return { checked = 0, lost = 0, duplicated = 0, duplicated_unknown = 0, statuses = {}, examples = {} }
end

return M
