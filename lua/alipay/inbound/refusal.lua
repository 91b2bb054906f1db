-- How the inbound endpoints say no (docs/errors.md, kind "notify"): one
-- constructor for the typed refusal, and the one rule for echoing a value
-- from the request into a message or a log line.
local errors = require "alipay.errors"

local refusal = {}

-- A value from the request as it may appear in a log line: a short token
-- of harmless characters, or "?" (no newlines, no markup, no secrets).
function refusal.loggable(value)
  if type(value) == "string" and #value > 0 and #value <= 64 and not value:find("[^%w%._:%-]") then
    return value
  end
  return "?"
end

-- refusal.new(reason, msg[, fields]) -> the typed error (a table that prints
-- as its one line); fields such as verified, retryable are copied in.
function refusal.new(reason, msg, fields)
  local f = { reason = reason, msg = msg }
  for k, v in pairs(fields or {}) do f[k] = v end
  return errors.new("notify", f)
end

-- refusal.fail(...) -> nil, err, detail: the same, as a function's failure.
function refusal.fail(reason, msg, fields)
  return errors.failure(refusal.new(reason, msg, fields))
end

-- refusal.fail_with(detail) -> nil, err, detail for a refusal already made.
refusal.fail_with = errors.failure

return refusal
