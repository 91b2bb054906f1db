-- A campaign's definition (the spec given to campaign.create): checked
-- field by field, with the policy's defaults filled in, before anything is
-- stored. Errors name the field.
--
--   local definition = require "alipay.campaign.definition"
--   local def, err = definition.check(spec)   -- a copy: {id=, channel=, template=, audience=, data=, page=, policy=}
--   definition.POLICY                          -- the defaults
local core = require "alipay.core"
local audience = require "alipay.campaign.audience"

local M = {}

M.POLICY = {
  in_flight = 8,          -- requests at once
  qps = 50,               -- requests per second at most (halved on throttling, recovers)
  max_attempts = 5,       -- failures that may be retried, per recipient
  backoff_ms = 500,       -- first retry delay, doubled per retry, with jitter
  max_backoff_ms = 30000,
  retry_unknown = false,  -- re-send when a previous attempt's outcome is unknown
  max_throttled_s = 900,  -- stop (resumable) after this long with nothing but throttled answers
  stale_after_s = 60,     -- a runner without a heartbeat for this long has lost its lease (fencing)
  drain_s = 5,            -- after Ctrl-C/SIGTERM, wait this long at most for the requests in flight
}
M.MAX_DRAIN_S = 3600

local POLICY_RULES = {
  in_flight = { integer = true, min = 1, max = 256 },
  qps = { min = 0.01, max = 100000 },
  max_attempts = { integer = true, min = 1, max = 100 },
  backoff_ms = { min = 0, max = 3600000 },
  max_backoff_ms = { min = 0, max = 86400000 },
  max_throttled_s = { min = 1, max = 604800 },
  stale_after_s = { min = 1, max = 3600 },
  drain_s = { min = 0, max = M.MAX_DRAIN_S },
}

local FIELDS = { id = true, channel = true, template = true, audience = true, data = true, page = true,
                 policy = true }

local ID_PATTERN = "^[A-Za-z0-9_.%-]+$"

function M.new_id()
  return os.date("!%Y%m%d-%H%M%S") .. "-" .. core.random_hex(3)
end

local function check_policy(given)
  if given ~= nil and type(given) ~= "table" then return nil, "policy: expected a table" end
  local policy = {}
  for k, v in pairs(M.POLICY) do policy[k] = v end
  for k, v in pairs(given or {}) do
    if M.POLICY[k] == nil then return nil, ("policy.%s: unknown field"):format(tostring(k)) end
    if k == "retry_unknown" then
      if type(v) ~= "boolean" then return nil, "policy.retry_unknown: expected true or false" end
    else
      local rule = POLICY_RULES[k]
      if type(v) ~= "number" or v ~= v or v < rule.min or v > rule.max
        or (rule.integer and v ~= math.floor(v)) then
        return nil, ("policy.%s: expected %s between %s and %s"):format(k, rule.integer and "an integer" or "a number",
          rule.min, rule.max)
      end
      if rule.integer then v = math.tointeger(v) end
    end
    policy[k] = v
  end
  if policy.max_backoff_ms < policy.backoff_ms then
    return nil, "policy.max_backoff_ms: must not be below policy.backoff_ms"
  end
  return policy
end

function M.check(spec)
  if type(spec) ~= "table" then return nil, "campaign: expected a table {channel=, template=, audience=, data=}" end
  for k in pairs(spec) do
    if not FIELDS[k] then return nil, ("campaign: unknown field %s"):format(tostring(k)) end
  end
  local id = spec.id
  if id == nil then
    id = M.new_id()
  elseif type(id) ~= "string" or #id > 64 or not id:match(ID_PATTERN) then
    return nil, "id: 1 to 64 letters, digits, '_', '.' or '-'"
  end
  if type(spec.channel) ~= "string" or spec.channel == "" then return nil, "channel: expected a channel code" end
  if type(spec.template) ~= "string" or spec.template == "" then return nil, "template: expected a template id" end
  local _, aerr = audience.kind(spec.audience)
  if aerr then return nil, aerr end
  if type(spec.data) ~= "table" then return nil, "data: expected a table (the template's content)" end
  if spec.page ~= nil and type(spec.page) ~= "string" then return nil, "page: expected a string" end
  local policy, perr = check_policy(spec.policy)
  if not policy then return nil, perr end
  return { id = id, channel = spec.channel, template = spec.template, audience = spec.audience,
           data = spec.data, page = spec.page, policy = policy }
end

-- A stored policy with the defaults of fields added since it was stored.
function M.with_defaults(policy)
  local full = {}
  for k, v in pairs(M.POLICY) do full[k] = v end
  for k, v in pairs(policy or {}) do full[k] = v end
  return full
end

-- The definition as stored: the audience described, not its rows.
function M.stored(def)
  return { audience = audience.describe(def.audience), data = def.data, page = def.page, policy = def.policy }
end

return M
