-- The send rate of a campaign: a token bucket whose rate halves when Alipay
-- says "too fast" (40005 and the other throttled answers) and creeps back
-- up while it stays quiet, never above the policy's qps.
--
--   local limiter = require "alipay.campaign.limiter"
--   local lim = limiter.new{ qps = 50, now_ms = t }    -- opts below
--   lim:available(now_ms) -> whole tokens now (at most the burst)
--   lim:take(n)                               spends n tokens (call after available)
--   lim:next_token_ms(now_ms) -> ms until one more token
--   lim:throttled(now_ms, sent_at_ms) -> true when this answer cut the rate
--   lim:tick(now_ms)                           recovery; call once per loop round
--   lim.rate                                   the current limit (requests per second)
--
-- opts: qps (the ceiling), recover_every_ms (2000), recover_factor (1.1),
-- min_qps (1, or qps when lower), hold_ms (1000), now_ms.
--
-- Why each rule:
--   * the burst is a fifth of a second of sends (at least one): Alipay counts
--     calls per second, so a full second's burst at once is what it punishes;
--   * one cut per episode: every request already in flight when the first
--     40005 arrives is likely to be throttled too, and so is every request
--     of the rest of that second (Alipay counts per second, and the second's
--     budget is spent). Only an answer to a request sent after the last cut,
--     at least hold_ms (1000) after it, proves the new rate still too high;
--   * recovery waits recover_every_ms after the last cut or raise, and
--     raises by the factor but at least one request per second, so that a
--     rate cut to the floor does not take minutes to come back.
local M = {}

local Limiter = {}
Limiter.__index = Limiter

local function burst_of(rate)
  return math.max(1, rate / 5)
end

function M.new(opts)
  local qps = opts.qps
  if type(qps) ~= "number" or qps <= 0 then error("limiter.new: qps must be a positive number", 2) end
  local now = opts.now_ms or 0
  local self = setmetatable({
    max = qps, rate = qps,
    min = math.min(opts.min_qps or 1, qps),
    recover_every_ms = opts.recover_every_ms or 2000,
    recover_factor = opts.recover_factor or 1.1,
    hold_ms = opts.hold_ms or 1000,
    updated_ms = now, last_change_ms = now, last_cut_ms = -math.huge,
    cuts = 0,
  }, Limiter)
  self.tokens = burst_of(qps)
  return self
end

function Limiter:refill(now)
  local elapsed = now - self.updated_ms
  if elapsed > 0 then
    self.tokens = math.min(burst_of(self.rate), self.tokens + elapsed * self.rate / 1000)
    self.updated_ms = now
  end
end

function Limiter:available(now)
  self:refill(now)
  return math.floor(self.tokens)
end

function Limiter:take(n)
  self.tokens = self.tokens - n
end

function Limiter:next_token_ms(now)
  self:refill(now)
  if self.tokens >= 1 then return 0 end
  return math.ceil((1 - self.tokens) * 1000 / self.rate)
end

function Limiter:throttled(now, sent_at)
  if now - self.last_cut_ms < self.hold_ms then return false end
  if sent_at ~= nil and sent_at < self.last_cut_ms then return false end
  self:refill(now)
  self.rate = math.max(self.min, self.rate / 2)
  self.tokens = math.min(self.tokens, burst_of(self.rate))
  self.last_cut_ms, self.last_change_ms = now, now
  self.cuts = self.cuts + 1
  return true
end

function Limiter:tick(now)
  if self.rate >= self.max or now - self.last_change_ms < self.recover_every_ms then return end
  self:refill(now)
  self.rate = math.min(self.max, math.max(self.rate * self.recover_factor, self.rate + 1))
  self.last_change_ms = now
end

return M
