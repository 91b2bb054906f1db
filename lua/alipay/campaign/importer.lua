-- Writes an audience into the store, one row per input line, in batches of
-- BATCH lines per transaction: a million lines import in bounded memory
-- and a few thousand commits. Every line is accounted for: a recipient to
-- send to (pending), or skipped with a code and the reason.
--
--   local importer = require "alipay.campaign.importer"
--   local total, err, detail = importer.run{ store =, campaign = id, source = <audience source>,
--     message = <alipay.campaign.message>, channel = ch, users = ctx.users, now = fn }
--
-- Skip codes (the msg says more):
--   INVALID_ROW   the line is not a record (field count, unterminated quote, bad JSON)
--   INVALID_ID    no usable recipient id, or a malformed one
--   NO_BINDING    a business userid without a binding for the channel
--   INVALID_DATA  this line's values do not fit the template (e.g. a value too long)
--   DUPLICATE     the same id type + id as an earlier line ("duplicate of line N")
-- Recipients are identified by an explicit column/field: user_id, open_id,
-- alipay_id + id_type, or userid (resolved through the bindings). The id type
-- is never guessed from the id. A crowd audience is one row, id_type
-- "crowd" and the crowd code (alipay.campaign.crowd).
local crowd = require "alipay.campaign.crowd"
local errors = require "alipay.errors"

local M = {}

local BATCH = 1000
M.BATCH = BATCH

local ID_RULES = {
  user_id = { test = function(id) return id:match("^2088%d%d%d%d%d%d%d%d%d%d%d%d$") ~= nil end,
              msg = "user_id must be 16 digits starting with 2088" },
  open_id = { test = function(id) return #id >= 16 and #id <= 128 and not id:find("[^%w_%-]") end,
              msg = "open_id must be 16 to 128 letters, digits, '-' or '_'" },
}

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- A field's value when filled -> string | nil, or false, err for a value of
-- the wrong JSON type.
local function filled(entry, name)
  local raw = entry.raw and entry.raw[name]
  if raw ~= nil and type(raw) ~= "string" then
    return false, ("%s must be a string (a JSON number loses digits)"):format(name)
  end
  local v = entry.fields[name]
  if type(v) ~= "string" then return nil end
  v = trim(v)
  if v == "" then return nil end
  return v
end

local function skip(code, msg) return { status = "skipped", code = code, msg = msg } end

-- The recipient of an entry -> {id_type=, alipay_id=, userid=} | skip row
local function recipient_of(entry, channel, users)
  local found = {}
  for _, name in ipairs { "user_id", "open_id", "alipay_id", "userid", "id_type" } do
    local v, err = filled(entry, name)
    if v == false then return nil, skip("INVALID_ID", err) end
    found[name] = v
  end
  local explicit = (found.user_id and 1 or 0) + (found.open_id and 1 or 0) + (found.alipay_id and 1 or 0)
  if explicit > 1 then
    return nil, skip("INVALID_ID", "give one of user_id, open_id, alipay_id (+ id_type): the id type must be explicit")
  end
  local id_type, id
  if found.user_id then
    id_type, id = "user_id", found.user_id
  elseif found.open_id then
    id_type, id = "open_id", found.open_id
  elseif found.alipay_id then
    if not ID_RULES[found.id_type or ""] then
      return nil, skip("INVALID_ID", "alipay_id needs id_type user_id or open_id")
    end
    id_type, id = found.id_type, found.alipay_id
  elseif found.userid then
    if not users then
      error(errors.new("input", { msg = "ctx.users is required to resolve the audience's userids" }), 0)
    end
    local alipay_id, resolved = users:resolve(found.userid, channel.code)
    if alipay_id == false then return nil, skip("NO_BINDING", "no binding"), found.userid end
    if not alipay_id then error(resolved, 0) end -- the store failed: the import cannot go on (its err line)
    id_type, id = resolved, alipay_id
  else
    return nil, skip("INVALID_ID", "no recipient id (user_id, open_id, alipay_id + id_type, or userid)")
  end
  local rule = ID_RULES[id_type]
  if not rule.test(id) then return nil, skip("INVALID_ID", rule.msg), found.userid end
  return { id_type = id_type, alipay_id = id, userid = found.userid }
end

-- The values a row keeps: only the columns its placeholders name.
local function vars_of(entry, names, encode)
  if next(names) == nil then return nil end
  local vars = {}
  for name in pairs(names) do vars[name] = entry.fields[name] end
  if next(vars) == nil then return nil end
  return encode(vars)
end

-- One entry -> the row to store.
local function row_of(entry, opts)
  local now = opts.now()
  local base = { line = entry.line, updated_at = now, checked = true }
  local function with(t, extra)
    for k, v in pairs(extra or {}) do t[k] = v end
    for k, v in pairs(base) do if t[k] == nil then t[k] = v end end
    return t
  end
  if entry.error then return with(skip("INVALID_ROW", entry.error)) end
  -- A crowd's one entry: a row for the batch send (its data is fixed, and
  -- Alipay, not a subscription query, decides who in it gets the message).
  if entry.crowd then return with(crowd.row_fields(entry.crowd), { status = "pending" }) end
  local who, skipped, userid = recipient_of(entry, opts.channel, opts.users)
  if not who then
    skipped.userid = userid
    return with(skipped)
  end
  base.userid, base.id_type, base.alipay_id = who.userid, who.id_type, who.alipay_id
  local msg = opts.message
  if not msg.fixed then
    local data, page = msg:render(entry.fields)
    if not data then return with(skip("INVALID_DATA", page)) end
    local ok, err = msg:check_row(data, page)
    if not ok then return with(skip("INVALID_DATA", err)) end
    base.vars = vars_of(entry, msg.names, opts.encode)
  end
  return with { status = "pending", checked = opts.channel.kind ~= "alipaymini" }
end

-- -> number of lines | nil, err, detail. A raise inside (the store failing)
-- is returned as err (kind "store"), an audience that cannot be read further
-- with the source's detail ("io", "input"); the caller removes the partial
-- import.
function M.run(opts)
  local store, source, id = opts.store, opts.source, opts.campaign
  local total, finished = 0, false
  local ok, err = pcall(function()
    while not finished do
      local failure
      -- The rows of a batch go to the store in one call (a backend may send
      -- them in one round trip); resolving userids reads the store inside
      -- the same transaction, as the batch is written.
      store:transaction(function()
        local rows = {}
        for _ = 1, BATCH do
          local entry, serr, sdetail = source:next()
          if not entry then
            finished = true
            if serr then failure = errors.is_error(sdetail) and sdetail or errors.new("io", { msg = serr }) end
            break
          end
          rows[#rows + 1] = row_of(entry, opts)
        end
        if rows[1] then assert(store:recipients_add(id, rows)) end
        total = total + #rows
      end)
      if failure then error(failure, 0) end
      if opts.progress then opts.progress(total) end
    end
  end)
  if not ok then
    if errors.is_error(err) then return errors.failure(err) end
    return errors.fail("store", tostring(err))
  end
  return total
end

return M
