-- One world in every nginx worker (runs inside nginx). The sandbox serves
-- on every core, and its state must stay one: a delivery made through one
-- worker is seen by all, a one-time subscription is used up once, a quota
-- counts every worker's sends. Each worker keeps a replica of the world
-- (alipay.sandbox.world) built from the same seed, and every operation
-- that may change it is appended to a log in a shared dictionary:
--   * a worker runs an operation under the dictionary's lock, after
--     applying every operation the log holds that it has not applied yet,
--     then appends it to the log (the same inputs, the same clock value);
--   * world handlers are deterministic, so replaying the log gives every
--     replica the same state: reads and writes both see every operation
--     committed before them, whichever worker took it. Every replica
--     replays every operation, resets included, in the same order, so even
--     state a handler keeps outside the world (a test's wrapper counting
--     calls) comes out the same.
-- The expensive part of a request, RSA signing and verification, runs
-- outside the lock, on every worker at once.
--
--   replica.init(dict, apply)   apply(op) runs one logged operation here
--   replica.run(op, fn, ...)    -> fn(...)'s results; op is logged once fn ran
--   replica.catch_up()          applies what other workers logged
--   replica.trim()              drops operations every worker has applied
--   replica.stats()             {ops =, applied =}
local cjson = require "cjson.safe"

local M = {}

-- LuaJIT (nginx) has neither table.pack nor table.unpack.
local unpack = table.unpack or unpack -- luacheck: ignore 143
local function pack(...) return { n = select("#", ...), ... } end

local LOCK_TTL_S = 5        -- a worker that dies holding the lock frees it then
-- Between two tries of a contended lock. nginx's timers count whole
-- milliseconds: a shorter sleep is ngx.sleep(0), which nginx warns about in
-- a line that carries the request line, signature included.
local LOCK_WAIT_S = 0.001
local LOCK_GIVE_UP_S = 10

local dict, apply_op
local applied = 0 -- the index of the last operation applied in this worker

local function key(i) return "op:" .. i end

-- Applies the log from where this worker stands. Safe without the lock:
-- an operation is written before the count that makes it visible.
function M.catch_up()
  local n = dict:get("ops") or 0
  for i = applied + 1, n do
    local text = dict:get(key(i))
    if not text then
      error("sandbox replica: operation " .. i .. " is gone from the log (worker too far behind)", 0)
    end
    apply_op(assert(cjson.decode(text)))
    applied = i
  end
  dict:set("applied:" .. ngx.worker.id(), applied)
end

local function lock()
  local waited = 0
  while true do
    local ok, err = dict:add("lock", ngx.worker.pid(), LOCK_TTL_S)
    if ok then return true end
    if err ~= "exists" then return nil, "sandbox replica: lock: " .. tostring(err) end
    if waited > LOCK_GIVE_UP_S then return nil, "sandbox replica: the state lock is held too long" end
    ngx.sleep(LOCK_WAIT_S)
    waited = waited + LOCK_WAIT_S
  end
end

local function unlock()
  dict:delete("lock")
end

local function append(op)
  local text, err = cjson.encode(op)
  if not text then error("sandbox replica: cannot log the operation: " .. tostring(err), 0) end
  local i = (dict:get("ops") or 0) + 1
  -- safe_set: a full dictionary refuses instead of evicting operations
  -- other replicas still need.
  local ok, serr = dict:safe_set(key(i), text)
  if not ok then error("sandbox replica: the operation log is full (" .. tostring(serr) .. "); reset", 0) end
  dict:set("ops", i)
  applied = i
  dict:set("applied:" .. ngx.worker.id(), applied)
end

-- Runs fn(...) with the world up to date and logs op after it: fn is the
-- local execution of op. Raises what fn raises, the lock released.
function M.run(op, fn, ...)
  local ok, err = lock()
  if not ok then error(err, 0) end
  local results = pack(pcall(function(...)
    M.catch_up()
    return fn(...)
  end, ...))
  if results[1] then
    local logged, lerr = pcall(append, op)
    if not logged then
      unlock()
      error(lerr, 0)
    end
  end
  unlock()
  if not results[1] then error(results[2], 0) end
  return unpack(results, 2, results.n)
end

-- Drops the operations every worker has applied (run by one worker).
function M.trim()
  local low = math.huge
  for id = 0, ngx.worker.count() - 1 do
    low = math.min(low, dict:get("applied:" .. id) or 0)
  end
  local from = (dict:get("trimmed") or 0) + 1
  for i = from, low do dict:delete(key(i)) end
  if low >= from then dict:set("trimmed", low) end
end

function M.stats()
  return { ops = dict:get("ops") or 0, applied = applied }
end

function M.init(shared_dict, apply)
  dict, apply_op = shared_dict, apply
  applied = 0
end

return M
