-- Channels (docs/messaging.md §5.1): each is one configured Alipay app (a Life
-- Account or a mini program) under an operator-chosen channel code, with
-- its own client. Several channels live in one process.
--
--   local channels = require "alipay.messaging.channels"
--   local set, err, detail = channels.load(source, opts)
--     source: a path to a JSON file, a path to a Lua file (name ending in
--             ".lua", read as data: it runs in an empty environment and
--             returns the table), or the table itself.
--     opts:   getenv = function(name) (default os.getenv), base_dir = the
--             directory relative paths of a table source are resolved in
--             (default: as given, i.e. the working directory),
--             transport = passed to every alipay.new (tests).
--     -> set | nil, err, detail (docs/errors.md): err the one-line string,
--        detail the typed "config" error: detail.channel, detail.field,
--        detail.msg = "channel alipaylife123: private_key_env: environment
--        variable ALIPAY_KEY is not set"
--
--   set:get(code)        -> channel | nil, err, detail (kind "config", field "channel")
--   set:list()           -> { channel, ... } sorted by code
--   set:channels_info()  -> { [code] = {kind=, id_type=} }   (for alipay.messaging.users)
--   set.store_path       -> the store path of the file (a relative one joined
--                           to the file's directory: "alipay.json" with
--                           store "x.db" gives "./x.db"; a URL such as
--                           "postgresql://alipay@db/alipay" as written), or nil
--   set:close()          -> closes every client
--   channel = { code=, kind="alipaylife"|"alipaymini", id_type="user_id"|"open_id",
--               app_id=, client=, subscribed_states= (mini programs, optional) }
--
--   channels.read(path) -> data, base_dir | nil, err, detail (docs/errors.md)
--     The file's data as written (JSON or Lua data), without building any
--     client: for tools that edit or diagnose it (alipay channel, doctor).
--
--   channels.recipient(r) -> id_type, id | nil, msg, detail (kind "input")
--     The one place that reads a recipient: {user_id=} or {open_id=} (exactly
--     one), or {id_type=, id=} (what alipay.messaging.users resolves to). The id type
--     is always explicit; an id is never classified by its "2088" prefix.
--
-- The file format:
--   { store = "alipay.db",
--     channels = { alipaylife123 = { kind = "alipaylife", id_type = "user_id",
--       app_id = "2021000122671080",
--       private_key_file = "keys/app.pem"  | private_key_env = "LIFE_KEY",
--       alipay_public_key_file = "…"       | alipay_public_key_env = "…"
--         | app_cert_file = "…", alipay_cert_file = "…", alipay_root_cert_file = "…",
--       env = "production"|"sandbox"       | gateway = "https://…/gateway.do",
--       sign_type = "RSA2", encrypt_key_file = "…" | encrypt_key_env = "…",
--       app_auth_token_env = "…", timeout_ms = 15000, ca_file = "…",
--       app_public_key_file = "…",          (optional, only alipay doctor reads it)
--       subscribed_states = {["1"] = true} } } }  (mini programs, optional: docs/messaging.md §3.2)
-- Keys come from files or environment variables, never from the file itself
-- (a configuration is copied, committed and pasted into tickets) nor from a
-- command line (visible in ps). Relative paths are relative to the file.
local cjson = require "cjson.safe"
local alipay_client = require "alipay.client"
local errors = require "alipay.errors"
local fs = require "alipay.util.fs"
local kinds = require "alipay.messaging.kinds"
local tables = require "alipay.util.table"

local M = {}

M.KINDS, M.ID_TYPES = kinds.KINDS, kinds.ID_TYPES

-- Instructions a Lua configuration may run: it is data, so a loop that
-- does not end is a mistake to report, not to wait for.
local LUA_CONFIG_BUDGET = 10000000

-- ---- errors ----

