-- One Alipay call, v2 or v3: build the parameters, sign, send through the
-- transport, verify, decrypt, decode, and turn every failure into a typed
-- error (docs/architecture.md §7, docs/protocol.md §1, §2, §5, §6).
--
-- Each call is split into prepare (pure: the request to send) and finish
-- (pure: the response to a result), so that campaigns can put many
-- requests in flight on one transport and finish them as they complete.
-- Every exchange in between goes through the client too, never around it:
--   client:request(req) -> res | nil, err, detail        (tier 1)
--   client:submit(req) -> id | nil, err, detail;  client:wait(timeout_ms)
--     -> {{id=, res=} | {id=, err=, detail=}, ...};  client:pending()   (tier 2)
-- with the shapes of alipay.transport.contract, a closed client refused and
-- every failed transfer typed here (kind "transport").
local cjson = require("cjson").new()
local core = require "alipay.core"
local errors = require "alipay.errors"
local config = require "alipay.config"
local beijing_time = require "alipay.util.beijing_time"
local alipaycert = require "alipay.alipaycert"

cjson.decode_invalid_numbers(false)

local Client = {}
Client.__index = Client

-- "yyyy-MM-dd HH:mm:ss" in Beijing time whatever the host's time zone.
local beijing_timestamp = beijing_time.format
Client.beijing_timestamp = beijing_timestamp

local function decode_json(text)
  local ok, value = pcall(cjson.decode, text)
  if ok and type(value) == "table" then return value end
  return nil
end

local function encode_body(body, what)
  if body == nil then return nil end
  if type(body) == "string" then return body end
  if type(body) == "table" then return cjson.encode(body) end
  error(what .. " must be a table or a JSON string", 3)
end

-- ---- transports ----

local function pick_transport(cfg)
  local t = cfg.transport
  if type(t) == "table" then return t end
  -- nil: alipay.transport.auto picks cosockets or curl for each request,
  -- from the nginx phase the request runs in, and curl outside nginx.
  local name = t or "auto"
  local ok, mod = pcall(require, "alipay.transport." .. name)
  if not ok then return errors.failure(errors.config("transport", "transport '" .. name .. "' is not available")) end
  return mod.new(cfg)
end

