-- What a handler is given once a message is verified
-- (docs/protocol.md §3.3): only what the signature covers, in UTF-8.
--   * An empty value (`refund_fee=`, a bare `&out_biz_no`) is left out of
--     the string to sign by Alipay's rule, so nothing vouches for it; it is
--     dropped rather than handed over as "" (which is true in Lua).
--   * With a GBK-family `charset` the values are converted to UTF-8 after
--     verification, which ran over the received bytes. Names are ASCII in
--     every Alipay message and are kept as received.
local core = require "alipay.core"
local refusal = require "alipay.inbound.refusal"

local values = {}

-- Charsets of the GBK family, all decoded as GB18030: it is a superset of
-- GBK and GB2312 as Alipay uses them (a "GB2312" form often carries GBK
-- characters, which a strict GB2312 decoder would refuse).
local GB_CHARSETS = { gbk = "GB18030", gb2312 = "GB18030", gb18030 = "GB18030" }

-- values.signed_only(raw) -> raw without its empty values (a new table
-- only when one is dropped, so that `raw` stays what was received).
function values.signed_only(raw)
  local out, dropped = {}, false
  for k, v in pairs(raw) do
    if v == "" then dropped = true else out[k] = v end
  end
  return dropped and out or raw
end

-- values.utf8(params, charset) -> params in UTF-8 (the same table when the
-- charset is not of the GBK family) | nil, err, detail.
function values.utf8(params, charset)
  local converter = type(charset) == "string" and GB_CHARSETS[charset:lower()]
  if not converter then return params end
  local out = {}
  for k, v in pairs(params) do
    if v:find("[\128-\255]") then
      local text = core.iconv(converter, "UTF-8", v)
      if not text then
        return refusal.fail("malformed", "parameter " .. refusal.loggable(k) .. " is not valid " ..
                            refusal.loggable(charset), { verified = true })
      end
      v = text
    end
    out[k] = v
  end
  return out
end

-- values.of(raw) -> the parameters a handler sees | nil, err, detail.
function values.of(raw)
  return values.utf8(values.signed_only(raw), raw.charset)
end

return values
