-- alipay.campaign.outcome: the one place that maps a typed error to the
-- reason an unknown recipient is unknown (issue 13 §4), and the rule that a
-- request that provably never left is not unknown at all.
local errors = require "alipay.errors"
local outcome = require "alipay.campaign.outcome"

describe("campaign unknown reasons", function()
  local rules = { max_attempts = 3, backoff_ms = 100, max_backoff_ms = 1000, now_ms = 1000,
                  random = function() return 1 end, template_id = "T" }
  local row = { line = 1, status = "inflight", attempts = 1, tries = 0, uncertain = false, checked = true }

  local function send(err, over)
    local r = {}
    for k, v in pairs(rules) do r[k] = v end
    for k, v in pairs(over or {}) do r[k] = v end
    return outcome.send(row, nil, err, r)
  end

  local function began(reason)
    local e = errors.transport("cut", reason)
    e.answer_began = true
    return e
  end

  it("has the fixed names", function()
    assert.same({ "timeout", "reset", "truncated", "http_5xx", "unverified", "runner_died", "superseded",
                  "interrupted" }, outcome.UNKNOWN_REASONS)
    assert.is_true(outcome.is_unknown_reason("http_5xx"))
    assert.is_false(outcome.is_unknown_reason("HTTP_5XX"))
    assert.is_false(outcome.is_unknown_reason("connect"))
  end)

  it("maps each typed error whose outcome is unknown to its reason", function()
    local cases = {
      { errors.transport("timed out", "timeout"), "timeout" },
      { errors.transport("closed", "reset"), "reset" },
      { errors.transport("send failed", "send"), "reset" },
      { errors.transport("recv failed", "recv"), "reset" },
      { began("reset"), "truncated" },
      { began("recv"), "truncated" },
      { errors.new("http", { status = 502 }), "http_5xx" },
      { errors.new("http", { status = 504 }), "http_5xx" },
      { errors.new("http", { status = 404 }), "unverified" },
      { errors.new("decode", { msg = "not JSON" }), "unverified" },
      { errors.new("signature", { msg = "not Alipay's" }), "unverified" },
    }
    for _, case in ipairs(cases) do
      assert.are.equal(case[2], outcome.unknown_reason(case[1]), tostring(case[1]))
      local r = send(case[1])
      assert.are.same({ "unknown", case[2], true }, { r.status, r.unknown_reason, r.uncertain }, tostring(case[1]))
    end
  end)

  it("puts a request that never left back to pending, its attempt given back", function()
    for _, reason in ipairs { "connect", "resolve", "tls" } do
      local err = errors.transport("no connection", reason)
      assert.is_false(err.unknown)
      local r, e = send(err)
      assert.are.same({ "pending", 0, 0, false }, { r.status, r.attempts, r.tries, r.uncertain }, reason)
      assert.is_nil(r.unknown_reason)
      assert.is_true(e.transient)
      assert.is_nil(e.finished)
      assert.is_true(r.next_attempt_at > rules.now_ms)
    end
    -- The submit failure dispatch builds (nothing started) is the same.
    local r = send(errors.new("transport", { msg = "could not start", reason = "submit", unknown = false }))
    assert.are.same({ "pending", 0 }, { r.status, r.attempts })
  end)

  it("retries only the reasons retry_unknown names", function()
    local r = send(errors.new("http", { status = 502 }), { retry_unknown = { http_5xx = true } })
    assert.are.same({ "pending", true, 1 }, { r.status, r.uncertain, r.tries })
    r = send(errors.transport("timed out", "timeout"), { retry_unknown = { http_5xx = true } })
    assert.are.same({ "unknown", "timeout" }, { r.status, r.unknown_reason })
    r = send(errors.transport("timed out", "timeout"), { retry_unknown = true })
    assert.are.equal("pending", r.status)
    -- A retried unknown that runs out of attempts ends unknown with the reason it had.
    r = outcome.send({ line = 1, status = "inflight", attempts = 3, tries = 2, uncertain = true,
                       unknown_reason = "http_5xx" }, nil, errors.new("gateway", { code = "20000", verified = true }),
                     rules)
    assert.are.same({ "unknown", "http_5xx" }, { r.status, r.unknown_reason })
  end)

  it("a subscription check puts its row back in the queue", function()
    local r = outcome.check(row, { subscribed = true }, nil, rules)
    assert.are.same({ "pending", true }, { r.status, r.checked })
    r = outcome.check(row, nil, errors.new("gateway", { code = "40002", sub_code = "isv.invalid-signature",
                                                        verified = true }), rules)
    assert.are.equal("pending", r.status)
  end)
end)
