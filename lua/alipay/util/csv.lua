-- A small streaming RFC 4180 CSV reader (user-binding uploads now,
-- campaign audience files later). Runs on Lua 5.4 and LuaJIT.
--
--   local csv = require "alipay.util.csv"
--   local records = csv.reader(file_handle[, opts])
--   for fields, line in records do ... end      -- fields: a list of strings
--   if records.error then ... end                -- set when reading stopped on an error
--
--   records() -> fields, line | nil (end of input) | nil, err, detail
--     err a one-line string (also in records.error), detail the typed error
--     (also in records.detail): kind "input" for a malformed file, "io" for a
--     read error (docs/errors.md)
--
-- `line` is the physical line (1-based) on which the record starts, so a
-- caller can point an operator at it even when quoted fields span lines.
-- What is accepted:
--   * fields separated by opts.separator (default ","), records by CRLF or LF
--     (a lone CR inside an unquoted field is data);
--   * quoted fields with doubled quotes ("a ""b"""), separators and line
--     breaks inside them (kept exactly as they were in the file);
--   * a UTF-8 byte order mark before the first record (dropped);
--   * empty lines anywhere (skipped, but counted in line numbers).
--   * characters after a closing quote ("ab"c) are appended to the field, and
--     a quote inside an unquoted field is data: lenient, like most
--     spreadsheet tools, because the caller validates values anyway.
-- What stops the reader (records() returns nil, err, and records.error is
-- set; later calls return nil): a quoted field that is never closed ("line
-- 12: unterminated quoted field (reached the end of the file)"), a record
-- longer than opts.max_record_bytes (default 1 MiB; usually the same
-- unterminated quote), or a read error of the file handle.
-- A generic `for` stops at the first nil, so check records.error after it.
--
--   csv.header_problem(fields) -> nil | "column 2 of the header is a name of 1000000 bytes
--     (at most 128): cccc…(40 of 1000000 bytes)"
--   A header names columns: a name longer than csv.MAX_COLUMN_NAME bytes
--   is not a header (a data line, a file that is not CSV), and one with a
--   control character is refused (alipay.util.control_chars). The message
--   names the column and its size and echoes only a short prefix.
local errors = require "alipay.errors"
local control_chars = require "alipay.util.control_chars"
local excerpt = require "alipay.util.excerpt"

local csv = {}

local BOM = "\239\187\191"
local DEFAULT_MAX_RECORD = 1024 * 1024

-- Splits a physical line into its content and its line break.
local function split_eol(raw)
  if raw:sub(-1) == "\r" then return raw:sub(1, -2), "\r" end -- a last line ending in a bare CR
  if raw:sub(-1) ~= "\n" then return raw, "" end
  if raw:sub(-2) == "\r\n" then return raw:sub(1, -3), "\r\n" end
  return raw:sub(1, -2), "\n"
end

local function escape_pattern(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

function csv.reader(fh, opts)
  opts = opts or {}
  local sep = opts.separator or ","
  if type(sep) ~= "string" or #sep ~= 1 or sep == '"' or sep == "\r" or sep == "\n" then
    error("csv.reader: separator must be one character other than a quote or a line break", 2)
  end
  local max_record = opts.max_record_bytes or DEFAULT_MAX_RECORD
  local sep_or_quote = "[" .. escape_pattern(sep) .. '"]'
  local plain_sep = escape_pattern(sep)

  local records = { line = 0 }
  local finished = false

  local function fail(msg, kind)
    finished = true
    local _, err, detail = errors.fail(kind or "input", msg)
    records.error, records.detail = err, detail
    return nil, err, detail
  end

  -- The next physical line (with its line break), or nil at the end.
  local function next_line()
    local raw, err = fh:read("*L")
    if raw == nil then return nil, err end
    records.line = records.line + 1
    if records.line == 1 and raw:sub(1, 3) == BOM then raw = raw:sub(4) end
    return raw
  end

  -- Parses one record starting with the physical line `raw`.
  local function parse(raw, start_line)
    local fields = {}
    local text, eol = split_eol(raw)
    local size = #raw
    local i = 1
    while true do
      if text:sub(i, i) == '"' then
        -- A quoted field: collect pieces up to the closing quote, reading
        -- more lines while the quote stays open.
        local parts = {}
        i = i + 1
        while true do
          local q = text:find('"', i, true)
          if not q then
            parts[#parts + 1] = text:sub(i)
            parts[#parts + 1] = eol
            local more, rerr = next_line()
            if not more then
              if rerr then return nil, ("line %d: read error: %s"):format(records.line, tostring(rerr)), "io" end
              return nil, ("line %d: unterminated quoted field (reached the end of the file)"):format(start_line)
            end
            size = size + #more
            if size > max_record then
              return nil, ("line %d: a record longer than %d bytes (an unterminated quoted field?)")
                :format(start_line, max_record)
            end
            text, eol = split_eol(more)
            i = 1
          elseif text:sub(q + 1, q + 1) == '"' then
            parts[#parts + 1] = text:sub(i, q) -- a doubled quote stands for one
            i = q + 2
          else
            parts[#parts + 1] = text:sub(i, q - 1)
            i = q + 1
            break
          end
        end
        -- Anything up to the next separator after the closing quote is kept.
        local stop = text:find(plain_sep, i) or (#text + 1)
        parts[#parts + 1] = text:sub(i, stop - 1)
        fields[#fields + 1] = table.concat(parts)
        if stop > #text then return fields end
        i = stop + 1
      else
        local stop = text:find(sep_or_quote, i)
        -- A quote inside an unquoted field is data: look for the separator only.
        if stop and text:sub(stop, stop) == '"' then stop = text:find(plain_sep, stop) end
        if not stop then
          fields[#fields + 1] = text:sub(i)
          return fields
        end
        fields[#fields + 1] = text:sub(i, stop - 1)
        i = stop + 1
      end
    end
  end

  local function read_record()
    if finished then return nil end
    while true do
      local raw, rerr = next_line()
      if not raw then
        finished = true
        if rerr then return fail(("line %d: read error: %s"):format(records.line + 1, tostring(rerr)), "io") end
        return nil
      end
      if raw ~= "\n" and raw ~= "\r\n" and raw ~= "\r" and raw ~= "" then
        local start_line = records.line
        if #raw > max_record then
          return fail(("line %d: a record longer than %d bytes"):format(start_line, max_record))
        end
        local fields, perr, pkind = parse(raw, start_line)
        if not fields then return fail(perr, pkind) end
        return fields, start_line
      end
    end
  end

  return setmetatable(records, { __call = function() return read_record() end })
end

csv.MAX_COLUMN_NAME = 128

function csv.header_problem(fields)
  for i, name in ipairs(fields) do
    if #name > csv.MAX_COLUMN_NAME then
      return ("column %d of the header is a name of %d bytes (at most %d): %s"):format(i, #name,
        csv.MAX_COLUMN_NAME, excerpt(name))
    end
    local ok, cerr = control_chars.check(("column %d of the header"):format(i), name)
    if not ok then return cerr end
  end
end

return csv
