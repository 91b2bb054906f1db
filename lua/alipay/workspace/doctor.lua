-- The checks a person otherwise does by hand when a channel does not work,
-- each with a verdict and the fix (`alipay doctor` prints them).
--
--   local doctor = require "alipay.workspace.doctor"
--   local report = doctor.run { config = "alipay.json", channel = nil | code,
--                               transport = nil | a transport table (tests), getenv = os.getenv,
--                               reach_timeout_ms = 5000, call_timeout_ms = 15000 }
--   report = { ok = true | false, config = path,
--              checks = { {name =, channel = code | nil, verdict = "pass" | "warn" | "fail" | "skip",
--                          detail = "one line", fix = "one line" | nil}, ... } }
--   ok is false when any check failed; a warning or a skip does not fail.
--
-- Per channel, in this order:
--   private_key_file | private_key_env     exists, is readable, is a private key, bits
--   alipay_public_key_file | _env          (public-key mode) the same for Alipay's public key
--   app_cert_file, alipay_cert_file, alipay_root_cert_file   (certificate mode)
--   app_public_key_file                    optional: the app public key uploaded to Alipay
--   key_pair        the private key's public half is the app certificate's key (certificate
--                   mode) or app_public_key_file's; skipped when neither is configured: the
--                   signed call then shows whether Alipay's copy matches
--   cert_sns        app_cert_sn, alipay_cert_sn and alipay_root_cert_sn computed
--   channel         alipay.messaging.channels.load accepts it (kind, app_id, fields, endpoints)
--   gateway         reachable; TLS verified for https; plain http is a warning
--   signed_call     one query that sends nothing to anyone (a Life Account's
--                   alipay.open.public.user.follow.query, a mini program's subscription
--                   query) for placeholder ids: an answer carrying a valid Alipay signature
--                   proves that signing and verification work, a business error included.
--                   On isv.invalid-signature the string the gateway verified (Alipay puts it in
--                   sub_msg) is compared with ours: the same string means the app public key
--                   Alipay holds is not this private key's; a different one names the first
--                   parameter that differs.
local config = require "alipay.config"
local core = require "alipay.core"
local channels = require "alipay.messaging.channels"
local errors = require "alipay.errors"
local keyfiles = require "alipay.keyfiles"
local lifeaccount = require "alipay.messaging.lifeaccount"
local mini = require "alipay.messaging.mini"

local M = {}

-- Placeholder ids of the signed call: nobody has them, so the answer is at
-- most a business error (Alipay's exact sub code for an unknown user is not
-- documented; any answer that Alipay signed will do).
M.PROBE = { user_id = "2088000000000000", open_id = "alipay-doctor-probe-open-id",
            template_id = "alipay-doctor-probe-template" }

M.REACH_TIMEOUT_MS = 5000

-- ---- the report ----

local Report = {}
Report.__index = Report

