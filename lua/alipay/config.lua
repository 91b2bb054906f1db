-- Validation of alipay.new's configuration, all of it up front: a client
-- that was created can sign, verify and reach its gateway. Errors name the
-- field and never echo its value (it may be a key).
local core = require "alipay.core"
local errors = require "alipay.errors"
local fs = require "alipay.util.fs"
local keyfiles = require "alipay.keyfiles"
local runtime = require "alipay.runtime"
local contract = require "alipay.transport.contract"

local config = {}

config.ENDPOINTS = {
  production = { gateway = "https://openapi.alipay.com/gateway.do",
                 base_url = "https://openapi.alipay.com" },
  sandbox = { gateway = "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
              base_url = "https://openapi-sandbox.dl.alipaydev.com" },
}

local DEFAULTS = {
  sign_type = "RSA2",
  timeout_ms = 15000,
  connect_timeout_ms = 5000,
  max_response_bytes = 4 * 1024 * 1024,
}

-- Every accepted field and its type; anything else is a typo worth an error.
local FIELDS = {
  app_id = "string", env = "string", gateway = "string", base_url = "string",
  sign_type = "string", encrypt_key = "string", encrypt_key_file = "string",
  app_auth_token = "string", timeout_ms = "number", connect_timeout_ms = "number",
  max_response_bytes = "number", transport = "any", ca_file = "string", proxy = "string",
  user_agent = "string", insecure_skip_tls_verify = "boolean",
  private_key = "string", private_key_file = "string",
  alipay_public_key = "string", alipay_public_key_file = "string",
  app_cert = "string", app_cert_file = "string",
  alipay_cert = "string", alipay_cert_file = "string",
  alipay_root_cert = "string", alipay_root_cert_file = "string",
}

local fail = errors.config

local function read_file(field, path)
  local data, err = fs.read(path)
  -- err names the path and the OS reason; a path is not a secret
  if not data then return nil, fail(field, "cannot read the file (" .. tostring(err) .. ")") end
  return data
end

-- The text of a key or certificate given inline (`name`) or as a file
-- (`name_file`). Certificates may also be given as a path in `name`.
local function material(cfg, name, allow_path)
  local text, file = cfg[name], cfg[name .. "_file"]
  if text and file then return nil, fail(name, "give " .. name .. " or " .. name .. "_file, not both") end
  if file then return read_file(name .. "_file", file) end
  if text and allow_path and not text:find("-----BEGIN", 1, true) and not text:find("\n", 1, true)
     and fs.exists(text) then
    return read_file(name, text)
  end
  return text
end

-- Strips the core's "private_key: " prefix and names our field instead.
local function key_error(field, err)
  return fail(field, (tostring(err):gsub("^%w+_key: ", "")))
end

local function integer_in(cfg, field, lo, hi)
  local v = cfg[field]
  if v ~= math.floor(v) or v < lo or v > hi then
    return fail(field, ("must be a whole number between %d and %d"):format(lo, hi))
  end
end

local function check_types(cfg)
  if type(cfg) ~= "table" then return fail("config", "must be a table") end
  for k, v in pairs(cfg) do
    local want = FIELDS[k]
    if not want then return fail(tostring(k), "unknown configuration field") end
    if want ~= "any" and type(v) ~= want then
      return fail(k, ("must be a %s, got a %s"):format(want, type(v)))
    end
  end
end

local function check_endpoints(cfg, out)
  if cfg.env and cfg.gateway then return fail("env", "give env or gateway, not both") end
  if cfg.gateway then
    local origin = cfg.gateway:match("^(https?://[^/?#]+)/[^?#]*$")
    if not origin then return fail("gateway", "must be an http(s) URL with a path, e.g. .../gateway.do") end
    out.gateway = cfg.gateway
    out.base_url = cfg.base_url or origin
  else
    local ep = config.ENDPOINTS[cfg.env or "production"]
    if not ep then return fail("env", 'must be "production" or "sandbox"') end
    out.gateway, out.base_url = ep.gateway, cfg.base_url or ep.base_url
  end
  if not out.base_url:match("^https?://[^/?#]+$") then
    return fail("base_url", "must be an http(s) origin without a path")
  end
end

