-- The Alipay certificates a certificate-mode client verifies answers with,
-- by SN, and the adoption of a rotated one (docs/protocol.md §4.4).
--
-- An answer names the certificate it was signed under (v2 alipay_cert_sn,
-- v3 the alipay-sn header). An SN that is neither the configured
-- alipay_cert's nor one adopted before is downloaded once with
-- alipay.open.app.alipaycert.download, as the Java and .NET SDKs do, and
-- adopted only if the certificate
--   * chains to the configured root bundle (alipay_root_cert) and every
--     certificate of its chain is valid now (core.cert_verify), and
--   * has the SN the answer named, computed here with core.cert_sn (the
--     download's own word for it is not taken).
-- Adopted keys are kept by SN, a few of them (MAX_ADOPTED): Alipay rotates
-- rarely, and a bound keeps answers naming ever new SNs from growing it.
local cjson = require("cjson").new()
local core = require "alipay.core"
local errors = require "alipay.errors"

local M = {}

M.DOWNLOAD = "alipay.open.app.alipaycert.download"
M.MAX_ADOPTED = 4

local Keys = {}
Keys.__index = Keys

-- The keys of one client: the configured alipay_cert's, never evicted, and
-- the adopted ones, oldest first.
function M.new(configured_sn, configured_key)
  return setmetatable({ configured_sn = configured_sn, configured_key = configured_key,
                        adopted = {}, order = {} }, Keys)
end

-- keys:get(sn) -> the public key of a known SN, or nil.
function Keys:get(sn)
  if sn == nil or sn == self.configured_sn then return self.configured_key end
  return self.adopted[sn]
end

function Keys:put(sn, key)
  if sn == self.configured_sn or self.adopted[sn] then return end
  if #self.order >= M.MAX_ADOPTED then
    local oldest = table.remove(self.order, 1)
    self.adopted[oldest]:close()
    self.adopted[oldest] = nil
  end
  self.adopted[sn] = key
  self.order[#self.order + 1] = sn
end

-- How many SNs the client verifies with (the configured one included).
function Keys:count()
  return 1 + #self.order
end

local function refused(method, sn, why)
  return errors.fail("signature", { method = method,
    msg = "the answer is signed under alipay_cert_sn " .. sn .. ", which is not the configured "
      .. "alipay_cert's, and its certificate cannot be trusted: " .. why })
end

-- M.check(pem, sn, root_pem[, now]) -> public_key | nil, why: the checks of
-- adoption on the certificate text the download returned.
function M.check(pem, sn, root_pem, now)
  local ok, err = core.cert_verify(pem, root_pem, now)
  if not ok then
    return nil, "it does not chain to alipay_root_cert or is not valid now ("
      .. tostring(err):gsub("^cert_verify: ", "") .. ")"
  end
  local got = core.cert_sn(pem)
  if got ~= sn then
    return nil, "the downloaded certificate's SN is " .. tostring(got) .. ", not " .. sn
  end
  local key, kerr = core.public_key(pem)
  if not key then return nil, "its public key cannot be read (" .. tostring(kerr) .. ")" end
  return key
end

-- M.key_for(client, method, sn) -> public_key | nil, err, detail: the key
-- that verifies an answer signed under sn, downloading and checking the
-- certificate the first time an SN is seen. method names the call whose
-- answer is being verified (for its error).
function M.key_for(client, method, sn)
  local keys = client.alipay_keys
  local key = keys:get(sn)
  if key then return key end
  -- An SN is an MD5 in hex (docs/protocol.md §4.1): anything else is not
  -- worth a download, and is not quoted back.
  if type(sn) ~= "string" or not sn:match("^%x+$") or #sn > 64 then
    return errors.fail("signature", { method = method,
      msg = "the answer names an alipay_cert_sn that is not a certificate SN" })
  end
  -- The download's own answer never comes here (client.lua reads it with
  -- download() below): rotation does not recurse.
  local pem, why = M.download(client, sn)
  if not pem then return refused(method, sn, why) end
  key, why = M.check(pem, sn, client.config.alipay_root_cert)
  if not key then return refused(method, sn, why) end
  keys:put(sn, key)
  return key
end

-- M.download(client, sn) -> pem | nil, why. The download's answer is not
-- verified, as in the SDKs: it is signed under the new certificate, which
-- cannot be trusted before it is checked, and once it is checked the
-- signature adds nothing. What establishes trust is the chain to the root
-- bundle the app configured, the validity and the SN: a forged answer can
-- at worst hand over a genuine Alipay certificate, or be refused.
function M.download(client, sn)
  -- Not encrypted, whatever encrypt_key says: the SDKs' download request
  -- is not either, and there is nothing secret in it.
  local req = client:prepare_v2(M.DOWNLOAD, cjson.encode { alipay_cert_sn = sn }, { encrypt = false })
  local res, err = client:request(req)
  if not res then return nil, "the download failed (" .. tostring(err) .. ")" end
  if res.status ~= 200 then return nil, "the download answered HTTP " .. tostring(res.status) end
  local node = core.extract(res.body, M.DOWNLOAD)
  local ok, answer = pcall(cjson.decode, node and node.content or "")
  if not ok or type(answer) ~= "table" then return nil, "the download's answer cannot be read" end
  if answer.code ~= "10000" then
    return nil, ("the download was refused (%s %s)"):format(tostring(answer.code),
      tostring(answer.sub_code or answer.msg))
  end
  if type(answer.alipay_cert_content) ~= "string" then
    return nil, "the download's answer has no alipay_cert_content"
  end
  local pem = core.b64decode(answer.alipay_cert_content)
  if not pem then return nil, "alipay_cert_content is not base64" end
  return pem
end

return M
