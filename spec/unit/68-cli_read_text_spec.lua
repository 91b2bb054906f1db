-- alipay.cli.common.read_text: the one way the commands read a file the
-- operator names (send --data-file, call @FILE, template import, campaign
-- --data-file): a leading UTF-8 BOM is dropped, a failure is kind "io".
local helpers = require "helpers"
local common = require "alipay.cli.common"
local fs = require "alipay.util.fs"

describe("alipay.cli.common.read_text", function()
  it("gives the text without a leading BOM, and keeps one that is not leading", function()
    local path = helpers.tmpdir() .. "/data.json"
    assert(fs.write(path, '\239\187\191{"a": "\239\187\191"}'))
    assert.are.equal('{"a": "\239\187\191"}', common.read_text(path, "--data-file"))
  end)

  it("names the option in the error when the file cannot be read", function()
    local text, err, detail = common.read_text(helpers.tmpdir() .. "/missing.json", "--data-file")
    assert.is_nil(text)
    assert.matches("^%-%-data%-file: cannot read ", err)
    assert.are.equal("io", detail.kind)
  end)
end)
