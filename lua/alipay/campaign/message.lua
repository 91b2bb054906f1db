-- What a campaign sends, whatever the channel kind: the data and page with
-- their placeholders, checked against the imported template, and the
-- channel module (alipay.messaging.lifeaccount or alipay.messaging.mini) that sends it.
--
--   local message = require "alipay.campaign.message"
--   local msg, err = message.new{ channel = ch, registry = reg, template = id, data = d, page = p }
--   msg.names                       {column = true}: the placeholders of data and page
--   msg.fixed                       true when there is none (one check serves every row)
--   msg:preflight(columns) -> true | nil, err, detail   the template is usable and the data fits it
--                                                 (placeholders filled with "x"); columns, when
--                                                 known, must hold every placeholder
--   msg:render(vars) -> data, page | nil, err     one recipient's content
--   msg:check(data, page) -> true | nil, err, detail   the registry's checks, as the send will make them
--   msg:check_row(data, page)                     the same, the template read once (imports)
--   msg:prepare(recipient, data, page) -> req, ctx | nil, err, detail   (the channel module's prepare_send;
--                                                 a crowd, {id_type = "crowd", id = code}: one batch send)
--   msg:finish(ctx, res, err, detail) -> node | nil, err, detail   (a batch send's: {batch_msg_id =})
--   msg:prepare_check(recipient) -> req, ctx | nil, err, detail   mini programs: the subscription
--   msg:finish_check(ctx, res, err, detail) -> {subscribed=, type=, state=, ...} | nil, err, detail
--                                                 query of one recipient
-- Failures are nil, a one-line string, the typed detail (docs/errors.md):
-- the registry's ("state", "input"), "input" for data that does not fit,
-- the channel module's ("invalid" and the client's kinds).
--   msg.api                         the channel module object (lifeaccount or mini)
--
-- The subscription queries use mini's prepare/finish halves: a campaign runs
-- them concurrently, like its sends.
local kinds = require "alipay.messaging.kinds"
local mini = require "alipay.messaging.mini"
local mini_batch = require "alipay.messaging.mini_batch"
local crowd = require "alipay.campaign.crowd"
local data_mod = require "alipay.campaign.data"
local errors = require "alipay.errors"
local control_chars = require "alipay.util.control_chars"
local excerpt = require "alipay.util.excerpt"
local sorted = require("alipay.util.table").sorted_keys

local M = {}

local Message = {}
Message.__index = Message

function M.new(opts)
  local channel = opts.channel
  local self = setmetatable({
    channel = channel, registry = opts.registry, template_id = opts.template,
    data = opts.data, page = opts.page, kind = channel.kind,
  }, Message)
  self.api = kinds.module(channel.kind).new(channel, opts.registry)
  self.names = data_mod.names(opts.data)
  for name in pairs(data_mod.names(opts.page)) do self.names[name] = true end
  self.fixed = next(self.names) == nil
  return self
end

function Message:template_record()
  return self.registry:usable(self.channel.code, self.template_id)
end

local function refuse(msg)
  return errors.fail("input", msg)
end

