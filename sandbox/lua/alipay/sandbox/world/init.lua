-- The sandbox gateway's world: what one Alipay app "has" on the Alipay side
-- (template library and industry, claimed Life Account templates, followers,
-- mini-program templates and subscriptions) and the deliveries it accepted.
-- Built from a seed, kept in memory (in every nginx worker, the same: alipay.sandbox.replica),
-- rebuilt by reset(). The Life Account side is alipay.sandbox.world.life, the
-- mini-program side alipay.sandbox.world.mini, seed checks alipay.sandbox.world.seed.
-- Pure Lua 5.4 / LuaJIT 2.1: no ngx, no sockets, no C modules but cjson.
--
-- Seed format (a table, or a path to a JSON file; every field optional):
--   id_type              "user_id" (default) or "open_id": how this app names users.
--                        An open_id app accepts and returns open ids only.
--   legacy_follow_shape  true: follow.batchquery nests its lists under "data".
--   life_account         "online" (default), "offline" (not yet online) or "absent" (the app
--                        has no Life Account): what template.message.get finds.
--   industries           catalogue accepted by industry.modify: [{code = "10001/20102",
--                        name = "IT科技/IT软件与服务"}], each a level-1/level-2 pair, as
--                        Alipay writes an industry (docs/conformance.md, industry)
--   industry             the current one: {primary = code (the main industry),
--                        secondary = code (the deputy industry, default: the same),
--                        modified_at = unix seconds or absent}; absent = never selected.
--   library              Life Account template library: [{template_id, name,
--                        industry = an industry code "10001/20102", keywords = {labels in order}}];
--                        a template with N labels takes keyword1..keywordN.
--   claimed              templates already claimed: [{template_id (library id),
--                        msg_template_id (optional, derived otherwise), deleted = bool}]
--   followers            {list = [{user_id, open_id}], generate = {count, user_id_prefix,
--                        open_id_prefix}} (generate may also be a bare count, the prefixes then
--                        sit next to it). Listed followers come first, then generated ones.
--   mini_templates       [{template_id, name, keywords = {labels in order}, deleted = bool,
--                        status, scene_rule, lib_code}]: the templates the mini program applied
--                        for, as template.batchquery lists them (deleted ones are left out).
--                        status is passed through (default "STARTED": the values are not
--                        documented, docs/conformance.md); scene_rule one_time_subscribe or
--                        long_term_subscribe (field docs), absent by default.
--   mini_template_library  [{code, name, keywords = {labels}, scene_rule, industry_code,
--                        industry_scenario, has_push = bool, selectable = bool (default true)}]:
--                        what templatelib.batchquery lists and template.apply takes a lib_code of.
--   crowds               [{crowd_code, user_ids = {...} or open_ids = {...}}]: the crowds
--                        (棋盘人群) a batch send may name; it reaches the crowd's users who
--                        hold a usable subscription to the template.
--   subscriptions        [{user_id or open_id, template_id, type = "longterm"|"onetime",
--                        count = n (one-time, default 1), refused = bool, keep = bool (the
--                        user ticked "always keep this choice")}]; one-time entries of the
--                        same user and template add up.
--   subscribe_states     {subscribed = "1", not_subscribed = "0"}: the subscribe_state values
--                        subscribe.query answers. No public source gives Alipay's values
--                        (docs/conformance.md), so these defaults are the sandbox's own, and
--                        a test can seed others to check a client that does not guess.
--   app_auth_tokens      tokens accepted as app_auth_token (an ISV acting for this app).
--   quotas               {single_send = n}: Life Account single sends accepted until reset;
--                        the next ones answer MSG_SINGLE_SD_OVER. The code is in the method's
--                        official list; whether Alipay's quota counts a day or a rate is not
--                        documented, so this count that reset() restores is the sandbox's model.
--                        {total_send = n, group_send = n}: broadcasts (message.total.send) and
--                        group sends accepted until reset; the next ones answer
--                        PUB.MSG_BATCH_SD_OVER (alipay-easysdk's recording of total.send) and
--                        MSG_BATCH_SD_OVER (group.send's official list). The real frequency is
--                        not documented: the count is the sandbox's model.
--   labels               the Life Account's custom labels: [{label_id, label_name, data_type =
--                        "string"}]; alipay.open.public.life.label.create adds more (ids are
--                        the sandbox's: "1" followed by five digits).
--   label_users          users already labelled: [{label_id, user_id or open_id, label_value}]
--   groups               user groups for message.group.send: [{group_id, members = [ids of the
--                        app's id type]}]. Groups are made with alipay.open.public.group.create,
--                        which the sandbox does not model, so they come from the seed only.
--
-- Broadcasts (message.total.send, label.send, group.send) each append ONE
-- delivery record: {kind = "broadcast", method, message_id (nil for label.send,
-- whose answer has none), audience = "all" | "label" | "group", recipients = the
-- number of followers it reached, ids = the ids it reached when at most 100 (a
-- broadcast to all followers lists none), msg_type, payload, at}; a recall sets
-- recalled_at on that record.
local seed_of = require "alipay.sandbox.world.seed"
local life_side = require "alipay.sandbox.world.life"
local mini_side = require "alipay.sandbox.world.mini"

local M = {}

local State = {}
State.__index = State
for _, domain in ipairs { life_side, mini_side } do
  for name, fn in pairs(domain.methods) do
    assert(State[name] == nil, "sandbox world: " .. name .. " is defined twice")
    State[name] = fn
  end
end

local bad, opt_table = seed_of.bad, seed_of.opt_table
local SeedError = seed_of.SeedError

M.load_seed, M.stable_hex, M.is_industry_pair = seed_of.load_seed, seed_of.stable_hex, seed_of.is_industry_pair

-- ---- building the state ----

local function build(self)
  local seed = self.seed
  if seed.id_type ~= nil and seed.id_type ~= "user_id" and seed.id_type ~= "open_id" then
    bad("id_type", "expected user_id or open_id")
  end
  self.id_type = seed.id_type or "user_id"
  self.legacy_follow_shape = seed.legacy_follow_shape == true
  local life = seed.life_account
  if life ~= nil and life ~= "online" and life ~= "offline" and life ~= "absent" then
    bad("life_account", "expected online, offline or absent")
  end
  self.life_account = life or "online"
  life_side.build(self, seed)
  mini_side.build(self, seed)
  self.auth_tokens = {}
  for i, token in ipairs(opt_table(seed, "app_auth_tokens", "") or {}) do
    if type(token) ~= "string" then bad(("app_auth_tokens[%d]"):format(i), "expected a string") end
    self.auth_tokens[token] = true
  end
  self.quota_left = {}
  local known_quotas = { single_send = true, total_send = true, group_send = true }
  for name, n in pairs(opt_table(seed, "quotas", "") or {}) do
    if not known_quotas[name] then
      bad("quotas." .. tostring(name), "unknown quota (known: single_send, total_send, group_send)")
    end
    if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then bad("quotas." .. name, "expected a whole number >= 0") end
    self.quota_left[name] = n
  end
  self.delivery_list, self.next_seq = {}, 1
  life_side.build_labels(self, seed)
end

-- state.new(seed, opts) -> state | nil, err. opts.app_id feeds the derived
-- template ids (they differ per app, as on Alipay).
function M.new(seed, opts)
  local s, err = M.load_seed(seed)
  if not s then return nil, err end
  local self = setmetatable({ seed = s, app_id = opts and opts.app_id or "" }, State)
  local ok, e = self:reset()
  if not ok then return nil, e end
  return self
end

-- Back to the seed; deliveries cleared. -> true | nil, err
function State:reset()
  local ok, err = pcall(build, self)
  if ok then return true end
  if getmetatable(err) == SeedError then return nil, err.msg end
  error(err, 0)
end

-- ---- quotas ----

-- Takes one unit of a quota. -> true, or false once it is spent (a quota
-- the seed does not set is unlimited).
function State:use_quota(name)
  local left = self.quota_left[name]
  if left == nil then return true end
  if left == 0 then return false end
  self.quota_left[name] = left - 1
  return true
end

-- ---- ISV tokens ----

function State:accepts_app_auth_token(token)
  return self.auth_tokens[token] == true
end

-- ---- deliveries ----

-- Appends an accepted send; numbers it and returns it.
function State:record_delivery(d)
  d.seq = self.next_seq
  self.next_seq = self.next_seq + 1
  self.delivery_list[#self.delivery_list + 1] = d
  return d
end

-- A copy of the array (the records themselves are shared: treat them as read-only).
function State:deliveries()
  local copy = {}
  for i, d in ipairs(self.delivery_list) do copy[i] = d end
  return copy
end

-- ---- inspection ----

-- A JSON-friendly overview for admin endpoints and demos.
function State:summary()
  local claimed, mini = {}, {}
  for id, c in pairs(self.claims) do
    claimed[#claimed + 1] = { msg_template_id = id, template_id = c.template.template_id,
      name = c.template.name, keywords = c.template.keywords, deleted = c.deleted }
  end
  table.sort(claimed, function(a, b) return a.msg_template_id < b.msg_template_id end)
  for id, t in pairs(self.mini) do
    mini[#mini + 1] = { template_id = id, name = t.name, keywords = t.keywords, deleted = t.deleted }
  end
  table.sort(mini, function(a, b) return a.template_id < b.template_id end)
  local cur = self.current_industry
  return {
    id_type = self.id_type,
    industry = cur and {
      primary_industry_code = cur.primary.code, primary_industry_name = cur.primary.name,
      secondary_industry_code = cur.secondary.code, secondary_industry_name = cur.secondary.name,
      modified_at = cur.modified_at,
    } or nil,
    followers = self:follower_count(),
    claimed_templates = claimed,
    mini_templates = mini,
    batch_sends = #self.batch_sends,
    deliveries = #self.delivery_list,
  }
end

return M
