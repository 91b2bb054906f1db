-- Inbound notifications (docs/protocol.md §3): payment notifications posted to
-- notify_url, return_url redirects and app-gateway messages. One job:
-- turn what Alipay sent into verified parameters, or a typed refusal.
--
--   notify.verify(client, body, opts) -> params, raw | nil, err
--     body    the raw application/x-www-form-urlencoded request body
--             (decoded here exactly once), or a table of already decoded
--             parameters (e.g. the query of a return_url redirect)
--     opts.rule  "V1" (default: notify_url, return_url; sign and sign_type
--             are left out of the signed string) or "V2" (app-gateway
--             messages; only sign is left out)
--     opts.seen  a replay store (`:add(key, ttl_s) -> true | false | nil, err`);
--             opts.ttl its lifetime in seconds (default notify.DEFAULT_TTL)
--     params  the verified parameters, values in UTF-8: with a GBK-family
--             `charset` the values are converted after verification
--     raw     the parameters as received (the bytes that were verified);
--             the same table as params when nothing was converted
--
-- Failures are nil, err, detail (docs/errors.md): err the one line, detail
-- errors.new("notify", {reason = ..., msg = ...}) where reason is one of
--   "malformed"    not a form body, repeated fields, bad escapes, empty,
--                  not POST / not form-urlencoded (read_ngx), values that
--                  are not valid in the declared GBK charset
--   "unsigned"     no sign, or a sign_type other than RSA2 / RSA
--   "forged"       the signature is not Alipay's
--   "foreign_app"  verified, but for another app_id
--   "replay"       verified, but its notify_id was already accepted:
--                  answer "success" again, Alipay lost the first answer
--   "cert_sn"      certificate mode: alipay_cert_sn is not the configured
--                  certificate's (Alipay rotated it)
--   "store"        the replay store failed (retryable: answer non-success)
-- and err.verified tells whether the signature was checked and good.
-- Messages are log-safe: they never contain the body, the signature or a
-- key; values echoed from the request are short tokens of safe characters.
local core = require "alipay.core"
local errors = require "alipay.errors"
local fs = require "alipay.util.fs"
local runtime = require "alipay.runtime"

local notify = {}

-- Alipay retries an unanswered payment notification for about 25 hours
-- (4m, 10m, 10m, 1h, 2h, 6h, 15h): remember a notify_id for two days.
notify.DEFAULT_TTL = 2 * 24 * 3600

local V1_EXCLUDE = { exclude = { "sign_type" } }
local ALGORITHMS = { RSA2 = "RSA2", RSA = "RSA" }

-- Charsets of the GBK family, all decoded as GB18030: it is a superset of
-- GBK and GB2312 as Alipay uses them (a "GB2312" form often carries GBK
-- characters, which a strict GB2312 decoder would refuse).
local GB_CHARSETS = { gbk = "GB18030", gb2312 = "GB18030", gb18030 = "GB18030" }

local FORM_TYPE = "application/x-www-form-urlencoded"

-- A value from the request as it may appear in a log line: a short token
-- of harmless characters, or "?" (no newlines, no markup, no secrets).
function notify.loggable(value)
  if type(value) == "string" and #value > 0 and #value <= 64 and not value:find("[^%w%._:%-]") then
    return value
  end
  return "?"
end
local loggable = notify.loggable

local function refusal(reason, msg, fields)
  local f = { reason = reason, msg = msg }
  for k, v in pairs(fields or {}) do f[k] = v end
  return errors.new("notify", f)
end

local function refuse(reason, msg, fields)
  return errors.failure(refusal(reason, msg, fields))
end

-- ---- decoding ----

-- A copy of an already decoded parameter table. nginx's query tables use
-- `true` for a bare flag (what form_decode turns into "") and a list for a
-- repeated field (refused, as form_decode refuses it).
local function copy_params(t)
  local out = {}
  for k, v in pairs(t) do
    if type(k) ~= "string" then return refuse("malformed", "a parameter name is not a string") end
    if v == true then
      v = ""
    elseif type(v) == "table" then
      return refuse("malformed", "parameter " .. loggable(k) .. " appears more than once")
    elseif type(v) ~= "string" then
      return refuse("malformed", "parameter " .. loggable(k) .. " is not a string")
    end
    out[k] = v
  end
  return out
end

