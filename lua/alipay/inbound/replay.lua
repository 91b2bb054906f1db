-- Replay stores (docs/protocol.md §3.3): what each endpoint has accepted,
-- so that Alipay's repeat of a message is acknowledged and not processed
-- twice. A store is anything with
--   store:add(key, ttl_s) -> true (new) | false (already there) | nil, err
--   store:delete(key) -> true   (the app gateway needs it; notify uses it
--                                 when processing fails)
-- A store that cannot remember a new key must say so (nil, err), never
-- make room by forgetting one still inside its TTL: a forgotten key is a
-- message that would be processed again.
--
-- Keys are namespaced by endpoint and message kind (replay.key), so that
-- one store could serve both endpoints without a message accepted at one
-- ever answering for the other; the example still keeps two stores.
local refusal = require "alipay.inbound.refusal"

local replay = {}

-- Alipay retries an unanswered notification for about 25 hours (4m, 10m,
-- 10m, 1h, 2h, 6h, 15h): remember a message for two days.
replay.DEFAULT_TTL = 2 * 24 * 3600

-- replay.key(endpoint, kind, id) -> "endpoint:kind:id".
function replay.key(endpoint, kind, id)
  return endpoint .. ":" .. kind .. ":" .. id
end

-- replay.ttl(opts) -> seconds (misuse raises).
function replay.ttl(opts)
  local ttl = opts.ttl
  if ttl == nil then return replay.DEFAULT_TTL end
  if type(ttl) ~= "number" or ttl <= 0 or ttl == math.huge or ttl ~= ttl then
    error("inbound: opts.ttl must be a positive number of seconds", 3)
  end
  return ttl
end

-- replay.check_store(seen, needs_delete) raises on a store that lacks a method.
function replay.check_store(seen, needs_delete, who)
  if seen == nil then return end
  if type(seen) ~= "table" or type(seen.add) ~= "function"
     or (needs_delete and type(seen.delete) ~= "function") then
    error(who .. ": opts.seen must be a store with :add" .. (needs_delete and " and :delete" or ""), 3)
  end
end

-- ---- one process ----

-- replay.memory_store(max_entries[, opts]) -> store. For one process (a
-- plain Lua server, tests). Holds at most max_entries (default 10000)
-- unexpired keys: when all are still live, add fails ("full") rather than
-- forget one. opts.clock replaces os.time. Keys live in insertion order in
-- a doubly linked list (with a TTL shared by all keys, the oldest expire
-- first) plus an index: O(1) per call.
local MemoryStore = {}
MemoryStore.__index = MemoryStore

local function unlink(self, node)
  if node.prev then node.prev.next = node.next else self.head = node.next end
  if node.next then node.next.prev = node.prev else self.tail = node.prev end
  self.index[node.key] = nil
  self.count = self.count - 1
end

function MemoryStore:add(key, ttl)
  local now = self.clock()
  local node = self.index[key]
  if node then
    if node.expires > now then return false end
    unlink(self, node)
  end
  while self.head and self.head.expires <= now do unlink(self, self.head) end
  if self.count >= self.max then
    return nil, "the replay store is full (" .. self.max .. " unexpired keys); raise its size"
  end
  node = { key = key, expires = (ttl and ttl > 0) and now + ttl or math.huge, prev = self.tail }
  if self.tail then self.tail.next = node else self.head = node end
  self.tail = node
  self.index[key] = node
  self.count = self.count + 1
  return true
end

function MemoryStore:delete(key)
  local node = self.index[key]
  if node then unlink(self, node) end
  return true
end

function replay.memory_store(max_entries, opts)
  max_entries = max_entries or 10000
  if type(max_entries) ~= "number" or max_entries < 1 or max_entries ~= math.floor(max_entries) then
    error("memory_store: max_entries must be a positive whole number", 2)
  end
  return setmetatable({ max = max_entries, clock = opts and opts.clock or os.time,
                        index = {}, count = 0 }, MemoryStore)
end

-- ---- every nginx worker ----

-- replay.shared_dict_store(dict) -> store over an ngx.shared.DICT, shared
-- by every worker. safe_add is atomic (of two workers receiving the same
-- message at once, exactly one gets true), and when the dict is full it
-- fails with "no memory" where add would evict the least recently used
-- keys, live or not.
function replay.shared_dict_store(dict)
  if type(dict) ~= "table" and type(dict) ~= "userdata" then
    error("shared_dict_store: expected an ngx.shared.DICT", 2)
  end
  return {
    add = function(_, key, ttl)
      local ok, err = dict:safe_add(key, true, ttl or 0)
      if ok then return true end
      if err == "exists" then return false end
      if err == "no memory" then return nil, "the shared dict is full; raise its lua_shared_dict size" end
      return nil, "shared dict: " .. tostring(err)
    end,
    delete = function(_, key)
      dict:delete(key)
      return true
    end,
  }
end

-- replay.mark(seen, key, ttl) -> true (new) | false (a repeat) | nil,
-- detail: the typed "store" refusal (retryable: Alipay's retry may find
-- the store working again).
function replay.mark(seen, key, ttl)
  local fresh, err = seen:add(key, ttl)
  if fresh == nil then
    return nil, refusal.new("store", "the replay store failed: " .. tostring(err),
                            { verified = true, retryable = true })
  end
  return fresh
end

return replay
