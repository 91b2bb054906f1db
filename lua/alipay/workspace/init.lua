-- The composition root: from ONE channel file, the channel set, the store,
-- the template registry and the user bindings, wired as every program of
-- the project needs them (the CLI, the demo, the benchmarks, the specs),
-- and the context the campaign engine takes. One place decides which file
-- is read, where the store is and what a failure says.
--
--   local workspace = require "alipay.workspace"
--   local ws, err, detail = workspace.open {
--     config = "alipay.json" | a table     -- default: $ALIPAY_CONFIG, else ./alipay.json
--     store = "state.db",                  -- optional: overrides the file's "store"
--     default_store = "./alipay.db",       -- when neither names one (this is the default)
--     base_dir = "conf",                   -- a table config: where its relative paths are
--     transport = t, getenv = fn,          -- for channels.load (tests); getenv also reads ALIPAY_CONFIG
--     lazy = true,                         -- build nothing now: each part on first use
--     missing_hint = "give --config FILE or set ALIPAY_CONFIG",  -- when the default file is absent
--     readonly = true,                     -- open the store read-only (store.open's readonly):
--                                          -- for callers that only read it
--   }
--   ws.channels, ws.store, ws.registry, ws.users   the parts (alipay.messaging.channels set,
--                               alipay.store, alipay.messaging.templates, alipay.messaging.users)
--   ws:get(name)        -> the part | nil, err, detail; built at most once, a failure is kept too
--   ws:store_path()     -> the store's path or URL | nil, err, detail (a URL as
--                          given, password included: show store.display(it))
--   ws:campaign_ctx(extra) -> { store=, channels=, registry=, users= } plus extra's fields
--                              (log=, clock=, ...) for alipay.campaign | nil, err, detail
--   ws:close()          closes the store, then every channel's client; idempotent
--   local ws <close> = assert(workspace.open { ... })   the same, at the end of the scope
--   ws.config, ws.config_source   the path (or table) read, and why: "option", "ALIPAY_CONFIG",
--                                 "default" or "table"
--
-- Paths: a config path is used as given (relative to the working directory);
-- the file's "store" is relative to the file (channels.load resolves it); an
-- override and the default are used as given. A store may be a URL
-- (postgresql://USER@HOST:PORT/DB: PostgreSQL, docs/architecture.md §8) wherever it
-- may be a path; it is never joined to a directory.
--
-- Eager by default: open fails unless every part could be built. lazy = true
-- is for callers that need only some parts (a CLI command that lists
-- channels must not create the store, one given a store needs no channel
-- file): open then reads nothing and cannot fail, and a part is built when
-- first asked for; ws.<part> is then nil on failure, ws:get(part) says why.
--
-- It ships in the lua-alipay-cli rock, with alipay.store (luadbi-sqlite3;
-- luadbi-postgresql for a PostgreSQL store),
-- not in the library rock that OpenResty handlers need.
--
-- Failures are "config" errors naming the file (detail.config_file,
-- detail.channel, detail.field) or the store's own kind ("store", "io")
-- with a message naming its path, as the CLI prints them.
local channels = require "alipay.messaging.channels"
local errors = require "alipay.errors"
local fs = require "alipay.util.fs"
local store = require "alipay.store"
local templates = require "alipay.messaging.templates"
local users = require "alipay.messaging.users"

local M = {}

M.DEFAULT_CONFIG = "alipay.json"
M.DEFAULT_STORE = "alipay.db"
M.PARTS = { "channels", "store", "registry", "users" }
local IS_PART = { channels = true, store = true, registry = true, users = true }

-- The channel file to read and why: config (a path or a table) when given,
-- else $ALIPAY_CONFIG (an empty value counts as unset), else ./alipay.json.
function M.config_path(config, getenv)
  if type(config) == "table" then return config, "table" end
  if config ~= nil then return config, "option" end
  local env = (getenv or os.getenv)("ALIPAY_CONFIG")
  if env and env ~= "" then return env, "ALIPAY_CONFIG" end
  return "./" .. M.DEFAULT_CONFIG, "default"
end

local Workspace = {}

-- The four parts. Each builder returns the part | nil, err, detail.
local build = {}

function build.channels(ws)
  local path, source = ws.config, ws.config_source
  local set, err, detail = channels.load(path, { base_dir = ws.opts.base_dir, getenv = ws.opts.getenv,
    transport = ws.opts.transport })
  if set then return set end
  local msg = tostring(detail and detail.msg or err)
  local file = source ~= "table" and path or nil
  -- Name the file once: some of channels.load's messages already do.
  if file and not msg:find(file, 1, true) then msg = file .. ": " .. msg end
  if source == "default" and ws.opts.missing_hint and not fs.exists(file) then
    msg = msg .. " (" .. ws.opts.missing_hint .. ")"
  end
  return errors.fail("config", { channel = detail and detail.channel, field = detail and detail.field,
    config_file = file, retryable = false, msg = msg })
end

function build.store(ws)
  local path, err, detail = ws:store_path()
  if not path then return nil, err, detail end
  local st, serr, sdetail = store.open { path = path, readonly = ws.opts.readonly or nil }
  if not st then
    -- store.display: a URL's password is never in a message.
    return errors.fail(sdetail and sdetail.kind or "store", ("store %s: %s"):format(store.display(path),
      tostring(serr)))
  end
  return st
end

function build.registry(ws)
  local st, err, detail = ws:get("store")
  if not st then return nil, err, detail end
  return templates.new(st)
end

function build.users(ws)
  local set, err, detail = ws:get("channels")
  if not set then return nil, err, detail end
  local st
  st, err, detail = ws:get("store")
  if not st then return nil, err, detail end
  return users.new(st, set:channels_info())
end

function Workspace:get(name)
  if not IS_PART[name] then error("workspace:get: unknown part " .. tostring(name), 2) end
  if self.closed then return errors.fail("state", ("workspace: %s: the workspace is closed"):format(name)) end
  local slot = self.slots[name]
  if not slot then
    local value, err, detail = build[name](self)
    slot = { value = value, err = err, detail = detail }
    self.slots[name] = slot
    if value ~= nil then rawset(self, name, value) end
  end
  if slot.value == nil then return nil, slot.err, slot.detail end
  return slot.value
end

-- The override, else the file's "store" (which needs the file), else the default.
function Workspace:store_path()
  if self.opts.store then return self.opts.store end
  local set, err, detail = self:get("channels")
  if not set then return nil, err, detail end
  return set.store_path or self.opts.default_store or ("./" .. M.DEFAULT_STORE)
end

function Workspace:campaign_ctx(extra)
  local ctx = {}
  for _, name in ipairs(M.PARTS) do
    local part, err, detail = self:get(name)
    if not part then return nil, err, detail end
    ctx[name] = part
  end
  for k, v in pairs(extra or {}) do
    if ctx[k] == nil then ctx[k] = v end
  end
  return ctx
end

function Workspace:close()
  if self.closed then return true end
  self.closed = true
  -- The store first: nothing may still be writing when the clients go.
  for _, spec in ipairs { { "store", "close" }, { "channels", "close" } } do
    local slot = self.slots[spec[1]]
    if slot and slot.value then pcall(slot.value[spec[2]], slot.value) end
  end
  for _, name in ipairs(M.PARTS) do rawset(self, name, nil) end
  return true
end

local meta = {
  __name = "alipay.workspace",
  __close = function(self) self:close() end,
  __index = function(self, key)
    local method = Workspace[key]
    if method then return method end
    if IS_PART[key] then return (self:get(key)) end
    return nil
  end,
}

function M.open(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("workspace.open: expected a table of options", 2) end
  local ct = type(opts.config)
  if opts.config ~= nil and ct ~= "string" and ct ~= "table" then
    error("workspace.open: config must be a path or a table", 2)
  end
  for _, k in ipairs { "store", "default_store", "base_dir", "missing_hint" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then error("workspace.open: " .. k .. " must be a string", 2) end
  end
  local config, source = M.config_path(opts.config, opts.getenv)
  local ws = setmetatable({ opts = opts, config = config, config_source = source, slots = {} }, meta)
  if opts.lazy then return ws end
  for _, name in ipairs(M.PARTS) do
    local part, err, detail = ws:get(name)
    if not part then
      ws:close()
      return nil, err, detail
    end
  end
  return ws
end

return M
