-- When a child is sending: the sandbox's event sequence (health's last_seq)
-- grows by two events, arrival and answer, per gateway request.
--
--   local traffic = require "soak.traffic"
--   traffic.seq(world) -> n
--   traffic.wait(world, c, since, requests, timeout_s) -> true once `requests`
--     more requests arrived since `since`; false when the child c ended first
--     or timeout_s passed
local core = require "alipay.core"

local M = {}

local POLL_MS = 25

function M.seq(world)
  return (world.sb:health() or {}).last_seq or 0
end

function M.wait(world, c, since, requests, timeout_s)
  local deadline = core.monotonic_ms() + timeout_s * 1000
  while core.monotonic_ms() < deadline do
    if M.seq(world) - since >= requests * 2 then return true end
    if not c:running() then return false end
    core.sleep_ms(POLL_MS)
  end
  return false
end

return M