local function config_error(channel, field, problem)
  local where = {}
  if channel then where[#where + 1] = "channel " .. channel end
  if field then where[#where + 1] = field end
  where[#where + 1] = problem
  return errors.new("config", { channel = channel, field = field, retryable = false,
                                msg = table.concat(where, ": ") })
end

-- ---- paths ----

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function resolve(base_dir, path)
  if not base_dir or path:sub(1, 1) == "/" then return path end
  return base_dir .. "/" .. path
end

-- The file's store: a path relative to the file, or a URL (a database
-- server, docs/architecture.md §8), which names no file and is never joined.
local function store_location(base_dir, location)
  if location:match("^%a[%w+.-]*://") then return location end
  return resolve(base_dir, location)
end

-- ---- reading the source ----

local function read_text(path)
  local text, err = fs.read(path)
  if not text then return nil, config_error(nil, nil, "cannot read " .. tostring(err)) end
  return text
end

local function load_json(path)
  local text, err = read_text(path)
  if not text then return nil, err end
  local value, derr = cjson.decode(text)
  if type(value) ~= "table" then
    return nil, config_error(nil, nil, path .. ": not a JSON object" .. (derr and (" (" .. derr .. ")") or ""))
  end
  return value
end

-- A Lua configuration is data: no globals (no os, io, require), and a
-- bounded number of instructions, counted inside a coroutine so that the
-- hook never touches the caller's.
local function load_lua(path)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then return nil, config_error(nil, nil, tostring(err)) end
  -- LuaJIT runs no hooks inside compiled code: keep the chunk interpreted.
  local jit = rawget(_G, "jit")
  if jit then jit.off(chunk, true) end
  local co = coroutine.create(chunk)
  debug.sethook(co, function() error("the configuration runs too long (is it data?)", 0) end,
                "", LUA_CONFIG_BUDGET)
  local ok, value = coroutine.resume(co)
  if not ok then return nil, config_error(nil, nil, path .. ": " .. tostring(value)) end
  if type(value) ~= "table" then
    return nil, config_error(nil, nil, path .. ": must return a table, returned " .. type(value))
  end
  return value
end

-- -> data table, base_dir | nil, err
local function read_source(source, opts)
  if type(source) == "table" then return source, opts.base_dir end
  if type(source) ~= "string" or source == "" then
    return nil, nil, config_error(nil, nil, "expected a configuration table or the path of a JSON or Lua file")
  end
  local data, err
  if source:match("%.lua$") then data, err = load_lua(source) else data, err = load_json(source) end
  if not data then return nil, nil, err end
  return data, dirname(source)
end

-- ---- recipients ----

local function recipient(r)
  if type(r) ~= "table" then return nil, "recipient must be a table: {user_id=} or {open_id=}" end
  if r.id_type ~= nil or r.id ~= nil then
    if r.user_id ~= nil or r.open_id ~= nil then
      return nil, "recipient: give {id_type=, id=} or {user_id=}/{open_id=}, not both"
    end
    if not M.ID_TYPES[r.id_type] then return nil, 'recipient.id_type must be "user_id" or "open_id"' end
    if type(r.id) ~= "string" or r.id == "" then return nil, "recipient.id must be a non-empty string" end
    return r.id_type, r.id
  end
  if r.user_id ~= nil and r.open_id ~= nil then
    return nil, "recipient: give user_id or open_id, not both (the id type must be explicit)"
  end
  local id_type = r.user_id ~= nil and "user_id" or r.open_id ~= nil and "open_id"
  if not id_type then return nil, "recipient: user_id or open_id is required" end
  local id = r[id_type]
  if type(id) ~= "string" or id == "" then return nil, "recipient." .. id_type .. " must be a non-empty string" end
  return id_type, id
end

function M.recipient(r)
  local id_type, id = recipient(r)
  if not id_type then return errors.fail("input", { field = "recipient", msg = id }) end
  return id_type, id
end

-- ---- one channel ----

-- Every field a channel accepts and its type.
local FIELDS = {
  kind = "string", id_type = "string", app_id = "string",
  private_key_file = "string", private_key_env = "string",
  alipay_public_key_file = "string", alipay_public_key_env = "string",
  app_cert_file = "string", alipay_cert_file = "string", alipay_root_cert_file = "string",
  env = "string", gateway = "string", sign_type = "string",
  encrypt_key_file = "string", encrypt_key_env = "string", app_auth_token_env = "string",
  timeout_ms = "number", ca_file = "string",
  -- The app public key uploaded to Alipay: the client never needs it;
  -- `alipay doctor` checks that it pairs with the private key.
  app_public_key_file = "string",
  -- Mini programs: what each raw subscribe_state means, once Alipay has
  -- said (docs/messaging.md §3.2); no public source does.
  subscribed_states = "table",
}

-- Inline secrets get their own message: the fix is to move them out.
local INLINE_SECRETS = {
  private_key = "private_key_file or private_key_env",
  alipay_public_key = "alipay_public_key_file or alipay_public_key_env",
  encrypt_key = "encrypt_key_file or encrypt_key_env",
  app_auth_token = "app_auth_token_env",
  app_cert = "app_cert_file", alipay_cert = "alipay_cert_file", alipay_root_cert = "alipay_root_cert_file",
}

-- Keys of any type: a configuration may hold a number where a name belongs.
local function sorted_keys(t)
  return tables.sorted_keys(t, function(a, b) return tostring(a) < tostring(b) end)
end

local function check_fields(code, spec)
  for _, k in ipairs(sorted_keys(spec)) do
    local v = spec[k]
    if INLINE_SECRETS[k] then
      return config_error(code, k, "keys are never written in the configuration; use " .. INLINE_SECRETS[k])
    end
    local want = FIELDS[k]
    if not want then return config_error(code, tostring(k), "unknown field") end
    if type(v) ~= want or (want == "string" and v == "") then
      return config_error(code, k, ("must be a non-empty %s"):format(want))
    end
  end
end

-- Builds the alipay.new configuration of one channel. Also returns how
-- alipay.new's field names map back to ours, so that its errors name the
-- field the operator wrote.
local function client_config(code, spec, ctx)
  local cfg, names = {}, {}
  local function from_env(field, target)
    local name = spec[field]
    local value = ctx.getenv(name)
    if value == nil or value == "" then
      return config_error(code, field, "environment variable " .. name .. " is not set")
    end
    cfg[target], names[target] = value, field
  end
  local function from_file(field, target)
    cfg[target] = resolve(ctx.base_dir, spec[field])
    names[target], names[target:gsub("_file$", "")] = field, field
  end
  -- exactly one (or, when optional, at most one) of a file and a variable
  local function secret(base, optional)
    local file, env = base .. "_file", base .. "_env"
    if spec[file] and spec[env] then
      return config_error(code, file, "give " .. file .. " or " .. env .. ", not both")
    end
    if spec[file] then return from_file(file, file) end
    if spec[env] then return from_env(env, base) end
    if not optional then return config_error(code, file, "missing (give " .. file .. " or " .. env .. ")") end
  end

  local err = secret("private_key")
  if err then return nil, nil, err end
  local certs = spec.app_cert_file or spec.alipay_cert_file or spec.alipay_root_cert_file
  if certs then
    if spec.alipay_public_key_file or spec.alipay_public_key_env then
      return nil, nil, config_error(code, "alipay_public_key_file",
        "give the Alipay public key or the three certificates of certificate mode, not both")
    end
    for _, field in ipairs { "app_cert_file", "alipay_cert_file", "alipay_root_cert_file" } do
      if not spec[field] then
        return nil, nil, config_error(code, field, "missing: certificate mode needs app_cert_file, "
          .. "alipay_cert_file and alipay_root_cert_file")
      end
      from_file(field, field)
    end
  else
    err = secret("alipay_public_key")
    if err then return nil, nil, err end
  end
  err = secret("encrypt_key", true)
  if err then return nil, nil, err end
  if spec.app_auth_token_env then
    err = from_env("app_auth_token_env", "app_auth_token")
    if err then return nil, nil, err end
  end
  if spec.env and spec.gateway then return nil, nil, config_error(code, "env", "give env or gateway, not both") end
  cfg.app_id, cfg.env, cfg.gateway = spec.app_id, spec.env, spec.gateway
  cfg.sign_type, cfg.timeout_ms = spec.sign_type, spec.timeout_ms
  if spec.ca_file then cfg.ca_file = resolve(ctx.base_dir, spec.ca_file) end
  cfg.transport = ctx.transport
  return cfg, names
end

-- alipay.new's error, re-addressed to the channel and the field the operator
-- wrote; its messages never contain key material, ours add the variable name.
local function client_error(code, spec, names, err)
  local field = err.field and (names[err.field] or err.field) or nil
  local problem = tostring(err.msg or err)
  if err.field then problem = problem:gsub("^" .. err.field:gsub("%p", "%%%0") .. ": ", "") end
  if field and field:match("_env$") then
    problem = problem .. " (from environment variable " .. spec[field] .. ")"
  end
  return config_error(code, field, problem)
end

-- subscribed_states: a mini program's map of raw subscribe_state -> boolean.
local function check_states(code, spec)
  local states = spec.subscribed_states
  if states == nil then return nil end
  if spec.kind ~= "alipaymini" then
    return config_error(code, "subscribed_states", "only a mini program (alipaymini) has subscriptions")
  end
  for _, k in ipairs(sorted_keys(states)) do
    if type(k) ~= "string" or k == "" or type(states[k]) ~= "boolean" then
      return config_error(code, "subscribed_states", 'must map each state to true or false, e.g. {"1": true}')
    end
  end
end

local function build_channel(code, spec, ctx)
  if type(spec) ~= "table" then return nil, config_error(code, nil, "must be a table of fields") end
  local err = check_fields(code, spec)
  if err then return nil, err end
  if not M.KINDS[spec.kind] then
    return nil, config_error(code, "kind", 'must be "alipaylife" or "alipaymini"')
  end
  local id_type = spec.id_type or "user_id"
  if not M.ID_TYPES[id_type] then return nil, config_error(code, "id_type", 'must be "user_id" or "open_id"') end
  if not spec.app_id then return nil, config_error(code, "app_id", "missing") end
  err = check_states(code, spec)
  if err then return nil, err end
  local cfg, names
  cfg, names, err = client_config(code, spec, ctx)
  if not cfg then return nil, err end
  -- alipay.new's typed error is its third value (docs/errors.md).
  local client, cerr, cdetail = alipay_client.new(cfg)
  if not client then return nil, client_error(code, spec, names, cdetail or cerr) end
  return { code = code, kind = spec.kind, id_type = id_type, app_id = spec.app_id, client = client,
           subscribed_states = spec.subscribed_states }
end

-- ---- the set ----

local Set = {}
Set.__index = Set

function Set:get(code)
  local channel = self.by_code[code]
  if channel then return channel end
  local known = {}
  for i, c in ipairs(self.ordered) do known[i] = c.code end
  return errors.failure(config_error(nil, "channel", ("unknown channel %s (configured: %s)")
    :format(tostring(code), table.concat(known, ", "))))
end

function Set:list()
  local copy = {}
  for i, c in ipairs(self.ordered) do copy[i] = c end
  return copy
end

function Set:channels_info()
  local info = {}
  for _, c in ipairs(self.ordered) do info[c.code] = { kind = c.kind, id_type = c.id_type } end
  return info
end

function Set:close()
  for _, c in ipairs(self.ordered) do c.client:close() end
end

local TOP_LEVEL = { store = true, channels = true }
local CODE_PATTERN = "^[%w][%w_.%-]*$"

function M.read(path)
  local data, base_dir, err = read_source(path, {})
  if not data then return errors.failure(err) end
  return data, base_dir
end

-- The set, or nil and a typed error (internal: M.load makes the triple).
local function load(source, opts)
  opts = opts or {}
  local data, base_dir, err = read_source(source, opts)
  if not data then return nil, err end
  for _, k in ipairs(sorted_keys(data)) do
    if not TOP_LEVEL[k] then return nil, config_error(nil, tostring(k), "unknown top-level field") end
  end
  if data.store ~= nil and (type(data.store) ~= "string" or data.store == "") then
    return nil, config_error(nil, "store", "must be the path or URL of the store")
  end
  if type(data.channels) ~= "table" or next(data.channels) == nil then
    return nil, config_error(nil, "channels", "missing: a table of channels by channel code")
  end
  local ctx = { base_dir = base_dir, getenv = opts.getenv or os.getenv, transport = opts.transport }
  local set = setmetatable({ by_code = {}, ordered = {},
    store_path = data.store and store_location(base_dir, data.store) }, Set)
  for _, code in ipairs(sorted_keys(data.channels)) do
    if type(code) ~= "string" or #code > 64 or not code:match(CODE_PATTERN) then
      set:close()
      return nil, config_error(nil, "channels", ("%s is not a channel code (letters, digits, '_', '.', '-')")
        :format(tostring(code)))
    end
    local channel, cerr = build_channel(code, data.channels[code], ctx)
    if not channel then
      set:close()
      return nil, cerr
    end
    set.by_code[code] = channel
    set.ordered[#set.ordered + 1] = channel
  end
  return set
end

function M.load(source, opts)
  local set, detail = load(source, opts)
  if not set then return errors.failure(detail) end
  return set
end

return M
