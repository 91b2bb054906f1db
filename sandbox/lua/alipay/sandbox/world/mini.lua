-- The sandbox world's mini-program side: the templates the app applied
-- for, the template library and applications, subscriptions, crowds and
-- batch sends. build reads its part of the seed (alipay.sandbox.world's
-- header gives the format); the methods become the world's.
local cjson_safe = require "cjson.safe"
local seed_of = require "alipay.sandbox.world.seed"

local bad, opt_string, req_string = seed_of.bad, seed_of.opt_string, seed_of.req_string
local opt_table, list, labels = seed_of.opt_table, seed_of.list, seed_of.labels
local stable_hex = seed_of.stable_hex

local M = {}
local State = {}
M.methods = State

-- ---- building ----

local function build_mini_templates(self, seed)
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

local function build_crowds(self, seed)
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
end

function M.build(self, s)
  build_mini_templates(self, s)
  build_subscriptions(self, s)
  build_crowds(self, s)
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

return M
