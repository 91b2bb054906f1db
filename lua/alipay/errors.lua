-- Typed errors. The convention of every public function (docs/errors.md):
--
--   local res, err, detail = client:execute(...)
--     res     the result, or nil on failure
--     err     ALWAYS a one-line string: it prints wherever Lua and OpenResty
--             print (assert, error, "..", ngx.say, ngx.log; ngx_lua logs a
--             table error as "unknown error", ngx.say refuses it)
--     detail  the typed error below: callers branch on its fields, never on
--             the message text; tostring(detail) == err
--
-- errors.fail(kind, fields) and errors.failure(detail) build the triple.
--
-- Every kind the library produces (detail.kind), one line each:
--   calls to Alipay
--     config      a setting is missing or wrong (detail.field names it, never its value)
--     transport   no answer: connect, resolve, tls, timeout, reset, too_large, ... (detail.reason)
--     http        an HTTP status without an Alipay error body (a proxy's 502, an HTML page)
--     signature   an answer whose signature is missing or not Alipay's
--     gateway     Alipay refused the call: a platform code (20000, 40002, 40005, v3 401/429/5xx)
--     business    Alipay refused the business: v2 40004, or a v3 business code
--     decode      an answer that cannot be read: truncated, not JSON, a missing field
--   before a call
--     invalid     a send refused locally (detail.reason: recipient, template, data, request)
--   inbound
--     notify      an inbound notification or app gateway message refused (detail.reason)
--   local (the one line is the message alone)
--     input       the caller's data is wrong
--     store       the database failed
--     io          a file cannot be read or written
--     state       refused in the current state: a closed client, a running campaign, an unknown id
--
-- Fields of a detail:
--   code, msg, sub_code, sub_msg   as Alipay sent them (gateway, business)
--   retryable  a retry may succeed (possibly after slowing down): derived
--              from the class alipay.classify gives the error (transient or
--              throttled), unless the code that builds the error knows better
--              and says so; for kind notify it means Alipay's redelivery may succeed
--   unknown    the request may have been executed although no answer arrived
--   verified   the error body carried a valid Alipay signature
--   reason, trace_id, method, status, field
local errors = {}

-- The one retry policy is alipay.classify's table (code / sub_code / kind
-- -> class); this module only maps a class to `retryable`. classify needs
-- nothing of this module, so it loads first.
local classify = require "alipay.classify"

-- The classes after which the same request may succeed: transient (the
-- platform or the network failed) and throttled (slow down, then retry).
errors.retryable_classes = { transient = true, throttled = true }

-- errors.retryable(err) -> whether the class of err lets a retry succeed.
function errors.retryable(err)
  return errors.retryable_classes[(classify.classify(err))] == true
end

-- Kinds whose outcome is unknown: the request may have been executed.
local OUTCOME_UNKNOWN = { transport = true, http = true, decode = true }

local Error = {}
Error.__index = Error

-- Kinds of failures that happen here, not in a call to Alipay: their one
-- line is the message alone ("store.open: cannot open …").
local LOCAL_KINDS = { input = true, store = true, io = true, state = true }
errors.LOCAL_KINDS = LOCAL_KINDS

-- The one line is bounded: a message may quote input (a parameter, a path,
-- a gateway's sub_msg), and logs must not grow with it.
local MAX_LINE = 1024

local function one_line(text)
  text = text:gsub("[\r\n]+", " ")
  if #text > MAX_LINE then
    -- Cut on a UTF-8 character boundary.
    local cut = MAX_LINE
    while cut > 1 and text:byte(cut + 1) and text:byte(cut + 1) >= 0x80 and text:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    text = text:sub(1, cut) .. "… (" .. #text .. " bytes)"
  end
  return text
end

local function describe(self)
  if LOCAL_KINDS[self.kind] then
    local text = tostring(self.msg or (self.kind .. " error"))
    if self.method and not text:find(self.method, 1, true) then text = self.method .. ": " .. text end
    return text
  end
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

function Error:__tostring()
  return one_line(describe(self))
end

-- A detail also joins strings on either side ("failed: " .. detail).
function Error.__concat(a, b)
  return tostring(a) .. tostring(b)
end

-- errors.new(kind, fields) -> error table. unknown is derived from the
-- kind, retryable from the class (errors.retryable), unless given.
function errors.new(kind, fields)
  local e = setmetatable({}, Error)
  for k, v in pairs(fields or {}) do e[k] = v end
  e.kind = kind
  -- An answer whose signature is not Alipay's came from a server that did
  -- receive the request: what it did is unknown (and classify says a retry
  -- will not help).
  if e.unknown == nil then e.unknown = OUTCOME_UNKNOWN[kind] or kind == "signature" end
  if e.retryable == nil then e.retryable = errors.retryable(e) end
  if e.verified == nil then e.verified = false end
  return e
end

-- errors.classify(err) -> "transient" | "throttled" | "template" |
-- "recipient" | "quota" | "configuration": what a sender does next (docs/messaging.md §4).
-- The rules are data in alipay.classify (it returns the rule too).
function errors.classify(err)
  return classify.classify(err)
end

function errors.is_error(v)
  return getmetatable(v) == Error
end

-- The failure triple of a detail: return errors.failure(detail)
--   -> nil, tostring(detail), detail
function errors.failure(detail)
  return nil, tostring(detail), detail
end

-- errors.fail(kind, fields) -> nil, message, detail. fields may be a
-- string: the message of a local failure.
function errors.fail(kind, fields)
  if type(fields) == "string" then fields = { msg = fields } end
  return errors.failure(errors.new(kind, fields))
end

-- Passes a failure on, adding context to the detail (and the line):
--   return errors.wrap(err, detail, "store", {channel = code})
-- A failure without a detail (a plain string from a lower layer) gets one
-- of kind `kind` (default "state").
function errors.wrap(err, detail, kind, fields)
  if not errors.is_error(detail) then
    detail = errors.new(kind or "state", { msg = tostring(err or detail or "failed") })
  end
  for k, v in pairs(fields or {}) do
    if detail[k] == nil then detail[k] = v end
  end
  return nil, tostring(detail), detail
end

-- Transport failures in which the request never reached the gateway (no
-- connection, no name, no TLS session): resending cannot duplicate it.
errors.not_sent_reasons = { connect = true, resolve = true, tls = true }

-- The typed error of a failed transfer (both transports use it).
function errors.transport(msg, reason)
  return errors.new("transport", {
    -- retryable comes from the class: a transport failure is transient
    -- (timeouts, resets, refused connections may pass on a retry), except
    -- the reasons classify.rules.reason lists (too_large).
    msg = msg, reason = reason,
    unknown = not errors.not_sent_reasons[reason],
  })
end

-- A configuration error names the field; msg never contains the value.
function errors.config(field, msg)
  return errors.new("config", { field = field, msg = field .. ": " .. msg })
end

return errors
