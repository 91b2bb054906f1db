-- Per-recipient results of a campaign as CSV (with a header) or JSONL, read
-- from the store page by page in line order.
--
--   local export = require "alipay.campaign.export"
--   export.write(store, campaign_id, path_or_file, "csv" | "jsonl") -> count | nil, err, detail
--     (detail.kind "input" for a bad format or target, "io" when writing fails, "store")
--     A path is created (truncated) and closed; a file handle is written to
--     and left open.
local cjson = require("cjson").new()
local errors = require "alipay.errors"

local M = {}

local PAGE = 1000

M.COLUMNS = { "line", "userid", "id_type", "alipay_id", "status", "code", "sub_code", "msg", "attempts",
              "updated_at", "unknown_reason" }
local COLUMNS = M.COLUMNS

local function csv_field(v)
  if v == nil then return "" end
  v = tostring(v)
  if v:find('[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local function csv_line(row)
  local out = {}
  for i, name in ipairs(COLUMNS) do out[i] = csv_field(row[name]) end
  return table.concat(out, ",") .. "\n"
end

-- Keys in COLUMNS order (cjson would follow the hash order).
local function json_line(row)
  local out = {}
  for i, name in ipairs(COLUMNS) do
    local v = row[name]
    out[i] = cjson.encode(name) .. ":" .. (v == nil and "null" or cjson.encode(v))
  end
  return "{" .. table.concat(out, ",") .. "}\n"
end

function M.write(store, id, target, format)
  format = format or "csv"
  if format ~= "csv" and format ~= "jsonl" then return errors.fail("input", "export: format must be csv or jsonl") end
  local fh, own = target, false
  if type(target) == "string" then
    local err
    fh, err = io.open(target, "wb")
    if not fh then return errors.fail("io", "export: cannot write " .. tostring(err)) end
    own = true
  elseif io.type(target) ~= "file" and not (type(target) == "table" and target.write) then
    return errors.fail("input", "export: expected a path or a file handle")
  end
  local function finish(...)
    if own then fh:close() end
    return ...
  end
  local line_of = format == "csv" and csv_line or json_line
  if format == "csv" then
    local ok, werr = fh:write(table.concat(COLUMNS, ",") .. "\n")
    if not ok then return finish(errors.fail("io", "export: " .. tostring(werr))) end
  end
  local count, after = 0, 0
  while true do
    local rows, err, detail = store:recipients_page(id, after, PAGE)
    if not rows then return finish(nil, err, detail) end
    if #rows == 0 then break end
    local chunk = {}
    for i, row in ipairs(rows) do chunk[i] = line_of(row) end
    local ok, werr = fh:write(table.concat(chunk))
    if not ok then return finish(errors.fail("io", "export: " .. tostring(werr))) end
    count = count + #rows
    after = rows[#rows].line
  end
  return finish(count)
end

return M