function Report:add(name, channel, verdict, detail, fix)
  self.checks[#self.checks + 1] = { name = name, channel = channel, verdict = verdict, detail = detail, fix = fix }
  if verdict == "fail" then self.ok = false end
  return verdict
end

-- ---- the file ----

local function check_file(report, path)
  local data, base_dir, detail = channels.read(path)
  if not data then
    local msg = tostring(detail and detail.msg or base_dir)
    if not msg:find(path, 1, true) then msg = path .. ": " .. msg end
    local missing = msg:find("No such file", 1, true)
    report:add("config_file", nil, "fail", msg, missing
      and "create it with: alipay channel add CODE --kind alipaylife|alipaymini --app-id ID --private-key-file F ..."
      or "fix the file (it must be a JSON object, or a Lua file returning a table)")
    return nil
  end
  local problem
  for k in pairs(data) do
    if k ~= "store" and k ~= "channels" then problem = ("%s: unknown top-level field %s"):format(path, tostring(k)) end
  end
  if not problem and (type(data.channels) ~= "table" or next(data.channels) == nil) then
    problem = path .. ": no channels"
  end
  if problem then
    report:add("config_file", nil, "fail", problem,
      "add a channel with: alipay channel add CODE ... (top-level fields: store, channels)")
    return nil
  end
  local n = 0
  for _ in pairs(data.channels) do n = n + 1 end
  report:add("config_file", nil, "pass", ("%s parses: %d channel%s"):format(path, n, n == 1 and "" or "s"))
  return data, base_dir
end

-- ---- key material ----

local function resolve(base_dir, p)
  if p:sub(1, 1) == "/" then return p end
  return base_dir .. "/" .. p
end

-- The option of `alipay channel add` that sets a field, for the fixes.
local OPTION = {
  private_key_file = "--private-key-file", alipay_public_key_file = "--alipay-public-key-file",
  app_cert_file = "--app-cert", alipay_cert_file = "--alipay-cert", alipay_root_cert_file = "--alipay-root-cert",
  app_public_key_file = "--app-public-key-file",
}

local function key_fix(code, field, detail, base_dir)
  local option = OPTION[field:gsub("_env$", "_file")] or "--private-key-file"
  local set = ("alipay channel add %s --update %s FILE"):format(code, option)
  if field:match("_env$") then
    return "set the environment variable to the PEM or base64 text, or use a file: " .. set
  end
  if detail.reason == "missing" then
    return ("relative paths are relative to the channel file's directory (%s); point it at the file: %s")
      :format(base_dir, set)
  elseif detail.reason == "unreadable" then
    return "make the file readable by this user (chmod/chown), keeping it private"
  elseif detail.reason == "bits" then
    return ("make a %d-bit key (Alipay's key tool, or openssl genrsa 2048), upload its public key, then: %s")
      :format(keyfiles.MIN_RSA2_BITS, set)
  end
  return "give the right file (Alipay's key tool exports PEM or bare base64): " .. set
end

-- One material of a channel, from a file or an environment variable.
-- -> info | nil (reported either way)
local function check_material(report, ctx, field, what)
  local spec, code = ctx.spec, ctx.code
  local opts = { sign_type = spec.sign_type }
  local shown, target
  if field:match("_env$") then
    local var = spec[field]
    shown = ("%s (%s)"):format(field, tostring(var))
    opts.name, opts.text = shown, type(var) == "string" and ctx.getenv(var) or nil
    if opts.text == nil or opts.text == "" then
      report:add(field, code, "fail", ("%s: environment variable %s is not set"):format(field, tostring(var)),
        key_fix(code, field, {}, ctx.base_dir))
      return nil
    end
  else
    opts.name = field
    target = resolve(ctx.base_dir, spec[field])
    shown = target
  end
  local info, err, detail = keyfiles.check(target, what, opts)
  if not info then
    report:add(field, code, "fail", err, key_fix(code, field, detail, ctx.base_dir))
    return nil
  end
  report:add(field, code, "pass", shown .. ": " .. info.summary)
  return info
end

local function present(spec, field) return spec[field] ~= nil end

local CERTS = { { "app_cert_file", "app_cert" }, { "alipay_cert_file", "alipay_cert" },
                { "alipay_root_cert_file", "root_cert" } }

-- Every key check; fills ctx.keys[field] and ctx.key_failed.
local function check_keys(report, ctx)
  local spec, code, keys = ctx.spec, ctx.code, ctx.keys
  local function one(field, what)
    local info = check_material(report, ctx, field, what)
    if info then keys[field] = info else ctx.key_failed = true end
    return info
  end
  if present(spec, "private_key_file") then one("private_key_file", "private_key")
  elseif present(spec, "private_key_env") then one("private_key_env", "private_key")
  else
    ctx.key_failed = true
    report:add("private_key_file", code, "fail", "no app private key configured",
      ("alipay channel add %s --update --private-key-file FILE"):format(code))
  end
  ctx.cert_mode = present(spec, "app_cert_file") or present(spec, "alipay_cert_file")
    or present(spec, "alipay_root_cert_file")
  if ctx.cert_mode then
    for _, c in ipairs(CERTS) do
      if present(spec, c[1]) then
        one(c[1], c[2])
      else
        ctx.key_failed = true
        report:add(c[1], code, "fail", "certificate mode needs app_cert_file, alipay_cert_file and "
          .. "alipay_root_cert_file; this one is missing",
          ("alipay channel add %s --update %s FILE"):format(code, OPTION[c[1]]))
      end
    end
  elseif present(spec, "alipay_public_key_file") then one("alipay_public_key_file", "public_key")
  elseif present(spec, "alipay_public_key_env") then one("alipay_public_key_env", "public_key")
  else
    ctx.key_failed = true
    report:add("alipay_public_key_file", code, "fail", "no Alipay public key (nor the certificates of "
      .. "certificate mode) configured", ("alipay channel add %s --update --alipay-public-key-file FILE "
      .. "(Alipay's public key from the console, not the app's)"):format(code))
  end
  if present(spec, "app_public_key_file") then one("app_public_key_file", "public_key") end
end

local function check_pair(report, ctx)
  local code, keys = ctx.code, ctx.keys
  local private = keys.private_key_file or keys.private_key_env
  local field = ctx.cert_mode and "app_cert_file" or (keys.app_public_key_file and "app_public_key_file")
  if not field then
    if ctx.spec.app_public_key_file then
      return report:add("key_pair", code, "skip", "app_public_key_file did not pass its check")
    end
    return report:add("key_pair", code, "skip", "no app public key configured to compare with "
      .. "(app_public_key_file); the signed call shows whether the key Alipay holds matches",
      ("to check it offline: alipay channel add %s --update --app-public-key-file FILE"):format(code))
  end
  local public = keys[field]
  if not private or not public then
    return report:add("key_pair", code, "skip", "a key file did not pass its check")
  end
  if keyfiles.pair(private, public) then
    return report:add("key_pair", code, "pass", ("the private key's public half is %s's key"):format(field))
  end
  return report:add("key_pair", code, "fail", ("the app private key and %s are not a key pair"):format(field),
    ctx.cert_mode and "give the private key this certificate was issued for, or upload a new certificate "
      .. "request made from this private key and use the certificate Alipay issues"
    or "give the private key whose public key was uploaded, or upload this private key's public key "
      .. "(openssl rsa -in KEY -pubout) to the console")
end

local function check_sns(report, ctx)
  if not ctx.cert_mode then return end
  local k = ctx.keys
  if not (k.app_cert_file and k.alipay_cert_file and k.alipay_root_cert_file) then
    return report:add("cert_sns", ctx.code, "skip", "a certificate did not pass its check")
  end
  return report:add("cert_sns", ctx.code, "pass", ("app_cert_sn %s, alipay_cert_sn %s, alipay_root_cert_sn %s")
    :format(k.app_cert_file.sn, k.alipay_cert_file.sn, k.alipay_root_cert_file.sn))
end

-- ---- the channel as the library loads it ----

local KEY_FIELD = { private_key = true, private_key_file = true, private_key_env = true,
  alipay_public_key = true, alipay_public_key_file = true, alipay_public_key_env = true,
  app_cert_file = true, alipay_cert_file = true, alipay_root_cert_file = true }

local function check_load(report, ctx)
  local set, err, detail = channels.load({ channels = { [ctx.code] = ctx.spec } },
    { base_dir = ctx.base_dir, getenv = ctx.getenv, transport = ctx.transport })
  if set then
    ctx.set, ctx.channel = set, set:get(ctx.code)
    return report:add("channel", ctx.code, "pass", ("alipay.messaging.channels.load accepts it (%s, app %s, %s)")
      :format(ctx.spec.kind, ctx.spec.app_id, ctx.cert_mode and "certificate mode" or "public-key mode"))
  end
  local msg = tostring(detail and detail.msg or err)
  if ctx.key_failed and KEY_FIELD[detail and detail.field or ""] then
    return report:add("channel", ctx.code, "skip", "not loaded: a key check failed (" .. msg .. ")")
  end
  return report:add("channel", ctx.code, "fail", msg,
    ("correct the field, e.g. with alipay channel add %s --update ... (see alipay channel add --help)")
      :format(ctx.code))
end

-- ---- the gateway ----

local function gateway_of(spec)
  if spec.gateway then return spec.gateway end
  local ep = config.ENDPOINTS[spec.env or "production"]
  return ep and ep.gateway
end

local function transport_for(ctx)
  if ctx.channel then return ctx.channel.client.transport end
  if ctx.transport then return ctx.transport end
  local curl = require "alipay.transport.curl"
  return curl.new { ca_file = ctx.spec.ca_file and resolve(ctx.base_dir, ctx.spec.ca_file),
                    connect_timeout_ms = ctx.reach_timeout_ms, timeout_ms = ctx.reach_timeout_ms }, true
end

local REACH_FIX = {
  resolve = "the host name does not resolve: check the gateway URL and the DNS settings",
  connect = "nothing answers at that host and port: check the gateway URL (--env/--gateway), and any firewall "
    .. "or proxy in between",
  tls = "the gateway's TLS certificate is not trusted (or its name does not match): for a gateway with a "
    .. "private CA such as the local sandbox's, give --ca-file FILE with alipay channel add --update",
  timeout = "the gateway did not answer in time: check the network path and any proxy",
}

local function check_gateway(report, ctx)
  local url = gateway_of(ctx.spec)
  if not url or not url:match("^https?://") then
    return report:add("gateway", ctx.code, "fail", "no gateway URL (env is not sandbox or production)",
      ("alipay channel add %s --update --env sandbox|production (or --gateway URL)"):format(ctx.code))
  end
  local transport, own = transport_for(ctx)
  if not transport then return report:add("gateway", ctx.code, "fail", "cannot make an HTTP client") end
  local res, err, detail = transport:request { method = "GET", url = url, timeout_ms = ctx.reach_timeout_ms }
  if own then transport:close() end
  if not res then
    detail = errors.is_error(detail) and detail or errors.new("transport", { msg = tostring(err) })
    ctx.unreachable = true
    return report:add("gateway", ctx.code, "fail",
      ("%s is not reachable: %s"):format(url, tostring(detail.msg or detail)),
      REACH_FIX[detail.reason] or "check the gateway URL and the network")
  end
  if url:match("^http://") then
    return report:add("gateway", ctx.code, "warn", ("%s answers (HTTP %d) over plain HTTP: requests and answers "
      .. "are not protected by TLS"):format(url, res.status),
      "fine for a local sandbox; anywhere else use the https gateway")
  end
  return report:add("gateway", ctx.code, "pass", ("%s answers (HTTP %d), TLS verified"):format(url, res.status))
end

-- ---- the signed call ----

local function html_unescape(s)
  return (s:gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&#39;", "'"):gsub("&amp;", "&"))
end

local function sorted_keys(params)
  local keys = {}
  for k, v in pairs(params) do
    if k ~= "sign" and v ~= "" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- The string the gateway says it verified, from an isv.invalid-signature
-- sub_msg: Alipay (and the sandbox) write a sentence, a full-width colon,
-- then the string with '&' escaped as "&amp;".
function M.gateway_string(sub_msg, first_key)
  if type(sub_msg) ~= "string" then return nil end
  local s = sub_msg:match("：(.*)$")
  if not s or not s:find("=", 1, true) then
    local at = first_key and sub_msg:find(first_key .. "=", 1, true)
    s = at and sub_msg:sub(at)
  end
  return s and html_unescape(s)
end

-- Where the gateway's string departs from ours, walking our parameters in
-- signing order. -> parameter name, how | nil when they are the same
function M.first_difference(params, theirs)
  local pos = 1
  for _, k in ipairs(sorted_keys(params)) do
    local piece = k .. "=" .. params[k]
    local after = pos + #piece
    if theirs:sub(pos, after - 1) == piece and (after > #theirs or theirs:sub(after, after) == "&") then
      pos = after + 1
    else
      local their_key = theirs:match("^([^=&]*)=", pos)
      if their_key == k then return k, "its value differs" end
      if their_key and their_key < k then return their_key, "the gateway has a parameter we did not sign" end
      return k, "the gateway's string does not have it"
    end
  end
  if pos <= #theirs then
    return theirs:match("^([^=&]*)", pos), "the gateway has a parameter we did not sign"
  end
  return nil
end

-- -> "same" | "different", parameter, how | "unknown"
function M.compare_signed(params, sub_msg)
  local ours = core.sign_content(params)
  local theirs = M.gateway_string(sub_msg, sorted_keys(params)[1])
  if not theirs then return "unknown" end
  if theirs == ours then return "same" end
  local param, how = M.first_difference(params, theirs)
  return "different", param or "(unknown)", how or "the strings differ", #ours, #theirs
end

-- The parameters we signed, read back from the request.
local function signed_params(req)
  local params = core.form_decode(req.url:match("%?(.*)$") or "") or {}
  local body = req.body and req.body ~= "" and core.form_decode(req.body) or {}
  for k, v in pairs(body) do params[k] = v end
  return params
end

-- client:execute in its two halves, to keep the request that was signed.
-- -> node | nil, detail (sub_code, sub_msg, verified: docs/errors.md); req
local function call(client, method, biz, opts)
  local req, ctx = client:prepare_v2(method, biz, opts)
  local res, terr, tdetail = client:request(req)
  local node, _, detail = client:finish_v2(ctx, res, terr, tdetail)
  return node, detail, req
end

local SETUP_FIX = {
  ["isv.invalid-app-cert-sn"] = "Alipay does not know this app certificate: use the app certificate "
    .. "downloaded from the console for this app (--app-cert)",
  ["isv.invalid-alipay-root-cert-sn"] = "use Alipay's current root certificate from the console (--alipay-root-cert)",
  ["isv.invalid-app-id"] = "check --app-id, and that --env/--gateway is where the app lives (a sandbox app "
    .. "is unknown in production and the other way round)",
  ["isv.missing-app-id"] = "check --app-id",
  ["isv.invalid-timestamp"] = "set the host's clock (NTP): the gateway accepts timestamps within minutes of its own",
  ["aop.invalid-app-auth-token"] = "the app_auth_token (app_auth_token_env) is not valid for this app",
  ["isv.invalid-encrypt-type"] = "encrypt_key does not match the console's AES key",
  ["isv.missing-encrypt-key"] = "the gateway has no AES key for this app: remove encrypt_key or set one in the console",
  ["isv.decryption-error-unknown"] = "encrypt_key does not match the console's AES key",
}

local function judge_signature(report, ctx, d, params)
  local code = ctx.code
  local key_file = ctx.spec.private_key_file or ctx.spec.private_key_env or "the private key"
  local how, param, detail, ours_len, theirs_len = M.compare_signed(params, d.sub_msg)
  if how == "same" then
    return report:add("signed_call", code, "fail", ("isv.invalid-signature: same string: the gateway verified "
      .. "exactly the string we signed (%d bytes), so the app public key Alipay holds for app %s is not the "
      .. "public half of %s (key mismatch)"):format(#core.sign_content(params), ctx.spec.app_id, key_file),
      "upload this private key's public key (openssl rsa -in KEY -pubout) as the app public key in the "
      .. "console, or configure the private key whose public key is uploaded")
  elseif how == "different" then
    return report:add("signed_call", code, "fail", ("isv.invalid-signature: different string: the gateway verified "
      .. "another string than we signed (ours %d bytes, the gateway's %d): first difference at parameter %s "
      .. "(%s)"):format(ours_len, theirs_len, param, detail),
      ("%s changed between signing and the gateway: a proxy or middleware rewriting the request, or an "
      .. "encoding or charset problem; the keys themselves may be right"):format(param))
  end
  return report:add("signed_call", code, "fail", "isv.invalid-signature, and the answer does not quote the "
    .. "string the gateway verified", "compare the app public key in the console with this private key's "
    .. "public key (openssl rsa -in KEY -pubout)")
end

local function judge_call(report, ctx, method, node, d, params)
  local code = ctx.code
  if node then
    return report:add("signed_call", code, "pass", ("%s answered %s with a valid Alipay signature")
      :format(method, tostring(node.code)))
  end
  local what = table.concat({ d.code, d.sub_code }, " ")
  if d.sub_code == "isv.invalid-signature" then return judge_signature(report, ctx, d, params) end
  if SETUP_FIX[d.sub_code] then
    return report:add("signed_call", code, "fail", ("%s: %s (%s)"):format(method, what, tostring(d.sub_msg or d.msg)),
      SETUP_FIX[d.sub_code])
  end
  if d.kind == "signature" then
    return report:add("signed_call", code, "fail", ("%s: the answer's signature does not verify with the "
      .. "configured Alipay key: %s"):format(method, tostring(d.msg)),
      "configure Alipay's public key for this app (console: development settings), not the app's own; "
      .. "sandbox and production keys differ")
  end
  if d.verified and d.kind == "business" then
    return report:add("signed_call", code, "pass", ("%s answered %s (a business answer for the placeholder id) "
      .. "with a valid Alipay signature: signing and verification work"):format(method, what))
  end
  if d.verified and (d.code == "20000" or d.code == "40005") then
    return report:add("signed_call", code, "warn", ("%s answered %s (busy or throttled): the signature "
      .. "was not confirmed"):format(method, what), "run alipay doctor again later")
  end
  if d.verified and d.kind == "gateway" then
    -- Alipay does not document in which order it checks permissions and
    -- parameters against the signature: an answer it signed is not proof.
    return report:add("signed_call", code, "warn", ("%s answered %s (%s) with a valid Alipay signature; "
      .. "whether our signature was checked first is not known"):format(method, what, tostring(d.sub_msg or d.msg)),
      d.code == "40006" and ("add the feature that grants %s to the app in the console"):format(method) or nil)
  end
  if d.kind == "transport" or d.kind == "http" or d.kind == "decode" then
    return report:add("signed_call", code, "fail", ("%s: %s"):format(method, tostring(d)),
      "see the gateway check; the gateway URL may not be an Alipay gateway")
  end
  return report:add("signed_call", code, "fail", ("%s: %s: the answer carries no valid Alipay signature")
    :format(method, tostring(d)), "check app_id, the endpoint and the keys above")
end

local function check_call(report, ctx)
  if not ctx.channel then
    return report:add("signed_call", ctx.code, "skip", "the channel did not load")
  end
  if ctx.unreachable then
    return report:add("signed_call", ctx.code, "skip", "the gateway is not reachable")
  end
  local channel = ctx.channel
  local id_type = channel.id_type
  local method, biz = lifeaccount.METHODS.follow_query, { [id_type] = M.PROBE[id_type] }
  if channel.kind == "alipaymini" then
    method, biz.template_id_list = mini.METHODS.subscriptions, { M.PROBE.template_id }
  end
  local node, detail, req = call(channel.client, method, biz, { timeout_ms = ctx.call_timeout_ms })
  return judge_call(report, ctx, method, node, detail, signed_params(req))
end

-- ---- running ----

local function check_channel(report, code, spec, base_dir, opts)
  if type(spec) ~= "table" then
    return report:add("channel", code, "fail", "the channel is not an object of fields",
      ("remove it (alipay channel remove %s) and add it again"):format(code))
  end
  local ctx = { code = code, spec = spec, base_dir = base_dir, keys = {}, getenv = opts.getenv or os.getenv,
    transport = opts.transport, reach_timeout_ms = opts.reach_timeout_ms or M.REACH_TIMEOUT_MS,
    call_timeout_ms = opts.call_timeout_ms }
  check_keys(report, ctx)
  check_pair(report, ctx)
  check_sns(report, ctx)
  check_load(report, ctx)
  check_gateway(report, ctx)
  check_call(report, ctx)
  if ctx.set then ctx.set:close() end
end

function M.run(opts)
  if type(opts) ~= "table" or type(opts.config) ~= "string" then
    error("doctor.run: opts.config must be the channel file's path", 2)
  end
  local report = setmetatable({ ok = true, config = opts.config, checks = {} }, Report)
  local data, base_dir = check_file(report, opts.config)
  if not data then return report end
  local codes = {}
  for code in pairs(data.channels) do codes[#codes + 1] = tostring(code) end
  table.sort(codes)
  if opts.channel then
    if data.channels[opts.channel] == nil then
      report:add("channel", opts.channel, "fail", ("channel %s is not in %s (configured: %s)")
        :format(opts.channel, opts.config, table.concat(codes, ", ")), "give one of the configured codes to --channel")
      return report
    end
    codes = { opts.channel }
  end
  for _, code in ipairs(codes) do check_channel(report, code, data.channels[code], base_dir, opts) end
  return report
end

return M
