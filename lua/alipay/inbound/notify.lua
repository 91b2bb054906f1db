-- notify_url (docs/protocol.md §3): Alipay's asynchronous notifications
-- (payments and the like), and return_url redirects. One rule, V1 (sign
-- and sign_type left out of the string to sign); app-gateway messages are
-- refused here (alipay.inbound.app_gateway takes them, under rule V2).
--
--   notify.verify(client, body, opts) -> params, raw | nil, err, detail
--     body    the raw application/x-www-form-urlencoded request body
--             (decoded here exactly once), or a table of already decoded
--             parameters (e.g. the query of a return_url redirect)
--     opts.seen        a replay store (notify.memory_store,
--                      notify.shared_dict_store; `:add(key, ttl_s)`)
--     opts.ttl         how long the store remembers (default 2 days)
--     opts.window, opts.skew, opts.clock
--                      the replay window (alipay.inbound.freshness):
--                      notify_time (a return_url's timestamp) must be at
--                      most `window` seconds old (default 36 hours) and
--                      at most `skew` seconds ahead (default 300)
--     opts.sign_types  the sign types accepted (default: the configured
--                      one only), e.g. {"RSA2", "RSA"} during a migration
--     opts.allow_no_notify_id
--                      accept a message without notify_id (a return_url
--                      redirect has none): it cannot be deduplicated
--     opts.max_body_bytes, opts.max_fields
--                      caps checked before decoding (alipay.inbound.form)
--     params  the verified parameters, values in UTF-8, empty (unsigned)
--             values left out
--     raw     the parameters as received (what was verified)
--
-- Failures are nil, err, detail (docs/errors.md): err the one line, detail
-- errors.new("notify", {reason = ..., msg = ...}) where reason is one of
--   "too_large"    the body is over max_body_bytes or max_fields
--   "malformed"    not a form body, repeated fields, bad escapes, empty,
--                  not POST / not form-urlencoded (read_ngx), values that
--                  are not valid in the declared GBK charset, no
--                  notify_time (verified)
--   "misdirected"  an app-gateway message (a `service`, `msg_method` or
--                  service-market order): it belongs at the app gateway
--   "unsigned"     no sign or no sign_type, or one other than RSA2 / RSA
--   "sign_type"    a sign type this endpoint does not accept (a downgrade)
--   "ambiguous"    a value holds "&sign_type=" (the string to sign would
--                  read as a rule V2 string)
--   "forged"       the signature is not Alipay's
--   "foreign_app"  verified, but for another app_id
--   "stale"        verified, but older than the replay window (or too far
--                  in the future)
--   "no_notify_id" verified, but without a notify_id, so a replay could
--                  not be recognised (opts.allow_no_notify_id accepts it)
--   "replay"       verified, but its notify_id was already accepted:
--                  answer "success" again, Alipay lost the first answer
--   "cert_sn"      certificate mode: alipay_cert_sn is neither the
--                  configured certificate's nor one the client adopted
--                  (Alipay rotated it: client:adopt_alipay_cert(sn))
--   "store"        the replay store failed or is full (retryable: answer
--                  non-success, Alipay retries)
-- and err.verified tells whether the signature was checked and good.
-- Messages are log-safe: they never contain the body, the signature or a
-- key; values echoed from the request are short tokens of safe characters.
local form = require "alipay.inbound.form"
local freshness = require "alipay.inbound.freshness"
local message_kind = require "alipay.inbound.message_kind"
local policy_of = require("alipay.inbound.policy").of
local refusal = require "alipay.inbound.refusal"
local replay = require "alipay.inbound.replay"
local signature = require "alipay.inbound.signature"
local values = require "alipay.inbound.values"

local notify = {}

-- Shared with the app gateway and the example handlers.
notify.DEFAULT_TTL = replay.DEFAULT_TTL
notify.loggable = refusal.loggable
notify.memory_store = replay.memory_store
notify.shared_dict_store = replay.shared_dict_store
notify.read_ngx_body = form.read_ngx_body

local loggable = refusal.loggable

-- notify.decode(body[, opts]) -> params | nil, err, detail (alipay.inbound.form).
function notify.decode(body, opts)
  return form.decode(body, opts)
end

-- The replay-store key of a verified notification, or nil when it has no
-- notify_id. Callers that fail to process an accepted notification can
-- forget it with `seen:delete(notify.replay_key(params))`, so that
-- Alipay's retry passes.
function notify.replay_key(params)
  local id = params.notify_id
  if type(id) ~= "string" or id == "" then return nil end
  return replay.key("notify_url", params.notify_type or "-", id)
end


local function check_endpoint(raw)
  if message_kind.claims_gateway(raw) then
    local what = raw.service or raw.msg_method or raw.notify_type
    return refusal.new("misdirected", "this is an app-gateway message (" .. loggable(what) ..
      "), not a notification for notify_url: the app gateway takes it")
  end
end

-- A notification is dated by notify_time; a return_url redirect, which has
-- none, by its timestamp.
local function check_age(policy, params)
  local field = (params.notify_time == nil and params.timestamp ~= nil) and "timestamp" or "notify_time"
  return freshness.check(policy.fresh, freshness.beijing(params[field]), field, params[field])
end

local function check_replay(seen, key, params, ttl)
  local fresh, store_detail = replay.mark(seen, key, ttl)
  if fresh == nil then return store_detail end
  if not fresh then
    return refusal.new("replay", "notify_id " .. loggable(params.notify_id) .. " was already accepted",
                       { verified = true })
  end
end

function notify.verify(client, body, opts)
  opts = opts or {}
  if type(body) ~= "string" and type(body) ~= "table" then
    error("notify.verify: body must be a string or a table of parameters, got a " .. type(body), 2)
  end
  if opts.rule ~= nil and opts.rule ~= "V1" then
    error('notify.verify: notify_url takes rule V1 only; app-gateway messages (rule V2) go to ' ..
          'alipay.inbound.app_gateway.handle', 2)
  end
  local policy = policy_of(client, opts, "notify.verify", false)
  local raw, err, detail = form.decode(body, opts)
  if not raw then return nil, err, detail end
  detail = check_endpoint(raw) or signature.check(client, raw, "V1", policy.accepted, policy.names)
  if detail then return refusal.fail_with(detail) end
  local params
  params, err, detail = values.of(raw)
  if not params then return nil, err, detail end
  detail = check_age(policy, params)
  local key = notify.replay_key(params)
  if not detail and not key and not opts.allow_no_notify_id then
    detail = refusal.new("no_notify_id", "the notification carries no notify_id, so a replay could not be " ..
      "recognised (a return_url redirect has none: verify it with allow_no_notify_id = true)", { verified = true })
  end
  if not detail and opts.seen and key then
    detail = check_replay(opts.seen, key, params, policy.ttl)
  end
  if detail then return refusal.fail_with(detail) end
  return params, raw
end

-- notify.read_ngx(client, opts) -> params, raw | nil, err, detail, for a
-- content_by_lua handler; opts as for verify, plus opts.ngx.
function notify.read_ngx(client, opts)
  local body, err, detail = form.read_ngx_body(opts and opts.ngx, opts)
  if not body then return nil, err, detail end
  return notify.verify(client, body, opts)
end

return notify