-- notify.decode(body) -> params | nil, err. A string body is decoded with
-- core.form_decode, exactly once: `+` is a space, `%2B` a plus, and the
-- values are never decoded again.
function notify.decode(body)
  local params, err
  if type(body) == "table" then
    local detail
    params, err, detail = copy_params(body)
    if not params then return nil, err, detail end
  elseif type(body) == "string" then
    params, err = core.form_decode(body)
    if not params then
      -- form_decode names a repeated field; keep the name only if harmless.
      err = tostring(err):gsub("'(.*)'", function(name) return "'" .. loggable(name) .. "'" end)
      return refuse("malformed", "the body is not a valid form: " .. err)
    end
  else
    error("notify: body must be a string or a table of parameters, got a " .. type(body), 2)
  end
  if next(params) == nil then return refuse("malformed", "the notification is empty") end
  return params
end

-- ---- verification ----

local function check_cert_sn(cfg, raw)
  local sn = raw.alipay_cert_sn
  if cfg.cert_mode and sn and sn ~= "" and sn ~= cfg.alipay_cert_sn then
    return refusal("cert_sn", "alipay_cert_sn " .. loggable(sn) .. " is not the configured alipay_cert's (" ..
      cfg.alipay_cert_sn .. "): Alipay may have rotated its certificate; download it with " ..
      "alipay.open.app.alipaycert.download and check it against the root bundle")
  end
end

local function check_signature(cfg, raw, rule)
  local sign = raw.sign
  if sign == nil or sign == "" then return refusal("unsigned", "the notification carries no sign") end
  -- sign_type is always sent; the configured one is only a fallback.
  local sign_type = raw.sign_type
  if sign_type == nil or sign_type == "" then sign_type = cfg.sign_type end
  local alg = ALGORITHMS[sign_type]
  if not alg then
    return refusal("unsigned", "sign_type " .. loggable(sign_type) .. " is not supported (RSA2 or RSA)")
  end
  local content = core.sign_content(raw, rule == "V1" and V1_EXCLUDE or nil)
  local ok, why = cfg.alipay_public_key:verify(content, sign, alg)
  if ok ~= true then
    return refusal("forged", "the " .. alg .. " signature (rule " .. rule .. ") is not Alipay's: " .. tostring(why))
  end
end

