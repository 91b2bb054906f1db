-- alipay.messaging.mini_limits: the one rule for the size of a mini-program
-- message's data, shared by mini's send and the registry's check_mini_data.
local mini_limits = require "alipay.messaging.mini_limits"

describe("alipay.messaging.mini_limits.check_data_size", function()
  it("takes 2048 bytes and refuses 2049", function()
    assert.is_true(mini_limits.check_data_size(("x"):rep(2048)))
    local ok, err = mini_limits.check_data_size(("x"):rep(2049))
    assert.is_nil(ok)
    assert.are.equal("data: 2049 bytes as JSON, at most 2048", err)
  end)

  it("counts bytes, not characters: 700 CJK characters are 2100 bytes", function()
    local ok, err = mini_limits.check_data_size(("宝"):rep(700))
    assert.is_nil(ok)
    assert.matches("2100 bytes", err)
  end)
end)
