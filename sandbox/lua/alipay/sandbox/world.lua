-- The sandbox gateway's world: what one Alipay app "has" on the Alipay side
-- (template library and industry, claimed Life Account templates, followers,
-- mini-program templates and subscriptions) and the deliveries it accepted.
-- Built from a seed, kept in memory (nginx runs one worker), rebuilt by reset().
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
local cjson_safe = require "cjson.safe"

local M = {}

local State = {}
State.__index = State

local USER_ID_LEN, OPEN_ID_LEN = 16, 46

-- ---- seed validation: errors name the offending field ----

local SeedError = {}

local function bad(path, problem)
  error(setmetatable({ msg = "seed." .. path .. ": " .. problem }, SeedError), 0)
end

local function opt_string(t, key, path)
  local v = t[key]
  if v == nil or v == cjson_safe.null then return nil end
  if type(v) ~= "string" or v == "" then bad(path .. "." .. key, "expected a non-empty string") end
  return v
end

local function req_string(t, key, path)
  return opt_string(t, key, path) or bad(path .. "." .. key, "missing")
end

local function opt_table(t, key, path)
  local v = t[key]
  if v == nil or v == cjson_safe.null then return nil end
  if type(v) ~= "table" then bad(path .. "." .. key, "expected an object or array") end
  return v
end

local function list(t, key, path)
  local v = opt_table(t, key, path) or {}
  for i, item in ipairs(v) do
    if type(item) ~= "table" then bad(("%s.%s[%d]"):format(path, key, i), "expected an object") end
  end
  return v
end

local function labels(t, path)
  local v = opt_table(t, "keywords", path) or bad(path .. ".keywords", "missing")
  if #v == 0 then bad(path .. ".keywords", "expected at least one keyword") end
  for i, label in ipairs(v) do
    if type(label) ~= "string" then bad(("%s.keywords[%d]"):format(path, i), "expected a string") end
  end
  return v
end

-- ---- reading the seed ----

local function read_json_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "seed: cannot read " .. path .. ": " .. tostring(err) end
  local text = f:read("*a")
  f:close()
  local seed, derr = cjson_safe.decode(text)
  if type(seed) ~= "table" then
    return nil, "seed: " .. path .. " is not a JSON object" .. (derr and (": " .. derr) or "")
  end
  return seed
end

-- A seed table, a path to a JSON file, or nil (an empty world).
function M.load_seed(seed)
  if seed == nil then return {} end
  if type(seed) == "string" then return read_json_file(seed) end
  if type(seed) ~= "table" then return nil, "seed: expected a table or a path, got " .. type(seed) end
  return seed
end

-- ---- stable ids ----

-- 32 hex digits that depend only on text: claimed template ids must not
-- change between runs, resets or interpreters. Four polynomial hashes kept
-- below 2^32 so every step is exact in doubles (LuaJIT) and integers (5.4).
local MULTIPLIERS = { 31, 33, 37, 131 }
local function stable_hex(text)
  local out = {}
  for round, mul in ipairs(MULTIPLIERS) do
    local h = 5381 * round
    for i = 1, #text do
      h = (h * mul + text:byte(i)) % 4294967296
    end
    out[round] = ("%08x"):format(h)
  end
  return table.concat(out)
end
M.stable_hex = stable_hex

-- An industry is a level-1/level-2 pair, "10001/20102" or "IT科技/IT软件与服务".
local function is_pair(text)
  return type(text) == "string" and text:find("^[^/]+/[^/]+$") ~= nil
end
M.is_industry_pair = is_pair

-- ---- building the state ----

