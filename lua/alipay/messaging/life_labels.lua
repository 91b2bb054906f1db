-- Life Account custom labels (docs/messaging.md §2.8): create, list, rename
-- and delete labels, and label users, so that a broadcast can target them
-- (alipay.messaging.life_broadcast label_send).
--
--   local life_labels = require "alipay.messaging.life_labels"
--   local labels = life_labels.new(channel)
--   labels:create(name, {data_type = "string"})  -> label_id | nil, err, detail
--   labels:list()                     -> {{label_id, label_name, data_type, type, ...}, ...} | nil, err, detail
--   labels:modify(label_id, name)     -> true | nil, err, detail
--   labels:delete(label_id)           -> true | nil, err, detail
--   labels:tag(label_id, value, users)    -> report | nil, err, detail, report
--   labels:untag(label_id, users)         -> report | nil, err, detail, report
--     users: a list of {user_id =} | {open_id =} | {id_type =, id =} | {mobile_no =} | {identity_card =};
--     sent 10 per call (matchers: "最多传入10条"). report = {error_count = n, error_matchers =
--     {{matcher =, error_msg =}, ...}, calls = n}: the users Alipay could not (un)label. On a
--     failed call the report holds the calls before it. Labelling is not a send: a value set
--     twice is the same value, so a caller may run it again.
local errors = require "alipay.errors"
local sender = require "alipay.messaging.send"
local channels = require "alipay.messaging.channels"

local M = {}

M.METHODS = {
  create = "alipay.open.public.life.label.create",
  list = "alipay.open.public.life.label.batchquery",
  modify = "alipay.open.public.life.label.modify",
  delete = "alipay.open.public.life.label.delete",
  tag = "alipay.open.public.matchuser.label.create",
  untag = "alipay.open.public.matchuser.label.delete",
}

M.MATCHERS_PER_CALL = 10   -- the matchers field docs
M.MAX_LABELS = 100         -- label_name's docs: "每个生活号最多创建 100 个自定义标签" (Alipay checks it)

local Labels = {}
Labels.__index = Labels

local invalid, call_opts = sender.invalid, sender.call_opts

function M.new(channel)
  return sender.new("life_labels", "alipaylife", Labels, channel)
end

local function str(v)
  return type(v) == "string" and v ~= ""
end

local function checked(method, field, value)
  if not str(value) then return invalid(method, "request", field, field .. " is required (a non-empty string)") end
  return sender.clean(method, "request", field, value)
end

function Labels:create(name, opts)
  local method = M.METHODS.create
  local ok, err, detail = checked(method, "label_name", name)
  if not ok then return nil, err, detail end
  local data_type = opts and opts.data_type
  -- "目前只支持 string（字符串类型）"
  if data_type ~= nil and data_type ~= "string" then
    return invalid(method, "request", "data_type", "data_type: Alipay supports only string")
  end
  local res
  res, err, detail = self.client:execute(method, { label_name = name, data_type = data_type }, call_opts(opts))
  if not res then return nil, err, detail end
  if not str(res.label_id) then
    return errors.fail("decode", { method = method, retryable = false, unknown = false,
                                   msg = "the answer has no label_id" })
  end
  return res.label_id
end

function Labels:list(opts)
  local res, err, detail = self.client:execute(M.METHODS.list, {}, call_opts(opts))
  if not res then return nil, err, detail end
  local out = {}
  if type(res.labels) == "table" then
    for _, l in ipairs(res.labels) do
      if type(l) == "table" then out[#out + 1] = l end
    end
  end
  return out
end

function Labels:modify(label_id, name, opts)
  local method = M.METHODS.modify
  local ok, err, detail = checked(method, "label_id", label_id)
  if ok then ok, err, detail = checked(method, "label_name", name) end
  if not ok then return nil, err, detail end
  local res
  res, err, detail = self.client:execute(method, { label_id = label_id, label_name = name }, call_opts(opts))
  if not res then return nil, err, detail end
  return true
end

function Labels:delete(label_id, opts)
  local method = M.METHODS.delete
  local ok, err, detail = checked(method, "label_id", label_id)
  if not ok then return nil, err, detail end
  local res
  res, err, detail = self.client:execute(method, { label_id = label_id }, call_opts(opts))
  if not res then return nil, err, detail end
  return true
end

-- One user -> a Matcher {user_id | open_id | mobile_no | identity_card} | nil, msg
local function matcher_of(user)
  if type(user) == "table" and (str(user.mobile_no) or str(user.identity_card)) then
    return { mobile_no = user.mobile_no, identity_card = user.identity_card }
  end
  local id_type, id = channels.recipient(user)
  if not id_type then return nil, id end
  return { [id_type] = id }
end

local function matchers_of(method, users)
  if type(users) ~= "table" or #users == 0 then
    return invalid(method, "request", "users", "users must be a non-empty list")
  end
  local out = {}
  for i, u in ipairs(users) do
    local m, msg = matcher_of(u)
    if not m then return invalid(method, "recipient", ("users[%d]"):format(i), msg) end
    local ok, err, detail = sender.clean(method, "recipient", ("users[%d]"):format(i), m)
    if not ok then return nil, err, detail end
    out[i] = m
  end
  return out
end

local function run_batches(self, method, base, users, opts)
  local matchers, err, detail = matchers_of(method, users)
  if not matchers then return nil, err, detail end
  local report = { error_count = 0, error_matchers = {}, calls = 0 }
  for first = 1, #matchers, M.MATCHERS_PER_CALL do
    local biz = { matchers = {} }
    for k, v in pairs(base) do biz[k] = v end
    for i = first, math.min(first + M.MATCHERS_PER_CALL - 1, #matchers) do
      biz.matchers[#biz.matchers + 1] = matchers[i]
    end
    local res, e, d = self.client:execute(method, biz, call_opts(opts))
    if not res then return nil, e, d, report end
    report.calls = report.calls + 1
    report.error_count = report.error_count + (tonumber(res.error_count) or 0)
    for _, em in ipairs(type(res.error_matchers) == "table" and res.error_matchers or {}) do
      report.error_matchers[#report.error_matchers + 1] = em
    end
  end
  return report
end

function Labels:tag(label_id, value, users, opts)
  local method = M.METHODS.tag
  local ok, err, detail = checked(method, "label_id", label_id)
  if ok then ok, err, detail = checked(method, "label_value", value) end
  if not ok then return nil, err, detail end
  return run_batches(self, method, { label_id = label_id, label_value = value }, users, opts)
end

function Labels:untag(label_id, users, opts)
  local method = M.METHODS.untag
  local ok, err, detail = checked(method, "label_id", label_id)
  if not ok then return nil, err, detail end
  return run_batches(self, method, { label_id = label_id }, users, opts)
end

return M
