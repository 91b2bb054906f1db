-- Mini-program batch sends (docs/messaging.md §3.5): one subscription message
-- to the subscribers of a template, or to those of them in a crowd, now or at
-- a scheduled time, in one call (alipay.open.app.mini.templatemessage.batchsend).
--
--   local mini_batch = require "alipay.messaging.mini_batch"
--   local batch = mini_batch.new(channel, registry)
--   batch:batchsend(template, data, opts) -> {batch_msg_id =} | nil, err, detail
--     template: a registry record, {id=, keywords=}, or the template id; data as for
--     alipay.messaging.mini's send ({keyword1 = {value = "…"}, …} or {"v1", "v2", …}).
--     opts.crowd_code   the crowd (棋盘人群) to intersect with the template's subscribers;
--                       without it Alipay sends to every subscriber of the template
--     opts.schedule_send_time  "YYYY-MM-DD HH:MM:SS", Beijing time: send then (without it:
--                       now). The Java SDK writes a Date so, in GMT+8 (AlipayConstants
--                       DATE_TIME_FORMAT, DATE_TIMEZONE); whether other forms are read is unknown.
--     opts.page         the page the message opens (encoded as mini.check_page does)
--     plus client:execute's app_auth_token, timeout_ms.
--   batch:prepare_batchsend(...) -> req, ctx;  batch:finish_batchsend(ctx, res, err, detail)
--
-- A batch send is not idempotent: the request carries no id Alipay could
-- deduplicate by, so it is sent once and never retried here. A failure whose
-- detail.unknown is true (a timeout, a reset) may have been executed: look
-- before sending again. An accepted send whose answer lacks batch_msg_id is
-- still a success (batch_msg_id nil): reporting it as a failure would invite
-- a second send.
--
-- With a registry the template must be usable and the data must fit it, under
-- the single send's documented rules (the batch send's model documents none;
-- docs/conformance.md). No official code list exists for the method: its
-- refusals are classified by the defaults, and a template is marked invalid
-- only by a code alipay.classify puts in the template class.
local mini = require "alipay.messaging.mini"
local mini_limits = require "alipay.messaging.mini_limits"
local sender = require "alipay.messaging.send"

local M = {}

M.METHODS = { batchsend = "alipay.open.app.mini.templatemessage.batchsend" }

local TEMPLATE_ID_MAX = 64
local invalid = sender.invalid

local Batch = {}
Batch.__index = Batch

function M.new(channel, registry)
  return sender.new("mini_batch", "alipaymini", Batch, channel, registry)
end

-- "YYYY-MM-DD HH:MM:SS" naming a real date and time -> true | nil, msg
function M.check_time(text)
  if type(text) ~= "string" then return nil, "schedule_send_time must be a string YYYY-MM-DD HH:MM:SS" end
  local y, mo, d, h, mi, s = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)$")
  if not y then return nil, "schedule_send_time must be YYYY-MM-DD HH:MM:SS" end
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  local days = { 31, (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31,
                 30, 31 }
  if mo < 1 or mo > 12 or d < 1 or d > days[mo] or h > 23 or mi > 59 or s > 59 then
    return nil, "schedule_send_time: " .. text .. " is not a date and time"
  end
  return true
end

function Batch:prepare_batchsend(template, data, opts)
  local method = M.METHODS.batchsend
  opts = opts or {}
  local tpl, terr = sender.template_arg(template, "template_id")
  if not tpl then return invalid(method, "request", "template", terr) end
  local extra = { template_id = tpl.id }
  if sender.chars(tpl.id) > TEMPLATE_ID_MAX then
    return invalid(method, "request", "template", ("template_id: at most %d characters"):format(TEMPLATE_ID_MAX),
      extra)
  end
  local normalized, derr = mini.normalize_data(data)
  if not normalized then return invalid(method, "data", "data", derr, extra) end
  for _, key in ipairs { "crowd_code", "schedule_send_time", "page" } do
    local v = opts[key]
    if v ~= nil and (type(v) ~= "string" or v == "") then
      return invalid(method, "request", key, key .. " must be a non-empty string", extra)
    end
  end
  if opts.schedule_send_time then
    local ok, msg = M.check_time(opts.schedule_send_time)
    if not ok then return invalid(method, "request", "schedule_send_time", msg, extra) end
  end
  local clean, cerr, cdetail = sender.clean(method, "request", "template", tpl.id, extra)
  if clean then clean, cerr, cdetail = sender.clean(method, "data", "data", normalized, extra) end
  if clean then
    clean, cerr, cdetail = sender.clean(method, "request", "options",
      { crowd_code = opts.crowd_code, page = opts.page }, extra)
  end
  if not clean then return nil, cerr, cdetail end
  local usable, uerr, udetail = sender.usable(self, method, tpl)
  if not usable then return nil, uerr, udetail end
  if self.registry then
    local ok, msg = self.registry:check_mini_data(usable, normalized)
    if not ok then return invalid(method, "data", "data", msg, extra) end
  end
  local text = mini.encode_data(normalized)
  local sized, serr = mini_limits.check_data_size(text)
  if not sized then return invalid(method, "data", "data", serr, extra) end
  local page = opts.page
  if page then
    local perr
    page, perr = mini.check_page(page)
    if not page then return invalid(method, "request", "page", perr, extra) end
  end
  local biz = { template_id = tpl.id, data = text, page = page, crowd_code = opts.crowd_code,
                schedule_send_time = opts.schedule_send_time }
  return sender.prepare(self, method, biz, tpl, opts)
end

function Batch:finish_batchsend(ctx, res, err, detail)
  local node, e, d = sender.finish_send(self, ctx, res, err, detail)
  if not node then return nil, e, d end
  local id = node.batch_msg_id
  return { batch_msg_id = type(id) == "string" and id ~= "" and id or nil }
end

-- One request, never repeated (see above).
function Batch:batchsend(template, data, opts)
  local req, ctx, detail = self:prepare_batchsend(template, data, opts)
  if not req then return nil, ctx, detail end
  local res, err, terr = self.client:request(req)
  return self:finish_batchsend(ctx, res, err, terr)
end

return M
