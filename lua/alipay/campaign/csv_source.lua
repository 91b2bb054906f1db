-- A CSV audience file read one record at a time (alipay.util.csv), which goes on
-- past a broken record. alipay.util.csv stops at an unterminated quote (the rest
-- of the file would be one field); for an audience the likelier truth is one
-- bad line, so the record is reported at the line where it started and
-- reading starts again on the next physical line.
--
--   local source, err, detail = require("alipay.campaign.csv_source").open(path)
--   source.columns               -- {name = true} of the header (names trimmed)
--   source:next() -> entry | nil (end) | nil, err, detail (the file cannot be read: kind "io")
--     entry = {line = n, fields = {column = value}} | {line = n, error = "why"}
--   source:close()
--
-- Memory stays bounded: only the start offsets of the lines of the record
-- being read are kept (alipay.util.csv caps a record at 1 MiB).
local csv = require "alipay.util.csv"
local errors = require "alipay.errors"

local M = {}

local Source = {}
Source.__index = Source

-- A file handle for alipay.util.csv that remembers where each line starts.
local function tracked(fh)
  local t = { fh = fh, line = 0, pos = 0, starts = {}, kept_from = 1 }
  function t.read(self, _)
    local text, err = self.fh:read("L")
    if text then
      self.line = self.line + 1
      self.starts[self.line] = self.pos
      self.pos = self.pos + #text
    end
    return text, err
  end
  -- Offsets before `line` are no longer needed.
  function t.forget_before(self, line)
    for n = self.kept_from, line - 1 do self.starts[n] = nil end
    if line > self.kept_from then self.kept_from = line end
  end
  return t
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

function Source:restart_after(line)
  local t = self.handle
  -- Where line + 1 starts: already read as part of the broken record, or
  -- the next unread byte when the record was a single (over-long) line.
  local offset = t.starts[line + 1] or (line == t.line and t.pos) or nil
  if not offset then
    self.done = true
    return
  end
  local ok, err = t.fh:seek("set", offset)
  if not ok then
    self.failed = "cannot seek in the audience file: " .. tostring(err)
    return
  end
  t:forget_before(line + 1)
  t.line, t.pos = line, offset
  self.base = line
  self.records = csv.reader(t)
end

-- The next record -> fields, absolute line | nil, err_line, err_msg
function Source:record()
  local fields, line = self.records()
  if fields then
    line = self.base + line
    self.handle:forget_before(line)
    return fields, line
  end
  local err = self.records.error
  if not err then return nil end
  local rel, msg = err:match("^line (%d+): (.*)$")
  return nil, rel and (self.base + tonumber(rel)) or (self.handle.line), msg or err
end

function Source:next()
  if self.failed then return errors.fail("io", self.failed) end
  if self.done then return nil end
  local fields, line, msg = self:record()
  if fields then
    if #fields ~= self.width then
      return { line = line, error = ("%d fields, the header has %d"):format(#fields, self.width) }
    end
    local row = {}
    for i, name in ipairs(self.names) do row[name] = fields[i] end
    return { line = line, fields = row }
  end
  if not line then
    self.done = true
    return nil
  end
  if msg:find("read error", 1, true) then
    self.failed = ("line %d: %s"):format(line, msg)
    return errors.fail("io", self.failed)
  end
  self:restart_after(line)
  if self.failed then return errors.fail("io", self.failed) end
  return { line = line, error = msg }
end

function Source:close()
  if self.handle.fh then self.handle.fh:close() end
  self.handle.fh = nil
end

-- open(path) -> source | nil, err, detail (unreadable file: kind "io"; no header, a repeated
-- column, a column name over 128 bytes or with a control character (alipay.util.csv's
-- header_problem): kind "input")
function M.open(path)
  local fh, oerr = io.open(path, "rb")
  if not fh then return errors.fail("io", "cannot read the audience: " .. tostring(oerr)) end
  local handle = tracked(fh)
  local self = setmetatable({ handle = handle, base = 0, records = csv.reader(handle) }, Source)
  local header, hline, herr = self:record()
  if not header then
    fh:close()
    if hline then return errors.fail("input", ("%s line %d: %s"):format(path, hline, herr)) end
    return errors.fail("input", ("the audience %s has no recipients (the file is empty)"):format(path))
  end
  local function refuse(problem)
    fh:close()
    return errors.fail("input", ("%s line %d: %s"):format(path, hline, problem))
  end
  local bad = csv.header_problem(header)
  if bad then return refuse(bad) end
  self.names, self.columns, self.width = {}, {}, #header
  for i, raw in ipairs(header) do
    local name = trim(raw)
    if name == "" then return refuse(("column %d of the header has no name"):format(i)) end
    if self.columns[name] then return refuse(("the column %s appears twice in the header"):format(name)) end
    self.names[i], self.columns[name] = name, true
  end
  return self
end

return M
