-- The audience of a campaign, read as a stream of entries, never held in
-- memory: a CSV or JSONL file, a list of business user ids, a list of
-- recipients, or every follower of a Life Account; or a mini program's crowd,
-- one entry {line = 1, crowd = code} that Alipay resolves (alipay.campaign.crowd;
-- a label is a kind too, so that campaign.create can say why it is refused).
--
--   local audience = require "alipay.campaign.audience"
--   local source, err, detail = audience.open(spec.audience, { life = <alipay.messaging.lifeaccount>, sleep_ms = fn })
--   source.columns        -- {name = true}: the values every entry has (CSV header, list
--                         -- fields), or nil when entries differ (JSONL, recipients)
--   source:next() -> entry | nil (end) | nil, err, detail (the import cannot go on)
--     entry = {line = n, fields = {name = value}} | {line = n, error = "why the line is malformed"}
--   source:close()
--   audience.describe(spec.audience) -> a JSON-friendly description (stored with the campaign)
--
--   audience.nonempty(source, spec.audience) -> source | nil, err (closed)
--     reads the first entry ahead (next() still returns it first): an
--     audience without a single entry (an empty file, a CSV with only its
--     header, JSONL with only blank lines, an empty list, no followers) is
--     an error before a campaign exists. A campaign of nobody is a mistake
--     (the wrong file), never a result.
--
-- `line` is the physical line of a file (so an operator can find it), or the
-- 1-based position in a list or in the follower listing.
--
-- An entry is malformed ({line=, error=}, the importer skips it) when a
-- field that names the recipient (user_id, open_id, alipay_id, id_type,
-- userid) holds a control character (alipay.util.control_chars; the error
-- names the field), or when a JSONL line repeats a key: cjson would keep the
-- last value, and which one was meant is unknown.
local cjson = require("cjson.safe").new()
local csv_source = require "alipay.campaign.csv_source"
local control_chars = require "alipay.util.control_chars"
local errors = require "alipay.errors"
local excerpt = require "alipay.util.excerpt"
local json_keys = require "alipay.util.json_keys"

local M = {}

-- ---- JSONL ----

local Jsonl = {}
Jsonl.__index = Jsonl

