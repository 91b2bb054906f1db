-- The sandbox gateway's certificate download (docs/protocol.md §4.4): the
-- Alipay certificate of an SN, for a client that met a rotated one.
local core = require "alipay.core"
local support = require "alipay.sandbox.apis.support"

local fail, req_string = support.fail, support.req_string

local function alipaycert_download(_, biz, ctx)
  local sn = req_string(biz, "alipay_cert_sn", "alipay_cert_sn")
  local pem = (ctx.certs or {})[sn]
  if not pem then fail("SANDBOX_ALIPAY_CERT_NOT_EXIST", "支付宝公钥证书不存在：" .. sn) end
  return { alipay_cert_content = core.b64encode(pem) }
end

return {
  -- No official code list of this method was found: its codes are the
  -- sandbox's own, SANDBOX_ prefixed so that nobody mistakes them for Alipay's.
  ["alipay.open.app.alipaycert.download"] = { handler = alipaycert_download,
    invalid_code = "SANDBOX_INVALID_ARGUMENT",
    path = "/v3/alipay/open/app/alipaycert/download", verbs = { GET = true, POST = true } },
}
