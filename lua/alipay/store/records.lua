-- The store's small records, templates, bindings and meta, written once
-- for every backend (store/init.lua has the contracts): argument checks,
-- row conversions and the calls, over the backend's own SQL texts and its
-- st:exec / st:query. A backend calls records.install(Store, SQL) with its
-- class and a table holding the statements named here (template_put,
-- template_get, ..., meta_put, meta_delete).
local cjson = require("cjson").new()
local errors = require "alipay.errors"

local records = {}

local function fail(kind, msg) return errors.fail(kind, msg) end

local function to_integer(text)
  if text == nil then return nil end
  return math.tointeger(tonumber(text))
end

function records.install(Store, SQL)

-- ---- templates ----

  local function nonempty(v) return type(v) == "string" and v ~= "" end
  local function optional_string(v) return v == nil or type(v) == "string" end
  local function optional_time(v) return v == nil or (type(v) == "number" and v == math.floor(v)) end

  local function encode_keywords(list)
    if #list == 0 then return "[]" end
    return cjson.encode(list)
  end

  local function template_from_row(row)
    local ok, keywords = pcall(cjson.decode, row.keywords)
    return {
      channel = row.channel, id = row.id, name = row.name,
      keywords = ok and type(keywords) == "table" and keywords or {},
      kind = row.kind, library_id = row.library_id, status = row.status,
      invalid_code = row.invalid_code, invalid_at = to_integer(row.invalid_at),
      imported_at = to_integer(row.imported_at),
    }
  end

  local function check_template(t)
    if type(t) ~= "table" then return "expected a template table" end
    if not nonempty(t.channel) then return "channel must be a non-empty string" end
    if not nonempty(t.id) then return "id must be a non-empty string" end
    if not optional_string(t.name) then return "name must be a string" end
    if type(t.keywords) ~= "table" then return "keywords must be a list of strings" end
    for i = 1, #t.keywords do
      if type(t.keywords[i]) ~= "string" then return "keywords must be a list of strings" end
    end
    if t.kind ~= "alipaylife" and t.kind ~= "alipaymini" then return "kind must be alipaylife or alipaymini" end
    if not optional_string(t.library_id) then return "library_id must be a string" end
    if t.status ~= nil and t.status ~= "valid" and t.status ~= "invalid" then
      return "status must be valid or invalid"
    end
    if not optional_string(t.invalid_code) then return "invalid_code must be a string" end
    if not optional_time(t.invalid_at) or not optional_time(t.imported_at) then
      return "invalid_at and imported_at must be integer Unix times"
    end
  end

  function Store:template_put(t)
    local bad = check_template(t)
    if bad then return fail("input", "template_put: " .. bad) end
    local _, err, detail = self:exec("template_put", SQL.template_put, t.channel, t.id, t.name,
      encode_keywords(t.keywords), t.kind, t.library_id, t.status or "valid", t.invalid_code,
      t.invalid_at, t.imported_at or os.time())
    if err then return nil, err, detail end
    return true
  end

  function Store:template_get(channel, id)
    local rows, err, detail = self:query("template_get", SQL.template_get, channel, id)
    if not rows then return nil, err, detail end
    return rows[1] and template_from_row(rows[1]) or nil
  end

  function Store:template_list(channel)
    local rows, err, detail
    if channel == nil then
      rows, err, detail = self:query("template_list", SQL.template_list_all)
    else
      rows, err, detail = self:query("template_list", SQL.template_list_channel, channel)
    end
    if not rows then return nil, err, detail end
    for i, row in ipairs(rows) do rows[i] = template_from_row(row) end
    return rows
  end

  function Store:template_set_status(channel, id, status, code, at)
    if status ~= "valid" and status ~= "invalid" then
      return fail("input", "template_set_status: status must be valid or invalid")
    end
    if not optional_string(code) or not optional_time(at) then
      return fail("input", "template_set_status: code must be a string and at an integer Unix time")
    end
    return self:exec("template_set_status", SQL.template_set_status, status, code, at, channel, id)
  end

  function Store:template_delete(channel, id)
    return self:exec("template_delete", SQL.template_delete, channel, id)
  end

  -- ---- bindings ----

  function Store:binding_put(userid, channel, alipay_id, id_type)
    if not nonempty(userid) or not nonempty(channel) or not nonempty(alipay_id) then
      return fail("input", "binding_put: userid, channel and alipay_id must be non-empty strings")
    end
    if id_type ~= "user_id" and id_type ~= "open_id" then
      return fail("input", "binding_put: id_type must be user_id or open_id")
    end
    local _, err, detail = self:exec("binding_put", SQL.binding_put, userid, channel, alipay_id, id_type, os.time())
    if err then return nil, err, detail end
    return true
  end

  function Store:binding_delete(userid, channel)
    if channel == nil then return self:exec("binding_delete", SQL.binding_delete_all, userid) end
    return self:exec("binding_delete", SQL.binding_delete_one, userid, channel)
  end

  function Store:binding_get(userid, channel)
    local rows, err, detail = self:query("binding_get", SQL.binding_get, userid, channel)
    if not rows then return nil, err, detail end
    local row = rows[1]
    return row and { alipay_id = row.alipay_id, id_type = row.id_type } or nil
  end

  function Store:bindings_of(userid)
    local rows, err, detail = self:query("bindings_of", SQL.bindings_of, userid)
    if not rows then return nil, err, detail end
    local map = {}
    for _, row in ipairs(rows) do map[row.channel] = { alipay_id = row.alipay_id, id_type = row.id_type } end
    return map
  end

  function Store:binding_count(channel)
    local rows, err, detail
    if channel == nil then
      rows, err, detail = self:query("binding_count", SQL.binding_count_all)
    else
      rows, err, detail = self:query("binding_count", SQL.binding_count_channel, channel)
    end
    if not rows then return nil, err, detail end
    return to_integer(rows[1].n)
  end

  -- ---- meta ----

  function Store:meta_get(key)
    local rows, err, detail = self:query("meta_get", SQL.meta_get, key)
    if not rows then return nil, err, detail end
    return rows[1] and rows[1].value or nil
  end

  function Store:meta_put(key, value)
    if not nonempty(key) then return fail("input", "meta_put: key must be a non-empty string") end
    if value == nil then
      local _, err, detail = self:exec("meta_put", SQL.meta_delete, key)
      if err then return nil, err, detail end
      return true
    end
    if type(value) ~= "string" and type(value) ~= "number" then
      return fail("input", "meta_put: value must be a string or a number")
    end
    local _, err, detail = self:exec("meta_put", SQL.meta_put, key, tostring(value))
    if err then return nil, err, detail end
    return true
  end
end

return records

