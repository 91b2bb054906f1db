-- One campaign's count: its recipients in the store (`alipay campaign
-- export`) against the sandbox's delivery log, by soak/tally.lua's rules.
--
--   local measure = require "soak.measure"
--   measure(world, id, ids, excused) -> tally result | nil, err
local tally = require "soak.tally"

return function(world, id, ids, excused)
  local rows, err = world:rows(id)
  if not rows then return nil, err end
  local deliveries
  deliveries, err = world:deliveries()
  if not deliveries then return nil, "sandbox deliveries: " .. tostring(err) end
  return tally.count(rows, deliveries, ids, excused)
end
