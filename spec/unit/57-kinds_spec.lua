-- alipay.messaging.kinds: the kinds of channel in one place, and
-- alipay.cli.exit_status: the exit statuses in one place.
local kinds = require "alipay.messaging.kinds"

describe("alipay.messaging.kinds", function()
  it("names the two kinds, their id types and what an operator calls them", function()
    assert.are.same({ alipaylife = true, alipaymini = true }, kinds.KINDS)
    assert.are.same({ user_id = true, open_id = true }, kinds.ID_TYPES)
    for kind in pairs(kinds.KINDS) do assert.is_string(kinds.NAMES[kind], kind) end
  end)

  it("gives each kind's sending module, and refuses a kind that is not one", function()
    assert.are.equal(require "alipay.messaging.lifeaccount", kinds.module("alipaylife"))
    assert.are.equal(require "alipay.messaging.mini", kinds.module("alipaymini"))
    assert.has_error(function() kinds.module("alipaywechat") end,
      "alipay.messaging.kinds: unknown kind alipaywechat")
  end)

  it("is what channels, users and the CLI check against", function()
    assert.are.equal(kinds.KINDS, require("alipay.messaging.channels").KINDS)
    assert.are.equal(kinds.ID_TYPES, require("alipay.messaging.channels").ID_TYPES)
    assert.are.equal(kinds.NAMES, require("alipay.cli.common").KIND_NAMES)
  end)
end)

describe("alipay.cli.exit_status", function()
  it("is the one set of numbers the dispatcher and the commands return", function()
    local exit_status = require "alipay.cli.exit_status"
    -- SIGNALLED: 128 + the signal's number, after Ctrl-C or SIGTERM (alipay campaign)
    assert.are.same({ OK = 0, FAILED = 1, USAGE = 2, SIGNALLED = { INT = 130, TERM = 143 } }, exit_status)
    for _, mod in ipairs { require "alipay.cli", require "alipay.cli.common" } do
      assert.are.same({ 0, 1, 2 }, { mod.OK, mod.FAILED, mod.USAGE })
    end
  end)
end)
