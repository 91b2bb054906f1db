-- Is this message Alipay's (docs/protocol.md §3.2, §3.3)? The signature
-- checks both endpoints share; the caller names the rule:
--   "V1"  notify_url and return_url, and the gateway's message-service
--         pushes: sign and sign_type are left out of the string to sign
--   "V2"  the rest of the app gateway: only sign is left out
-- sign_type is required under both rules (Alipay always sends it), and
-- must be one the endpoint accepts: the configured sign type unless the
-- caller lists others (opts.sign_types, for a migration window). Without
-- sign_type the two rules build the same string, which is how a message
-- meant for one endpoint could pass at the other.
local refusal = require "alipay.inbound.refusal"
local core = require "alipay.core"

local signature = {}

local ALGORITHMS = { RSA2 = true, RSA = true }
local V1_EXCLUDE = { exclude = { "sign_type" } }
local loggable = refusal.loggable

-- signature.accepted(cfg, sign_types) -> { [sign_type] = true }, their names
-- joined for messages. `sign_types` is nil (the configured one) or a list
-- of "RSA2" / "RSA"; anything else is misuse and raises.
function signature.accepted(cfg, sign_types)
  if sign_types == nil then return { [cfg.sign_type] = true }, cfg.sign_type end
  if type(sign_types) ~= "table" or sign_types[1] == nil then
    error('inbound: opts.sign_types must be a non-empty list such as {"RSA2", "RSA"}', 3)
  end
  local set = {}
  for _, name in ipairs(sign_types) do
    if not ALGORITHMS[name] then error('inbound: opts.sign_types may hold only "RSA2" and "RSA"', 3) end
    set[name] = true
  end
  return set, table.concat(sign_types, ", ")
end

-- The key a message is verified with. In certificate mode a message may
-- name the certificate it was signed under (alipay_cert_sn): the
-- configured one, or one the client adopted after checking it against the
-- root bundle (alipay.alipaycert: an answer named it, or the operator
-- called client:adopt_alipay_cert). An SN the client does not know is
-- refused, never downloaded here: a forged message can name any SN, and a
-- download per forgery would let anyone make the endpoint call Alipay.
-- -> key | nil, refusal
local function key_of(client, raw)
  local cfg = client.config
  local sn = raw.alipay_cert_sn
  if not (cfg.cert_mode and sn and sn ~= "") then return cfg.alipay_public_key end
  local key
  if client.alipay_keys then
    key = client.alipay_keys:get(sn)
  elseif sn == cfg.alipay_cert_sn then
    key = cfg.alipay_public_key
  end
  if key then return key end
  return nil, refusal.new("cert_sn", "alipay_cert_sn " .. loggable(sn) ..
    " is neither the configured alipay_cert's (" .. cfg.alipay_cert_sn .. ") nor one adopted since: if Alipay " ..
    "rotated its certificate, adopt it with client:adopt_alipay_cert(sn), which downloads it and checks it " ..
    "against alipay_root_cert")
end

-- A value that holds "&sign_type=" makes the string to sign ambiguous: it
-- reads as the other rule's string with a sign_type field in it. A V2
-- message whose sign_type was moved into the value before it then carries
-- a valid V1 signature, and the reverse. No Alipay field holds that text.
local function check_ambiguous(raw)
  for k, v in pairs(raw) do
    if k ~= "sign" and v:find("&sign_type=", 1, true) then
      return refusal.new("ambiguous", "the value of " .. loggable(k) .. " contains '&sign_type=', which makes " ..
        "the signed string read as another rule's")
    end
  end
end

local function check_sign_type(raw, accepted, names)
  local sign = raw.sign
  if sign == nil or sign == "" then return refusal.new("unsigned", "the message carries no sign") end
  local sign_type = raw.sign_type
  if sign_type == nil or sign_type == "" then
    return refusal.new("unsigned", "the message carries no sign_type (Alipay always sends it)")
  end
  if not ALGORITHMS[sign_type] then
    return refusal.new("unsigned", "sign_type " .. loggable(sign_type) .. " is not supported (RSA2 or RSA)")
  end
  if not accepted[sign_type] then
    return refusal.new("sign_type", "sign_type " .. sign_type .. " is not accepted here (accepted: " .. names ..
      "); list it in opts.sign_types to accept it during a migration")
  end
end

-- The `app_id` field names the app the message is for (an ISV acting for a
-- merchant receives its own app_id there, the merchant's in auth_app_id).
-- The gateway check carries none (it signs only biz_content, charset,
-- service and sign_type; its XML names the app): `optional` lets it pass
-- when absent, never when it names another app.
local function check_app_id(cfg, raw, optional)
  if optional and raw.app_id == nil then return nil end
  if raw.app_id ~= cfg.app_id then
    return refusal.new("foreign_app", "app_id " .. loggable(raw.app_id) .. " is not this client's (" ..
      cfg.app_id .. ")", { verified = true })
  end
end

-- signature.check(client, raw, rule, accepted, names[, app_id_optional]) ->
-- nil when the decoded message `raw` is Alipay's and for this app, else
-- the typed refusal. The cheap checks come first: the RSA verification
-- runs last but one.
function signature.check(client, raw, rule, accepted, names, app_id_optional)
  local cfg = client.config
  local detail = check_sign_type(raw, accepted, names)
  if detail then return detail end
  local key
  key, detail = key_of(client, raw)
  detail = detail or check_ambiguous(raw)
  if detail then return detail end
  local content = core.sign_content(raw, rule == "V1" and V1_EXCLUDE or nil)
  local ok, why = key:verify(content, raw.sign, raw.sign_type)
  if ok ~= true then
    return refusal.new("forged", "the " .. raw.sign_type .. " signature (rule " .. rule .. ") is not Alipay's: " ..
      tostring(why))
  end
  return check_app_id(cfg, raw, app_id_optional)
end

return signature
