-- Reading and checking one file of a channel's key material: the app
-- private key, a public key, a certificate or Alipay's root bundle. Shared
-- by `alipay channel add` (which refuses a bad file before writing the
-- channel) and `alipay doctor` (which reports on every file).
--
--   local keyfiles = require "alipay.keyfiles"
--   local info, err, detail = keyfiles.check(path, what, opts)
--     what  "private_key" | "public_key" | "app_cert" | "alipay_cert" | "root_cert"
--     opts  name = how to call the file in messages (an option, "--private-key-file",
--                  or a field, "private_key_file"; default `what`),
--           text = the material itself instead of reading path (a key from an
--                  environment variable), sign_type = "RSA2" (default) | "RSA"
--     info  { path=, what=, key= (alipay.private_key/public_key), bits=, format=,
--             sn= (app_cert/alipay_cert: cert SN; root_cert: the root SN),
--             summary = "RSA 2048-bit, PKCS#1" }
--     err   one line naming the file (by opts.name and path) and what is wrong;
--           detail.kind is "io" (cannot read) or "input" (not the right material),
--           detail.field = opts.name, detail.reason = "missing" | "unreadable" |
--           "parse" | "bits"
-- Messages never contain the material (it may be a private key).
local core = require "alipay.core"
local errors = require "alipay.errors"
local fs = require "alipay.util.fs"

local M = {}

-- RSA2 (SHA256withRSA) keys must be at least this long: Alipay's key tool
-- makes 2048-bit keys, and shorter RSA keys are no longer considered safe.
M.MIN_RSA2_BITS = 2048

local WHAT = {
  private_key = { label = "a private key" },
  public_key = { label = "a public key" },
  app_cert = { label = "a certificate", cert = true },
  alipay_cert = { label = "a certificate", cert = true },
  root_cert = { label = "a root certificate bundle", root = true },
}
M.WHAT = WHAT

-- The core's messages start with the function's name ("private_key: ...").
local function core_message(err)
  return (tostring(err):gsub("^[%w_]+: ", ""))
end

local function failure(kind, name, path, reason, problem)
  local where = path and (name .. " " .. path) or name
  return errors.fail(kind, { field = name, path = path, reason = reason, msg = where .. ": " .. problem })
end

local function read(path, name)
  local text, err = fs.read(path)
  if not text then
    local missing = tostring(err):find("No such file", 1, true) ~= nil
    return failure("io", name, path, missing and "missing" or "unreadable",
      (tostring(err):gsub("^.-: ", "")))
  end
  return text
end

function M.check(path, what, opts)
  opts = opts or {}
  local spec = WHAT[what] or error("keyfiles.check: unknown material " .. tostring(what), 2)
  local name = opts.name or what
  local text = opts.text
  if text == nil then
    if type(path) ~= "string" or path == "" then error("keyfiles.check: path must be a non-empty string", 2) end
    local err, detail
    text, err, detail = read(path, name)
    if not text then return nil, err, detail end
  end
  local key, kerr
  local info = { path = path, what = what }
  if what == "private_key" then
    key, kerr = core.private_key(text)
  elseif spec.root then
    -- The bundle holds several roots, some not RSA; only its SN matters.
    local sn, serr = core.root_cert_sn(text)
    if not sn then return failure("input", name, path, "parse", "not " .. spec.label .. ": " .. core_message(serr)) end
    info.sn, info.summary = sn, "root SN " .. sn
    return info
  else
    key, kerr = core.public_key(text)
    if key and spec.cert and key:format() ~= "X.509 certificate" then
      key, kerr = nil, "this is a public key, not a certificate"
    end
  end
  if not key then
    return failure("input", name, path, "parse", "not " .. spec.label .. ": " .. core_message(kerr))
  end
  info.key, info.bits, info.format = key, key:bits(), key:format()
  info.summary = ("RSA %d-bit, %s"):format(info.bits, info.format)
  if (opts.sign_type or "RSA2") == "RSA2" and info.bits < M.MIN_RSA2_BITS then
    return failure("input", name, path, "bits", ("a %d-bit key: RSA2 needs %d bits or more")
      :format(info.bits, M.MIN_RSA2_BITS))
  end
  if spec.cert then
    local sn, serr = core.cert_sn(text)
    if not sn then return failure("input", name, path, "parse", core_message(serr)) end
    info.sn = sn
    info.summary = info.summary .. ", SN " .. sn
  end
  return info
end

-- Whether a private key and a public key (or certificate) are a pair.
function M.pair(private_info, public_info)
  return private_info.key:public_base64() == public_info.key:public_base64()
end

return M