local function check_app_key(cfg, out)
  local text, err = material(cfg, "private_key")
  if err then return err end
  if not text then return fail("private_key", "missing (give private_key or private_key_file)") end
  local key, kerr = core.private_key(text)
  if not key then return key_error(cfg.private_key_file and "private_key_file" or "private_key", kerr) end
  out.private_key = key
end

local CERT_FIELDS = { "app_cert", "alipay_cert", "alipay_root_cert" }

local function check_cert_mode(cfg, out)
  local texts = {}
  for _, name in ipairs(CERT_FIELDS) do
    local text, err = material(cfg, name, true)
    if err then return err end
    texts[name] = text
  end
  if not (texts.app_cert or texts.alipay_cert or texts.alipay_root_cert) then return end
  for _, name in ipairs(CERT_FIELDS) do
    if not texts[name] then
      return fail(name, "missing: certificate mode needs app_cert, alipay_cert and alipay_root_cert")
    end
  end
  if cfg.alipay_public_key or cfg.alipay_public_key_file then
    return fail("alipay_public_key", "not used in certificate mode (the key comes from alipay_cert)")
  end
  local sn, err = core.cert_sn(texts.app_cert)
  if not sn then return fail("app_cert", (tostring(err):gsub("^cert_sn: ", ""))) end
  out.app_cert_sn = sn
  local app_pub = assert(core.public_key(texts.app_cert))
  if app_pub:public_base64() ~= out.private_key:public_base64() then
    return fail("app_cert", "its public key does not match private_key")
  end
  sn, err = core.cert_sn(texts.alipay_cert)
  if not sn then return fail("alipay_cert", (tostring(err):gsub("^cert_sn: ", ""))) end
  out.alipay_cert_sn = sn
  local key, kerr = core.public_key(texts.alipay_cert)
  if not key then return key_error("alipay_cert", kerr) end
  out.alipay_public_key = key
  sn, err = core.root_cert_sn(texts.alipay_root_cert)
  if not sn then return fail("alipay_root_cert", (tostring(err):gsub("^root_cert_sn: ", ""))) end
  out.alipay_root_cert_sn = sn
  -- The bundle itself: a rotated Alipay certificate must chain to it
  -- (alipay.alipaycert).
  out.alipay_root_cert = texts.alipay_root_cert
  out.cert_mode = true
  return nil
end

local function check_alipay_key(cfg, out)
  if out.cert_mode then return end
  local text, err = material(cfg, "alipay_public_key")
  if err then return err end
  if not text then
    return fail("alipay_public_key",
                "missing (give alipay_public_key, or the three certificates of certificate mode)")
  end
  local key, kerr = core.public_key(text)
  if not key then
    return key_error(cfg.alipay_public_key_file and "alipay_public_key_file" or "alipay_public_key", kerr)
  end
  out.alipay_public_key = key
end

-- RSA2 keys under keyfiles.MIN_RSA2_BITS are refused here, at alipay.new,
-- by the rule `alipay channel add` and `alipay doctor` apply to the files
-- (alipay.keyfiles): a short key is a mistake to report before any call is
-- signed with it. The field names the key: the app private key, Alipay's
-- public key or, in certificate mode, alipay_cert (app_cert holds the app
-- key, checked as private_key).
local function check_key_bits(cfg, out)
  if out.sign_type ~= "RSA2" then return end
  local min = keyfiles.MIN_RSA2_BITS
  local alipay_field = out.cert_mode and (cfg.alipay_cert_file and "alipay_cert_file" or "alipay_cert")
    or (cfg.alipay_public_key_file and "alipay_public_key_file" or "alipay_public_key")
  for _, k in ipairs {
    { cfg.private_key_file and "private_key_file" or "private_key", out.private_key, "the app private key" },
    { alipay_field, out.alipay_public_key, "Alipay's public key" },
  } do
    local bits = k[2]:bits()
    if bits < min then
      return fail(k[1], ("%s is a %d-bit RSA key: RSA2 needs %d bits or more"):format(k[3], bits, min))
    end
  end
end

