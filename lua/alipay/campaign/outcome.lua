-- What happens to a recipient after an answer (docs/messaging.md §4, §6.5): the one
-- place that decides between sent, a retry, failed, unknown and stopping.
-- Pure functions over a row copy; the sender writes the result.
--
--   local outcome = require "alipay.campaign.outcome"
--   outcome.send(row, node, err, rules) -> row, effects
--   outcome.check(row, subscribed | nil, err, rules) -> row, effects
--   rules   = {max_attempts=, backoff_ms=, max_backoff_ms=, retry_unknown=, now_ms=, random=, template_id=}
--   effects = {throttled = bool, stop = reason | nil, finished = bool,
--              transient = bool (the platform or the network failed), answered = bool (it worked)}
--
-- Sends:
--   * success -> sent (a crowd's batch send keeps its batch_msg_id in msg).
--   * throttled (40005 ...): back to pending after a backoff; the limiter
--     halves the rate. Not counted toward max_attempts: slowing down is the
--     fix, not giving up.
--   * transient and the request certainly did not execute (an error Alipay
--     answered, such as a signed 20000, or a connection that never opened):
--     pending again with exponential backoff and jitter; after max_attempts
--     such failures, failed.
--   * transient and the outcome is unknown (timeout, reset, truncated
--     answer, HTTP 502, an answer whose signature does not verify): the
--     message may have been delivered, so unknown, never re-sent silently.
--     With retry_unknown it is retried like the others; if it then runs out
--     of attempts it ends unknown (one of its attempts may have arrived).
--   * recipient -> failed with Alipay's code, sub_code and message.
--   * template -> failed, and the campaign stops (the channel module has
--     marked the template invalid in the registry).
--   * configuration -> the campaign stops; the recipient goes back to
--     pending when the request certainly did not execute, else unknown
--     (pending with retry_unknown).
-- Subscription checks (mini programs) are reads: any transient failure is
-- retried (max_attempts), a recipient error fails the recipient, template
-- and configuration errors stop the campaign with the recipient pending.
--
-- Every unknown row carries a reason (M.unknown_reason, the one place that
-- maps a typed error to it); a transport failure that proves the request
-- never left (unknown == false: connect, resolve, tls) is not unknown at
-- all: the row goes back to pending and the attempt is given back.
local classify = require "alipay.classify"
local crowd = require "alipay.campaign.crowd"

local M = {}

-- The reasons of unknown rows, fixed for every backend and the CLI:
--   timeout      the request was sent; no answer in time
--   reset        the connection closed after the request was (maybe) sent, before any answer byte
--   truncated    an answer began but was cut or could not be read whole
--   http_5xx     an HTTP 5xx answer without a signed Alipay body (a proxy's or the gateway's)
--   unverified   an answer arrived but its signature or body could not be checked
--   runner_died  in flight when its runner crashed or was killed (found by the next run)
--   superseded   in flight when its runner lost its lease to another
--   interrupted  still in flight when the Ctrl-C/SIGTERM drain ended
M.UNKNOWN_REASONS = { "timeout", "reset", "truncated", "http_5xx", "unverified", "runner_died", "superseded",
                      "interrupted" }
local KNOWN_REASON = {}
for _, r in ipairs(M.UNKNOWN_REASONS) do KNOWN_REASON[r] = true end
function M.is_unknown_reason(name) return KNOWN_REASON[name] == true end

-- The reason an answer (a typed error whose outcome is unknown) leaves the
-- recipient unknown. Branches on the error's fields only (kind, reason,
-- status, answer_began), never on its message.
function M.unknown_reason(err)
  local kind = err.kind
  if kind == "transport" then
    if err.reason == "timeout" then return "timeout" end
    -- The transport saw response bytes (a status line, headers, part of a
    -- body) before the failure, or the answer was over the size limit.
    if err.answer_began or err.reason == "too_large" then return "truncated" end
    return "reset"
  end
  if kind == "http" then
    local status = tonumber(err.status)
    if status and status >= 500 and status <= 599 then return "http_5xx" end
    return "unverified"
  end
  -- decode: an answer whose framing was whole but whose body cannot be
  -- read; signature: not Alipay's. Both: an answer that cannot be checked.
  return "unverified"
end

-- Whether rules.retry_unknown (true, or a set {[reason] = true}) retries reason.
local function retries(rules, reason)
  local r = rules.retry_unknown
  if r == true then return true end
  return type(r) == "table" and r[reason] == true
end

-- A transport failure before the request left: nothing was sent.
local function never_left(err)
  return err.kind == "transport" and err.unknown == false
end

-- Whether the request certainly did not execute: Alipay answered with an
-- error, or the transport never delivered it (connect/resolve/tls).
function M.not_executed(err)
  local kind = err.kind
  if kind == "gateway" or kind == "business" or kind == "invalid" then return true end
  if kind == "transport" then return err.unknown == false end
  return false
end

local MSG_MAX = 200

-- code, sub_code, msg of an error, for the store. Never the string the
-- gateway computed for a bad signature: it holds the message body.
function M.codes(err)
  local code, sub_code = err.code, err.sub_code
  -- An answer that is not Alipay's: its codes cannot be trusted (a
  -- "10000" here would read as a success in the summary).
  if err.kind == "signature" then code, sub_code = nil, nil end
  if not code then
    code = (err.kind or "error"):upper()
    sub_code = sub_code or (err.status and tostring(err.status)) or err.reason
  end
  local msg = err.sub_msg or err.msg
  if tostring(sub_code or ""):find("signature", 1, true) then msg = err.msg end
  msg = msg and tostring(msg) or nil
  if msg and #msg > MSG_MAX then msg = msg:sub(1, MSG_MAX) .. "…" end
  return tostring(code), sub_code and tostring(sub_code) or nil, msg
