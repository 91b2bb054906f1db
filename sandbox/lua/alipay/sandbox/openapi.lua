-- The sandbox gateway's protocol logic: a local stand-in for
-- openapi.alipay.com that checks requests as Alipay does (docs/protocol.md §1, §2, §4-6),
-- runs the messaging handlers (alipay.sandbox.apis) against the seeded state
-- (state.lua) and signs its answers with its own "Alipay" key. Pure Lua 5.4
-- / LuaJIT 2.1 over alipay.core and cjson: the nginx glue reads requests and
-- writes the (status, headers, body) triples this module returns.
--
--   local gw = assert(gateway.new{app_id =, app_public_key = pem | app_cert = pem,
--     alipay_private_key = pem, alipay_cert =, alipay_root_cert =, encrypt_key =,
--     seed =, clock =})
--   gw:handle_v2{query =, body =, content_type =}               -> status, headers, body
--   gw:handle_v3{method =, path =, query =, headers =, body =}   -> status, headers, body
--   gw:fault_v2(req, "20000"|"40005"), gw:fault_v3(req, "20000"|"40005")
--   gw:handle_v2(req, {bad_sign = true}), gw:handle_v3(req, {bad_sign = true})
--   gw:method_of_v2(req), gw:deliveries(), gw:reset(), gw:state(), gw.alipay_public_key
--   gw:rotate_cert(alipay_private_key_pem, alipay_cert_pem) -> the new SN | nil, err
--     (certificate mode: later answers are signed with the new key under the
--     new SN; alipay.open.app.alipaycert.download serves every SN it has had)
--
-- v2 checks, in this order (the first failure answers):
--   1. query and body decode as forms, the body is a form       else error_response 40002
--                                                                    isv.invalid-parameter (unsigned)
--   2. method present, then known                               else error_response 40001/40002 (unsigned)
--   3. app_id present, then this app's                          else 40001 isv.missing-app-id /
--                                                                    40002 isv.invalid-app-id, UNSIGNED
--   4. no field both in the query and in the body               else 40002 isv.invalid-parameter
--   5. sign; sign_type, charset, timestamp, version present     else 40001 isv.missing-*
--   6. sign_type RSA2|RSA, charset utf-8, format json, timestamp within 10 min (UTC+8)
--                                                               else 40002 isv.invalid-*
--   7. certificate mode: app_cert_sn, alipay_root_cert_sn      else 40002 isv.invalid-app-cert-sn /
--      (any root SN when no alipay_root_cert is configured)          isv.invalid-alipay-root-cert-sn
--   8. the signature                                            else 40002 isv.invalid-signature
--   9. app_auth_token, when given, is one the seed grants       else 20001 aop.invalid-app-auth-token
--  10. encrypt_type AES: key configured, biz_content decrypts   else 40002 isv.invalid-encrypt-type /
--                                                                    40003 isv.missing-encrypt-key /
--                                                                    40003 isv.decryption-error-unknown
--  11. biz_content is a JSON object (absent = {})               else 40002 isv.invalid-parameter
--  12. the business handler                                     10000 Success or 40004 Business Failed
-- From step 3 on the answer is the method's node, signed (step 3 excepted)
-- with the request's sign_type once it is known to be valid (RSA2 before). Answers to a
-- request that passed step 10 with AES are encrypted; earlier errors are
-- plain, as on Alipay (a decryption failure cannot be answered encrypted).
--
-- v3 (docs/protocol.md §6) checks the route (404/405 invalid-method), the
-- Authorization header (401 missing-signature, 400 invalid-parameter, 400 missing-app-id /
-- invalid-app-id unsigned, 400 invalid-timestamp, cert SNs), the signature
-- (401 invalid-signature), the app auth token (401), encryption and the JSON
-- body (400), then runs the same handler: 200 with the business fields, or
-- 400 {"code": <sub_code>, "message": <sub_msg>}.
local core = require "alipay.core"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"
local apis = require "alipay.sandbox.apis"
local state_mod = require "alipay.sandbox.world"
local beijing_time = require "alipay.util.beijing_time"

local M = {}

local Gateway = {}
Gateway.__index = Gateway

local CLOCK_SKEW_S = 600 -- both APIs accept timestamps within 10 minutes
local JSON_TYPE = "application/json;charset=utf-8"

