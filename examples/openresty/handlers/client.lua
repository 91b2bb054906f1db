-- The Alipay client of this nginx worker, and the example's own settings.
--
-- Settings: a JSON file, $ALIPAY_CONFIG or <prefix>/run/alipay.json, with
-- alipay.new's fields (keys and certificates as *_file paths or inline) and
-- an "example" object for the handlers:
--   { "app_id": "2021...", "private_key_file": "/etc/shop/app_private_key.pem",
--     "alipay_public_key_file": "/etc/shop/alipay_public_key.pem",
--     "gateway": "https://openapi.alipay.com/gateway.do", "timeout_ms": 5000,
--     "example": { "shipped_template_id": "<msg_template_id>",
--                  "order_url": "https://shop.example.com/orders/" } }
--
-- load() runs in init_by_lua, in the master: it reads the files (which may be
-- readable by root only) and validates everything, so a bad key stops nginx
-- from starting instead of failing the first request. init() runs in
-- init_worker_by_lua and builds the worker's client from memory.
local cjson = require "cjson.safe"
local alipay = require "alipay"
local auto = require "alipay.transport.auto"

local M = {}

local KEY_FILES = { "private_key", "alipay_public_key", "app_cert", "alipay_cert",
  "alipay_root_cert", "encrypt_key" }

local loaded  -- {config = alipay.new's fields, example = {...}}, from the master
local client  -- this worker's client

local function read_file(path, what)
  local f, err = io.open(path, "rb")
  if not f then error(what .. ": cannot read " .. tostring(err), 0) end
  local data = f:read("*a")
  f:close()
  return data
end

local function config_path()
  local path = os.getenv("ALIPAY_CONFIG")
  if path and path ~= "" then return path end
  return ngx.config.prefix() .. "run/alipay.json"
end

-- The client configuration with every *_file read into its inline field.
local function inline_files(settings)
  local cfg = {}
  for k, v in pairs(settings) do
    if k ~= "example" then cfg[k] = v end
  end
  for _, name in ipairs(KEY_FILES) do
    local path = cfg[name .. "_file"]
    if path then
      cfg[name] = read_file(path, name .. "_file")
      cfg[name .. "_file"] = nil
    end
  end
  return cfg
end

-- The transport is chosen per request (alipay.transport.auto): cosockets
-- in handlers and timers, curl only where nginx allows no cosockets.
local function new_client(cfg)
  local settings = {}
  for k, v in pairs(cfg) do settings[k] = v end
  settings.transport = settings.transport or auto.new(cfg)
  return alipay.new(settings)
end

function M.load(path)
  path = path or config_path()
  local settings, err = cjson.decode(read_file(path, "ALIPAY_CONFIG " .. path))
  if type(settings) ~= "table" then error(path .. ": not a JSON object (" .. tostring(err) .. ")", 0) end
  local cfg = inline_files(settings)
  local _, verr = new_client(cfg) -- validates keys and fields now, in the master
  if verr then error(path .. ": " .. tostring(verr), 0) end
  loaded = { config = cfg, example = settings.example or {} }
end

function M.init()
  local err
  client, err = new_client(loaded.config)
  if not client then ngx.log(ngx.ERR, "alipay: ", tostring(err)) end
end

-- The worker's client; nil until init() ran.
function M.client()
  return client
end

-- The "example" object of the settings.
function M.example()
  return loaded and loaded.example or {}
end

-- Ends the request with 503 when the client is missing (a broken config).
function M.unavailable()
  ngx.status = 503
  ngx.header["Content-Type"] = "text/plain"
  ngx.print("the Alipay client is not configured; see the error log\n")
  return ngx.exit(503)
end

return M
