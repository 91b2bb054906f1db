-- Life Account messaging (docs/messaging.md §2) on one channel: claim templates,
-- the template industry, single template messages, followers.
--
--   local lifeaccount = require "alipay.messaging.lifeaccount"
--   local life = lifeaccount.new(channel, registry)
--     channel:  {code=, kind="alipaylife", client=} (alipay.messaging.channels), or any
--               table with a client
--     registry: alipay.messaging.templates registry (optional). With it, sends are
--               checked against the imported template first and templates
--               Alipay reports missing are marked invalid.
--
--   life:claim_template(library_id)  -> {msg_template_id=, template=<table, or the text
--                                       when it is not JSON>} | nil, err, detail
--   life:set_industry{primary_industry_code=, primary_industry_name=,
--                     secondary_industry_code=, secondary_industry_name=} -> node | nil, err, detail
--                                       (main and deputy industry, each "level1/level2":
--                                       "10001/20102", "IT科技/IT软件与服务")
--   life:industry()                  -> {primary_category=, secondary_category=} | nil, err, detail
--                                       (both nil when no industry was ever set)
--   life:send(recipient, template, context, opts) -> node | nil, err, detail
--     recipient {user_id=} | {open_id=} | {id_type=, id=}; template a registry
--     record, {id=, keywords=}, or the template id; context the free table of
--     docs/messaging.md §2.4 (head_color, url, action_name, first, keyword1..N, remark).
--     The answer has no message id: Alipay offers no way to track a single send.
--   life:prepare_send(...)           -> req, ctx | nil, err, detail   (same arguments as send)
--   life:finish_send(ctx, res, err, detail) -> node | nil, err, detail   (what the transport answered)
--     send split in two, so that a campaign can put many in flight
--     (client:submit/wait) and finish each as it completes.
--   life:followers{start = cursor}   -> pages (see "followers" below)
--   life:each_follower(fn, opts)     -> true, count | nil, err, detail, resume_cursor
--   life:is_following(recipient)     -> true | false | nil, err, detail
--
-- opts of every call may hold app_auth_token and timeout_ms (client:execute's).
-- Failures follow docs/errors.md: err is a one-line string, detail the
-- typed error: the client's, or kind "invalid" for what is refused locally
-- before any call: detail.reason is "recipient", "template" (unusable in
-- the registry), "data" (context, keywords) or "request" (other arguments);
-- detail.field names the argument, detail.msg says what is wrong.
local cjson = require "cjson.safe"
local errors = require "alipay.errors"
local sender = require "alipay.messaging.send"
local channels = require "alipay.messaging.channels"

local M = {}

M.METHODS = {
  claim = "alipay.open.public.template.message.get",
  industry_modify = "alipay.open.public.template.message.industry.modify",
  industry_query = "alipay.open.public.setting.category.query",
  send = "alipay.open.public.message.single.send",
  followers = "alipay.open.public.follow.batchquery",
  follow_query = "alipay.open.public.user.follow.query",
}

local LIBRARY_ID_MAX = 20     -- characters of a library template id
local FOLLOWERS_PER_PAGE = 10000 -- what follow.batchquery returns at most (informative)
M.FOLLOWERS_PER_PAGE = FOLLOWERS_PER_PAGE

local Life = {}
Life.__index = Life

-- ---- shared helpers ----

local function absent(v)
  return v == nil or v == cjson.null or v == ""
end

local chars, invalid, call_opts = sender.chars, sender.invalid, sender.call_opts

local function template_arg(template)
  return sender.template_arg(template, "template id")
end

-- ---- construction ----

function M.new(channel, registry)
  return sender.new("lifeaccount", "alipaylife", Life, channel, registry)
end

-- ---- templates and industry ----

function Life:claim_template(library_id, opts)
  local method = M.METHODS.claim
  if type(library_id) ~= "string" or library_id == "" then
    return invalid(method, "request", "template_id", "template_id: the library template id is required")
  end
  if chars(library_id) > LIBRARY_ID_MAX then
    return invalid(method, "request", "template_id",
      ("template_id: at most %d characters, got %d"):format(LIBRARY_ID_MAX, chars(library_id)))
  end
  local res, err, detail = self.client:execute(method, { template_id = library_id }, call_opts(opts))
  if not res then return nil, err, detail end
  if type(res.msg_template_id) ~= "string" or res.msg_template_id == "" then
    return errors.fail("decode", { method = method, retryable = false, unknown = false,
                                   msg = "the answer has no msg_template_id" })
  end
  -- The template arrives as JSON text; keep the text when it is not JSON.
  local template = res.template
  if type(template) == "string" then
    local decoded = cjson.decode(template)
    if type(decoded) == "table" then template = decoded end
  elseif template == cjson.null then
    template = nil
  end
  return { msg_template_id = res.msg_template_id, template = template }
end

local INDUSTRY_FIELDS = { "primary_industry_code", "primary_industry_name",
                          "secondary_industry_code", "secondary_industry_name" }
local INDUSTRY_EXAMPLE = {
  primary_industry_code = "10001/20102", primary_industry_name = "IT科技/IT软件与服务",
  secondary_industry_code = "10001/20102", secondary_industry_name = "IT科技/IT软件与服务",
}

-- The main industry (primary_*) and the deputy one (secondary_*), each a
-- level-1/level-2 pair of codes and of names, e.g. "10001/20102" and
-- "IT科技/IT软件与服务" (the official model's field docs; docs/conformance.md).
-- A single level ("10001") is refused here: Alipay expects the pair.
-- Alipay allows one change a month (sub_code 3002): the error says so.
function Life:set_industry(industry, opts)
  local method = M.METHODS.industry_modify
  if type(industry) ~= "table" then
    return invalid(method, "request", "industry", "industry must be a table of the four industry fields")
  end
  local biz = {}
  for _, key in ipairs(INDUSTRY_FIELDS) do
    local v = industry[key]
    if type(v) ~= "string" or not v:find("^[^/]+/[^/]+$") then
      return invalid(method, "request", key, key .. " must be a level-1/level-2 pair, e.g. " ..
        INDUSTRY_EXAMPLE[key] .. (type(v) == "string" and v ~= "" and " (got a single level)" or ""))
    end
    biz[key] = v
  end
  return self.client:execute(method, biz, call_opts(opts))
end

function Life:industry(opts)
  local res, err, detail = self.client:execute(M.METHODS.industry_query, {}, call_opts(opts))
  if not res then return nil, err, detail end
  return {
    primary_category = not absent(res.primary_category) and res.primary_category or nil,
    secondary_category = not absent(res.secondary_category) and res.secondary_category or nil,
  }
end

-- ---- sending ----

function Life:prepare_send(recipient, template, context, opts)
  local method = M.METHODS.send
  local id_type, id = channels.recipient(recipient)
  if not id_type then return invalid(method, "recipient", "recipient", id) end
  local tpl, terr = template_arg(template)
  if not tpl then return invalid(method, "request", "template", terr) end
  if type(context) ~= "table" then
    return invalid(method, "data", "context", "context must be a table (head_color, url, action_name, "
      .. "keyword1..N with value and color)", { template_id = tpl.id })
  end
  local clean, cerr, cdetail = sender.clean_send(method, id_type, id, tpl.id, "context", context)
  if not clean then return nil, cerr, cdetail end
  local usable, uerr, udetail = sender.usable(self, method, tpl)
  if not usable then return nil, uerr, udetail end
  if self.registry then
    local ok, msg = self.registry:check_life_context(usable, context)
    if not ok then return invalid(method, "data", "context", msg, { template_id = tpl.id }) end
  end
  local biz = { ["to_" .. id_type] = id, template = { template_id = tpl.id, context = context } }
  return sender.prepare(self, method, biz, tpl, opts)
end

Life.finish_send = sender.finish_send
Life.send = sender.send

-- ---- followers ----
--
--   local pages = life:followers{ start = cursor }   -- start: nil for the beginning
--   for page, next_cursor in pages do
--     -- page = {ids = {...}, id_type = "user_id"|"open_id", next = cursor|nil, count = n|nil}
--   end
--   if pages.err then
--     -- the listing stopped early: pages.err is the one-line message,
--     -- pages.detail the typed error, and pages.cursor the cursor to resume
--     -- from (followers{start = pages.cursor})
--   end
--
-- The loop ends when a page is empty or has no next cursor (pages.done, and
-- pages.cursor nil), or on an error (pages.err). pages.pages counts the pages
-- delivered. Called directly, pages() returns page | nil, err, detail
-- (nil, nil at the end). Each page is one call; errors are never raised, and
-- a transient one can be resumed from pages.cursor. A cursor Alipay returns
-- a second time would make the listing go round forever: the page that
-- carried it is delivered, then the listing ends with an error of kind
-- "decode" and reason "cursor_repeated".

local Pages = {}
Pages.__index = Pages

-- The ids of an answer: lists at the top of the node, or (older shape) under
-- data. The channel's own id type wins when both lists are present.
local function page_ids(res, preferred)
  local holders = { res }
  if type(res.data) == "table" then holders[2] = res.data end
  local order = preferred == "open_id" and { "open_id", "user_id" } or { "user_id", "open_id" }
  for _, id_type in ipairs(order) do
    for _, holder in ipairs(holders) do
      local list = holder[id_type .. "_list"]
      if type(list) == "table" and #list > 0 then return list, id_type end
    end
  end
  return {}, order[1]
end

-- The cursor of the next page, and the request field it goes back in.
-- follow.batchquery has next_user_id in its request and answer, and a
-- single open_id in both besides; which of the two an open-id app pages
-- with is not documented (docs/conformance.md), so the listing follows
-- whichever the answer carries, next_user_id first, and sends it back in
-- the field it came in: a page is never dropped for want of a cursor.
local CURSOR_FIELDS = { "next_user_id", "open_id" }

local function next_cursor(res)
  for _, field in ipairs(CURSOR_FIELDS) do
    local cursor = res[field]
    if absent(cursor) and type(res.data) == "table" then cursor = res.data[field] end
    if not absent(cursor) then return tostring(cursor), field end
  end
  return nil
end

function Pages:fail(err, detail)
  self.err, self.detail, self.done = err, detail, true
  return nil, err, detail
end

function Pages:__call()
  if self.done then return nil, self.err, self.detail end
  local method = M.METHODS.followers
  local biz = {}
  if self.cursor then biz[self.cursor_field] = self.cursor end
  local res, err, detail = self.life.client:execute(method, biz, self.opts)
  if not res then return self:fail(err, detail) end
  local ids, id_type = page_ids(res, self.life.channel.id_type)
  if #ids == 0 then
    self.done, self.cursor = true, nil
    return nil
  end
  local cursor, field = next_cursor(res)
  if self.cursor then self.seen[self.cursor] = true end
  local page = { ids = ids, id_type = id_type, next = cursor, next_field = field, count = tonumber(res.count) }
  self.pages = self.pages + 1
  if not cursor then
    self.done, self.cursor = true, nil
  elseif self.seen[cursor] or cursor == self.cursor then
    -- Deliver this page (its ids are new), then stop: the next call would
    -- start the listing over.
    self.done = true
    self.detail = errors.new("decode", { method = method, reason = "cursor_repeated", cursor = cursor,
      retryable = false, unknown = false,
      msg = "follow.batchquery returned " .. field .. " " .. cursor .. " again: stopping instead of looping" })
    self.err = tostring(self.detail)
  else
    self.cursor, self.cursor_field = cursor, field
  end
  return page, cursor
end

function Life:followers(opts)
  opts = opts or {}
  if opts.start ~= nil and (type(opts.start) ~= "string" or opts.start == "") then
    error("followers: start must be a cursor (a non-empty string) or nil", 2)
  end
  -- A start cursor goes in next_user_id unless opts.start_field says
  -- "open_id" (pages.cursor_field tells which field a cursor came in).
  local start_field = opts.start_field or "next_user_id"
  if start_field ~= "next_user_id" and start_field ~= "open_id" then
    error('followers: start_field must be "next_user_id" or "open_id"', 2)
  end
  return setmetatable({ life = self, cursor = opts.start, cursor_field = start_field, start = opts.start,
                        seen = {}, pages = 0, done = false, opts = call_opts(opts) }, Pages)
end

-- fn(id, id_type, page) for every follower; fn returning false stops early.
function Life:each_follower(fn, opts)
  local pages = self:followers(opts)
  local count = 0
  for page in pages do
    for _, id in ipairs(page.ids) do
      count = count + 1
      if fn(id, page.id_type, page) == false then return true, count end
    end
  end
  if pages.err then return nil, pages.err, pages.detail, pages.cursor end
  return true, count
end

-- ---- follow status ----

function Life:is_following(recipient, opts)
  local method = M.METHODS.follow_query
  local id_type, id = channels.recipient(recipient)
  if not id_type then return invalid(method, "recipient", "recipient", id) end
  local clean, cerr, cdetail = sender.clean(method, "recipient", "recipient." .. id_type, id)
  if not clean then return nil, cerr, cdetail end
  local res, err, detail = self.client:execute(method, { [id_type] = id }, call_opts(opts))
  if not res then return nil, err, detail end
  if res.is_follow == "T" then return true end
  if res.is_follow == "F" then return false end
  return errors.fail("decode", { method = method, retryable = false, unknown = false,
                                 msg = "is_follow is neither T nor F" })
end

return M
