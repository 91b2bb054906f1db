-- Typed errors (design.md §3). Every failure of a call is one of these
-- tables, so callers branch on fields, never on message text:
--   kind       "config" | "transport" | "http" | "signature" | "gateway" | "business" | "decode"
--   code, msg, sub_code, sub_msg   as Alipay sent them (gateway, business)
--   retryable  a retry may succeed (possibly after slowing down)
--   unknown    the request may have been executed although no answer arrived
--   verified   the error body carried a valid Alipay signature
--   trace_id, method, status, field
local errors = {}

-- Result codes and sub codes that may succeed when retried (protocol.md
-- §2.3, messaging.md §3). Data, so new codes need no code change.
errors.retryable_codes = {
  ["20000"] = true, -- service unavailable
  ["40005"] = true, -- call frequency exceeded: slow down, then retry
}
errors.retryable_sub_codes = {
  ["isp.unknow-error"] = true,
  ["aop.unknow-error"] = true,
  ["isv.upload-fail"] = true,
  ["isv.invalid-encrypt"] = true,
  ["isv.decryption-error-unknown"] = true,
  ["BUSINESS_ERROR"] = true,
  ["app-call-limited"] = true, -- v3 spelling of 40005
  ["unknow-error"] = true,     -- v3 spelling of 20000
}

-- Kinds whose outcome is unknown: the request may have been executed.
local OUTCOME_UNKNOWN = { transport = true, http = true, decode = true }

local Error = {}
Error.__index = Error

function Error:__tostring()
  local parts = {}
  if self.method then parts[#parts + 1] = self.method .. ":" end
  parts[#parts + 1] = self.kind .. " error"
  if self.status and self.kind == "http" then parts[#parts + 1] = "HTTP " .. self.status end
  if self.code then parts[#parts + 1] = self.code end
  if self.sub_code then parts[#parts + 1] = self.sub_code end
  local text = self.sub_msg or self.msg
  -- On isv.invalid-signature Alipay echoes the whole string it signed
  -- (every parameter, biz_content included): it stays in err.sub_msg for
  -- debugging and out of the one line that goes to logs.
  if self.sub_code == "isv.invalid-signature" and self.sub_msg then
    text = (self.msg or "invalid signature") .. "; the gateway's string to sign (" .. #self.sub_msg ..
           " bytes) is in err.sub_msg"
  end
  if text then parts[#parts + 1] = "(" .. text .. ")" end
  if self.trace_id then parts[#parts + 1] = "[trace " .. self.trace_id .. "]" end
  if self.retryable then parts[#parts + 1] = "[retryable]" end
  return table.concat(parts, " ")
end

-- errors.new(kind, fields) -> error table. retryable and unknown are
-- derived from kind and codes unless given.
function errors.new(kind, fields)
  local e = setmetatable({}, Error)
  for k, v in pairs(fields or {}) do e[k] = v end
  e.kind = kind
  -- An answer whose signature is not Alipay's came from a server that did
  -- receive the request: what it did is unknown, and a retry will not help.
  if e.unknown == nil then e.unknown = OUTCOME_UNKNOWN[kind] or kind == "signature" end
  if e.retryable == nil then
    e.retryable = OUTCOME_UNKNOWN[kind] or errors.retryable_codes[e.code] == true
      or errors.retryable_sub_codes[e.sub_code] == true
  end
  if e.verified == nil then e.verified = false end
  return e
end

-- errors.classify(err) -> "transient" | "throttled" | "template" |
-- "recipient" | "configuration": what a sender does next (messaging.md §3).
-- The rules are data in alipay.classify; loaded on first use because that
-- module needs this one.
function errors.classify(err)
  return require("alipay.classify").classify(err)
end

function errors.is_error(v)
  return getmetatable(v) == Error
end

-- Transport failures in which the request never reached the gateway (no
-- connection, no name, no TLS session): resending cannot duplicate it.
errors.not_sent_reasons = { connect = true, resolve = true, tls = true }

-- The typed error of a failed transfer (both transports use it).
function errors.transport(msg, reason)
  return errors.new("transport", {
    msg = msg, reason = reason,
    -- A response over the cap will be over it again; everything else
    -- (timeouts, resets, refused connections) may pass on a retry.
    retryable = reason ~= "too_large",
    unknown = not errors.not_sent_reasons[reason],
  })
end

-- A configuration error names the field; msg never contains the value.
function errors.config(field, msg)
  return errors.new("config", { field = field, msg = field .. ": " .. msg, retryable = false })
end

return errors
