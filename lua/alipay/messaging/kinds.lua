-- The kinds of channel, in one place: a Life Account ("alipaylife") or a
-- mini program ("alipaymini"), the id types a user of either is addressed
-- by, and the module that sends on each. Adding a kind starts here.
local M = {}

M.KINDS = { alipaylife = true, alipaymini = true }

-- Both kinds address a user by either id; a channel says which it uses.
M.ID_TYPES = { user_id = true, open_id = true }

-- What an operator calls each kind.
M.NAMES = { alipaylife = "Life Account", alipaymini = "mini program" }

-- The module whose new(channel, registry) sends on a channel of the kind.
-- Named, not required, here: those modules require the channels module,
-- which requires this one.
M.MODULES = { alipaylife = "alipay.messaging.lifeaccount", alipaymini = "alipay.messaging.mini" }

-- kind -> its sending module; error() for a kind that is not one (misuse:
-- a channel's kind is checked when the channel is built).
function M.module(kind)
  local name = M.MODULES[kind]
  if not name then error("alipay.messaging.kinds: unknown kind " .. tostring(kind), 2) end
  return require(name)
end

return M