local function build_industries(self, seed)
  self.industry_catalogue = {}
  for i, entry in ipairs(list(seed, "industries", "")) do
    local path = ("industries[%d]"):format(i)
    local e = { code = req_string(entry, "code", path), name = req_string(entry, "name", path) }
    if not is_pair(e.code) then bad(path .. ".code", "expected a level-1/level-2 pair such as 10001/20102") end
    if not is_pair(e.name) then bad(path .. ".name", "expected a level-1/level-2 pair such as IT科技/IT软件与服务") end
    self.industry_catalogue[e.code] = e
  end
  self.current_industry = nil
  local cur = opt_table(seed, "industry", "")
  if cur then
    local function entry_of(key, code)
      return self.industry_catalogue[code] or bad("industry." .. key, "not in seed.industries: " .. code)
    end
    local primary = entry_of("primary", req_string(cur, "primary", "industry"))
    local secondary = entry_of("secondary", opt_string(cur, "secondary", "industry") or primary.code)
    local at = cur.modified_at
    if at ~= nil and at ~= cjson_safe.null and type(at) ~= "number" then
      bad("industry.modified_at", "expected unix seconds")
    end
    self.current_industry = { primary = primary, secondary = secondary,
                              modified_at = type(at) == "number" and at or nil }
  end
end