local CODE_MSG = {
  ["10000"] = "Success",
  ["20000"] = "Service Currently Unavailable",
  ["20001"] = "Insufficient Token Permissions",
  ["40001"] = "Missing Required Arguments",
  ["40002"] = "Invalid Arguments",
  ["40003"] = "Insufficient Conditions",
  ["40004"] = "Business Failed",
  ["40005"] = "Call Limited",
  ["40006"] = "Insufficient Permissions",
}

-- Gateway-level errors: sub_code -> code and the default sub_msg. v3 uses
-- the sub_code without its "isv."/"aop."/"isp." prefix as its error code.
local ERRORS = {
  ["isv.missing-method"] = { "40001", "缺少方法名参数" },
  ["isv.invalid-method"] = { "40002", "不存在的方法名" },
  ["isv.missing-app-id"] = { "40001", "缺少AppID参数" },
  ["isv.invalid-app-id"] = { "40002", "无效的AppID参数" },
  ["isv.missing-signature"] = { "40001", "缺少签名参数" },
  ["isv.missing-signature-type"] = { "40001", "缺少签名类型参数" },
  ["isv.missing-charset"] = { "40001", "缺少字符集参数" },
  ["isv.missing-timestamp"] = { "40001", "缺少时间戳参数" },
  ["isv.missing-version"] = { "40001", "缺少版本参数" },
  ["isv.invalid-signature-type"] = { "40002", "无效的签名类型" },
  ["isv.invalid-charset"] = { "40002", "字符集错误，仅支持utf-8" },
  ["isv.invalid-format"] = { "40002", "无效的数据格式，仅支持JSON" },
  ["isv.invalid-timestamp"] = { "40002", "非法的时间戳参数" },
  ["isv.invalid-app-cert-sn"] = { "40002", "应用公钥证书序列号不匹配" },
  ["isv.invalid-alipay-root-cert-sn"] = { "40002", "支付宝根证书序列号不匹配" },
  ["isv.invalid-signature"] = { "40002", "验签出错" },
  ["isv.invalid-parameter"] = { "40002", "参数无效" },
  ["isv.invalid-encrypt-type"] = { "40002", "无效的加密类型，仅支持AES" },
  -- Sandbox-chosen: the app asked for AES but no key is configured.
  ["isv.missing-encrypt-key"] = { "40003", "应用未设置AES密钥" },
  ["isv.decryption-error-unknown"] = { "40003", "解密出错，未知异常" },
  ["aop.invalid-app-auth-token"] = { "20001", "无效的应用授权令牌" },
  ["isp.unknow-error"] = { "20000", "系统繁忙" },
  ["isv.app-call-limited"] = { "40005", "调用频率超限" },
}

local V3_STATUS = {
  ["invalid-method"] = 404,
  ["missing-signature"] = 401,
  ["invalid-signature"] = 401,
  ["invalid-app-auth-token"] = 401,
  ["app-call-limited"] = 429,
  ["unknow-error"] = 500,
}

local FAULTS = { ["20000"] = "isp.unknow-error", ["40005"] = "isv.app-call-limited" }

local SIGN_ERROR_PREFIX = "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："

-- ---- construction ----

-- Parsed keys by PEM text. Parsing a private key checks it, which costs
-- tens of milliseconds; gateways built from the same PEM (tests, restarts
-- of the admin endpoint) share one parsed, immutable key.
local parsed_keys = setmetatable({}, { __mode = "v" })

local function read_key(cfg, field, parse)
  local text = cfg[field]
  if type(text) ~= "string" then return nil, field .. ": expected PEM text" end
  local cache_key = (parse == core.private_key and "private\0" or "public\0") .. text
  local key = parsed_keys[cache_key]
  if key then return key end
  local err
  key, err = parse(text)
  if not key then return nil, field .. ": " .. tostring(err) end
  parsed_keys[cache_key] = key
  return key
end

local function cert_sn(cfg, field, fn)
  if type(cfg[field]) ~= "string" then return nil, field .. ": expected PEM text" end
  local sn, err = fn(cfg[field])
  if not sn then return nil, field .. ": " .. tostring(err) end
  return sn
end

