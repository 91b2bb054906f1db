-- Small table helpers: telling a JSON array from a JSON object once it is a
-- Lua table, and the keys of a table in a stable order.
local M = {}

-- Whether t is a table whose keys are exactly 1..#t (no holes, no other
-- keys). The empty table counts as a list: a caller to whom {} means an
-- empty object checks next(t) first.
function M.is_list(t)
  if type(t) ~= "table" then return false end
  local n = #t
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end

-- The keys of t as a list, sorted by less (default <): a stable order for
-- messages and output that pairs() does not give.
function M.sorted_keys(t, less)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, less)
  return keys
end

return M