end

local function copy(row)
  local c = {}
  for k, v in pairs(row) do c[k] = v end
  return c
end

local function backoff_ms(rules, n)
  local delay = math.min(rules.max_backoff_ms, rules.backoff_ms * 2 ^ math.max(0, n - 1))
  local random = rules.random or math.random
  return math.floor(delay / 2 + random() * delay / 2)
end

local function with_codes(row, err)
  row.code, row.sub_code, row.msg = M.codes(err)
  return row
end

local function retry_later(row, rules, delay)
  row.status = "pending"
  row.next_attempt_at = math.floor(rules.now_ms + delay)
  return row
end

local function describe(err)
  local code, sub_code, msg = M.codes(err)
  local parts = { code }
  if sub_code then parts[#parts + 1] = sub_code end
  if msg then parts[#parts + 1] = "(" .. msg .. ")" end
  return table.concat(parts, " ")
end

function M.send(row, node, err, rules)
  row = copy(row)
  if node then
    row.status, row.code, row.sub_code, row.msg = "sent", node.code or "10000", nil, nil
    -- A crowd's batch send: its id is the one record Alipay gives of it.
    if row.id_type == crowd.ID_TYPE then row.msg = crowd.batch_msg(node.batch_msg_id) end
    return row, { finished = true, answered = true }
  end
  with_codes(row, err)
  local class = classify.classify(err)
  local known = M.not_executed(err)
  local reason = not known and M.unknown_reason(err) or nil
  if class == "throttled" and known then
    return retry_later(row, rules, backoff_ms(rules, 1)), { throttled = true }
  end
  if class == "transient" and never_left(err) then
    -- Nothing left: the attempt is given back and not counted toward
    -- max_attempts (the circuit breaker stops a run against a dead gateway).
    row.attempts = math.max(0, (row.attempts or 1) - 1)
    return retry_later(row, rules, backoff_ms(rules, row.tries + 1)), { transient = true }
  end
  if class == "transient" or class == "throttled" then
    if not known and not retries(rules, reason) then
      row.status, row.uncertain, row.unknown_reason = "unknown", true, reason
      return row, { finished = true, transient = true }
    end
    row.uncertain = row.uncertain or not known
    row.tries = row.tries + 1
    if row.tries >= rules.max_attempts then
      row.status = row.uncertain and "unknown" or "failed"
      -- The last failure's reason, or (a certain one) that of the earlier attempt.
      row.unknown_reason = row.status == "unknown" and (reason or row.unknown_reason or "reset") or nil
      return row, { finished = true, transient = true }
    end
    return retry_later(row, rules, backoff_ms(rules, row.tries)), { transient = true }
  end
  if class == "recipient" then
    row.status = row.uncertain and "unknown" or "failed"
    if row.status == "unknown" then row.unknown_reason = row.unknown_reason or reason or "reset" end
    return row, { finished = true, answered = true }
  end
  if class == "template" then
    row.status = "failed"
    return row, { finished = true, stop = ("template %s can no longer be used: %s; re-import or fix it, then run"
      .. " the campaign again"):format(tostring(rules.template_id), describe(err)) }
  end
  if class == "quota" then
    -- Alipay refused it without sending: the row waits for the quota to reset.
    row.status = "pending"
    row.uncertain = row.uncertain or not known
    return row, { finished = false, stop = ("Alipay says a sending quota is spent: %s; everyone left is "
      .. "pending: resume the campaign when the quota resets"):format(describe(err)) }
  end
  -- configuration
  if known or retries(rules, reason) then
    row.status = "pending"
    row.uncertain = row.uncertain or not known
  else
    row.status, row.uncertain, row.unknown_reason = "unknown", true, reason
  end
  return row, { finished = row.status ~= "pending",
                stop = "the channel's configuration was refused: " .. describe(err) .. "; fix it, then run the"
                  .. " campaign again" }
end

function M.check(row, subscription, err, rules)
  row = copy(row)
  -- The check held the row inflight (a read: nothing was sent); whatever
  -- does not finish it puts it back in the queue.
  row.status = "pending"
  if subscription then
    -- subscribed nil: Alipay holds an answer whose state this library cannot
    -- read (docs/messaging.md §3.2). Skipping on a guess could skip every
    -- recipient, so the send goes out and Alipay's answer to it decides.
    if subscription.subscribed ~= false then
      row.checked, row.tries, row.next_attempt_at = true, 0, 0
      row.code, row.sub_code, row.msg = nil, nil, nil
      return row, { answered = true }
    end
    row.status, row.code, row.sub_code = "skipped", "NOT_SUBSCRIBED", nil
    row.msg = "not subscribed"
    if subscription.type then
      row.msg = ("not subscribed (%s, state %s)"):format(subscription.type, tostring(subscription.state))
    end
    return row, { finished = true, answered = true }
  end
  with_codes(row, err)
  local class = classify.classify(err)
  if class == "throttled" then
    return retry_later(row, rules, backoff_ms(rules, 1)), { throttled = true }
  end
  if class == "transient" then
    row.tries = row.tries + 1
    if row.tries >= rules.max_attempts then
      row.status = "failed"
      return row, { finished = true, transient = true }
    end
    return retry_later(row, rules, backoff_ms(rules, row.tries)), { transient = true }
  end
  if class == "recipient" then
    row.status = "failed"
    return row, { finished = true, answered = true }
  end
  return row, { stop = ("the subscription query was refused (%s): %s; fix it, then run the campaign again")
    :format(class, describe(err)) }
end

return M