local function configure_keys(self, cfg)
  local err
  if (cfg.app_public_key == nil) == (cfg.app_cert == nil) then
    return nil, "app_public_key, app_cert: give exactly one (public-key or certificate mode)"
  end
  self.cert_mode = cfg.app_cert ~= nil
  self.app_key, err = read_key(cfg, self.cert_mode and "app_cert" or "app_public_key", core.public_key)
  if not self.app_key then return nil, err end
  if self.cert_mode then
    self.app_cert_sn, err = cert_sn(cfg, "app_cert", core.cert_sn)
    if not self.app_cert_sn then return nil, err end
  end
  self.signer, err = read_key(cfg, "alipay_private_key", core.private_key)
  if not self.signer then return nil, err end
  self.alipay_public_key = self.signer:public_pem()
  if cfg.alipay_cert ~= nil then
    local cert_key
    cert_key, err = read_key(cfg, "alipay_cert", core.public_key)
    if not cert_key then return nil, err end
    if cert_key:public_pem() ~= self.alipay_public_key then
      return nil, "alipay_cert: its public key is not the one of alipay_private_key"
    end
    self.alipay_cert_sn, err = cert_sn(cfg, "alipay_cert", core.cert_sn)
    if not self.alipay_cert_sn then return nil, err end
    self.certs[self.alipay_cert_sn] = cfg.alipay_cert
  end
  if cfg.alipay_root_cert ~= nil then
    self.root_cert_sn, err = cert_sn(cfg, "alipay_root_cert", core.root_cert_sn)
    if not self.root_cert_sn then return nil, err end
  end
  return true
end

-- The glue may read the configuration from JSON: a null is an absent field.
local function without_nulls(t)
  local out = {}
  for k, v in pairs(t) do
    if v ~= cjson.null then out[k] = v end
  end
  return out
end

function M.new(cfg)
  if type(cfg) ~= "table" then return nil, "config: expected a table" end
  cfg = without_nulls(cfg)
  if type(cfg.app_id) ~= "string" or not cfg.app_id:match("^%d+$") then
    return nil, "app_id: expected the app's id (digits)"
  end
  if cfg.clock ~= nil and type(cfg.clock) ~= "function" then return nil, "clock: expected a function" end
  -- certs: SN -> PEM of every Alipay certificate this gateway has signed
  -- under (the download API serves them).
  local self = setmetatable({ app_id = cfg.app_id, clock = cfg.clock or os.time, certs = {} }, Gateway)
  local ok, err = configure_keys(self, cfg)
  if not ok then return nil, err end
  if cfg.encrypt_key ~= nil then
    if type(cfg.encrypt_key) ~= "string" then return nil, "encrypt_key: expected base64 text" end
    local probe, aes_err = core.aes_encrypt(cfg.encrypt_key, "probe")
    if not probe then return nil, "encrypt_key: " .. tostring(aes_err) end
    self.encrypt_key = cfg.encrypt_key
  end
  self.st, err = state_mod.new(cfg.seed, { app_id = cfg.app_id })
  if not self.st then return nil, err end
  return self
end

-- ---- small helpers ----

local function node_of(method)
  return (method:gsub("%.", "_")) .. "_response"
end

-- Unix seconds of a "yyyy-MM-dd HH:mm:ss" Beijing time, or nil.
local beijing_epoch = beijing_time.parse

-- cjson decodes {} and [] alike: look at the text too.
local function json_object(text)
  if not text:match("^%s*{") then return nil end
  local v = cjson_safe.decode(text)
  if type(v) ~= "table" or v[1] ~= nil then return nil end
  return v
end

local function strip_question_mark(query)
  return ((query or ""):gsub("^%?", ""))
end

-- ---- v2: parameters ----

local function is_form(content_type)
  return content_type == nil or content_type == ""
    or content_type:lower():match("^%s*application/x%-www%-form%-urlencoded") ~= nil
end

-- Query and form body, each decoded once. -> params, duplicated_field | nil, err
local function v2_params(req)
  local query, err = core.form_decode(strip_question_mark(req.query))
  if not query then return nil, "query string: " .. err end
  local body = {}
  if req.body and req.body ~= "" then
    if not is_form(req.content_type) then
      return nil, "body: expected application/x-www-form-urlencoded, got " .. tostring(req.content_type)
    end
    body, err = core.form_decode(req.body)
    if not body then return nil, "body: " .. err end
  end
  local params, duplicate = {}, nil
  for k, v in pairs(query) do params[k] = v end
  for k, v in pairs(body) do
    if params[k] ~= nil then duplicate = duplicate or k end
    params[k] = v
  end
  -- Empty values are never signed and never meaningful: treat them as absent.
  for k, v in pairs(params) do
    if v == "" then params[k] = nil end
  end
  return params, duplicate