local function check_encrypt_key(cfg, out)
  local key, err = material(cfg, "encrypt_key")
  if err then return err end
  if not key then return end
  key = key:gsub("%s+$", "")
  local _, aerr = core.aes_encrypt(key, "")
  if aerr then
    local field = cfg.encrypt_key_file and "encrypt_key_file" or "encrypt_key"
    return fail(field, (tostring(aerr):gsub("^aes key: ", "")))
  end
  out.encrypt_key = key
end

-- A table is a custom transport: it must keep the contract (request, and
-- submit/wait/pending all or none: alipay.transport.contract), checked
-- here rather than at the first call, which would fail far from the cause.
local function check_transport(cfg, out)
  local t = cfg.transport
  if t == nil or t == "auto" or t == "curl" or t == "ngx" then out.transport = t return end
  if type(t) ~= "table" then
    return fail("transport", 'must be "auto", "curl", "ngx" or a table with a request function')
  end
  local tier, why = contract.check(t)
  if not tier then return fail("transport", why) end
  out.transport = t
end

-- insecure_skip_tls_verify = true turns off TLS certificate and host name
-- verification (curl: CURLOPT_SSL_VERIFYPEER/HOST = 0; cosockets:
-- sslhandshake(..., false)). For a test gateway with a throw-away
-- certificate only: never a default, refused with the production gateway,
-- and config.warn is called every time a client is created with it.
config.INSECURE_WARNING = "alipay: WARNING: insecure_skip_tls_verify is set (app_id %s, gateway %s): " ..
  "the gateway's TLS certificate is NOT verified, anyone on the network path can read and forge " ..
  "this app's Alipay traffic; never use it in production"

-- config.warn(msg): where the warning goes; replace it to route it to your
-- logger. Default: alipay.runtime's sink, ngx.log(ngx.WARN) inside nginx,
-- else the message alone on stderr.
function config.warn(msg)
  runtime.log("warn", msg, true)
end

local function check_insecure(cfg, out)
  if not cfg.insecure_skip_tls_verify then return end
  local prod = config.ENDPOINTS.production
  if out.gateway == prod.gateway or out.base_url == prod.base_url then
    return fail("insecure_skip_tls_verify", "refused with the production gateway")
  end
  out.insecure_skip_tls_verify = true
  config.warn(config.INSECURE_WARNING:format(out.app_id, out.gateway))
end

-- config.validate(cfg) -> normalised config | nil, err
function config.validate(cfg)
  local err = check_types(cfg)
  if err then return errors.failure(err) end
  if not cfg.app_id or not cfg.app_id:match("^%d+$") or #cfg.app_id > 32 then
    return errors.failure(fail("app_id", "must be the app's numeric id, e.g. 2021000122671080"))
  end
  local out = {
    app_id = cfg.app_id,
    sign_type = cfg.sign_type or DEFAULTS.sign_type,
    timeout_ms = cfg.timeout_ms or DEFAULTS.timeout_ms,
    connect_timeout_ms = cfg.connect_timeout_ms or DEFAULTS.connect_timeout_ms,
    max_response_bytes = cfg.max_response_bytes or DEFAULTS.max_response_bytes,
    app_auth_token = cfg.app_auth_token,
    ca_file = cfg.ca_file, proxy = cfg.proxy, user_agent = cfg.user_agent,
    cert_mode = false,
  }
  if out.sign_type ~= "RSA2" and out.sign_type ~= "RSA" then
    return errors.failure(fail("sign_type", 'must be "RSA2" or "RSA"'))
  end
  if cfg.timeout_ms then err = integer_in(cfg, "timeout_ms", 1, 600000) end
  if not err and cfg.connect_timeout_ms then err = integer_in(cfg, "connect_timeout_ms", 1, 600000) end
  if not err and cfg.max_response_bytes then
    err = integer_in(cfg, "max_response_bytes", 1024, 1024 * 1024 * 1024)
  end
  if not err and cfg.ca_file and not fs.exists(cfg.ca_file) then
    err = fail("ca_file", "cannot read the file")
  end
  err = err or check_endpoints(cfg, out) or check_app_key(cfg, out) or check_cert_mode(cfg, out)
        or check_alipay_key(cfg, out) or check_key_bits(cfg, out) or check_encrypt_key(cfg, out)
        or check_transport(cfg, out)
        or check_insecure(cfg, out)
  if err then return errors.failure(err) end
  return out
end

return config
