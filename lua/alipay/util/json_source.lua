-- A source given as JSON text or as the path of a file that holds it (the
-- import commands accept either): text that starts, after an optional BOM
-- and blanks, with "[" or "{" is JSON; anything else is a path.
local cjson = require("cjson").new()
local errors = require "alipay.errors"
local fs = require "alipay.util.fs"

local M = {}

local BOM = "\239\187\191"

-- source, what (the caller's name, prefixed to every message)
--   -> the decoded value, where ("JSON text" or the path)
--    | nil, err, detail (kind "io" when the file cannot be read, "input"
--      when the text is not JSON)
function M.decode(source, what)
  local text, where = source, "JSON text"
  if not source:match("^[" .. BOM .. "%s]*[%[{]") then
    local err
    text, err = fs.read(source)
    if not text then return errors.fail("io", ("%s: cannot read %s"):format(what, tostring(err))) end
    where = source
  end
  text = text:gsub("^" .. BOM, "")
  local ok, value = pcall(cjson.decode, text)
  if not ok then
    return errors.fail("input", ("%s: %s is not valid JSON: %s"):format(what, where, tostring(value)))
  end
  return value, where
end

return M
