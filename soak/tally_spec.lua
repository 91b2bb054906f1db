-- soak/tally.lua: the two counts of `make soak` (run first by the target).
package.path = "./?.lua;" .. package.path
local tally = require "soak.tally"

local A, B, C, D = "2088000000000001", "2088000000000002", "2088000000000003", "2088000000000004"
local IDS = { [A] = true, [B] = true, [C] = true, [D] = true }

local function to(...)
  local list = {}
  for i, id in ipairs { ... } do list[i] = { to_user_id = id } end
  return list
end

local function row(id, status, attempts) return { alipay_id = id, status = status, attempts = attempts or 1 } end

describe("soak.tally", function()
  it("counts nothing when every sent recipient was delivered once", function()
    local r = tally.count({ row(A, "sent"), row(B, "sent"), row(C, "failed"), row(D, "skipped", 0) },
      to(A, B), IDS)
    assert.same({ 0, 0, 4 }, { r.lost, r.duplicated, r.checked })
    assert.same({ sent = 2, failed = 1, skipped = 1 }, r.statuses)
  end)

  it("counts a sent recipient the sandbox never delivered as lost", function()
    local r = tally.count({ row(A, "sent"), row(B, "sent") }, to(A), IDS)
    assert.equal(1, r.lost)
    assert.truthy(r.examples[1]:find(B, 1, true))
  end)

  it("counts a delivered recipient the store shows pending, failed or skipped as lost", function()
    for _, status in ipairs { "pending", "failed", "skipped" } do
      local r = tally.count({ row(A, status) }, to(A), IDS)
      assert.equal(1, r.lost, status)
    end
  end)

  it("counts unknown as neither, delivered or not", function()
    local r = tally.count({ row(A, "unknown"), row(B, "unknown") }, to(A), IDS)
    assert.same({ 0, 0 }, { r.lost, r.duplicated })
  end)

  it("counts a recipient delivered twice as duplicated, whatever the store says", function()
    local r = tally.count({ row(A, "sent"), row(B, "unknown"), row(C, "sent") }, to(A, A, B, B, B, C), IDS)
    assert.equal(2, r.duplicated)
    assert.equal(1, r.duplicated_unknown)
    assert.equal(0, r.lost)
  end)

  it("excuses one extra delivery per retry of an unknown the soak asked for", function()
    local r = tally.count({ row(A, "sent", 2) }, to(A, A), IDS, { [A] = 1 })
    assert.equal(0, r.duplicated)
    r = tally.count({ row(A, "sent", 3) }, to(A, A, A), IDS, { [A] = 1 })
    assert.equal(1, r.duplicated)
  end)

  it("counts a delivery to a recipient missing from the store as lost, and ignores other campaigns", function()
    local r = tally.count({ row(A, "sent") }, to(A, B, "2088999999999999"), IDS)
    assert.same({ 1, 0, 2 }, { r.lost, r.duplicated, r.checked })
  end)

  it("adds results", function()
    local total = tally.empty()
    tally.add(total, tally.count({ row(A, "sent") }, to(A, A), IDS))
    tally.add(total, tally.count({ row(B, "sent") }, {}, IDS))
    assert.same({ 1, 1, 2 }, { total.lost, total.duplicated, total.checked })
    assert.same({ sent = 2 }, total.statuses)
  end)
end)