-- JSON scalars as the strings placeholders use; integers without ".0".
local function scalar_text(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
    return tostring(v)
  end
  if type(v) == "boolean" then return tostring(v) end
  return nil
end

function Jsonl:next()
  if not self.fh then return nil end
  while true do
    local text, err = self.fh:read("L")
    if not text then
      if err then return errors.fail("io", ("line %d: read error: %s"):format(self.line + 1, tostring(err))) end
      return nil
    end
    self.line = self.line + 1
    if self.line == 1 then text = text:gsub("^\239\187\191", "") end
    if text:find("%S") then
      local value, derr = cjson.decode(text)
      if type(value) ~= "table" then
        return { line = self.line, error = "not a JSON object: " .. tostring(derr or type(value)) }
      end
      if next(value) ~= nil and value[1] ~= nil then
        return { line = self.line, error = "a JSON array, not an object" }
      end
      -- cjson keeps the last of a repeated key: which one was meant is unknown.
      local repeated = json_keys.repeated(text, value)
      if repeated then
        return { line = self.line, error = ("the key %q appears twice: ambiguous, the line is skipped")
          :format(excerpt(repeated)) }
      end
      local fields, raw = {}, {}
      for k, v in pairs(value) do
        if type(k) == "string" then
          raw[k] = v
          fields[k] = scalar_text(v)
        end
      end
      -- Ids must arrive as strings (a JSON number loses digits): the raw
      -- types travel along so the importer can tell.
      return { line = self.line, fields = fields, raw = raw }
    end
  end
end

function Jsonl:close()
  if self.fh then self.fh:close() end
  self.fh = nil
end

local function open_jsonl(path)
  local fh, err = io.open(path, "rb")
  if not fh then return errors.fail("io", "cannot read the audience: " .. tostring(err)) end
  return setmetatable({ fh = fh, line = 0 }, Jsonl)
end

-- ---- lists ----

local List = {}
List.__index = List

function List:next()
  local i = self.i + 1
  if i > self.n then return nil end
  self.i = i
  return self.entry(i, self.list[i])
end

function List.close() end

local function open_list(list, entry, columns)
  return setmetatable({ list = list, n = #list, i = 0, entry = entry, columns = columns }, List)
end

local function userid_entry(i, v)
  if type(v) ~= "string" or v == "" then return { line = i, error = "a userid must be a non-empty string" } end
  return { line = i, fields = { userid = v } }
end

local function recipient_entry(i, v)
  if type(v) ~= "table" then return { line = i, error = "a recipient must be a table {user_id=} or {open_id=}" } end
  local fields = {}
  for k, x in pairs(v) do
    if type(k) == "string" then fields[k] = scalar_text(x) end
  end
  return { line = i, fields = fields, raw = v }
end

-- ---- followers ----

local Followers = {}
Followers.__index = Followers

local PAGE_RETRIES = 5

-- The next page, retrying a transient failure from the same cursor.
function Followers:page()
  for attempt = 1, PAGE_RETRIES do
    local page, err, detail = self.pages()
    if page or not err then return page end
    -- The listing's own failure (its line names follow.batchquery) goes on
    -- unchanged: its detail says whether a later run may succeed.
    if not (detail and detail.retryable) or attempt == PAGE_RETRIES then
      return errors.wrap(err, detail, "state")
    end
    self.sleep_ms(200 * 2 ^ (attempt - 1))
    self.pages = self.life:followers { start = self.pages.cursor }
  end
end

function Followers:next()
  while true do
    if self.ids and self.k < #self.ids then
      self.k = self.k + 1
      self.line = self.line + 1
      return { line = self.line, fields = { [self.id_type] = self.ids[self.k] } }
    end
    if self.done then return nil end
    local page, err, detail = self:page()
    if not page then
      self.done = true
      if err then return nil, err, detail end
      return nil
    end
    self.ids, self.id_type, self.k = page.ids, page.id_type, 0
  end
end

function Followers.close() end

local function open_followers(life, sleep_ms)
  if not life then return errors.fail("input", "audience.followers: only a Life Account channel has followers") end
  return setmetatable({ life = life, pages = life:followers(), line = 0, sleep_ms = sleep_ms,
                        columns = { user_id = true, open_id = true } }, Followers)
end

-- ---- dispatch ----

local function format_of(a)
  if a.format then return a.format end
  local ext = a.file:lower():match("%.([%w]+)$")
  if ext == "jsonl" or ext == "ndjson" or ext == "json" then return "jsonl" end
  return "csv"
end

-- Which kind of audience a spec gives -> kind | nil, err
function M.kind(a)
  if type(a) ~= "table" then return nil, "audience: expected a table" end
  local kinds = {}
  for _, k in ipairs { "file", "userids", "recipients", "followers", "crowd", "label" } do
    if a[k] ~= nil then kinds[#kinds + 1] = k end
  end
  if #kinds ~= 1 then
    return nil, "audience: give exactly one of file, userids, recipients, followers, crowd, label"
  end
  local kind = kinds[1]
  if kind == "file" then
    if type(a.file) ~= "string" or a.file == "" then return nil, "audience.file: expected a path" end
    if a.format ~= nil and a.format ~= "csv" and a.format ~= "jsonl" then
      return nil, "audience.format: csv or jsonl"
    end
  elseif kind == "followers" then
    if a.followers ~= true then return nil, "audience.followers: expected true" end
  elseif kind == "crowd" or kind == "label" then
    local v = a[kind]
    if kind == "label" and math.type(v) == "integer" then v = tostring(v) end
    -- No length is documented for either: only what cannot be a code.
    if type(v) ~= "string" or v == "" or control_chars.find(v) or v:find("%s") then
      return nil, ("audience.%s: expected a %s without spaces or control characters"):format(kind,
        kind == "crowd" and "crowd code" or "label id")
    end
  elseif type(a[kind]) ~= "table" then
    return nil, ("audience.%s: expected a list"):format(kind)
  end
  return kind
end

function M.describe(a)
  local kind = M.kind(a)
  if kind == "file" then return { file = a.file, format = format_of(a) } end
  if kind == "followers" then return { followers = true } end
  if kind == "crowd" or kind == "label" then return { [kind] = tostring(a[kind]) } end
  return { [kind] = #a[kind] }
end

-- Reads the first entry now (so that an empty audience fails here) and
-- hands it out again as the first of source:next().
local function with_first_entry(source, empty_msg)
  local first, err, detail = source:next()
  if not first then
    source:close()
    if err then return nil, err, detail end
    return errors.fail("input", empty_msg)
  end
  local next_entry = source.next
  source.next = function(self)
    if first then
      local entry = first
      first = nil
      return entry
    end
    return next_entry(self)
  end
  return source
end

-- What an empty audience of each kind is told.
local function empty_message(kind, a)
  if kind == "file" then
    return ("the audience %s has no recipients (%s)"):format(a.file, format_of(a) == "jsonl"
      and "the file is empty or has only blank lines" or "only a header row")
  elseif kind == "followers" then
    return "the Life Account has no followers: the audience has no recipients"
  elseif kind == "crowd" or kind == "label" then
    return ("audience.%s: nothing to read"):format(kind)
  end
  return ("audience.%s has no recipients (an empty list)"):format(kind)
end

local function open_source(kind, a, opts)
  if kind == "file" then
    if format_of(a) == "jsonl" then return open_jsonl(a.file) end
    return csv_source.open(a.file)
  elseif kind == "userids" then
    return open_list(a.userids, userid_entry, { userid = true })
  elseif kind == "recipients" then
    return open_list(a.recipients, recipient_entry, nil)
  elseif kind == "crowd" then
    -- No columns: a crowd's data has no placeholders (campaign.create says so).
    return open_list({ a.crowd }, function(i, code) return { line = i, crowd = code, fields = {} } end, {})
  elseif kind == "label" then
    return errors.fail("input", "audience.label: a template campaign cannot send to a label")
  end
  return open_followers(opts.life, opts.sleep_ms)
end

-- The fields that name a recipient (alipay.campaign.importer reads them):
-- a control character in one makes the line malformed, naming the field,
-- whatever the source. The columns that fill placeholders are checked as
-- the template's content (alipay.campaign.message).
local ID_FIELDS = { "user_id", "open_id", "alipay_id", "id_type", "userid" }

local function clean_ids(entry)
  if not (entry and entry.fields) then return entry end
  for _, name in ipairs(ID_FIELDS) do
    local v = entry.fields[name]
    if type(v) == "string" and control_chars.find(v) then
      local _, msg = control_chars.check(name, v)
      return { line = entry.line, error = msg }
    end
  end
  return entry
end

function M.open(a, opts)
  local kind, err = M.kind(a)
  if not kind then return errors.fail("input", err) end
  local source, serr, sdetail = open_source(kind, a, opts or {})
  if not source then return nil, serr, sdetail end
  local next_entry = source.next
  source.next = function(self)
    local entry, e, d = next_entry(self)
    if not entry then return nil, e, d end
    return clean_ids(entry)
  end
  return source
end

function M.nonempty(source, a)
  return with_first_entry(source, empty_message(assert(M.kind(a)), a))
end

return M
