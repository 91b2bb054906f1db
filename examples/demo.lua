-- make demo (issue stage: the core). Signs a request and a v3 call with
-- the fixture app key, verifies Alipay responses and notifications, and
-- computes certificate SNs and AES, printing what each step did. Later
-- stages run the sandbox gateway and a real campaign here.
package.cpath = (os.getenv("ALIPAY_BUILD") or "build/lua5.4") .. "/?.so;" .. package.cpath
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local alipay = require "alipay"
local cjson = require "cjson"
local core = alipay.core

local FIXTURES = "spec/fixtures/"

local function read(name)
  local f = assert(io.open(FIXTURES .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function step(title, ok, detail)
  print(("[%s] %-58s %s"):format(ok and " ok " or "FAIL", title, detail or ""))
  if not ok then os.exit(1) end
end

local V = cjson.decode(read("vectors.json"))
print(("lua-alipay %s demo: the core against the protocol vectors"):format(alipay.VERSION))

local app_key = assert(core.private_key(read("keys/app_private_pkcs1.pem")))
local app_pub = assert(core.public_key(read("keys/app_public.pem")))
step("app private key parsed once", true, tostring(app_key))

for _, v in ipairs(V.request_sign) do
  local content = core.sign_content(v.params)
  local key = assert(core.private_key(read("keys/" .. v.key)))
  local sig = key:sign(content, v.alg)
  step("v2 request signed: " .. v.name, content == v.content and sig == v.sign,
       ("%d-char signature"):format(#sig))
end

for _, v in ipairs(V.v3_sign) do
  step("v3 request signed: " .. v.name, app_key:sign(v.signed_text) == v.sign)
end

for _, v in ipairs(V.response_verify) do
  local node, err = core.extract(v.body, v.method)
  local key = assert(core.public_key(read("keys/" .. v.alipay_public_key)))
  local ok = node and key:verify(node.content, node.sign) or false
  step("response " .. (v.valid and "verified: " or "rejected: ") .. v.name,
       node ~= nil and ok == v.valid, node and node.node or err)
end

for _, v in ipairs(V.notify) do
  local key = assert(core.public_key(read("keys/" .. v.alipay_public_key)))
  local content = core.sign_content(v.params, v.rule == "V1" and { exclude = { "sign_type" } } or nil)
  local ok = key:verify(content, v.params.sign, v.params.sign_type)
  step(("notification %s: %s"):format(v.rule, v.name), ok == v.valid,
       ok and "verified" or "refused")
end

for _, v in ipairs(V.cert_sn) do
  if v.sn then
    local sn = core.cert_sn(read("keys/" .. v.file))
    step("certificate SN of " .. v.file, sn == v.sn, sn)
  else
    local sn = core.root_cert_sn(read("keys/" .. v.file))
    step("root certificate SN of " .. v.file, sn == v.root_sn, sn)
  end
end

for _, v in ipairs(V.aes) do
  local cipher = core.aes_encrypt(v.key, v.plain)
  step("AES round trip of " .. #v.plain .. " bytes",
       cipher == v.cipher and core.aes_decrypt(v.key, cipher) == v.plain)
end

local inner = V.gateway_verify_reply.response_inner
step("app gateway check reply signed", app_key:sign(inner) == V.gateway_verify_reply.sign)
step("signatures verify with the app public key", app_pub:verify(inner, app_key:sign(inner)))
print("demo finished: every step matched the vectors")
