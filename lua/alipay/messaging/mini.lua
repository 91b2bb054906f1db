-- Mini-program subscription messages (docs/messaging.md §3) on one channel:
-- which templates a user subscribed to, and sending one message.
--
--   local mini = require "alipay.messaging.mini"
--   local app = mini.new(channel, registry)
--     channel:  {code=, kind="alipaymini", client=} (alipay.messaging.channels), or any
--               table with a client
--     registry: alipay.messaging.templates registry (optional): sends are checked
--               against the imported template, and templates Alipay reports
--               missing are marked invalid.
--
--   app:subscriptions(recipient, template_ids, opts)
--     -> { [template_id] = {subscribed = true|false|nil, type = raw subscribe_type|nil,
--                           state = raw subscribe_state|nil, keep_state =, show =} }
--        | nil, err, detail, partial
--     Any number of ids (duplicates count once), queried 3 at a time (the API's
--     limit). A template the user never answered is {subscribed = false}: Alipay
--     leaves it out of the answer (the one documented fact). Otherwise no
--     public source says what the values of subscribe_state mean, so
--     subscribed is nil ("Alipay holds an answer this library cannot read")
--     unless the channel's subscribed_states (or opts.subscribed_states) maps
--     the raw state to true or false, e.g. {["1"] = true, ["0"] = false}
--     once Alipay has confirmed it for the app (docs/messaging.md §3.2).
--     type, state, keep_state and show are passed through as Alipay sent
--     them. On an error, partial holds the batches answered so far.
--   app:prepare_subscriptions(recipient, template_ids (1 to 3), opts) -> req, ctx | nil, err, detail
--   app:finish_subscriptions(ctx, res, err, detail) -> the same table as subscriptions | nil, err, detail
--     one query split in two, for many in flight at once (client:submit/wait).
--   app:send(recipient, template, data, opts) -> node | nil, err, detail
--     recipient {user_id=} | {open_id=} | {id_type=, id=}; template a registry
--     record, {id=, keywords=}, or the user_template_id; data
--     {keyword1 = {value = "…"}, …} (a bare string or number stands for
--     {value = …}) or {"v1", "v2", …}: values in keyword order.
--     opts.page (the page the message opens), opts.form_id (payment, form and
--     face templates only), plus client:execute's app_auth_token, timeout_ms.
--   app:prepare_send(...) -> req, ctx | nil, err, detail;  app:finish_send(ctx, res, err, detail)
--     send split in two, for many sends in flight at once (client:submit/wait).
--   mini.encode_data(data) -> the data string | nil, msg, detail (kind "input")
--   mini.encode_page(page) -> page with its query encoded as one string (the FAQ's rule)
--   mini.check_page(page) -> the encoded page | nil, msg (not a string, too long)
--
-- Rules applied to every send, with or without a registry: data (the JSON
-- text) ≤2048 bytes (alipay.messaging.mini_limits says why bytes), page ≤128
-- characters after encoding, user_template_id ≤64. With a registry: the template must be usable and the
-- data must fit it (keyword count, each value ≤50 characters). Characters are
-- Unicode code points, as Alipay counts them: a CJK character is one.
--
-- Page encoding: only the query (after the first "?") is touched; the path is
-- sent as given. Each name and value of the query is percent-encoded (UTF-8,
-- RFC 3986: everything but letters, digits and "-._~") unless it is already
-- encoded, i.e. made only of those characters and valid %XX escapes. So
-- "a b" becomes "a%20b", "%E4%BD%A0" stays, "50%" becomes "50%25", and "+"
-- is a literal plus (%2B), not a space.
--
-- Failures follow docs/errors.md: nil, a one-line string, the typed detail:
-- the client's, or kind "invalid" for what is refused locally before any
-- call (detail.reason "recipient", "template", "data" or "request";
-- detail.field; detail.msg). After USER_TEMPLATE_ILLEGAL (or any answer
-- alipay.classify puts in the "template" class) the template is marked
-- invalid in the registry, so the next send with it is refused without a call.
-- LuaJIT (OpenResty) has only the global unpack; Lua 5.4 only table.unpack.
local unpack_list = table.unpack or unpack
local cjson = require "cjson.safe"
local errors = require "alipay.errors"
local sender = require "alipay.messaging.send"
local channels = require "alipay.messaging.channels"
local mini_limits = require "alipay.messaging.mini_limits"
local sorted_keys = require("alipay.util.table").sorted_keys

local M = {}

M.METHODS = {
  subscriptions = "alipay.open.app.messagetemplate.subscribe.query",
  send = "alipay.open.app.mini.templatemessage.send",
}

local IDS_PER_QUERY = 3
local TEMPLATE_ID_MAX = 64
local PAGE_MAX = 128
M.IDS_PER_QUERY = IDS_PER_QUERY

local Mini = {}
Mini.__index = Mini

-- ---- shared helpers ----

local chars, invalid, call_opts = sender.chars, sender.invalid, sender.call_opts

local function template_arg(template)
  return sender.template_arg(template, "user_template_id")
end

-- ---- construction ----

function M.new(channel, registry)
  return sender.new("mini", "alipaymini", Mini, channel, registry)
end

-- ---- subscriptions ----

local function present(v)
  if v == cjson.null then return nil end
  return v
end

-- What one relation says. states maps a raw subscribe_state to true or
-- false; a state it does not name leaves subscribed nil, never guessed:
-- guessing wrong would skip (or message) every user of a campaign.
local function relation_result(rel, states)
  local state = present(rel.subscribe_state)
  local subscribed
  if states and state ~= nil then subscribed = states[tostring(state)] end
  local kind = present(rel.subscribe_type)
  return {
    subscribed = subscribed,
    type = type(kind) == "string" and kind or nil,
    state = state,
    keep_state = present(rel.keep_state),
    show = present(rel.show),
  }
end

-- The state map of a query: opts.subscribed_states, else the channel's.
-- Misuse (a map that is not state -> boolean) raises.
local function states_of(self, opts)
  local states = opts and opts.subscribed_states
  if states == nil then states = self.channel.subscribed_states end
  if states == nil then return nil end
  if type(states) ~= "table" then error("subscribed_states must be a table of state -> boolean", 4) end
  for k, v in pairs(states) do
    if type(k) ~= "string" or type(v) ~= "boolean" then
      error("subscribed_states must map state strings to true or false", 4)
    end
  end
  return states
end

-- The template ids of a query: a list (or one id) of non-empty strings,
-- duplicates dropped. -> ids | nil, err, detail
local function template_ids_of(method, template_ids)
  if type(template_ids) == "string" then template_ids = { template_ids } end
  if type(template_ids) ~= "table" then
    return invalid(method, "request", "template_ids", "template_ids must be a list of template ids")
  end
  local ids, seen = {}, {}
  for i, tid in ipairs(template_ids) do
    if type(tid) ~= "string" or tid == "" then
      return invalid(method, "request", "template_ids", ("template_ids[%d] must be a template id"):format(i))
    end
    if not seen[tid] then
      seen[tid] = true
      ids[#ids + 1] = tid
    end
  end
  return ids
end

-- One query of already checked ids.
local function prepare_query(self, id_type, id, ids, opts)
  local req, call = self.client:prepare_v2(M.METHODS.subscriptions, { [id_type] = id, template_id_list = ids },
    call_opts(opts))
  return req, { call = call, ids = ids, states = states_of(self, opts) }
end

-- The arguments of a subscriptions query -> id_type, id, ids | nil, err, detail
local function query_args(method, recipient, template_ids)
  local id_type, id = channels.recipient(recipient)
  if not id_type then return invalid(method, "recipient", "recipient", id) end
  local ids, err, detail = template_ids_of(method, template_ids)
  if not ids then return nil, err, detail end
  local ok, cerr, cdetail = sender.clean(method, "recipient", "recipient." .. id_type, id)
  if ok then ok, cerr, cdetail = sender.clean(method, "request", "template_ids", ids) end
  if not ok then return nil, cerr, cdetail end
  return id_type, id, ids
end

function Mini:prepare_subscriptions(recipient, template_ids, opts)
  local method = M.METHODS.subscriptions
  local id_type, id, ids = query_args(method, recipient, template_ids)
  if not id_type then return nil, id, ids end
  if #ids == 0 or #ids > IDS_PER_QUERY then
    return invalid(method, "request", "template_ids", ("one query takes 1 to %d template ids, not %d")
      :format(IDS_PER_QUERY, #ids))
  end
  return prepare_query(self, id_type, id, ids, opts)
end

function Mini:finish_subscriptions(ctx, res, err, detail)
  local node, e, d = self.client:finish_v2(ctx.call, res, err, detail)
  if not node then return nil, e, d end
  -- subscribe_relations is absent when the user never answered any of them.
  local by_id = {}
  if type(node.subscribe_relations) == "table" then
    for _, rel in ipairs(node.subscribe_relations) do
      if type(rel) == "table" and rel.template_id then by_id[rel.template_id] = rel end
    end
  end
  local result = {}
  for _, tid in ipairs(ctx.ids) do
    result[tid] = by_id[tid] and relation_result(by_id[tid], ctx.states) or { subscribed = false }
  end
  return result
end

function Mini:subscriptions(recipient, template_ids, opts)
  local id_type, id, ids = query_args(M.METHODS.subscriptions, recipient, template_ids)
  if not id_type then return nil, id, ids end
  local result = {}
  for first = 1, #ids, IDS_PER_QUERY do
    local req, ctx = prepare_query(self, id_type, id, { unpack_list(ids, first,
      math.min(first + IDS_PER_QUERY - 1, #ids)) }, opts)
    local res, terr, tdetail = self.client:request(req)
    local batch, ferr, fdetail = self:finish_subscriptions(ctx, res, terr, tdetail)
    if not batch then return nil, ferr, fdetail, result end
    for tid, r in pairs(batch) do result[tid] = r end
  end
  return result
end

-- ---- data ----

-- "keyword3" sorts before "keyword10"; other names after, alphabetically.
local function keyword_order(a, b)
  local na, nb = tonumber(a:match("^keyword(%d+)$")), tonumber(b:match("^keyword(%d+)$"))
  if na and nb then return na < nb end
  if na or nb then return na ~= nil end
  return a < b
end

local function entry_of(key, v)
  if type(v) == "string" then return { value = v } end
  if type(v) == "number" then return { value = tostring(v) } end
  if type(v) == "table" and (type(v.value) == "string" or type(v.value) == "number") then
    local entry = {}
    for k, x in pairs(v) do entry[k] = x end
    entry.value = tostring(v.value)
    return entry
  end
  return nil, ("data.%s must be a string or {value = \"…\"}"):format(key)
end

-- The caller's data as {keywordN = {value = "…"}} -> table | nil, msg
local function normalize_data(data)
  if type(data) ~= "table" then return nil, "data must be a table: {keyword1 = {value = …}, …} or {v1, v2, …}" end
  local out, n = {}, #data
  if n > 0 then
    for k in pairs(data) do
      if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
        return nil, "data mixes a list of values with named keywords"
      end
    end
    for i = 1, n do
      local entry, msg = entry_of("keyword" .. i, data[i])
      if not entry then return nil, msg end
      out["keyword" .. i] = entry
    end
    return out
  end
  for k, v in pairs(data) do
    if type(k) ~= "string" or k == "" then return nil, "data keys must be keyword names" end
    local entry, msg = entry_of(k, v)
    if not entry then return nil, msg end
    out[k] = entry
  end
  if next(out) == nil then return nil, "data is empty" end
  return out
end
M.normalize_data = normalize_data

-- The JSON text Alipay expects in data (a string inside the request's JSON),
-- keywords in order so that the same data always gives the same text.
local function encode_normalized(data)
  local keys = sorted_keys(data, keyword_order)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = cjson.encode(k) .. ":" .. cjson.encode(data[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function M.encode_data(data)
  local normalized, msg = normalize_data(data)
  if not normalized then return errors.fail("input", { field = "data", msg = msg }) end
  return encode_normalized(normalized)
end

-- ---- page ----

local function already_encoded(s)
  return (s:gsub("%%%x%x", "")):match("^[%w%-%._~]*$") ~= nil
end

local function percent_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Alipay's FAQ on passing parameters to the page a template message opens
-- (AlipayDocs/open-docs support/支付宝小程序/常见问题/实现模板消息带参跳转小程序.md):
-- the path stays as written and everything after "?" is URL-encoded as one
-- string, "pages/index?key1%3dvalue1%26key2%3dvalue2", so that the page's
-- own "=" and "&" cannot be read as the request's. The mini program decodes
-- it once and hands onLoad the parsed query. A query already encoded that
-- way (nothing but unreserved characters and %XX) is kept; any other is
-- encoded whole, "%" included, so a value the caller encoded itself
-- arrives encoded once more and is decoded back by the page.
function M.encode_page(page)
  local path, query = page:match("^([^?]*)%?(.*)$")
  if not path then return page end
  if query == "" then return path end
  if already_encoded(query) then return page end
  return path .. "?" .. percent_encode(query)
end

-- The page a message opens -> that page with its query encoded | nil, msg.
-- The limit applies to what is sent, so it is measured after encoding.
function M.check_page(page)
  if type(page) ~= "string" then return nil, "page: must be a string" end
  local encoded = M.encode_page(page)
  local n = chars(encoded)
  if n > PAGE_MAX then
    return nil, ("page: %d characters once its query is encoded, at most %d"):format(n, PAGE_MAX)
  end
  return encoded
end

-- ---- sending ----

function Mini:prepare_send(recipient, template, data, opts)
  local method = M.METHODS.send
  opts = opts or {}
  local id_type, id = channels.recipient(recipient)
  if not id_type then return invalid(method, "recipient", "recipient", id) end
  local tpl, terr = template_arg(template)
  if not tpl then return invalid(method, "request", "template", terr) end
  local extra = { template_id = tpl.id }
  if chars(tpl.id) > TEMPLATE_ID_MAX then
    return invalid(method, "request", "template", ("user_template_id: at most %d characters")
      :format(TEMPLATE_ID_MAX), extra)
  end
  local normalized, derr = normalize_data(data)
  if not normalized then return invalid(method, "data", "data", derr, extra) end
  local clean, cerr, cdetail = sender.clean_send(method, id_type, id, tpl.id, "data", normalized)
  if clean and opts.page ~= nil then
    clean, cerr, cdetail = sender.clean(method, "request", "page", opts.page, extra)
  end
  if clean and opts.form_id ~= nil then
    clean, cerr, cdetail = sender.clean(method, "request", "form_id", opts.form_id, extra)
  end
  if not clean then return nil, cerr, cdetail end
  local usable, uerr, udetail = sender.usable(self, method, tpl)
  if not usable then return nil, uerr, udetail end
  if self.registry then
    local ok, msg = self.registry:check_mini_data(usable, normalized)
    if not ok then return invalid(method, "data", "data", msg, extra) end
  end
  local text = encode_normalized(normalized)
  local sized, serr = mini_limits.check_data_size(text)
  if not sized then return invalid(method, "data", "data", serr, extra) end
  local page = opts.page
  if page ~= nil then
    local perr
    page, perr = M.check_page(page)
    if not page then return invalid(method, "request", "page", perr, extra) end
  end
  if opts.form_id ~= nil and (type(opts.form_id) ~= "string" or opts.form_id == "") then
    return invalid(method, "request", "form_id", "form_id must be a non-empty string", extra)
  end
  local biz = { ["to_" .. id_type] = id, user_template_id = tpl.id, data = text,
                page = page ~= "" and page or nil, form_id = opts.form_id }
  local req, ctx, pdetail = sender.prepare(self, method, biz, tpl, opts)
  -- What a refusal means can depend on it (alipay.classify, with_form_id).
  if req then ctx.form_id = opts.form_id ~= nil end
  return req, ctx, pdetail
end

Mini.finish_send = sender.finish_send
Mini.send = sender.send

return M