function Message:check(data, page, template)
  local err, detail
  if not template then
    template, err, detail = self:template_record()
    if not template then return nil, err, detail end
  end
  if template.kind ~= self.kind then
    return errors.fail("state", ("template %s is a %s template, but channel %s is %s"):format(self.template_id,
      template.kind, self.channel.code, self.kind))
  end
  -- Control characters first: the row is skipped naming the field, as a
  -- direct send refuses it (alipay.messaging.send's clean). A row rendered
  -- from values without any (see render) needs no second look.
  local known_clean = self.preflighted and data ~= nil and data == self.clean_render
  if self.kind == "alipaylife" then
    if page ~= nil then return refuse("page: only mini-program messages have a page") end
    if not known_clean then
      local clean, cerr = control_chars.check("context", data)
      if not clean then return refuse(cerr) end
    end
    return self.registry:check_life_context(template, data)
  end
  local normalized, nerr = mini.normalize_data(data)
  if not normalized then return refuse(nerr) end
  if not known_clean then
    local clean, why = control_chars.check("data", normalized)
    if clean and page ~= nil then clean, why = control_chars.check("page", page) end
    if not clean then return refuse(why) end
  end
  local ok, cerr, cdetail = self.registry:check_mini_data(template, normalized)
  if not ok then return nil, cerr, cdetail end
  if page ~= nil then
    local encoded, perr = mini.check_page(page)
    if not encoded then return refuse(perr) end
  end
  return true
end

-- check() for the rows of an import: the template record is read once.
function Message:check_row(data, page)
  if not self.row_template then
    local template, err, detail = self:template_record()
    if not template then return nil, err, detail end
    self.row_template = template
  end
  return self:check(data, page, self.row_template)
end

-- The columns of an audience for a message: a few, each cut short (a
-- header can be anything; the message must stay a line).
local SHOWN_COLUMNS = 10

local function column_list(columns)
  local names, shown = sorted(columns), {}
  for i = 1, math.min(#names, SHOWN_COLUMNS) do shown[i] = excerpt(names[i]) end
  if #names > SHOWN_COLUMNS then shown[#shown + 1] = ("and %d more"):format(#names - SHOWN_COLUMNS) end
  return table.concat(shown, ", ")
end

function Message:preflight(columns)
  local clean, cerr = control_chars.check("template", self.template_id)
  if not clean then return refuse(cerr) end
  if columns then
    for _, name in ipairs(sorted(self.names)) do
      if not columns[name] then
        return refuse(("the placeholder {%s} names no column of the audience (columns: %s)")
          :format(name, column_list(columns)))
      end
    end
  end
  local template, terr, tdetail = self:template_record()
  if not template then return nil, terr, tdetail end
  local ok, err, detail = self:check(data_mod.sample(self.data), data_mod.sample(self.page), template)
  if not ok then
    return errors.fail(detail and detail.kind or "input",
      ("the data does not fit template %s: %s"):format(self.template_id, err))
  end
  -- The written parts of data and page hold no control character now: a
  -- row's can only come from its values (render).
  self.preflighted = true
  return true
end

-- True when no value a placeholder takes holds a control character (not
-- even a tab or a line feed): one find per value, instead of walking the
-- whole rendered content of every row of an import.
local function values_clean(names, vars)
  for name in pairs(names) do
    local v = vars[name]
    if v ~= nil and control_chars.find(tostring(v)) then return false end
  end
  return true
end

function Message:render(vars)
  if self.fixed then return self.data, self.page end
  local data, err = data_mod.render(self.data, vars)
  if err then return nil, err end
  local page
  page, err = data_mod.render(self.page, vars)
  if err then return nil, err end
  self.clean_render = values_clean(self.names, vars or {}) and data or nil
  return data, page
end

-- A crowd's row is sent as one batch send (docs/messaging.md §3.5) of the
-- same template, data and page; its ctx is marked so that finish reads the
-- batch send's answer.
local function prepare_batch(self, code, data, page)
  self.batch = self.batch or mini_batch.new(self.channel, self.registry)
  local req, ctx, detail = self.batch:prepare_batchsend(self.template_id, data, { crowd_code = code, page = page })
  if not req then return nil, ctx, detail end
  return req, { batch = ctx }
end

function Message:prepare(recipient, data, page)
  if recipient.id_type == crowd.ID_TYPE then
    if self.kind ~= "alipaymini" then
      return errors.fail("invalid", { reason = "recipient", msg = "a crowd is a mini-program audience" })
    end
    return prepare_batch(self, recipient.id, data, page)
  end
  if self.kind == "alipaylife" then
    return self.api:prepare_send(recipient, self.template_id, data)
  end
  return self.api:prepare_send(recipient, self.template_id, data, { page = page })
end

function Message:finish(ctx, res, err, detail)
  if ctx.batch then return self.batch:finish_batchsend(ctx.batch, res, err, detail) end
  return self.api:finish_send(ctx, res, err, detail)
end

function Message:prepare_check(recipient)
  return self.api:prepare_subscriptions(recipient, { self.template_id })
end

function Message:finish_check(ctx, res, err, detail)
  local result, e, d = self.api:finish_subscriptions(ctx, res, err, detail)
  if not result then return nil, e, d end
  return result[self.template_id]
end

return M
