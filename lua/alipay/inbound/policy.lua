-- The options both inbound endpoints share, read once per call (misuse
-- raises at the caller): the replay store and its TTL, the sign types
-- accepted, the replay window (alipay.inbound.freshness).
local freshness = require "alipay.inbound.freshness"
local replay = require "alipay.inbound.replay"
local signature = require "alipay.inbound.signature"

local policy = {}

-- policy.of(client, opts, who, needs_delete) -> { ttl, accepted, names, fresh }.
-- `who` names the caller in a misuse error; the app gateway's store must
-- also forget (needs_delete), so that a failed handler lets Alipay's retry in.
function policy.of(client, opts, who, needs_delete)
  replay.check_store(opts.seen, needs_delete, who)
  local ttl = replay.ttl(opts)
  local accepted, names = signature.accepted(client.config, opts.sign_types)
  return { ttl = ttl, accepted = accepted, names = names, fresh = freshness.policy(opts, ttl) }
end

return policy