-- The `app_id` field names the app the message is for (an ISV acting for a
-- merchant receives its own app_id there, the merchant's in auth_app_id).
local function check_app_id(cfg, params)
  if params.app_id ~= cfg.app_id then
    return refusal("foreign_app", "app_id " .. loggable(params.app_id) .. " is not this client's (" ..
      cfg.app_id .. ")", { verified = true })
  end
end

-- The values of a GBK-family notification in UTF-8. Verification ran over
-- the received bytes; conversion comes after it, for the caller only.
-- Names are ASCII in every Alipay message and are kept as received.
local function to_utf8(raw)
  local charset = type(raw.charset) == "string" and GB_CHARSETS[raw.charset:lower()]
  if not charset then return raw end
  local params = {}
  for k, v in pairs(raw) do
    if v:find("[\128-\255]") then
      local text = core.iconv(charset, "UTF-8", v)
      if not text then
        return refuse("malformed", "parameter " .. loggable(k) .. " is not valid " .. loggable(raw.charset),
                      { verified = true })
      end
      v = text
    end
    params[k] = v
  end
  return params
end

-- The replay-store key of a verified notification, or nil when it has no
-- notify_id (return_url redirects): those are not deduplicated. Callers
-- that fail to process an accepted notification can forget it with
-- `seen:delete(notify.replay_key(params))`, so that Alipay's retry passes.
function notify.replay_key(params)
  local id = params.notify_id
  if type(id) == "string" and id ~= "" then return "notify:" .. id end
  return nil
end

-- Marks a verified notification as seen; called last, so that only
-- verified, accepted messages ever enter the store.
local function check_replay(seen, params, ttl)
  local key = notify.replay_key(params)
  if not key then return nil end
  local fresh, err = seen:add(key, ttl or notify.DEFAULT_TTL)
  if fresh == nil then
    return refusal("store", "the replay store failed: " .. tostring(err), { verified = true, retryable = true })
  end
  if not fresh then
    return refusal("replay", "notify_id " .. loggable(params.notify_id) .. " was already accepted",
                   { verified = true })
  end
end

function notify.verify(client, body, opts)
  opts = opts or {}
  local rule = opts.rule or "V1"
  if rule ~= "V1" and rule ~= "V2" then error('notify.verify: opts.rule must be "V1" or "V2"', 2) end
  if type(body) ~= "string" and type(body) ~= "table" then
    error("notify.verify: body must be a string or a table of parameters, got a " .. type(body), 2)
  end
  local cfg = client.config
  local raw, err, detail = notify.decode(body)
  if not raw then return nil, err, detail end
  detail = check_cert_sn(cfg, raw) or check_signature(cfg, raw, rule) or check_app_id(cfg, raw)
  if detail then return errors.failure(detail) end
  local params
  params, err, detail = to_utf8(raw)
  if not params then return nil, err, detail end
  if opts.seen then
    detail = check_replay(opts.seen, params, opts.ttl)
    if detail then return errors.failure(detail) end
  end
  return params, raw
end

-- ---- replay stores ----

-- notify.memory_store(max_entries[, opts]) -> store. For one process (a
-- plain Lua server, tests). Bounded: past max_entries (default 10000) the
-- oldest entries go first, expired or not. opts.clock replaces os.time.
-- A doubly linked list in insertion order plus a key index: O(1) per call.
local MemoryStore = {}
MemoryStore.__index = MemoryStore

local function unlink(self, node)
  if node.prev then node.prev.next = node.next else self.head = node.next end
  if node.next then node.next.prev = node.prev else self.tail = node.prev end
  self.index[node.key] = nil
  self.count = self.count - 1
end

function MemoryStore:add(key, ttl)
  local now = self.clock()
  local node = self.index[key]
  if node then
    if node.expires > now then return false end
    unlink(self, node)
  end
  -- Drop what has expired at the old end, then what exceeds the bound.
  while self.head and (self.head.expires <= now or self.count >= self.max) do unlink(self, self.head) end
  node = { key = key, expires = (ttl and ttl > 0) and now + ttl or math.huge, prev = self.tail }
  if self.tail then self.tail.next = node else self.head = node end
  self.tail = node
  self.index[key] = node
  self.count = self.count + 1
  return true
end

function MemoryStore:delete(key)
  local node = self.index[key]
  if node then unlink(self, node) end
  return true
end

function notify.memory_store(max_entries, opts)
  max_entries = max_entries or 10000
  if type(max_entries) ~= "number" or max_entries < 1 or max_entries ~= math.floor(max_entries) then
    error("notify.memory_store: max_entries must be a positive whole number", 2)
  end
  return setmetatable({ max = max_entries, clock = opts and opts.clock or os.time,
                        index = {}, count = 0 }, MemoryStore)
end

-- notify.shared_dict_store(dict) -> store over an ngx.shared.DICT, shared
-- by every worker. dict:add is atomic: of two workers receiving the same
-- notification at once, exactly one gets true.
function notify.shared_dict_store(dict)
  return {
    add = function(_, key, ttl)
      local ok, err = dict:add(key, true, ttl or 0)
      if ok then return true end
      if err == "exists" then return false end
      return nil, "shared dict: " .. tostring(err)
    end,
    delete = function(_, key)
      dict:delete(key)
      return true
    end,
  }
end

-- ---- nginx ----

-- notify.read_ngx_body([ngx]) -> body | nil, err: the form body of the
-- current request. Refuses anything but a form-urlencoded POST. `ngx`
-- defaults to nginx's own (alipay.runtime; a fake can be passed in tests).
function notify.read_ngx_body(ngx)
  ngx = ngx or runtime.ngx()
  if not ngx then error("notify: not running inside nginx (no ngx)", 2) end
  local method = ngx.req.get_method()
  if method ~= "POST" then return refuse("malformed", "expected a POST, got " .. loggable(method)) end
  local media = (ngx.var.content_type or ""):match("^%s*([^;%s]+)")
  if not media or media:lower() ~= FORM_TYPE then
    return refuse("malformed", "the content type is not " .. FORM_TYPE)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  -- A body larger than client_body_buffer_size was written to a file.
  local path = ngx.req.get_body_file()
  if not path then return "" end
  body = fs.read(path)
  if not body then return refuse("malformed", "the buffered request body cannot be read") end
  return body
end

-- notify.read_ngx(client, opts) -> params, raw | nil, err, detail, for a
-- content_by_lua handler; opts as for verify, plus opts.ngx.
function notify.read_ngx(client, opts)
  local body, err, detail = notify.read_ngx_body(opts and opts.ngx)
  if not body then return nil, err, detail end
  return notify.verify(client, body, opts)
end

return notify
