-- The sandbox world's Life Account side: the template library and the
-- industry, claimed templates, followers (generated ones computed from their
-- index, never stored), labels, groups, broadcasts and contents. build and
-- build_labels read their part of the seed (alipay.sandbox.world's header
-- gives the format); the methods become the world's.
local cjson_safe = require "cjson.safe"
local seed_of = require "alipay.sandbox.world.seed"

local bad, opt_string, req_string = seed_of.bad, seed_of.opt_string, seed_of.req_string
local opt_table, list, labels = seed_of.opt_table, seed_of.list, seed_of.labels
local stable_hex, is_pair = seed_of.stable_hex, seed_of.is_industry_pair

local M = {}
local State = {}
M.methods = State

local USER_ID_LEN, OPEN_ID_LEN = 16, 46

-- ---- building ----

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

function M.build(self, s)
  build_industries(self, s)
  build_templates(self, s)
  build_followers(self, s)
end

M.build_labels = build_labels

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

return M