end

-- An answer of the v2 pipeline: node name, node fields and how to render them.
local function v2_error(node, sub_code, sub_msg, how)
  local e = ERRORS[sub_code]
  local a = how or {}
  a.node = node
  a.fields = { code = e[1], msg = CODE_MSG[e[1]], sub_code = sub_code, sub_msg = sub_msg or e[2] }
  return a
end

function Gateway:v2_checks(p, node, ctx)
  local function err(sub_code, sub_msg)
    return v2_error(node, sub_code, sub_msg, ctx)
  end
  if not p.sign then return err("isv.missing-signature") end
  for _, f in ipairs{ { "sign_type", "signature-type" }, { "charset", "charset" },
    { "timestamp", "timestamp" }, { "version", "version" } } do
    if not p[f[1]] then return err("isv.missing-" .. f[2]) end
  end
  if p.sign_type ~= "RSA2" and p.sign_type ~= "RSA" then return err("isv.invalid-signature-type") end
  ctx.alg = p.sign_type
  if p.charset:lower() ~= "utf-8" then return err("isv.invalid-charset") end
  if p.format and p.format:lower() ~= "json" then return err("isv.invalid-format") end
  local at = beijing_epoch(p.timestamp)
  if not at or math.abs(at - self.clock()) > CLOCK_SKEW_S then return err("isv.invalid-timestamp") end
  if self.cert_mode then
    if p.app_cert_sn ~= self.app_cert_sn then return err("isv.invalid-app-cert-sn") end
    if not p.alipay_root_cert_sn or (self.root_cert_sn and p.alipay_root_cert_sn ~= self.root_cert_sn) then
      return err("isv.invalid-alipay-root-cert-sn")
    end
  end
  local content = core.sign_content(p)
  if self.app_key:verify(content, p.sign, p.sign_type) ~= true then
    return err("isv.invalid-signature", SIGN_ERROR_PREFIX .. content:gsub("&", "&amp;"))
  end
  if p.app_auth_token and not self.st:accepts_app_auth_token(p.app_auth_token) then
    return err("aop.invalid-app-auth-token")
  end
end

-- biz_content as a table (decrypted first when asked). -> biz | nil, answer
function Gateway:v2_biz(p, node, ctx)
  local text = p.biz_content
  if p.encrypt_type then
    if p.encrypt_type ~= "AES" then return nil, v2_error(node, "isv.invalid-encrypt-type", nil, ctx) end
    if not self.encrypt_key then return nil, v2_error(node, "isv.missing-encrypt-key", nil, ctx) end
    if text then
      text = core.aes_decrypt(self.encrypt_key, text)
      if not text then return nil, v2_error(node, "isv.decryption-error-unknown", nil, ctx) end
    end
    ctx.aes = true
  end
  if not text then return {} end
  local biz = json_object(text)
  if not biz then
    return nil, v2_error(node, "isv.invalid-parameter", "biz_content不是JSON对象", ctx)
  end
  return biz
end

function Gateway:v2_answer(req)
  local p, dup = v2_params(req)
  if not p then
    return v2_error("error_response", "isv.invalid-parameter", "参数无效：" .. dup, { unsigned = true })
  end
  local method = p.method
  if not method then return v2_error("error_response", "isv.missing-method", nil, { unsigned = true }) end
  if not apis.known(method) then
    return v2_error("error_response", "isv.invalid-method", nil, { unsigned = true })
  end
  local node = node_of(method)
  -- Alipay cannot pick the app's settings for an unknown app, and answers unsigned.
  if not p.app_id then return v2_error(node, "isv.missing-app-id", nil, { unsigned = true }) end
  if p.app_id ~= self.app_id then return v2_error(node, "isv.invalid-app-id", nil, { unsigned = true }) end
  local ctx = { alg = "RSA2" }
  if dup then
    return v2_error(node, "isv.invalid-parameter", "参数" .. dup .. "同时出现在URL和请求体中", ctx)
  end
  local failed = self:v2_checks(p, node, ctx)
  if failed then return failed end
  local biz, answer = self:v2_biz(p, node, ctx)
  if not biz then return answer end
  local fields, berr = self:call_api(method, biz,
    { api = "v2", app_id = self.app_id, method = method, now = self.clock(), certs = self.certs })
  if not fields then
    fields = { code = "40004", msg = CODE_MSG["40004"], sub_code = berr.sub_code, sub_msg = berr.sub_msg }
  else
    fields.code, fields.msg = "10000", CODE_MSG["10000"]
  end
  ctx.node, ctx.fields = node, fields
  return ctx
