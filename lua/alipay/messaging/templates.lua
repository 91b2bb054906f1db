-- The registry of imported templates (docs/messaging.md §2.3, §5.3) over a store.
-- Alipay has no API that lists the templates a Life Account claimed, and a
-- template deleted on Alipay is only discovered when a send fails: operators
-- import id, name and keywords from the console, sends are checked against
-- the import before any call is spent, and a template Alipay reports missing
-- is marked invalid until it is imported again. Runs on Lua 5.4 and LuaJIT.
--
--   local templates = require "alipay.messaging.templates"
--   local reg = templates.new(store[, {clock = os.time}])
--
--   reg:import(list | path | json_text, opts) -> {imported = n, failed = {{index=, id=, error=}}}
--                                                   | nil, err, detail
--       list items {id=, name=?, keywords={...in order...}, channel=?, kind=?, library_id=?};
--       a path names a JSON file holding such an array or {"templates": [...]}; a string
--       starting with "[" or "{" is taken as the JSON text itself. opts.channel and opts.kind
--       fill fields an item leaves out; kind defaults to "alipaylife" (the templates that
--       must be imported by hand are the Life Account ones). Good items are written (in one
--       transaction) even when others fail; an item is refused for: not an object, a missing
--       id (or one over 64 characters), no channel, keywords not a non-empty list of non-empty
--       strings, a duplicate keyword, a bad kind, name/library_id not strings, or the same
--       channel+id twice in one import. Importing again overwrites and makes the template
--       valid again. nil, err, detail only when the file or JSON cannot be read at all
--       (detail.kind "io" for a file, "input" for bad JSON, "store" when writing failed).
--   reg:list(channel?) -> {template, ...}     ordered by channel, id
--   reg:get(channel, id) -> template | nil, err, detail ("template T of channel C is not
--       imported", kind "state")
--   reg:check_life_context(template, context) -> true | nil, err, detail (kind "input")
--   reg:check_mini_data(template, data) -> true | nil, err, detail (kind "input")
--   reg:mark_invalid(channel, id, code) -> true | nil, err, detail    records code and time
--   reg:mark_valid(channel, id) -> true | nil, err, detail
--   reg:usable(channel, id) -> template | nil, err, detail    refuses invalid and unknown templates
--       (kind "state"): "template T of channel C was marked invalid at 2024-05-13 09:49:20 UTC
--        (MSG_TEMPLATE_NOT_EXIST); re-import it once fixed"
--
-- Failures follow docs/errors.md: err is a one-line string, detail the typed
-- error (detail.channel and detail.template name the template when known).
--
-- A template is the store's table: {channel=, id=, name=, keywords=, kind=, library_id=,
-- status="valid"|"invalid", invalid_code=, invalid_at=, imported_at=}.
--
-- The checks return every problem they find, joined by "; ", each naming
-- the field (and a keyword's name) and the limit. Lengths are UTF-8
-- characters, not bytes (and a value that is not UTF-8 is refused).
-- Life Account context (alipay.open.public.message.single.send). Alipay's
-- documents require head_color, url, action_name and each keyword's value
-- and color, and give one limit, action_name's; anything else Alipay might
-- accept is sent (docs/conformance.md):
--   head_color  required, a non-empty string (the docs' example is #85be53)
--   url         required, non-empty
--   action_name required, non-empty, within a display width of 16 units where
--               an ASCII character counts 1 and any other character (CJK) 2:
--               so 8 CJK or 16 ASCII characters, and mixed text in proportion
--               ("查看details": 2*2 + 7 = 11 units)
--   keyword1..keywordN  exactly the template's N keywords (any N), each
--               {value=, color=}, both non-empty strings
--   first, remark  optional, the same shape as a keyword
--   nothing else (an unknown field is an error: it would be silently dropped)
-- Every text of a context is held to LIMITS.life_text characters: this
-- library's own bound against runaway data (a million-character cell), not
-- Alipay's, and its error says so.
-- Mini-program data (alipay.open.app.mini.templatemessage.send), a table or
-- its JSON text: exactly keyword1..keywordN, each {value=} with a non-empty
-- value of at most 50 characters, and at most 2048 bytes as JSON.
local cjson = require("cjson").new()
local errors = require "alipay.errors"
local is_list = require("alipay.util.table").is_list
local json_source = require "alipay.util.json_source"
local mini_limits = require "alipay.messaging.mini_limits"
local utf8_text = require "alipay.util.utf8"
local excerpt = require "alipay.util.excerpt"

local templates = {}

templates.LIMITS = {
  id = 64, action_name_units = 16, life_text = 2048,
  mini_value = 50, mini_data_bytes = mini_limits.DATA_MAX,
}
local LIMITS = templates.LIMITS
local KINDS = require("alipay.messaging.kinds").KINDS

local Registry = {}
Registry.__index = Registry

function templates.new(store, opts)
  if type(store) ~= "table" then error("templates.new: expected a store", 2) end
  opts = opts or {}
  return setmetatable({ store = store, clock = opts.clock or os.time }, Registry)
end

-- ---- text measures ----

local measure = utf8_text.measure
templates.measure = measure

local function format_time(t)
  if not t then return "an unknown time" end
  return os.date("!%Y-%m-%d %H:%M:%S UTC", t)
end

-- ---- import ----

-- list | path | JSON text -> list of items | nil, err, detail
local function load_list(source)
  if type(source) == "table" then return source end
  if type(source) ~= "string" then return errors.fail("input", "import: expected a list, a file path or JSON text") end
  local decoded, where, detail = json_source.decode(source, "import")
  if decoded == nil then return nil, where, detail end
  if type(decoded) == "table" and not is_list(decoded) and decoded.templates ~= nil then
    decoded = decoded.templates
  end
  if not is_list(decoded) then
    return errors.fail("input", ("import: %s must hold an array of templates or {\"templates\": [...]}"):format(where))
  end
  return decoded
end

-- item, opts -> template | nil, err
local function normalize(item, opts, now)
  if type(item) ~= "table" then return nil, "not an object" end
  local id = item.id
  if type(id) ~= "string" or id == "" then return nil, "id: missing" end
  local id_len = measure(id)
  if not id_len or id_len > LIMITS.id then return nil, ("id: at most %d characters"):format(LIMITS.id) end
  local channel = item.channel
  if channel == nil then channel = opts.channel end
  if type(channel) ~= "string" or channel == "" then
    return nil, "channel: missing (give it per template or as opts.channel)"
  end
  local kind = item.kind
  if kind == nil then kind = opts.kind or "alipaylife" end
  if not KINDS[kind] then return nil, "kind: must be alipaylife or alipaymini" end
  if item.name ~= nil and type(item.name) ~= "string" then return nil, "name: must be a string" end
  if item.library_id ~= nil and type(item.library_id) ~= "string" then
    return nil, "library_id: must be a string"
  end
  local keywords = item.keywords
  if not is_list(keywords) or #keywords == 0 then
    return nil, "keywords: must be a non-empty list of strings"
  end
  local seen, copy = {}, {}
  for i, k in ipairs(keywords) do
    if type(k) ~= "string" or k == "" then
      return nil, ("keywords: item %d must be a non-empty string"):format(i)
    end
    if seen[k] then
      return nil, ("keywords: duplicate keyword %q (items %d and %d)"):format(excerpt(k), seen[k], i)
    end
    seen[k] = i
    copy[i] = k
  end
  return {
    channel = channel, id = id, name = item.name, keywords = copy, kind = kind,
    library_id = item.library_id, status = "valid", imported_at = now,
  }
end

function Registry:import(source, opts)
  opts = opts or {}
  local list, err, detail = load_list(source)
  if not list then return nil, err, detail end
  local now = self.clock()
  local good, failed, first_index = {}, {}, {}
  for index, item in ipairs(list) do
    local t, why = normalize(item, opts, now)
    if t then
      local key = t.channel .. "\0" .. t.id
      if first_index[key] then
        t, why = nil, ("duplicate of item %d (channel %s, id %s)"):format(first_index[key], t.channel, t.id)
      else
        first_index[key] = index
      end
    end
    if t then
      good[#good + 1] = t
    else
      -- The id of a refused item is echoed: cut short (it may be the problem).
      local id = type(item) == "table" and type(item.id) == "string" and excerpt(item.id, 256) or nil
      failed[#failed + 1] = { index = index, id = id, error = why }
    end
  end
  local ok, werr = pcall(self.store.transaction, self.store, function(store)
    for _, t in ipairs(good) do assert(store:template_put(t)) end
  end)
  if not ok then return errors.fail("store", "import: " .. tostring(werr)) end
  return { imported = #good, failed = failed }
end

-- ---- reading ----

function Registry:list(channel)
  return self.store:template_list(channel)
end

local function not_imported(channel, id)
  return errors.fail("state", { channel = channel, template = id,
    msg = ("template %s of channel %s is not imported"):format(excerpt(id, 256), excerpt(channel)) })
end

function Registry:get(channel, id)
  local t, err, detail = self.store:template_get(channel, id)
  if err then return nil, err, detail end
  if not t then return not_imported(channel, id) end
  return t
end

function Registry:usable(channel, id)
  local t, err, detail = self:get(channel, id)
  if not t then return nil, err, detail end
  if t.status ~= "valid" then
    return errors.fail("state", { channel = channel, template = id, invalid_code = t.invalid_code,
      msg = ("template %s of channel %s was marked invalid at %s (%s); re-import it once fixed")
        :format(id, channel, format_time(t.invalid_at), t.invalid_code or "no code") })
  end
  return t
end

-- ---- status ----

function Registry:mark_invalid(channel, id, code)
  if code ~= nil and type(code) ~= "string" then return errors.fail("input", "mark_invalid: code must be a string") end
  local n, err, detail = self.store:template_set_status(channel, id, "invalid", code, self.clock())
  if not n then return nil, err, detail end
  if n == 0 then return not_imported(channel, id) end
  return true
end

function Registry:mark_valid(channel, id)
  local n, err, detail = self.store:template_set_status(channel, id, "valid", nil, nil)
  if not n then return nil, err, detail end
  if n == 0 then return not_imported(channel, id) end
  return true
end

-- ---- content checks ----

local function label(template, i)
  local name = template.keywords[i]
  return name and ("keyword%d (%s)"):format(i, name) or ("keyword%d"):format(i)
end

local function check_template(template, kind)
  if type(template) ~= "table" or not is_list(template.keywords) then
    return ("expected an imported template (with its keywords), got %s"):format(type(template))
  end
  if template.kind ~= kind then
    return ("template %s is a %s template, not %s"):format(tostring(template.id), tostring(template.kind), kind)
  end
end

-- Checks a string field -> nil | problem. `max` is in characters.
local function check_text(name, value, max)
  if type(value) ~= "string" then return ("%s: must be a string"):format(name) end
  if value == "" then return ("%s: must not be empty"):format(name) end
  local chars = measure(value)
  if not chars then return ("%s: not valid UTF-8"):format(name) end
  if chars > max then
    return ("%s: %d characters, at most %d"):format(name, chars, max)
  end
end

-- A Life Account text: only this library's bound applies, and its error
-- says that the bound is ours.
local function check_life_text(name, value)
  local bad = check_text(name, value, math.huge)
  if bad then return bad end
  local chars = measure(value)
  if chars > LIMITS.life_text then
    return ("%s: %d characters; Alipay documents no limit, this library sends at most %d")
      :format(name, chars, LIMITS.life_text)
  end
end

-- A {value=, color=} item of a Life Account context.
local function check_life_item(problems, name, item)
  if type(item) ~= "table" then
    problems[#problems + 1] = name .. ": must be an object {value=, color=}"
    return
  end
  local bad = check_life_text(name .. ".value", item.value)
  if bad then problems[#problems + 1] = bad end
  if item.color == nil then
    problems[#problems + 1] = name .. ".color: required"
  else
    bad = check_life_text(name .. ".color", item.color)
    if bad then problems[#problems + 1] = bad end
  end
  for k in pairs(item) do
    if k ~= "value" and k ~= "color" then
      problems[#problems + 1] = ("%s: unknown field %s"):format(name, excerpt(k))
    end
  end
end

local function keyword_index(key)
  local digits = type(key) == "string" and key:match("^keyword(%d+)$")
  return digits and tonumber(digits)
end

-- Unknown keys of `t`, sorted, as problems (keys the caller accepted are in `known`).
local function unknown_fields(problems, t, known, what)
  local extra = {}
  for k in pairs(t) do
    if not known[k] and not keyword_index(k) then extra[#extra + 1] = excerpt(k) end
  end
  table.sort(extra)
  for _, k in ipairs(extra) do problems[#problems + 1] = ("%s: unknown field %s"):format(what, k) end
end

-- Keywords beyond the template's count, sorted, as problems.
local function extra_keywords(problems, t, template)
  local n, extra = #template.keywords, {}
  for k in pairs(t) do
    local i = keyword_index(k)
    if i and (i < 1 or i > n or k ~= "keyword" .. i) then extra[#extra + 1] = k end
  end
  table.sort(extra)
  for _, k in ipairs(extra) do
    problems[#problems + 1] = ("%s: template %s has %d keywords (%s)")
      :format(k, tostring(template.id), n, table.concat(template.keywords, ", "))
  end
end

-- The caller's data does not fit the template: kind "input" (a sender
-- turns it into its own "invalid" refusal).
local function refuse(msg)
  return errors.fail("input", msg)
end

local function result(problems)
  if #problems == 0 then return true end
  return refuse(table.concat(problems, "; "))
end

local LIFE_FIELDS = { head_color = true, url = true, action_name = true, first = true, remark = true }

function Registry:check_life_context(template, context) -- luacheck: no unused args
  local bad = check_template(template, "alipaylife")
  if bad then return refuse(bad) end
  if type(context) ~= "table" then return refuse("context: must be an object") end
  local problems = {}
  for _, field in ipairs { "head_color", "url" } do
    if context[field] == nil then
      problems[#problems + 1] = field .. ": required"
    else
      bad = check_life_text(field, context[field])
      if bad then problems[#problems + 1] = bad end
    end
  end
  local action = context.action_name
  if action == nil then
    problems[#problems + 1] = "action_name: required"
  elseif type(action) ~= "string" or action == "" then
    problems[#problems + 1] = "action_name: must be a non-empty string"
  else
    local _, width = measure(action)
    if not width then
      problems[#problems + 1] = "action_name: not valid UTF-8"
    elseif width > LIMITS.action_name_units then
      problems[#problems + 1] = ("action_name: %d width units, at most 16 (8 CJK or 16 ASCII characters;"
        .. " a CJK character counts 2)"):format(width)
    end
  end
  if context.first ~= nil then check_life_item(problems, "first", context.first) end
  for i = 1, #template.keywords do
    local key = "keyword" .. i
    if context[key] == nil then
      problems[#problems + 1] = label(template, i) .. ": missing"
    else
      check_life_item(problems, label(template, i), context[key])
    end
  end
  extra_keywords(problems, context, template)
  if context.remark ~= nil then check_life_item(problems, "remark", context.remark) end
  unknown_fields(problems, context, LIFE_FIELDS, "context")
  return result(problems)
end

function Registry:check_mini_data(template, data) -- luacheck: no unused args
  local bad = check_template(template, "alipaymini")
  if bad then return refuse(bad) end
  if type(data) == "string" then
    local ok, decoded = pcall(cjson.decode, data)
    if not ok or type(decoded) ~= "table" then return refuse("data: not a JSON object") end
    local sized, serr = mini_limits.check_data_size(data)
    if not sized then return refuse(serr) end
    data = decoded
  elseif type(data) ~= "table" then
    return refuse("data: must be an object {keyword1={value=}, ...}")
  end
  local problems = {}
  for i = 1, #template.keywords do
    local name, item = label(template, i), data["keyword" .. i]
    if item == nil then
      problems[#problems + 1] = name .. ": missing"
    elseif type(item) ~= "table" then
      problems[#problems + 1] = name .. ": must be an object {value=}"
    else
      bad = check_text(name .. ".value", item.value, LIMITS.mini_value)
      if bad then problems[#problems + 1] = bad end
      for k in pairs(item) do
        if k ~= "value" then problems[#problems + 1] = ("%s: unknown field %s"):format(name, excerpt(k)) end
      end
    end
  end
  extra_keywords(problems, data, template)
  unknown_fields(problems, data, {}, "data")
  if #problems == 0 then
    local ok, encoded = pcall(cjson.encode, data)
    local sized, serr = true, nil
    if ok then sized, serr = mini_limits.check_data_size(encoded) end
    if not sized then problems[#problems + 1] = serr end
  end
  return result(problems)
end

return templates
