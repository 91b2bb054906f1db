-- User bindings (docs/messaging.md §5.2): the business's own user id mapped, per
-- channel code, to the Alipay id of that user in that app, and whether that
-- id is a user_id or an open_id. The type is carried, never guessed from a
-- "2088" prefix.
--
--   local users = require "alipay.messaging.users"
--   local u = assert(users.new(store, {
--     alipaylife123 = { kind = "alipaylife", id_type = "user_id" },   -- id_type defaults to "user_id"
--     mini456       = { kind = "alipaymini", id_type = "open_id" },
--   }))
--
--   u:upload(rows) -> {success = {userid, ...}, fail = {{userid=, errcode=, errmsg=, row=}, ...}}
--       rows in the UMS format, e.g.
--         {{userid = "zhangsan", set = {alipaylife = {alipaylife123 = "2088102146158132"}}},
--          {userid = "lisi", add = {alipaymini = {mini456 = {open_id = "0a1b2c..."}}}},
--          {userid = "wangwu", del = {alipaylife = {"alipaylife123"}}}}
--       Exactly one operation per row, over the kinds alipaylife and alipaymini:
--         set  replaces the user's bindings of that kind: channels of the kind that are not
--              given are removed (set = {alipaylife = {}} removes them all); bindings of
--              channels that are no longer configured are left alone (their kind is unknown)
--         add  adds or overwrites the given channels only
--         del  removes the given channels: a list of codes, or a map whose values are ignored
--       An id is a string (the channel's id type), {user_id = "2088..."} or {open_id = "..."}
--       (that type, whatever the channel's). Partial success: each row is applied in its own
--       savepoint, so a bad row changes nothing and the others are kept. `row` is the row's
--       position (upload, upload_json) or its line in the file (upload_csv).
--   u:upload_json(path_or_text) -> the same | nil, err, detail (unreadable file: kind "io";
--       JSON syntax error with cjson's position, not an array: kind "input")
--   u:upload_csv(path, {channel = "alipaylife123", op = "set"|"add"}) -> the same | nil, err, detail
--       (kind "io" when the file cannot be read, "input" for bad options, a bad header, an
--       empty file)
--       A header row names the columns: userid, and <kind>_userid and/or <kind>_openid for the
--       channel's kind (alipaylife_userid, alipaylife_openid; alipaymini_… for a mini program);
--       other columns are ignored, names are case-insensitive. Values are trimmed of spaces.
--       Rows whose fields are all empty are skipped. RFC 4180 (see alipay.util.csv).
--   u:resolve(userid, channel) -> alipay_id, id_type | false, msg | nil, err, detail
--       false when the user has no binding for the channel ("user zhangsan has no binding for
--       channel alipaylife123"): not a failure, an answer, so it has no detail; nil when the
--       store failed, so callers tell the two apart without reading the text
--   u:show(userid) -> {[channel] = {alipay_id=, id_type=, kind=}} | nil, err, detail
--   u:count(channel?) -> n | nil, err, detail
--
-- Failures follow docs/errors.md: err is a one-line string, detail the typed
-- error (detail.kind "input", "io" or "store").
--
-- Error codes of a failed row:
--   INVALID_ROW        the row is not an object; CSV: a record with another number of fields
--                      than the header, or a quoted field never closed (reported at the line
--                      where it opened; the reader cannot go on past it)
--   INVALID_USERID     userid missing, not a string, empty, over 64 characters, or with
--                      control characters
--   INVALID_OPERATION  not exactly one of set/add/del, an unknown field, an unknown kind,
--                      an operation that is not an object, add/del naming no channel
--   UNKNOWN_CHANNEL    a channel code that is not configured, or configured with the other kind
--   INVALID_ALIPAY_ID  a user_id that is not 16 digits starting with 2088, an open_id that is
--                      not 16-128 letters, digits, "-" or "_", an id that is not a string,
--                      or (CSV) both or neither of the id columns filled
--   STORE_ERROR        the database refused the change (the row is not applied)
local csv = require "alipay.util.csv"
local errors = require "alipay.errors"
local tables = require "alipay.util.table"
local is_list, sorted_keys = tables.is_list, tables.sorted_keys
local json_source = require "alipay.util.json_source"
local chars = require("alipay.util.utf8").chars
local kinds = require "alipay.messaging.kinds"
local excerpt = require "alipay.util.excerpt"

local users = {}

local KINDS, ID_TYPES = kinds.KINDS, kinds.ID_TYPES
local OPS = { "set", "add", "del" }
local ROW_FIELDS = { userid = true, set = true, add = true, del = true }
local MAX_USERID = 64
local BATCH = 500 -- rows per outer transaction: bounded lock time, few commits

local Users = {}
Users.__index = Users

-- users.new(store, channels_info) -> users | nil, err, detail
function users.new(store, channels_info)
  if type(store) ~= "table" then error("users.new: expected a store", 2) end
  if type(channels_info) ~= "table" then error("users.new: expected a table of channels", 2) end
  local channels = {}
  for code, info in pairs(channels_info) do
    if type(code) ~= "string" or code == "" or type(info) ~= "table" then
      return errors.fail("input", "users.new: channels must map a channel code to {kind=, id_type=}")
    end
    if not KINDS[info.kind] then
      return errors.fail("input", ("users.new: channel %s: kind must be alipaylife or alipaymini"):format(code))
    end
    local id_type = info.id_type or "user_id"
    if not ID_TYPES[id_type] then
      return errors.fail("input", ("users.new: channel %s: id_type must be user_id or open_id"):format(code))
    end
    channels[code] = { kind = info.kind, id_type = id_type }
  end
  return setmetatable({ store = store, channels = channels }, Users)
end

-- ---- validation ----

local function check_userid(userid)
  if type(userid) ~= "string" or userid == "" then return "userid: missing or not a string" end
  local n = chars(userid)
  if n > MAX_USERID then return ("userid: %d characters, at most %d"):format(n, MAX_USERID) end
  if userid:find("%c") then return "userid: contains control characters" end
end

local function valid_id(id_type, id)
  if id_type == "user_id" then return id:match("^2088%d%d%d%d%d%d%d%d%d%d%d%d$") ~= nil end
  return #id >= 16 and #id <= 128 and not id:find("[^%w_%-]")
end

local ID_RULE = {
  user_id = "user_id must be 16 digits starting with 2088",
  open_id = "open_id must be 16 to 128 letters, digits, '-' or '_'",
}

-- value -> alipay_id, id_type | nil, errmsg
local function parse_id(where, value, channel_type)
  local id, id_type = value, channel_type
  if type(value) == "table" then
    if value.user_id ~= nil and value.open_id == nil then
      id, id_type = value.user_id, "user_id"
    elseif value.open_id ~= nil and value.user_id == nil then
      id, id_type = value.open_id, "open_id"
    else
      return nil, where .. ": give the id as a string, {user_id=} or {open_id=}"
    end
    for k in pairs(value) do
      if k ~= "user_id" and k ~= "open_id" then return nil, ("%s: unknown field %s"):format(where, excerpt(k)) end
    end
  end
  if type(id) ~= "string" then
    return nil, where .. ": the id must be a string (a JSON number loses digits)"
  end
  if not valid_id(id_type, id) then return nil, where .. ": " .. ID_RULE[id_type] end
  return id, id_type
end

local function fail(errcode, errmsg) return { errcode = errcode, errmsg = errmsg } end

-- (internal) A UMS row -> plan {userid=, op=, kinds={[kind] = {[channel] = {alipay_id=, id_type=} | true}}}
-- | nil, {errcode=, errmsg=}. Validates everything before anything is written.
function Users:plan(row)
  if type(row) ~= "table" then return nil, fail("INVALID_ROW", "a row must be an object") end
  local bad = check_userid(row.userid)
  if bad then return nil, fail("INVALID_USERID", bad) end
  for k in pairs(row) do
    if not ROW_FIELDS[k] then
      return nil, fail("INVALID_OPERATION", ("unknown field %s (a row has userid and one of set, add, del)")
        :format(excerpt(k)))
    end
  end
  local found = {}
  for _, op in ipairs(OPS) do
    if row[op] ~= nil then found[#found + 1] = op end
  end
  if #found ~= 1 then
    return nil, fail("INVALID_OPERATION", ("a row needs exactly one of set, add, del; found %s")
      :format(#found == 0 and "none" or table.concat(found, " and ")))
  end
  local op = found[1]
  local body = row[op]
  if type(body) ~= "table" or (next(body) ~= nil and is_list(body)) then
    return nil, fail("INVALID_OPERATION", op .. ": must be an object such as {alipaylife = {...}}")
  end
  local plan = { userid = row.userid, op = op, kinds = {} }
  local named = 0
  for kind, entries in pairs(body) do
    if not KINDS[kind] then
      return nil, fail("INVALID_OPERATION", ("%s: unknown channel kind %s (alipaylife, alipaymini)")
        :format(op, excerpt(kind)))
    end
    if type(entries) ~= "table" then
      return nil, fail("INVALID_OPERATION", ("%s.%s: must be an object of channel codes"):format(op, kind))
    end
    local codes = {}
    if op == "del" and is_list(entries) then
      for _, code in ipairs(entries) do codes[code] = true end
    else
      for code, value in pairs(entries) do codes[code] = value end
    end
    local targets = {}
    for code, value in pairs(codes) do
      local where = ("%s.%s.%s"):format(op, kind, excerpt(code))
      local channel = type(code) == "string" and self.channels[code]
      if not channel then
        return nil, fail("UNKNOWN_CHANNEL", ("%s: no channel %s is configured"):format(where, excerpt(code)))
      end
      if channel.kind ~= kind then
        return nil, fail("UNKNOWN_CHANNEL", ("%s: channel %s is an %s channel, not %s")
          :format(where, code, channel.kind, kind))
      end
      if op == "del" then
        targets[code] = true
      else
        local id, id_type = parse_id(where, value, channel.id_type)
        if not id then return nil, fail("INVALID_ALIPAY_ID", id_type) end
        targets[code] = { alipay_id = id, id_type = id_type }
      end
      named = named + 1
    end
    plan.kinds[kind] = targets
  end
  if named == 0 and op ~= "set" then
    return nil, fail("INVALID_OPERATION", op .. ": names no channel")
  end
  if next(plan.kinds) == nil then
    return nil, fail("INVALID_OPERATION", "set: names no channel kind")
  end
  return plan
end

-- ---- applying ----

-- (internal) Applies a plan inside the caller's transaction; raises on a store error.
function Users:apply(plan)
  local store, userid = self.store, plan.userid
  for _, kind in ipairs(sorted_keys(plan.kinds)) do
    local targets = plan.kinds[kind]
    if plan.op == "set" then
      local current = assert(store:bindings_of(userid))
      for _, code in ipairs(sorted_keys(current)) do
        local channel = self.channels[code]
        if channel and channel.kind == kind and not targets[code] then
          assert(store:binding_delete(userid, code))
        end
      end
    end
    for _, code in ipairs(sorted_keys(targets)) do
      local target = targets[code]
      if plan.op == "del" then
        assert(store:binding_delete(userid, code))
      else
        assert(store:binding_put(userid, code, target.alipay_id, target.id_type))
      end
    end
  end
end

-- Collects results; rows are applied in batches, each row in a savepoint.
local function new_session(self)
  local session = { result = { success = {}, fail = {} }, pending = {} }

  function session.failed(row, userid, f)
    local list = session.result.fail
    -- An invalid userid (over 64 characters, control characters) comes back
    -- cut short and printable: it is echoed, and it names no user anyway.
    if type(userid) == "string" and check_userid(userid) then userid = excerpt(userid) end
    list[#list + 1] = { userid = type(userid) == "string" and userid or nil, errcode = f.errcode,
                        errmsg = f.errmsg, row = row }
  end

  function session.flush()
    local pending = session.pending
    if #pending == 0 then return end
    session.pending = {}
    local outcome = {}
    local ok, err = pcall(self.store.transaction, self.store, function(store)
      for i, item in ipairs(pending) do
        local applied, rerr = pcall(store.transaction, store, function() self:apply(item.plan) end)
        outcome[i] = applied or tostring(rerr)
      end
    end)
    for i, item in ipairs(pending) do
      if ok and outcome[i] == true then
        local list = session.result.success
        list[#list + 1] = item.plan.userid
      else
        session.failed(item.row, item.plan.userid, fail("STORE_ERROR",
          tostring(ok and outcome[i] or err)))
      end
    end
  end

  function session.add(row_number, row)
    local plan, f = self:plan(row)
    if not plan then
      session.failed(row_number, type(row) == "table" and row.userid or nil, f)
      return
    end
    session.pending[#session.pending + 1] = { row = row_number, plan = plan }
    if #session.pending >= BATCH then session.flush() end
  end

  function session.finish()
    session.flush()
    table.sort(session.result.fail, function(a, b) return a.row < b.row end)
    return session.result
  end

  return session
end

function Users:upload(rows)
  if type(rows) ~= "table" then error("users:upload: expected a list of rows", 2) end
  local session = new_session(self)
  for i = 1, #rows do session.add(i, rows[i]) end
  return session.finish()
end

function Users:upload_json(source)
  if type(source) ~= "string" then error("users:upload_json: expected a path or JSON text", 2) end
  local rows, where, detail = json_source.decode(source, "upload_json")
  if rows == nil then return nil, where, detail end
  if not is_list(rows) then
    return errors.fail("input", ("upload_json: %s must hold a JSON array of rows"):format(where))
  end
  return self:upload(rows)
end

-- ---- CSV ----

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- header fields, kind -> {userid=i, userid_col=i?, openid_col=i?} | nil, err
local function read_header(fields, kind)
  local bad = csv.header_problem(fields)
  if bad then return nil, bad end
  local cols = {}
  for i, name in ipairs(fields) do
    name = trim(name):lower()
    if cols[name] == nil then cols[name] = i end
  end
  local map = { userid = cols.userid, user_id = cols[kind .. "_userid"], open_id = cols[kind .. "_openid"],
                count = #fields }
  if not map.userid then return nil, "the header has no userid column" end
  if not map.user_id and not map.open_id then
    return nil, ("the header has neither %s_userid nor %s_openid"):format(kind, kind)
  end
  return map
end

-- A CSV record -> a UMS row | nil, {errcode=, errmsg=}
local function csv_row(fields, header, op, kind, channel)
  if #fields ~= header.count then
    return nil, fail("INVALID_ROW", ("%d fields, the header has %d"):format(#fields, header.count))
  end
  local userid = trim(fields[header.userid])
  local user_id = header.user_id and trim(fields[header.user_id]) or ""
  local open_id = header.open_id and trim(fields[header.open_id]) or ""
  local value
  if user_id ~= "" and open_id ~= "" then
    return nil, fail("INVALID_ALIPAY_ID", ("both %s_userid and %s_openid are filled; a binding has one id")
      :format(kind, kind)), userid
  elseif user_id ~= "" then
    value = { user_id = user_id }
  elseif open_id ~= "" then
    value = { open_id = open_id }
  else
    return nil, fail("INVALID_ALIPAY_ID", "no id: the id column is empty"), userid
  end
  return { userid = userid, [op] = { [kind] = { [channel] = value } } }
end

local function all_empty(fields)
  for _, f in ipairs(fields) do
    if f:find("%S") then return false end
  end
  return true
end

function Users:upload_csv(path, opts)
  opts = opts or {}
  local code, op = opts.channel, opts.op or "set"
  if type(code) ~= "string" or code == "" then return errors.fail("input", "upload_csv: opts.channel is required") end
  local channel = self.channels[code]
  if not channel then
    return errors.fail("input", { channel = code, msg = ("upload_csv: no channel %s is configured"):format(code) })
  end
  if op ~= "set" and op ~= "add" then return errors.fail("input", "upload_csv: opts.op must be set or add") end
  local fh, oerr = io.open(path, "rb")
  if not fh then return errors.fail("io", "upload_csv: cannot read " .. tostring(oerr)) end

  local records = csv.reader(fh, { separator = opts.separator })
  local header, herr
  local session = new_session(self)
  while true do
    local fields, line = records()
    if not fields then break end
    if not header then
      header, herr = read_header(fields, channel.kind)
      if not header then
        fh:close()
        return errors.fail("input", ("upload_csv: %s line %d: %s"):format(path, line, herr))
      end
    elseif not all_empty(fields) then
      local row, f, userid = csv_row(fields, header, op, channel.kind, code)
      if row then
        session.add(line, row)
      else
        session.failed(line, userid ~= "" and userid or nil, f)
      end
    end
  end
  fh:close()
  if not header and not records.error then
    return errors.fail("input", ("upload_csv: %s is empty (expected a header row)"):format(path))
  end
  if records.error then
    if not header then
      return errors.fail(records.detail and records.detail.kind or "input",
        ("upload_csv: %s %s"):format(path, records.error))
    end
    -- The reader stops at an unterminated quote: report it where it started.
    local line = tonumber(records.error:match("^line (%d+)")) or records.line
    session.failed(line, nil, fail("INVALID_ROW", records.error))
  end
  return session.finish()
end

-- ---- lookups ----

function Users:resolve(userid, channel)
  local b, err, detail = self.store:binding_get(userid, channel)
  if err then return nil, err, detail end
  if not b then
    return false, ("user %s has no binding for channel %s"):format(excerpt(userid, 256), excerpt(channel))
  end
  return b.alipay_id, b.id_type
end

function Users:show(userid)
  local map, err, detail = self.store:bindings_of(userid)
  if not map then return nil, err, detail end
  for code, b in pairs(map) do
    b.kind = self.channels[code] and self.channels[code].kind or nil
  end
  return map
end

function Users:count(channel)
  return self.store:binding_count(channel)
end

return users