-- alipay.new(config) -> client | nil, err, detail
function Client.new(user_config, extra)
  -- alipay:new{...} passes the module table first: say so, instead of
  -- reporting the module's own fields as unknown configuration.
  if type(user_config) == "table" and type(user_config.new) == "function" and user_config.new == Client.new then
    error("alipay.new is a function: call alipay.new{...} (with a dot), not alipay:new{...}", 2)
  end
  if extra ~= nil then error("alipay.new takes one configuration table", 2) end
  local cfg, err, detail = config.validate(user_config)
  if not cfg then return nil, err, detail end
  local transport
  transport, err, detail = pick_transport(cfg)
  if not transport then return nil, err, detail end
  local client = setmetatable({ config = cfg, transport = transport }, Client)
  -- Certificate mode: the keys answers are verified with, by SN (the
  -- configured alipay_cert's, then any rotated one adopted).
  if cfg.cert_mode then client.alipay_keys = alipaycert.new(cfg.alipay_cert_sn, cfg.alipay_public_key) end
  return client
end

-- A closed client refuses calls: its transport (connections, curl handles)
-- is gone, and a call that silently reopened it would hide the mistake.
-- level: error()'s, counted from check_open's caller (default 3: its caller's caller).
local function check_open(self, level)
  if self.closed then
    error("this alipay client has been closed (client:close()); create a new one with alipay.new", level or 3)
  end
end

-- The typed error of a failed transfer. A custom transport may still
-- return a typed error as its second value, or only a string.
local function transfer_detail(err, detail)
  if errors.is_error(detail) then return detail end
  if errors.is_error(err) then return err end
  return errors.transport(tostring(err or "the transport failed without a message"), "other")
end

-- nil, err, detail of a failed transfer: the transport's own message when
-- it gave one, and always a typed detail.
local function transfer_failure(err, detail)
  detail = transfer_detail(err, detail)
  return nil, type(err) == "string" and err or tostring(detail), detail
end

-- ---- the exchange: the only calls into self.transport ----

-- client:request(req) -> res | nil, err, detail: one prepared request.
function Client:request(req)
  check_open(self)
  local res, err, detail = self.transport:request(req)
  if res == nil then return transfer_failure(err, detail) end
  return res
end

-- Tier 2 needs a transport that has it (config checked: all or nothing).
local function concurrent(self, what)
  check_open(self, 4)
  if not self:concurrent() then
    error("client:" .. what .. ": this client's transport has no submit/wait/pending (request only, "
      .. "see alipay.transport.contract); use client:request, or a transport with all three", 3)
  end
  return self.transport
end

-- client:concurrent() -> whether this client's transport has the second
-- tier (submit/wait/pending), which a campaign needs.
function Client:concurrent()
  return type(self.transport.submit) == "function"
end

-- client:submit(req) -> id | nil, err, detail: starts a prepared request;
-- its answer comes from client:wait.
function Client:submit(req)
  local id, err, detail = concurrent(self, "submit"):submit(req)
  if id == nil then return transfer_failure(err, detail) end
  return id
end

-- client:wait(timeout_ms) -> the finished requests, {id=, res=} or
-- {id=, err=<one line>, detail=<typed error>}; possibly empty.
function Client:wait(timeout_ms)
  local done = concurrent(self, "wait"):wait(timeout_ms)
  for _, d in ipairs(done) do
    if d.res == nil then
      d.err, d.detail = select(2, transfer_failure(d.err, d.detail))
    end
  end
  return done
end

-- client:pending() -> submitted requests wait has not returned yet (0
-- with a request-only transport, which cannot have any).
function Client:pending()
  check_open(self)
  local t = self.transport
  if type(t.pending) ~= "function" then return 0 end
  return t:pending()
end

-- ---- v2 ----

local function node_name(method)
  return (method:gsub("%.", "_")) .. "_response"
end

-- The v2 methods this library calls that only read (alipay.messaging:
-- lifeaccount's follow_query, followers and industry, mini's
-- subscriptions). Their requests are marked idempotent, so a transport
-- may send one again by itself when a reused connection dies unanswered.
-- Every other call (each send, template.message.get (it claims a
-- template), anything else through execute, every v3 call: the library
-- makes none that only reads) leaves at most once: such a failure is a
-- transport error, reason "reset", unknown (docs/architecture.md §6).
Client.READ_ONLY_V2 = {
  ["alipay.open.public.user.follow.query"] = true,
  ["alipay.open.public.follow.batchquery"] = true,
  ["alipay.open.public.setting.category.query"] = true,
  ["alipay.open.app.messagetemplate.subscribe.query"] = true,
}

local function check_method(method)
  if type(method) ~= "string" or not method:match("^%a[%w_]*%.[%w_.]*%w$") then
    error("method must be an Alipay method name such as alipay.trade.query", 3)
  end
end

-- The request of a v2 call, and the context finish_v2 needs.
function Client:prepare_v2(method, biz_content, opts)
  check_open(self)
  check_method(method)
  opts = opts or {}
  local cfg = self.config
  local params = {
    app_id = cfg.app_id, method = method, format = "JSON", charset = "utf-8",
    sign_type = cfg.sign_type, timestamp = beijing_timestamp(opts.now), version = "1.0",
    app_auth_token = opts.app_auth_token or cfg.app_auth_token,
    auth_token = opts.auth_token, notify_url = opts.notify_url, return_url = opts.return_url,
    app_cert_sn = cfg.app_cert_sn, alipay_root_cert_sn = cfg.alipay_root_cert_sn,
  }
  for k, v in pairs(opts.params or {}) do params[k] = v end
  local biz = encode_body(biz_content, "biz_content")
  local encrypted = cfg.encrypt_key ~= nil and biz ~= nil and opts.encrypt ~= false
  if encrypted then
    biz = assert(core.aes_encrypt(cfg.encrypt_key, biz))
    params.encrypt_type = "AES"
  end
  params.biz_content = biz
  params.sign = cfg.private_key:sign(core.sign_content(params), cfg.sign_type)
  -- System parameters and sign in the query, biz_content in the body;
  -- empty values are neither signed nor sent.
  local query = {}
  for k, v in pairs(params) do
    if k ~= "biz_content" and v ~= "" then query[k] = v end
  end
  local req = {
    method = "POST",
    url = cfg.gateway .. "?" .. core.form_encode(query),
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8" },
    body = biz and ("biz_content=" .. core.form_encode(biz)) or "",
    timeout_ms = opts.timeout_ms or cfg.timeout_ms,
    idempotent = Client.READ_ONLY_V2[method] or nil,
  }
  return req, { method = method, encrypted = encrypted, timestamp = params.timestamp }
end

local function trace_of(res)
  return res.headers and (res.headers["alipay-trace-id"] or res.headers["trace_id"])
end

-- The key that verifies an answer signed under sn: in certificate mode
-- the configured alipay_cert's, or a rotated one adopted after a download
-- (alipay.alipaycert); the one configured key otherwise.
-- -> key | nil, err, detail
function Client:alipay_key(method, sn)
  local cfg = self.config
  if not (cfg.cert_mode and sn) then return cfg.alipay_public_key end
  return alipaycert.key_for(self, method, sn)
end

-- client:adopt_alipay_cert(sn) -> true | nil, err, detail. Certificate
-- mode: downloads the Alipay certificate of sn, checks it against the root
-- bundle and adopts it, as an answer under that SN would. For inbound
-- messages (alipay.inbound.signature), which are verified only with known
-- certificates, never with a download a forged message could trigger.
function Client:adopt_alipay_cert(sn)
  if not self.config.cert_mode then error("adopt_alipay_cert: the client is not in certificate mode", 2) end
  if type(sn) ~= "string" or sn == "" then error("adopt_alipay_cert: sn must be a certificate SN", 2) end
  local key, err, detail = alipaycert.key_for(self, alipaycert.DOWNLOAD, sn)
  if not key then return nil, err, detail end
  return true
end

-- Verifies a v2 node's signature. When that fails and the signed content
-- holds the two characters \/, it is verified once more with every \/
-- replaced by /, and nothing else changed: Alipay signs some answers
-- before a JSON encoder escapes their slashes, and the Java and .NET SDKs
-- accept exactly this second form (docs/protocol.md §2).
local function verify_v2(key, content, sign, alg)
  local ok, reason = key:verify(content, sign, alg)
  if ok or not content:find("\\/", 1, true) then return ok, reason end
  local ok2 = key:verify((content:gsub("\\/", "/")), sign, alg)
  if ok2 then return ok2 end
  return ok, reason
end

-- Checks the signature of an extracted node. Returns verified (boolean)
-- or nil, err.
function Client:verify_node(ctx, node)
  local cfg = self.config
  if not node.sign or node.sign == "" then return false end
  local key, kerr, kdetail = self:alipay_key(ctx.method, node.cert_sn)
  if not key then return nil, kerr, kdetail end
  local ok, reason = verify_v2(key, node.content, node.sign, cfg.sign_type)
  if not ok then
    return errors.fail("signature", {
      method = ctx.method, msg = "the response signature is not Alipay's: " .. tostring(reason),
    })
  end
  return true
end

-- The result of a v2 call from the transport's answer:
-- finish_v2(ctx, res, err, detail) -> node | nil, err, detail
function Client:finish_v2(ctx, res, err, detail)
  local method = ctx.method
  if not res then
    detail = transfer_detail(err, detail)
    detail.method = detail.method or method
    return errors.failure(detail)
  end
  local trace_id = trace_of(res)
  if res.status ~= 200 then
    return errors.fail("http", { method = method, status = res.status, trace_id = trace_id,
                                     msg = "the gateway answered HTTP " .. tostring(res.status) })
  end
  local node, xerr = core.extract(res.body, method)
  if not node then
    return errors.fail("decode", { method = method, trace_id = trace_id, msg = xerr })
  end
  local verified, _, vdetail = self:verify_node(ctx, node)
  if vdetail then
    vdetail.trace_id = trace_id
    return errors.failure(vdetail)
  end
  local content = node.content
  if node.encrypted then
    if not verified then
      return errors.fail("signature", { method = method, trace_id = trace_id,
                                            msg = "an encrypted response without a signature" })
    end
    if not self.config.encrypt_key then
      return errors.fail("config", { method = method, field = "encrypt_key",
        msg = "encrypt_key: the response is encrypted but no encrypt_key is configured" })
    end
    local plain, derr = core.aes_decrypt(self.config.encrypt_key, content:sub(2, -2))
    if not plain then
      return errors.fail("decode", { method = method, trace_id = trace_id, msg = derr, retryable = false })
    end
    content = plain
  end
  local result = decode_json(content)
  if not result or type(result.code) ~= "string" then
    return errors.fail("decode", { method = method, trace_id = trace_id,
                                       msg = "the response node is not a JSON object with a code" })
  end
  if result.code == "10000" then
    if not verified then
      return errors.fail("signature", { method = method, trace_id = trace_id, code = result.code,
                                            msg = "a success response without a signature" })
    end
    return result
  end
  return errors.fail(result.code == "40004" and "business" or "gateway", {
    method = method, code = result.code, msg = result.msg, sub_code = result.sub_code,
    sub_msg = result.sub_msg, verified = verified, trace_id = trace_id,
    node = node.node ~= node_name(method) and node.node or nil,
  })
end

-- client:execute(method, biz_content, opts) -> node table | nil, err, detail
function Client:execute(method, biz_content, opts)
  local req, ctx = self:prepare_v2(method, biz_content, opts)
  local res, err, detail = self:request(req)
  return self:finish_v2(ctx, res, err, detail)
end

-- ---- v3 ----

local HTTP_METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

function Client:prepare_v3(http_method, path, body, opts)
  check_open(self)
  if not HTTP_METHODS[http_method] then error("v3: unknown HTTP method " .. tostring(http_method), 3) end
  if type(path) ~= "string" or path:sub(1, 4) ~= "/v3/" then error("v3: path must start with /v3/", 3) end
  opts = opts or {}
  local cfg = self.config
  local body_text = encode_body(body, "body") or ""
  local headers = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["alipay-request-id"] = opts.request_id or core.random_hex(16),
  }
  local encrypted = cfg.encrypt_key ~= nil and opts.encrypt == true and body_text ~= ""
  if encrypted then
    body_text = assert(core.aes_encrypt(cfg.encrypt_key, body_text))
    headers["Content-Type"] = "text/plain"
    headers["alipay-encrypt-type"] = "AES"
  end
  local token = opts.app_auth_token or cfg.app_auth_token
  local auth = "app_id=" .. cfg.app_id ..
    (cfg.cert_mode and (",app_cert_sn=" .. cfg.app_cert_sn) or "") ..
    ",nonce=" .. (opts.nonce or core.random_hex(16)) ..
    ",timestamp=" .. string.format("%d", opts.now_ms or os.time() * 1000)
  local signed = auth .. "\n" .. http_method .. "\n" .. path .. "\n" .. body_text .. "\n" ..
                 (token and (token .. "\n") or "")
  headers["Authorization"] = "ALIPAY-SHA256withRSA " .. auth .. ",sign=" .. cfg.private_key:sign(signed, "RSA2")
  headers["alipay-app-auth-token"] = token
  headers["alipay-root-cert-sn"] = cfg.alipay_root_cert_sn
  local req = {
    method = http_method, url = cfg.base_url .. path, headers = headers,
    body = body_text ~= "" and body_text or nil,
    timeout_ms = opts.timeout_ms or cfg.timeout_ms,
  }
  return req, { method = http_method .. " " .. path:match("^[^?]*"), encrypted = encrypted }
end

-- Verifies alipay-signature over "timestamp\nnonce\nbody\n" (docs/protocol.md §6.3):
-- mandatory on 2xx, checked when present otherwise.
function Client:verify_v3(ctx, res)
  local h = res.headers or {}
  local sig = h["alipay-signature"]
  if not sig or sig == "" then
    if res.status >= 200 and res.status < 300 then
      return errors.fail("signature", { method = ctx.method, msg = "a success response without a signature" })
    end
    return false
  end
  local sn = h["alipay-sn"]
  local key, kerr, kdetail = self:alipay_key(ctx.method, sn ~= "" and sn or nil)
  if not key then return nil, kerr, kdetail end
  local text = (h["alipay-timestamp"] or "") .. "\n" .. (h["alipay-nonce"] or "") .. "\n" .. res.body .. "\n"
  local ok, reason = key:verify(text, sig, "RSA2")
  if not ok then
    return errors.fail("signature", { method = ctx.method,
                                          msg = "the response signature is not Alipay's: " .. tostring(reason) })
  end
  return true
end

-- Platform errors of v3 use lower-case hyphenated codes ("invalid-parameter",
-- "app-call-limited"); business errors use the API's upper-case sub codes.
local function v3_kind(status, code)
  if status >= 500 or status == 429 or status == 401 or status == 403 then return "gateway" end
  if type(code) == "string" and code:match("^[a-z][a-z%-]*$") then return "gateway" end
  return "business"
end

function Client:finish_v3(ctx, res, err, detail)
  if not res then
    detail = transfer_detail(err, detail)
    detail.method = detail.method or ctx.method
    return errors.failure(detail)
  end
  local trace_id = trace_of(res)
  local verified, _, vdetail = self:verify_v3(ctx, res)
  if vdetail then
    vdetail.trace_id = trace_id
    return errors.failure(vdetail)
  end
  local body = res.body
  if verified and (res.headers["alipay-encrypt-type"] or ""):upper() == "AES" and body ~= "" then
    local plain, derr
    if self.config.encrypt_key then plain, derr = core.aes_decrypt(self.config.encrypt_key, body) end
    if not plain then
      return errors.fail("decode", { method = ctx.method, trace_id = trace_id, retryable = false,
                                         msg = derr or "an encrypted response but no encrypt_key is configured" })
    end
    body = plain
  end
  if res.status >= 200 and res.status < 300 then
    if body == "" then return {} end
    local result = decode_json(body)
    if not result then
      return errors.fail("decode", { method = ctx.method, trace_id = trace_id,
                                         msg = "the response body is not a JSON object" })
    end
    return result
  end
  local problem = decode_json(body)
  if not problem or type(problem.code) ~= "string" then
    return errors.fail("http", { method = ctx.method, status = res.status, trace_id = trace_id,
                                     verified = verified, msg = "the gateway answered HTTP " .. res.status })
  end
  return errors.fail(v3_kind(res.status, problem.code), {
    method = ctx.method, status = res.status, code = tostring(res.status), sub_code = problem.code,
    sub_msg = problem.message, links = problem.links, verified = verified, trace_id = trace_id,
    -- retryable: from alipay.classify (its code rules cover 429 and 5xx)
  })
end

-- client:v3(http_method, path, body, opts) -> decoded body | nil, err, detail
function Client:v3(http_method, path, body, opts)
  local req, ctx = self:prepare_v3(http_method, path, body, opts)
  local res, err, detail = self:request(req)
  return self:finish_v3(ctx, res, err, detail)
end

-- Closes the transport; later calls raise. Closing twice is harmless.
function Client:close()
  if self.closed then return end
  self.closed = true
  if self.transport.close then self.transport:close() end
end

-- local client <close> = alipay.new{...}
Client.__close = Client.close

return Client
