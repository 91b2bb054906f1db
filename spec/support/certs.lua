-- Throw-away certificates of certificate mode for the specs, made with the
-- openssl CLI: a root bundle, Alipay leaves signed by it (the configured
-- one and rotated ones), a leaf signed by a root outside the bundle, and an
-- app certificate for the fixture app key (spec/fixtures/keys).
local helpers = require "helpers"
local core = require "alipay.core"

local M = {}

local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function openssl(args)
  local ok, out = helpers.run("openssl " .. args)
  assert(ok, "openssl " .. args .. ":\n" .. out)
end

local serial = 0x5a00
local function next_serial()
  serial = serial + 1
  return ("0x%x"):format(serial)
end

local function make_root(dir, name)
  local key, cert = dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".pem"
  openssl(("req -x509 -newkey rsa:2048 -nodes -sha256 -keyout %s -out %s -days 3650 -set_serial %s"
    .. " -subj %s -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'")
    :format(sh(key), sh(cert), next_serial(), sh("/C=CN/O=spec/CN=" .. name)))
  return { key = key, cert = cert }
end

-- A leaf for key_file (made when absent) signed by root. -> pem text, key path
local function make_leaf(dir, name, root, key_file)
  key_file = key_file or (dir .. "/" .. name .. ".key")
  if not io.open(key_file) then openssl("genrsa -out " .. sh(key_file) .. " 2048") end
  local csr, cert = dir .. "/" .. name .. ".csr", dir .. "/" .. name .. ".pem"
  openssl(("req -new -key %s -out %s -subj %s"):format(sh(key_file), sh(csr), sh("/C=CN/O=spec/CN=" .. name)))
  openssl(("x509 -req -sha256 -in %s -CA %s -CAkey %s -set_serial %s -days 365 -out %s")
    :format(sh(csr), sh(root.cert), sh(root.key), next_serial(), sh(cert)))
  return helpers.read(cert), key_file
end

-- M.make() -> {root = bundle pem, app_cert = pem, alipay = {pem, signer, sn},
-- rotated = {...}, untrusted = {...}}; each leaf has its signing key.
function M.make()
  local dir = helpers.tmpdir()
  local root, other = make_root(dir, "root"), make_root(dir, "other_root")
  local out = { root = helpers.read(root.cert), dir = dir }
  out.app_cert = make_leaf(dir, "app", root, helpers.fixtures .. "/keys/app_private_pkcs1.pem")
  for _, leaf in ipairs { { "alipay", root }, { "rotated", root }, { "rotated2", root }, { "untrusted", other } } do
    local pem, key_file = make_leaf(dir, leaf[1], leaf[2])
    out[leaf[1]] = { pem = pem, signer = assert(core.private_key(helpers.read(key_file))),
                     sn = assert(core.cert_sn(pem)) }
  end
  return out
end

return M
