-- Fresh messages only (docs/protocol.md §3.6). A replay store recognises a
-- repeat only while it remembers it: after its TTL, after its entry was
-- evicted, or for a message it never saw keyed. The time a message was
-- sent is signed, so a message older than the replay window is refused
-- whatever the store says, and the window is kept shorter than the store's
-- TTL, so that every message inside the window is still remembered:
--
--   accepted  iff  now - window <= sent <= now + skew
--   required       window + skew <= ttl
--
-- Options (both endpoints):
--   opts.window  seconds, default min(freshness.DEFAULT_WINDOW, ttl - skew)
--   opts.skew    seconds Alipay's clock may be ahead of ours (default 300)
--   opts.clock   function() -> Unix seconds (default os.time)
local beijing_time = require "alipay.util.beijing_time"
local refusal = require "alipay.inbound.refusal"

local freshness = {}

-- Alipay's retries of one notification span about 25 hours
-- (docs/protocol.md §3.3); 36 hours keeps a late retry inside the window
-- with room to spare.
freshness.DEFAULT_WINDOW = 36 * 3600
freshness.DEFAULT_SKEW = 300

local function seconds(value, name)
  if value ~= nil and (type(value) ~= "number" or value < 0 or value ~= value or value == math.huge) then
    error("inbound: opts." .. name .. " must be a number of seconds", 3)
  end
  return value
end

-- freshness.policy(opts, ttl) -> { window, skew, clock } (misuse raises:
-- a window the store's TTL cannot cover would let a forgotten message in).
function freshness.policy(opts, ttl)
  local skew = seconds(opts.skew, "skew") or freshness.DEFAULT_SKEW
  local window = seconds(opts.window, "window")
  if window == nil then
    window = math.min(freshness.DEFAULT_WINDOW, ttl - skew)
    if window <= 0 then error("inbound: opts.ttl must be longer than opts.skew (" .. skew .. " s)", 3) end
  elseif window + skew > ttl then
    error(("inbound: opts.window (%g s) plus opts.skew (%g s) must not exceed opts.ttl (%g s), the replay " ..
      "store's memory"):format(window, skew, ttl), 3)
  end
  if opts.clock ~= nil and type(opts.clock) ~= "function" then error("inbound: opts.clock must be a function", 3) end
  return { window = window, skew = skew, clock = opts.clock or os.time }
end

-- freshness.beijing(text) -> Unix seconds of "yyyy-MM-dd HH:mm:ss" | nil.
freshness.beijing = beijing_time.parse

-- freshness.millis(text) -> Unix seconds of a decimal count of milliseconds
-- since 1970 | nil (13 digits until the year 2286; no sign, no fraction).
function freshness.millis(text)
  if type(text) ~= "string" or not text:find("^%d+$") or #text > 15 then return nil end
  return tonumber(text) / 1000
end

-- freshness.check(policy, sent, field, raw_value) -> nil when `sent` (Unix
-- seconds, nil when the field is missing or unreadable) is inside the
-- window, else the refusal, which names the field and the bound.
function freshness.check(policy, sent, field, raw_value)
  if sent == nil then
    local what = raw_value == nil and "carries no " .. field
      or "has a " .. field .. " that is not a time (" .. refusal.loggable(raw_value) .. ")"
    return refusal.new("malformed", "the message " .. what .. ", so its age cannot be checked",
                       { verified = true })
  end
  local now = policy.clock()
  local age = now - sent
  if age > policy.window then
    return refusal.new("stale", ("%s is %d s old, beyond the replay window of %d s: a replay, or a message " ..
      "delivered too late to be told from one"):format(field, math.floor(age), math.floor(policy.window)),
      { verified = true })
  end
  if -age > policy.skew then
    return refusal.new("stale", ("%s is %d s in the future, more than the allowed clock skew of %d s: check " ..
      "this host's clock"):format(field, math.floor(-age), math.floor(policy.skew)), { verified = true })
  end
end

return freshness
