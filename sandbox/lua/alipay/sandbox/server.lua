-- The sandbox gateway's nginx side: runs inside Debian's nginx Lua module
-- (LuaJIT 2.1, one worker), configured by alipay.sandbox (init.lua).
--
--   init_worker_by_lua_block { require("alipay.sandbox.server").init_worker(config_path) }
--   location = /gateway.do  -> .v2()       v2 calls (POST, or GET with everything in the query)
--   location /v3/           -> .v3()       v3 calls
--   location /__sandbox/    -> .admin()    deliveries, arrivals, faults, reset, health,
--                                          templates/delete, cert/rotate
--
-- The protocol itself (signatures, APIs, seeded state) is
-- alipay.sandbox.openapi; this file reads requests, keeps the arrival log,
-- injects faults and writes answers. All state lives in this worker's Lua VM,
-- which is why the sandbox runs one worker.
--
-- Faults (POST /__sandbox/faults with a JSON object; it replaces the set,
-- {} clears it) are decided when a request arrives, for v2 and v3 alike:
--   latency_ms    sleep this long before answering (with any other fault)
--   reset         probability: close the connection without a response
--   http_502      probability: 502 with an HTML body
--   throttle_qps  rate: past N requests within the current second (counted
--                 over every request in scope), the gateway's signed 40005
--   throttle      probability: the signed 40005 whatever the rate (with
--                 count: exactly the next N requests, however fast they come)
--   error_rate    probability: the gateway's signed 20000
--   truncate      probability: announce the full Content-Length, send half
--                 the body, close (also applies to 40005/20000 answers)
--   bad_sign      probability: the normal answer with a wrong signature
-- The first of reset, http_502, throttle_qps, throttle, error_rate that fires decides
-- the answer, in that order. Probabilities are 0..1 (1 = every request).
-- methods (a list of v2 method names or v3 paths; a v3 path also matches as
-- its dotted name) limits which requests are in scope; [] leaves none.
-- count limits how many requests get at least one fault; GET faults shows
-- what is left of it.
--
-- Arrival log (GET /__sandbox/arrivals[?since=seq]): each event has its own
-- seq; "arrive" events carry api, method, worker (the nginx worker's id),
-- connection, connection_requests, scheme, timestamp (as the request sent it); "answer" events carry request
-- (the seq of their arrival), status (444 for reset) and the faults applied.
--
-- nginx runs a worker per core (or opts.workers). What must be one for all
-- of them lives in shared dictionaries: the world through
-- alipay.sandbox.replica (its operation log in DICT_OPS), and in DICT the
-- arrival log, the faults with their count and throttle window, and the
-- certificate rotations. Each worker keeps only caches of these.
local cjson = require "cjson.safe"
local apis = require "alipay.sandbox.apis"
local callback = require "alipay.sandbox.callback"
local replica = require "alipay.sandbox.replica"

local M = {}

M.DICT, M.DICT_OPS = "alipay_sandbox", "alipay_sandbox_ops"

local MAX_EVENTS = 100000 -- arrival log: the newest events are kept
local LOG_FLUSH_S = 0.05
local SYNC_S = 0.1        -- an idle worker applies the others' operations this often
local TRIM_S = 1
local MAX_LOGGED_ERROR = 300

-- ---- worker state ----

local gw, gw_err
local shared -- ngx.shared[M.DICT]
local faults, fault_methods, faults_version = {}, nil, nil -- this worker's copy of the shared set
local rotations_applied = 0
local log_queue = {}

-- ---- logging ----
-- A log call made while serving a request gets the request line appended by
-- nginx, and the query holds the signature. Lines are queued and written by
-- a timer, which has no request: the log says method, status and codes only.

local function log(fmt, ...)
  log_queue[#log_queue + 1] = fmt:format(...)
end

local function flush_log()
  if #log_queue == 0 then return end
  local lines = log_queue
  log_queue = {}
  for i = 1, #lines do ngx.log(ngx.NOTICE, lines[i]) end
end

-- ---- small helpers ----

local function now_ms()
  ngx.update_time()
  return math.floor(ngx.now() * 1000 + 0.5)
end

-- cjson encodes an empty table as {}; the lists here must stay lists.
local function encode_list(list)
  if #list == 0 then return "[]" end
  return cjson.encode(list)
end

local function send_json(status, text)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Content-Length"] = #text
  ngx.print(text)
end

local function send_error(status, message)
  send_json(status, cjson.encode { error = message })
end

local function read_body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  -- Larger than client_body_buffer_size: nginx kept it in a temp file.
  local path = ngx.req.get_body_file()
  if not path then return "" end
  local f = io.open(path, "rb")
  if not f then return "" end
  data = f:read("*a")
  f:close()
  return data
end

local function first_value(v)
  if type(v) == "table" then return v[1] end
  return v
end

-- ---- the arrival log ----
-- Shared by the workers: "ev_next" numbers the events, "ev_first" is the
-- oldest one kept; events past MAX_EVENTS (or before a reset) are dropped.

local function record(event)
  local seq = assert(shared:incr("ev_next", 1, 0))
  event.seq = seq
  shared:set("ev:" .. seq, cjson.encode(event))
  local first = shared:get("ev_first") or 1
  if seq - first >= MAX_EVENTS then
    shared:delete("ev:" .. first)
    shared:set("ev_first", first + 1)
  end
  return event
end

local function events_since(since)
  local list = {}
  local first, last = shared:get("ev_first") or 1, shared:get("ev_next") or 0
  for seq = math.max(first, since + 1), last do
    local text = shared:get("ev:" .. seq)
    if text then list[#list + 1] = cjson.decode(text) end
  end
  return list
end

local function event_count()
  return (shared:get("ev_next") or 0) - (shared:get("ev_first") or 1) + 1, shared:get("ev_next") or 0
end

-- ---- faults ----

local PROBABILITIES = { reset = true, http_502 = true, throttle = true, error_rate = true, truncate = true,
  bad_sign = true }

local function validate_faults(input)
  if type(input) ~= "table" then return nil, "faults: expected a JSON object" end
  local out, methods = {}, nil
  for name, value in pairs(input) do
    if PROBABILITIES[name] then
      if type(value) ~= "number" or value < 0 or value > 1 then
        return nil, name .. ": expected a probability between 0 and 1"
      end
    elseif name == "latency_ms" or name == "throttle_qps" then
      if type(value) ~= "number" or value < 0 or value ~= value then
        return nil, name .. ": expected a number >= 0"
      end
    elseif name == "count" then
      if type(value) ~= "number" or value < 0 or value ~= math.floor(value) then
        return nil, "count: expected an integer >= 0"
      end
    elseif name == "methods" then
      if type(value) ~= "table" or (next(value) ~= nil and value[1] == nil) then
        return nil, "methods: expected a list of method names"
      end
      methods = {}
      for i, m in ipairs(value) do
        if type(m) ~= "string" then return nil, "methods[" .. i .. "]: expected a string" end
        methods[m] = true
      end
    else
      return nil, "unknown fault: " .. tostring(name)
    end
    out[name] = value
  end
  return out, methods
end

local function chance(p)
  return p ~= nil and p > 0 and math.random() < p
end

-- The shared set ("faults", its text, and "faults_v", its version), read
-- again only when another worker changed it. "faults_left" is what is left
-- of count, for every worker together.
local function current_faults()
  local version = shared:get("faults_v")
  if version ~= faults_version then
    local set = cjson.decode(shared:get("faults") or "{}") or {}
    faults, fault_methods = set, nil
    if type(set.methods) == "table" then
      fault_methods = {}
      for _, m in ipairs(set.methods) do fault_methods[m] = true end
    end
    faults_version = version
  end
  return faults
end

local function set_faults(set)
  shared:set("faults", cjson.encode(set))
  if set.count then shared:set("faults_left", set.count) else shared:delete("faults_left") end
  shared:incr("faults_v", 1, 0)
end

-- Decides at arrival which faults this request gets, or nil for none.
-- `methods` and `count` scope the whole set; throttle_qps counts every
-- request in scope, faulted or not, in the second it arrived, over all
-- workers.
local function plan_faults(name, path, at_ms)
  current_faults()
  if next(faults) == nil then return nil end
  if fault_methods and not (fault_methods[name or ""] or fault_methods[path or ""]) then
    return nil
  end
  if faults.count and (shared:get("faults_left") or 0) <= 0 then return nil end
  local throttled = false
  if faults.throttle_qps then
    local second = math.floor(at_ms / 1000)
    local count = shared:incr("qps:" .. second, 1, 0, 5)
    throttled = count > faults.throttle_qps
  end
  local plan = { names = {} }
  local function take(fault) plan.names[#plan.names + 1] = fault; plan[fault] = true end
  if faults.latency_ms and faults.latency_ms > 0 then
    take("latency_ms")
    -- nginx's timers count whole milliseconds; ngx.sleep(0) would make it
    -- warn in a line that carries the request line (signature included).
    plan.sleep_s = math.max(0.001, faults.latency_ms / 1000)
  end
  -- The first of these that fires decides the answer.
  if chance(faults.reset) then take("reset")
  elseif chance(faults.http_502) then take("http_502")
  elseif throttled then take("throttle_qps")
  elseif chance(faults.throttle) then take("throttle")
  elseif chance(faults.error_rate) then take("error_rate")
  end
  if not (plan.reset or plan.http_502) and chance(faults.truncate) then take("truncate") end
  if not (plan.reset or plan.http_502 or plan.throttle_qps or plan.throttle or plan.error_rate)
    and chance(faults.bad_sign) then
    take("bad_sign")
  end
  if #plan.names == 0 then return nil end
  -- Another worker may have taken the last one since the check above.
  if faults.count and shared:incr("faults_left", -1, 0) < 0 then return nil end
  return plan
end

-- ---- certificate rotations ----
-- Kept apart from the world's log, since a reset does not undo them:
-- "rot:<n>" holds the n-th rotation ({alipay_private_key, alipay_cert}),
-- "rotations" their count. Each worker applies them in order.

local function sync_rotations()
  local n = shared:get("rotations") or 0
  for i = rotations_applied + 1, n do
    local r = cjson.decode(shared:get("rot:" .. i) or "null")
    if r then assert(gw:rotate_cert(r.alipay_private_key, r.alipay_cert)) end
    rotations_applied = i
  end
end

-- ---- answers ----

local BAD_GATEWAY = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
  .. "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>sandbox</center>\r\n"
  .. "</body>\r\n</html>\r\n"

-- The result codes of an answer, for the log (never sub_msg: for a bad
-- signature it holds the string the gateway computed). A pattern, not a
-- JSON decode: follower pages are large and every answer is logged.
local function answer_codes(api, status, body)
  if api == "v3" then
    if status == 200 then return "" end
    local code = body:match('"code"%s*:%s*"([^"]*)"')
    return code and (" code=" .. code) or ""
  end
  local code = body:match('"code"%s*:%s*"(%d+)"')
  if not code then return "" end
  local sub_code = body:match('"sub_code"%s*:%s*"([^"]*)"')
  return " code=" .. code .. (sub_code and (" sub_code=" .. sub_code) or "")
end

-- Calls the gateway; a raise there is a sandbox bug, answered as a 500.
local function call_gateway(fn, req, arg)
  local ok, status, headers, body = pcall(fn, gw, req, arg)
  if ok and type(status) == "number" and type(body) == "string" then
    return status, headers, body
  end
  log("sandbox: the gateway failed: %s", tostring(ok and "no answer" or status)
    :sub(1, MAX_LOGGED_ERROR))
  return 500, { ["Content-Type"] = "application/json" },
    cjson.encode { error = "the sandbox gateway failed; see its error log" }
end

local function send_answer(status, headers, body, truncate)
  ngx.status = status
  for name, value in pairs(headers or {}) do ngx.header[name] = value end
  -- The full length is announced even when only half the body follows.
  ngx.header["Content-Length"] = #body
  if not truncate then
    ngx.print(body)
    return
  end
  ngx.print(body:sub(1, math.floor(#body / 2)))
  ngx.flush(true)
  return ngx.exit(ngx.ERROR) -- closes the connection mid-body
end

-- One gateway request, v2 or v3: log the arrival, apply the faults, answer.
local function serve(api, req, name, path, timestamp)
  local arrival = record {
    event = "arrive", at_ms = now_ms(), api = api, method = name, worker = ngx.worker.id(),
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    scheme = ngx.var.scheme, timestamp = timestamp,
  }
  local function answered(status, plan, codes)
    record { event = "answer", request = arrival.seq, at_ms = now_ms(), api = api,
      method = name, status = status, faults = plan and plan.names or nil }
    log("sandbox %s %s status=%d%s%s", api, tostring(name), status, codes or "",
      plan and (" faults=" .. table.concat(plan.names, ",")) or "")
  end

  if not gw then
    answered(500)
    return send_error(500, "the sandbox gateway is not running: " .. tostring(gw_err))
  end
  sync_rotations()

  local plan = plan_faults(name, path, arrival.at_ms)
  if plan and plan.sleep_s then ngx.sleep(plan.sleep_s) end
  if plan and plan.reset then
    answered(444, plan)
    return ngx.exit(444) -- nginx closes the connection without a response
  end
  if plan and plan.http_502 then
    answered(502, plan)
    ngx.status = 502
    ngx.header["Content-Type"] = "text/html"
    ngx.header["Content-Length"] = #BAD_GATEWAY
    return ngx.print(BAD_GATEWAY)
  end

  local status, headers, body
  local fault_fn = api == "v2" and gw.fault_v2 or gw.fault_v3
  if plan and (plan.throttle_qps or plan.throttle) then
    status, headers, body = call_gateway(fault_fn, req, "40005")
  elseif plan and plan.error_rate then
    status, headers, body = call_gateway(fault_fn, req, "20000")
  else
    local handle = api == "v2" and gw.handle_v2 or gw.handle_v3
    status, headers, body = call_gateway(handle, req,
      plan and plan.bad_sign and { bad_sign = true } or nil)
  end
  answered(status, plan, answer_codes(api, status, body))
  return send_answer(status, headers, body, plan and plan.truncate)
end

-- ---- the gateway locations ----

function M.v2()
  local verb = ngx.req.get_method()
  if verb ~= "POST" and verb ~= "GET" then
    ngx.header["Allow"] = "GET, POST"
    return send_error(405, "the v2 gateway takes POST (or GET)")
  end
  local req = {
    query = ngx.var.args or "",
    body = verb == "POST" and read_body() or "",
    content_type = ngx.var.content_type or "",
  }
  local name = gw and gw:method_of_v2(req) or nil
  -- The timestamp as sent: system parameters are in the query, but some
  -- clients put everything in the body.
  local timestamp = first_value(ngx.decode_args(req.query).timestamp)
  if not timestamp and req.content_type:find("x-www-form-urlencoded", 1, true) then
    timestamp = first_value(ngx.decode_args(req.body).timestamp)
  end
  return serve("v2", req, name, nil, timestamp)
end

function M.v3()
  local headers = {}
  for name, value in pairs(ngx.req.get_headers(200)) do
    if type(value) == "table" then value = table.concat(value, ", ") end
    headers[name:lower()] = value
  end
  -- The raw path: the signature covers the path as sent, not as decoded.
  local path = ngx.var.request_uri:match("^[^?]*")
  local req = {
    method = ngx.req.get_method(),
    path = path,
    query = ngx.var.args or "",
    headers = headers,
    body = read_body(),
  }
  local name = path:gsub("^/v3/", ""):gsub("/", ".")
  local timestamp = (headers.authorization or ""):match("timestamp=(%d+)")
  return serve("v3", req, name, path, timestamp)
end

function M.not_found()
  return send_error(404, "no such endpoint: " .. ngx.var.uri)
end

-- ---- admin ----

local function reset_state()
  if gw then replica.run({ kind = "reset" }, function() gw:reset() end) end
  shared:set("ev_first", (shared:get("ev_next") or 0) + 1)
  set_faults({})
  callback.reset(shared)
end

local ADMIN = {}

ADMIN["GET health"] = function()
  local events, last_seq = event_count()
  send_json(gw and 200 or 500, cjson.encode {
    ok = gw ~= nil, error = gw_err, pid = ngx.worker.pid(), workers = ngx.worker.count(),
    events = events, last_seq = last_seq, ops = gw and replica.stats().ops or nil,
  })
end

ADMIN["GET deliveries"] = function()
  if not gw then return send_error(500, "the sandbox gateway is not running") end
  replica.catch_up()
  local text, err = encode_list(gw:deliveries() or {})
  if not text then return send_error(500, "deliveries: " .. tostring(err)) end
  send_json(200, text)
end

ADMIN["GET arrivals"] = function()
  local since = ngx.var.arg_since
  local from = 0
  if since then
    from = tonumber(since)
    if not from then return send_error(400, "since: expected a sequence number") end
  end
  send_json(200, encode_list(events_since(from)))
end

-- The set as it was given, with what is left of count.
local function faults_text()
  current_faults()
  if next(faults) == nil then return "{}" end
  local shown = {}
  for k, v in pairs(faults) do shown[k] = v end
  if shown.count then shown.count = math.max(0, shared:get("faults_left") or 0) end
  return cjson.encode(shown)
end

ADMIN["GET faults"] = function()
  send_json(200, faults_text())
end

ADMIN["POST faults"] = function()
  local input, err = cjson.decode(read_body())
  if input == nil then return send_error(400, "faults: not JSON: " .. tostring(err)) end
  local valid, methods = validate_faults(input)
  if not valid then return send_error(400, methods) end
  set_faults(valid)
  local names = {}
  for name in pairs(valid) do names[#names + 1] = name end
  table.sort(names)
  log("sandbox: faults set: %s", #names > 0 and table.concat(names, ",") or "none")
  send_json(200, faults_text())
end

-- Deletes a claimed Life Account template or a mini-program template now,
-- as an operator would in the console: later sends with it fail the way
-- Alipay's do (MSG_TEMPLATE_NOT_EXIST, USER_TEMPLATE_ILLEGAL).
ADMIN["POST templates/delete"] = function()
  if not gw then return send_error(500, "the sandbox gateway is not running") end
  local input = cjson.decode(read_body())
  local id = type(input) == "table" and input.template_id
  if type(id) ~= "string" or id == "" then
    return send_error(400, "templates/delete: expected {\"template_id\": \"...\"}")
  end
  local deleted = replica.run({ kind = "delete_template", template_id = id }, function()
    local state = gw:state()
    return state:delete_claim(id) or state:delete_mini_template(id)
  end)
  if not deleted then return send_error(404, "templates/delete: no live template " .. id) end
  log("sandbox: template %s deleted", id)
  send_json(200, cjson.encode { ok = true, template_id = id })
end

-- Alipay rotates its certificate (certificate mode): the body carries the
-- new signing key and certificate, made by alipay.sandbox's rotate_cert
-- (init.lua). Neither is logged or echoed: the answer is the new SN. The
-- rotation is checked here, then shared for the other workers.
ADMIN["POST cert/rotate"] = function()
  if not gw then return send_error(500, "the sandbox gateway is not running") end
  local input = cjson.decode(read_body())
  if type(input) ~= "table" or type(input.alipay_private_key) ~= "string" or type(input.alipay_cert) ~= "string" then
    return send_error(400, "cert/rotate: expected {\"alipay_private_key\": pem, \"alipay_cert\": pem}")
  end
  sync_rotations()
  local sn, err = gw:rotate_cert(input.alipay_private_key, input.alipay_cert)
  if not sn then return send_error(400, err) end
  local n = assert(shared:incr("rotations_next", 1, 0))
  shared:set("rot:" .. n, cjson.encode { alipay_private_key = input.alipay_private_key,
                                         alipay_cert = input.alipay_cert })
  shared:set("rotations", n)
  rotations_applied = n
  log("sandbox: alipay certificate rotated, now signing under SN %s", sn)
  send_json(200, cjson.encode { ok = true, alipay_cert_sn = sn })
end

ADMIN["POST reset"] = function()
  reset_state()
  log("sandbox: reset")
  send_json(200, cjson.encode { ok = true })
end

-- Callbacks to endpoints under test (notify, event, callbacks): alipay.sandbox.callback.
-- A follow or unfollow event changes the world on every worker.
local function change_followers(kind, user_id)
  return replica.run({ kind = "followers", event = kind, user_id = user_id }, function()
    local state = gw:state()
    if kind == "follow" then return state:follow(user_id) end
    return state:unfollow(user_id)
  end)
end

local function callback_routes()
  return callback.admin_routes(function() return gw end, { send_json = send_json, send_error = send_error,
    read_body = read_body, log = log, shared = shared, followers = change_followers })
end

function M.admin()
  local endpoint = ngx.var.uri:match("^/__sandbox/(.-)/?$") or ""
  local route = ADMIN[ngx.req.get_method() .. " " .. endpoint]
  if route then return route() end
  if ADMIN["GET " .. endpoint] or ADMIN["POST " .. endpoint] then
    return send_error(405, "method not allowed on " .. endpoint)
  end
  return send_error(404, "no such admin endpoint: " .. endpoint)
end

-- ---- worker start ----

local function load_gateway(config_path)
  local f = io.open(config_path, "rb")
  if not f then return nil, "cannot read the sandbox config" end
  local config = cjson.decode(f:read("*a"))
  f:close()
  if type(config) ~= "table" then return nil, "the sandbox config is not JSON" end
  local ok, gateway = pcall(require, "alipay.sandbox.openapi")
  if not ok then return nil, "cannot load alipay.sandbox.openapi: " .. tostring(gateway) end
  local built, obj, err = pcall(gateway.new, config)
  if not built then return nil, "gateway.new raised: " .. tostring(obj) end
  if not obj then return nil, "gateway.new: " .. tostring(err) end
  return obj
end

-- One logged operation of the world, run on this worker's replica.
local function apply(op)
  if op.kind == "call" then
    local ctx = op.ctx
    ctx.certs = gw.certs
    apis.call(op.method, gw:state(), op.biz, ctx)
  elseif op.kind == "reset" then
    gw:reset()
  elseif op.kind == "delete_template" then
    local state = gw:state()
    local _ = state:delete_claim(op.template_id) or state:delete_mini_template(op.template_id)
  elseif op.kind == "followers" then
    local state = gw:state()
    if op.event == "follow" then state:follow(op.user_id) else state:unfollow(op.user_id) end
  else
    error("sandbox replica: unknown operation " .. tostring(op.kind), 0)
  end
end

-- Every business call goes through the log, so that each worker's world
-- takes it (the gateway's own call_api runs it here).
local function share_calls(gateway)
  local call_here = gateway.call_api
  gateway.call_api = function(self, method, biz, ctx)
    local op = { kind = "call", method = method, biz = biz,
                 ctx = { api = ctx.api, app_id = ctx.app_id, method = ctx.method, now = ctx.now } }
    return replica.run(op, call_here, self, method, biz, ctx)
  end
end

local function sync()
  if not gw then return end
  local ok, err = pcall(function()
    replica.catch_up()
    sync_rotations()
  end)
  if not ok then log("sandbox: %s", tostring(err):sub(1, MAX_LOGGED_ERROR)) end
end

function M.init_worker(config_path)
  math.randomseed(ngx.time() * 1000 + ngx.worker.pid())
  shared = ngx.shared[M.DICT]
  local ok, err = ngx.timer.every(LOG_FLUSH_S, flush_log)
  if not ok then ngx.log(ngx.ERR, "sandbox: no log timer: ", err) end
  gw, gw_err = load_gateway(config_path)
  if gw then
    replica.init(ngx.shared[M.DICT_OPS], apply)
    for route, fn in pairs(callback_routes()) do ADMIN[route] = fn end
    share_calls(gw)
    ngx.timer.every(SYNC_S, sync)
    if ngx.worker.id() == 0 then ngx.timer.every(TRIM_S, function() pcall(replica.trim) end) end
    ngx.log(ngx.NOTICE, "sandbox: gateway ready")
  else
    ngx.log(ngx.ERR, "sandbox: ", gw_err)
  end
end

return M