local function build_templates(self, seed)
  self.library = {}
  for i, t in ipairs(list(seed, "library", "")) do
    local path = ("library[%d]"):format(i)
    local id = req_string(t, "template_id", path)
    self.library[id] = {
      template_id = id,
      name = opt_string(t, "name", path) or id,
      industry = req_string(t, "industry", path),
      keywords = labels(t, path),
    }
  end
  self.claims, self.live_claim, self.live_claims, self.claim_generation = {}, {}, 0, {}
  for i, c in ipairs(list(seed, "claimed", "")) do
    local path = ("claimed[%d]"):format(i)
    local lib = req_string(c, "template_id", path)
    if not self.library[lib] then bad(path .. ".template_id", "not in seed.library: " .. lib) end
    local claim = self:claim(lib, opt_string(c, "msg_template_id", path))
    if c.deleted == true then self:delete_claim(claim.msg_template_id) end
  end
  self.mini, self.mini_order = {}, {}
  for i, t in ipairs(list(seed, "mini_templates", "")) do
    local path = ("mini_templates[%d]"):format(i)
    local id = req_string(t, "template_id", path)
    if self.mini[id] then bad(path .. ".template_id", "listed twice: " .. id) end
    self.mini[id] = {
      template_id = id,
      name = opt_string(t, "name", path) or id,
      keywords = labels(t, path),
      deleted = t.deleted == true,
      status = opt_string(t, "status", path) or "STARTED",
      scene_rule = opt_string(t, "scene_rule", path),
      lib_code = opt_string(t, "lib_code", path),
    }
    self.mini_order[#self.mini_order + 1] = id
  end
  self.mini_library, self.mini_library_by_code = {}, {}
  for i, t in ipairs(list(seed, "mini_template_library", "")) do
    local path = ("mini_template_library[%d]"):format(i)
    local code = req_string(t, "code", path)
    local entry = { code = code, name = opt_string(t, "name", path) or code, keywords = labels(t, path),
      scene_rule = opt_string(t, "scene_rule", path), industry_code = opt_string(t, "industry_code", path),
      industry_scenario = opt_string(t, "industry_scenario", path), has_push = t.has_push == true,
      selectable = t.selectable ~= false }
    self.mini_library[#self.mini_library + 1] = entry
    self.mini_library_by_code[code] = entry
  end
  self.applications = {}
end

-- Generated followers are never materialised (a seed may ask for millions):
-- follower i of the block is computed from its index, and an id is mapped
-- back to its index by parsing it.
local function id_width(prefix, len)
  return math.max(len - #prefix, 6)
end

local function generated_id(prefix, width, index)
  local digits = ("%d"):format(index)
  return prefix .. ("0"):rep(width - #digits) .. digits
end

local function generated_index(prefix, width, count, id)
  if #id ~= #prefix + width or id:sub(1, #prefix) ~= prefix then return nil end
  local digits = id:sub(#prefix + 1)
  if not digits:match("^%d+$") then return nil end
  local n = tonumber(digits)
  if n < 1 or n > count then return nil end
  return n
end

local function build_followers(self, seed)
  self.listed, self.gen = {}, nil
  local f = opt_table(seed, "followers", "") or {}
  for i, row in ipairs(list(f, "list", "followers")) do
    local path = ("followers.list[%d]"):format(i)
    local user_id, open_id = opt_string(row, "user_id", path), opt_string(row, "open_id", path)
    if not user_id and not open_id then bad(path, "expected a user_id or an open_id") end
    self.listed[#self.listed + 1] = { user_id = user_id, open_id = open_id }
  end
  local gen = f.generate
  if type(gen) == "number" then gen = { count = gen, user_id_prefix = f.user_id_prefix,
    open_id_prefix = f.open_id_prefix } end
  if gen ~= nil and gen ~= cjson_safe.null then
    local path = "followers.generate"
    if type(gen) ~= "table" or type(gen.count) ~= "number" or gen.count < 0 then
      bad(path, "expected {count = n, user_id_prefix =, open_id_prefix =}")
    end
    local g = { count = math.floor(gen.count),
      user_id = opt_string(gen, "user_id_prefix", path) or "20880000",
      open_id = opt_string(gen, "open_id_prefix", path) or "0SandboxFollower" }
    g.width = { user_id = id_width(g.user_id, USER_ID_LEN), open_id = id_width(g.open_id, OPEN_ID_LEN) }
    for _, id_type in ipairs{ "user_id", "open_id" } do
      if #("%d"):format(g.count) > g.width[id_type] then
        bad(path .. "." .. id_type .. "_prefix", "too long for " .. g.count .. " followers")
      end
    end
    self.gen = g
  end
  self:index_followers()
end

local function build_subscriptions(self, seed)
  self.subs = { user_id = {}, open_id = {} }
  local states = opt_table(seed, "subscribe_states", "") or {}
  self.subscribe_states = {
    subscribed = opt_string(states, "subscribed", "subscribe_states") or "1",
    not_subscribed = opt_string(states, "not_subscribed", "subscribe_states") or "0",
  }
  for i, s in ipairs(list(seed, "subscriptions", "")) do
    local path = ("subscriptions[%d]"):format(i)
    local user_id, open_id = opt_string(s, "user_id", path), opt_string(s, "open_id", path)
    if (user_id == nil) == (open_id == nil) then bad(path, "expected exactly one of user_id, open_id") end
    local kind = s.type
    if kind ~= "longterm" and kind ~= "onetime" then bad(path .. ".type", "expected longterm or onetime") end
    local count = s.count
    if count == cjson_safe.null then count = nil end
    if count ~= nil and (type(count) ~= "number" or count < 1) then
      bad(path .. ".count", "expected a count >= 1")
    end
    self:add_subscription{
      id_type = user_id and "user_id" or "open_id", id = user_id or open_id,
      template_id = req_string(s, "template_id", path), type = kind,
      count = count and math.floor(count) or 1, refused = s.refused == true, keep = s.keep == true,
    }
  end
end

-- Labels, labelled users and groups (the header says their seed form).
local function build_labels(self, seed)
  self.labels, self.label_order, self.label_seq, self.label_members = {}, {}, 0, {}
  for i, l in ipairs(list(seed, "labels", "")) do
    local path = ("labels[%d]"):format(i)
    local label = self:create_label(req_string(l, "label_name", path), opt_string(l, "data_type", path),
      opt_string(l, "label_id", path))
    if not label then bad(path .. ".label_id", "defined twice") end
  end
  for i, u in ipairs(list(seed, "label_users", "")) do
    local path = ("label_users[%d]"):format(i)
    local id = req_string(u, "label_id", path)
    if not self.labels[id] then bad(path .. ".label_id", "not in seed.labels: " .. id) end
    local user_id, open_id = opt_string(u, "user_id", path), opt_string(u, "open_id", path)
    if (user_id == nil) == (open_id == nil) then bad(path, "expected exactly one of user_id, open_id") end
    self:tag_user(id, user_id or open_id, req_string(u, "label_value", path))
  end
  self.groups = {}
  for i, g in ipairs(list(seed, "groups", "")) do
    local path = ("groups[%d]"):format(i)
    local members = opt_table(g, "members", path) or {}
    for j, m in ipairs(members) do
      if type(m) ~= "string" then bad(("%s.members[%d]"):format(path, j), "expected an id") end
    end
    self.groups[req_string(g, "group_id", path)] = { members = members }
  end
  self.broadcasts, self.broadcast_seq = {}, 0
  self.contents, self.content_seq = {}, 0
end

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
  build_industries(self, seed)
  build_templates(self, seed)
  build_followers(self, seed)
  build_subscriptions(self, seed)
  self.auth_tokens = {}
  for i, token in ipairs(opt_table(seed, "app_auth_tokens", "") or {}) do
    if type(token) ~= "string" then bad(("app_auth_tokens[%d]"):format(i), "expected a string") end
    self.auth_tokens[token] = true
  end
  self.crowds = {}
  for i, c in ipairs(list(seed, "crowds", "")) do
    local path = ("crowds[%d]"):format(i)
    local members = {}
    for _, key in ipairs { "user_ids", "open_ids" } do
      for j, id in ipairs(opt_table(c, key, path) or {}) do
        if type(id) ~= "string" then bad(("%s.%s[%d]"):format(path, key, j), "expected a string") end
        members[id] = true
      end
    end
    self.crowds[req_string(c, "crowd_code", path)] = members
  end
  self.batch_sends = {}
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
  build_labels(self, seed)
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

-- ---- industry ----

function State:industry()
  return self.current_industry
end

function State:find_industry(code)
  return self.industry_catalogue[code]
end

function State:set_industry(primary, secondary, at)
  self.current_industry = { primary = primary, secondary = secondary, modified_at = at }
end

-- Whether library template lib belongs to the current industry.
-- A template of the main or of the deputy industry can be claimed.
function State:in_current_industry(lib)
  local cur = self.current_industry
  return cur ~= nil and (lib.industry == cur.primary.code or lib.industry == cur.secondary.code)
end

-- ---- Life Account templates ----

function State:library_template(template_id)
  return self.library[template_id]
end

-- The live claim of a library template, if any.
function State:live_claim_of(library_id)
  return self.live_claim[library_id]
end

function State:live_claim_count()
  return self.live_claims
end

-- Claims library template library_id (no limit check: the handler does it).
-- A template claimed again after its claim was deleted gets a new id.
function State:claim(library_id, msg_template_id)
  local generation = (self.claim_generation[library_id] or 0) + 1
  self.claim_generation[library_id] = generation
  local id = msg_template_id
    or stable_hex(self.app_id .. "/" .. library_id .. (generation > 1 and ("#" .. generation) or ""))
  local claim = { msg_template_id = id, template = self.library[library_id], deleted = false }
  self.claims[id] = claim
  self.live_claim[library_id] = claim
  self.live_claims = self.live_claims + 1
  return claim
end

-- Any claim, deleted ones included (a send must tell them apart).
function State:claimed_template(msg_template_id)
  return self.claims[msg_template_id]
end

-- Deletes a claimed template, as an operator does in the console. -> bool
function State:delete_claim(msg_template_id)
  local claim = self.claims[msg_template_id]
  if not claim or claim.deleted then return false end
  claim.deleted = true
  self.live_claim[claim.template.template_id] = nil
  self.live_claims = self.live_claims - 1
  return true
end

-- ---- followers ----

-- Listed followers first (seed order), then the generated block.
function State:index_followers()
  self.listed_pos = { user_id = {}, open_id = {} }
  for i, f in ipairs(self.listed) do
    if f.user_id then self.listed_pos.user_id[f.user_id] = i end
    if f.open_id then self.listed_pos.open_id[f.open_id] = i end
  end
end

function State:follower_count()
  return #self.listed + (self.gen and self.gen.count or 0)
end

-- The id_type id of follower i (1-based), or nil.
function State:follower_id(i, id_type)
  local row = self.listed[i]
  if row then return row[id_type] end
  local g = self.gen
  if g and i > #self.listed and i <= #self.listed + g.count then
    return generated_id(g[id_type], g.width[id_type], i - #self.listed)
  end
end

-- The position of a follower in the list, or nil.
function State:follower_position(id_type, id)
  local pos = self.listed_pos[id_type][id]
  if pos then return pos end
  local g = self.gen
  local n = g and generated_index(g[id_type], g.width[id_type], g.count, id)
  return n and (#self.listed + n) or nil
end

function State:follows(id_type, id)
  return self:follower_position(id_type, id) ~= nil
end

-- Page of ids (of this app's id type) starting AT cursor (Alipay's
-- next_user_id is the first user of the next page), in a stable order.
-- -> ids, next_cursor (nil on the last page) | nil when the cursor is unknown
function State:followers_page(cursor, size)
  local first = 1
  if cursor then
    first = self:follower_position(self.id_type, cursor)
    if not first then return nil end
  end
  local ids, last = {}, math.min(first + size - 1, self:follower_count())
  for i = first, last do
    ids[#ids + 1] = self:follower_id(i, self.id_type)
  end
  return ids, self:follower_id(last + 1, self.id_type)
end

-- Adds or removes a follower (admin, demos). The generated block becomes
-- a plain list first, so that positions stay consistent. -> bool changed
function State:set_following(id_type, id, following)
  local pos = self:follower_position(id_type, id)
  if (pos ~= nil) == (following == true) then return false end
  local g = self.gen
  if g then
    for n = 1, g.count do
      self.listed[#self.listed + 1] = { user_id = generated_id(g.user_id, g.width.user_id, n),
        open_id = generated_id(g.open_id, g.width.open_id, n) }
    end
    self.gen = nil
  end
  if following then
    self.listed[#self.listed + 1] = { [id_type] = id }
  else
    table.remove(self.listed, pos)
  end
  self:index_followers()
  return true
end

-- A Life Account event (alipay.sandbox.callback): the user, named in the
-- app's id type, follows or unfollows. -> bool changed
function State:follow(id)
  return self:set_following(self.id_type, id, true)
end

function State:unfollow(id)
  return self:set_following(self.id_type, id, false)
end

-- ---- mini-program templates and subscriptions ----

function State:mini_template(template_id)
  return self.mini[template_id]
end

-- Deletes a mini-program template (admin). -> bool
function State:delete_mini_template(template_id)
  local t = self.mini[template_id]
  if not t or t.deleted then return false end
  t.deleted = true
  return true
end

-- The live templates, in seed order then in the order they were applied for.
function State:mini_template_list()
  local out = {}
  for _, id in ipairs(self.mini_order) do
    if not self.mini[id].deleted then out[#out + 1] = self.mini[id] end
  end
  return out
end

function State:mini_library_list()
  return self.mini_library
end

function State:mini_library_entry(code)
  return self.mini_library_by_code[code]
end

-- Applies for library entry lib with the keyword names chosen (checked by
-- the handler): a new template, listed from now on. Its id is derived from
-- the app, the code and the count of applications, so it is stable across
-- runs and resets. -> the template
function State:apply_mini_template(lib, names, scene_rule)
  self.applications[#self.applications + 1] = { lib_code = lib.code, keywords = names }
  local id = stable_hex(self.app_id .. "/apply/" .. lib.code .. "#" .. #self.applications)
  local t = { template_id = id, name = lib.name, keywords = names, deleted = false, status = "STARTED",
              scene_rule = scene_rule or lib.scene_rule, lib_code = lib.code }
  self.mini[id] = t
  self.mini_order[#self.mini_order + 1] = id
  return t
end

-- The members of a seeded crowd (a set of ids), or nil.
function State:crowd(code)
  return self.crowds[code]
end

-- The ids (of this app's id type, sorted) holding a usable subscription to
-- template_id, within crowd (a set) when one is given. Nothing is consumed:
-- whether a batch send uses up one-time subscriptions is not documented.
function State:mini_subscribers(template_id, crowd)
  local ids = {}
  for id, by_template in pairs(self.subs[self.id_type]) do
    local rel = by_template[template_id]
    if rel and (rel.longterm == "accepted" or rel.onetime > 0) and (not crowd or crowd[id]) then
      ids[#ids + 1] = id
    end
  end
  table.sort(ids)
  return ids
end

-- Records a batch send; -> its batch_msg_id (stable: app and sequence).
function State:record_batch_send(b)
  self.batch_sends[#self.batch_sends + 1] = b
  b.batch_msg_id = stable_hex(self.app_id .. "/batch/" .. #self.batch_sends)
  return b.batch_msg_id
end

-- {id_type, id, template_id, type = "longterm"|"onetime", count, refused, keep}
-- A long-term answer replaces the previous one; one-time grants add up.
function State:add_subscription(s)
  local by_id = self.subs[s.id_type]
  by_id[s.id] = by_id[s.id] or {}
  local rel = by_id[s.id][s.template_id] or { onetime = 0 }
  by_id[s.id][s.template_id] = rel
  if s.type == "longterm" then
    rel.longterm = s.refused and "refused" or "accepted"
  elseif s.refused then
    rel.onetime_refused = true
  else
    rel.onetime = rel.onetime + (s.count or 1)
    rel.onetime_refused = false
  end
  rel.onetime_seen = rel.onetime_seen or s.type == "onetime"
  rel.keep = rel.keep or s.keep == true
end

-- The raw relation {longterm = nil|"accepted"|"refused", onetime = n,
-- onetime_seen, onetime_refused, keep}, or nil when the user never answered.
function State:subscription(id_type, id, template_id)
  local by_template = self.subs[id_type][id]
  return by_template and by_template[template_id]
end

-- Uses a subscription for one send: long-term ones stay, one-time ones are
-- consumed. -> true | false when there is none to use.
-- -> true | false, "refused" (the user said no) | false, "none"
function State:use_subscription(id_type, id, template_id)
  local rel = self:subscription(id_type, id, template_id)
  if not rel then return false, "none" end
  if rel.longterm == "accepted" then return true end
  if rel.onetime > 0 then
    rel.onetime = rel.onetime - 1
    return true
  end
  return false, rel.longterm == "refused" and "refused" or "none"
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

-- ---- labels, groups, broadcasts, contents (Life Account) ----

-- A new custom label; nil when label_id is taken. Ids the sandbox makes
-- are its own ("1" and five digits): Alipay's format is not documented.
function State:create_label(name, data_type, label_id)
  if not label_id then
    repeat
      self.label_seq = self.label_seq + 1
      label_id = ("1%05d"):format(self.label_seq)
    until not self.labels[label_id]
  end
  if self.labels[label_id] then return nil end
  local label = { label_id = label_id, label_name = name, data_type = data_type or "string" }
  self.labels[label_id] = label
  self.label_order[#self.label_order + 1] = label_id
  self.label_members[label_id] = {}
  return label
end

function State:label(label_id) return self.labels[label_id] end

function State:label_named(name)
  for _, id in ipairs(self.label_order) do
    if self.labels[id].label_name == name then return self.labels[id] end
  end
end

-- Labels in creation order.
function State:label_list()
  local out = {}
  for i, id in ipairs(self.label_order) do out[i] = self.labels[id] end
  return out
end

function State:delete_label(label_id)
  if not self.labels[label_id] then return false end
  self.labels[label_id], self.label_members[label_id] = nil, nil
  for i, id in ipairs(self.label_order) do
    if id == label_id then table.remove(self.label_order, i) break end
  end
  return true
end

-- Labels user id (of the app's id type) with value; another value replaces it.
function State:tag_user(label_id, id, value)
  self.label_members[label_id][id] = value
end

-- -> true | false when the user did not carry the label
function State:untag_user(label_id, id)
  local members = self.label_members[label_id]
  if members[id] == nil then return false end
  members[id] = nil
  return true
end

-- The ids carrying label_id, sorted (nil for an unknown label).
function State:label_member_ids(label_id)
  local members = self.label_members[label_id]
  if not members then return nil end
  local ids = {}
  for id in pairs(members) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

function State:group(group_id) return self.groups[group_id] end

-- Records a broadcast (one delivery record, see the header) and returns
-- it; its message id is derived from the app and a counter, so that ids
-- repeat after reset() (demos and specs can name them).
function State:record_broadcast(d, with_message_id)
  self.broadcast_seq = self.broadcast_seq + 1
  d.kind = "broadcast"
  if with_message_id then
    d.message_id = stable_hex(self.app_id .. "/broadcast/" .. self.broadcast_seq)
    self.broadcasts[d.message_id] = d
  end
  return self:record_delivery(d)
end

function State:broadcast(message_id) return self.broadcasts[message_id] end

-- Image-text contents (message.content.create): id -> the fields given.
function State:create_content(fields)
  self.content_seq = self.content_seq + 1
  local id = stable_hex(self.app_id .. "/content/" .. self.content_seq)
  fields.content_id = id
  self.contents[id] = fields
  return fields
end

function State:content(content_id) return self.contents[content_id] end

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
