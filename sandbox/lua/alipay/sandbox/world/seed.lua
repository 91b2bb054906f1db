-- What the sandbox world's modules share: reading a seed and checking it
-- (a bad field raises a SeedError, "seed.<path>: <problem>"), and ids
-- derived from text only, so that they are the same in every run, reset,
-- interpreter and nginx worker (alipay.sandbox.world).
local cjson_safe = require "cjson.safe"

local M = {}


local SeedError = {}
M.SeedError = SeedError

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

M.bad, M.opt_string, M.req_string, M.opt_table, M.list, M.labels = bad, opt_string, req_string, opt_table, list,
  labels

return M