end

-- RSA PKCS#1 v1.5 signatures are deterministic: the same key, algorithm
-- and content always sign the same. v2 answers repeat (every accepted send
-- answers {"code":"10000","msg":"Success"}), so their signatures are kept,
-- a few hundred of them, and the sandbox spends its CPU on the answers that
-- differ. The bytes on the wire are the same as without the cache; a new
-- signing key (a rotation) starts a new cache.
local SIGNATURES_KEPT = 512

function Gateway:sign_v2(content, alg)
  local cache = self.signatures
  if not cache or cache.signer ~= self.signer then
    cache = { signer = self.signer, n = 0, by = {} }
    self.signatures = cache
  end
  local k = alg .. "\0" .. content
  local sig = cache.by[k]
  if sig then return sig end
  sig = self.signer:sign(content, alg)
  if cache.n >= SIGNATURES_KEPT then cache.by, cache.n = {}, 0 end
  cache.by[k], cache.n = sig, cache.n + 1
  return sig
end

-- {"<node>":<content>[,"alipay_cert_sn":"…"],"sign":"…"}: the signature
-- covers exactly the content bytes (the quoted ciphertext when encrypted).
function Gateway:v2_render(a, opts)
  local content = apis.encode(a.fields)
  if a.aes then content = cjson.encode(assert(core.aes_encrypt(self.encrypt_key, content))) end
  local out = { "{", cjson.encode(a.node), ":", content }
  if not a.unsigned then
    if self.cert_mode and self.alipay_cert_sn then
      out[#out + 1] = ',"alipay_cert_sn":' .. cjson.encode(self.alipay_cert_sn)
    end
    local signed = (opts and opts.bad_sign) and (content .. " ") or content
    out[#out + 1] = ',"sign":"' .. self:sign_v2(signed, a.alg or "RSA2") .. '"'
  end
  out[#out + 1] = "}"
  return 200, { ["content-type"] = JSON_TYPE }, table.concat(out)
end

function Gateway:handle_v2(req, opts)
  return self:v2_render(self:v2_answer(req), opts)
end

-- The method a v2 request names, for logs (nil when absent or not a name).
function Gateway.method_of_v2(_, req)
  local query = core.form_decode(strip_question_mark(req.query)) or {}
  local method = query.method
  if not method and req.body and is_form(req.content_type) then
    method = (core.form_decode(req.body) or {}).method
  end
  if type(method) == "string" and #method <= 128 and method:match("^[%w%._]+$") then return method end
  return nil
end

-- Answers req with the fault's code, signed, under the method's node when
-- the method is known (error_response otherwise), without running it.
function Gateway:fault_v2(req, code)
  local sub_code = FAULTS[code] or error("fault_v2: unknown fault code " .. tostring(code), 2)
  local method = self:method_of_v2(req)
  local p = v2_params(req) or {}
  local alg = (p.sign_type == "RSA") and "RSA" or "RSA2"
  local node = (method and apis.known(method)) and node_of(method) or "error_response"
  return self:v2_render(v2_error(node, sub_code, nil, { alg = alg }))
end

-- ---- v3 ----

local function v3_code(sub_code)
  return (sub_code:gsub("^%a+%.", ""))
end

local function v3_error(sub_code, message, how)
  local code = v3_code(sub_code)
  local a = how or {}
  a.status = a.status or V3_STATUS[code] or 400
  a.body = { code = code, message = message or (ERRORS[sub_code] and ERRORS[sub_code][2]) or code }
  return a
end

-- "ALIPAY-SHA256withRSA k=v,k=v,…,sign=…" -> fields, auth_string | nil, err
local function parse_authorization(value)
  local rest = value:match("^ALIPAY%-SHA256withRSA%s+(.+)$")
  if not rest then return nil, "Authorization: expected the ALIPAY-SHA256withRSA scheme" end
  local auth_string, sign = rest:match("^(.-),sign=(.+)$")
  if not auth_string then return nil, "Authorization: sign is missing" end
  local fields = { sign = sign }
  for pair in (auth_string .. ","):gmatch("([^,]*),") do
    local k, v = pair:match("^%s*([%w_]+)=(.*)$")
    if not k then return nil, "Authorization: malformed field '" .. pair .. "'" end
    fields[k] = v
  end
  return fields, auth_string
end

-- Authorization, app, timestamp, certificate and signature checks.
-- -> nil when the request is authentic, else the error answer.
function Gateway:v3_auth(req, verb, headers)
  local value = headers.authorization
  if not value or value == "" then return v3_error("isv.missing-signature") end
  local auth, auth_string = parse_authorization(value)
  if not auth then return v3_error("isv.invalid-parameter", auth_string) end
  if not auth.app_id or auth.app_id == "" then
    return v3_error("isv.missing-app-id", nil, { unsigned = true })
  end
  if auth.app_id ~= self.app_id then return v3_error("isv.invalid-app-id", nil, { unsigned = true }) end
  if not auth.nonce or auth.nonce == "" then
    return v3_error("isv.invalid-parameter", "Authorization: nonce is missing")
  end
  local ts = auth.timestamp and auth.timestamp:match("^%d+$") and tonumber(auth.timestamp)
  if not ts or math.abs(ts / 1000 - self.clock()) > CLOCK_SKEW_S then
    return v3_error("isv.invalid-timestamp")
  end
  if self.cert_mode then
    if auth.app_cert_sn ~= self.app_cert_sn then return v3_error("isv.invalid-app-cert-sn") end
    local root = headers["alipay-root-cert-sn"]
    if not root or root == "" or (self.root_cert_sn and root ~= self.root_cert_sn) then
      return v3_error("isv.invalid-alipay-root-cert-sn")
    end
  end
  local query = strip_question_mark(req.query)
  local token = headers["alipay-app-auth-token"]
  if token == "" then token = nil end
  local signed = table.concat{ auth_string, "\n", verb, "\n", req.path, query ~= "" and ("?" .. query) or "",
    "\n", req.body or "", "\n", token and (token .. "\n") or "" }
  if self.app_key:verify(signed, auth.sign, "RSA2") ~= true then
    return v3_error("isv.invalid-signature", SIGN_ERROR_PREFIX .. signed)
  end
  if token and not self.st:accepts_app_auth_token(token) then
    return v3_error("aop.invalid-app-auth-token")
  end
end

-- The business fields of a v3 call: the query for GET, the JSON body (or
-- its decryption) otherwise. -> biz | nil, answer
function Gateway:v3_biz(req, verb, headers, a)
  if verb == "GET" then
    local biz = core.form_decode(strip_question_mark(req.query))
    if not biz then return nil, v3_error("isv.invalid-parameter", "query string is not a form") end
    return biz
  end
  local text = req.body or ""
  local enc = headers["alipay-encrypt-type"]
  if enc and enc ~= "" then
    if enc ~= "AES" then return nil, v3_error("isv.invalid-encrypt-type") end
    if not self.encrypt_key then return nil, v3_error("isv.missing-encrypt-key") end
    text = core.aes_decrypt(self.encrypt_key, text)
    if not text then return nil, v3_error("isv.decryption-error-unknown") end
    a.aes = true
  end
  if text == "" then return {} end
  local biz = json_object(text)
  if not biz then
    return nil, v3_error("isv.invalid-parameter", "body is not a JSON object", a)
  end
  return biz
end

-- Header names in any case; a repeated header (ngx gives a list) counts
-- by its first value.
local function lower_keys(t)
  local out = {}
  for k, v in pairs(t or {}) do
    if type(v) == "table" then v = v[1] end
    if type(v) == "string" then out[tostring(k):lower()] = v end
  end
  return out
end

function Gateway:v3_answer(req)
  local verb = (req.method or "GET"):upper()
  local path = req.path or ""
  local method, api = apis.route(path)
  if not method then return v3_error("isv.invalid-method", "不存在的接口：" .. path) end
  if not api.verbs[verb] then
    return v3_error("isv.invalid-method", verb .. " is not accepted on " .. path, { status = 405 })
  end
  local headers = lower_keys(req.headers)
  local failed = self:v3_auth(req, verb, headers)
  if failed then return failed end
  local a = {}
  local biz, answer = self:v3_biz(req, verb, headers, a)
  if not biz then return answer end
  local fields, berr = self:call_api(method, biz,
    { api = "v3", app_id = self.app_id, method = method, now = self.clock(), certs = self.certs })
  if not fields then
    a.status, a.body = 400, { code = berr.sub_code, message = berr.sub_msg }
  else
    a.status, a.body = 200, fields
  end
  return a
end

-- Status, headers and body; alipay-signature covers "timestamp\nnonce\nbody\n".
function Gateway:v3_render(a, opts)
  local status = a.status
  local body = apis.encode(a.body)
  local headers = { ["content-type"] = JSON_TYPE, ["alipay-trace-id"] = core.random_hex(15) }
  if a.aes and status == 200 then
    body = assert(core.aes_encrypt(self.encrypt_key, body))
    headers["content-type"] = "text/plain;charset=utf-8"
    headers["alipay-encrypt-type"] = "AES"
  end
  if not a.unsigned then
    local timestamp = ("%.0f"):format(math.floor(self.clock() * 1000))
    local nonce = core.random_hex(16)
    local signed = timestamp .. "\n" .. nonce .. "\n" .. body .. "\n"
    if opts and opts.bad_sign then signed = signed .. " " end
    headers["alipay-timestamp"] = timestamp
    headers["alipay-nonce"] = nonce
    headers["alipay-signature"] = self.signer:sign(signed, "RSA2")
    if self.cert_mode and self.alipay_cert_sn then headers["alipay-sn"] = self.alipay_cert_sn end
  end
  return status, headers, body
end

function Gateway:handle_v3(req, opts)
  return self:v3_render(self:v3_answer(req), opts)
end

-- 20000 -> 500 {"code":"unknow-error"}, 40005 -> 429 {"code":"app-call-limited"}.
function Gateway:fault_v3(_, code)
  local sub_code = FAULTS[code] or error("fault_v3: unknown fault code " .. tostring(code), 2)
  return self:v3_render(v3_error(sub_code))
end

-- ---- certificate rotation ----

-- Alipay replaces its certificate now and then (docs/protocol.md §4.4): from
-- now on answers are signed with the new key and name the new SN. The
-- certificate is not checked against the root bundle: the sandbox must be
-- able to rotate to one that does not chain, so that clients can be seen
-- refusing it.
function Gateway:rotate_cert(private_pem, cert_pem)
  if not self.cert_mode or not self.alipay_cert_sn then
    return nil, "rotate_cert: the gateway is not in certificate mode"
  end
  local signer, err = read_key({ k = private_pem }, "k", core.private_key)
  if not signer then return nil, "rotate_cert: alipay_private_key: " .. tostring(err):gsub("^k: ", "") end
  local key
  key, err = read_key({ k = cert_pem }, "k", core.public_key)
  if not key then return nil, "rotate_cert: alipay_cert: " .. tostring(err):gsub("^k: ", "") end
  if key:public_pem() ~= signer:public_pem() then
    return nil, "rotate_cert: alipay_cert: its public key is not the one of alipay_private_key"
  end
  local sn = assert(core.cert_sn(cert_pem))
  self.signer, self.alipay_public_key, self.alipay_cert_sn = signer, signer:public_pem(), sn
  self.certs[sn] = cert_pem
  return sn
end

-- ---- the business call ----

-- Runs a method's handler against this gateway's world. The sandbox's
-- nginx server replaces it with one that shares the call with every worker
-- (alipay.sandbox.replica); alone, the gateway calls the handler itself.
function Gateway:call_api(method, biz, ctx)
  return apis.call(method, self.st, biz, ctx)
end

-- ---- inspection ----

function Gateway:deliveries()
  return self.st:deliveries()
end

function Gateway:reset()
  return assert(self.st:reset())
end

function Gateway:state()
  return self.st
end

return M
