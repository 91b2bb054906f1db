-- The sandbox talks back: it sends what Alipay sends (docs/protocol.md §3)
-- to an endpoint under test, signed with the sandbox's "Alipay" key, and
-- repeats a notification on Alipay's schedule until the endpoint answers
-- exactly `success`. Runs inside the sandbox's nginx worker
-- (alipay.sandbox.server merges the admin routes below); messages are
-- built by alipay.sandbox.callback_messages, each attempt is made by
-- alipay.sandbox.callback_sender, and retries are ngx.timer.at timers (a
-- pending timer runs early, "premature", when nginx stops, and then sends
-- nothing).
--
-- Admin endpoints (JSON in, JSON out; every callback is recorded):
--   POST /__sandbox/notify  {url =, params = {k = v}, time_scale =, delays =,
--                            timeout_ms =, wait =, sign_type =}
--   POST /__sandbox/event   {url =, event = {type =, user_id =, action_param =, ...},
--                            time_scale =, delays =, timeout_ms =, wait =, sign_type =}
--                           type "verifygw" (or "check") sends the gateway check
--   GET  /__sandbox/callbacks[?id=cb-N]   the record(s)
-- The answer of notify and event is the record after the first attempt
-- (with wait = true: after the last one). A record:
--   {id, kind = "notify" | "event" | "check", event =, url, body (as sent),
--    params (the fields sent, sign included), rule = "V1" | "V2",
--    schedule_s = {the delays between attempts, scaled}, max_attempts,
--    attempts = {{n, at (Beijing time), at_ms, status, answer (at most 256
--    bytes, control characters blanked), answer_bytes, truncated, error}},
--    state = "retrying" | "delivered" | "failed" | "verified" | "abandoned",
--    next_attempt_at_ms, follower = "added" | "removed" | "unchanged" (events)}
-- A check is sent once, as in the console: "verified" when the answer is
-- the envelope signed with the app's key, carrying the app's public key
-- and <success>true</success> (check = {success =, signature =, public_key =}).
local cjson = require "cjson.safe"
local beijing_time = require "alipay.util.beijing_time"
local messages = require "alipay.sandbox.callback_messages"
local sender = require "alipay.sandbox.callback_sender"

local M = {}

-- Alipay's schedule for a notification that did not get `success`: the
-- waits between attempts, 8 attempts within about 25 hours (docs/conformance.md,
-- "Callbacks"). The same schedule is used for Life Account events, whose
-- own schedule is not documented.
M.SCHEDULE_S = { 4 * 60, 10 * 60, 10 * 60, 3600, 2 * 3600, 6 * 3600, 15 * 3600 }
M.MAX_RECORDS = 1000
M.MAX_WAIT_S = 50 -- wait = true holds the admin request; the admin client waits 60 s

-- The records are shared by nginx's workers (a shared dictionary, given
-- by alipay.sandbox.server): "cb_next" numbers them, "cb_first" is the
-- oldest one shown, "cb:<n>" holds record n as the admin endpoints show
-- it. The worker that made a record keeps the record itself (its timers
-- make the later attempts) and publishes it after every change.
local shared

local function now_ms()
  ngx.update_time()
  return math.floor(ngx.now() * 1000 + 0.5)
end

-- ---- options ----

-- The waits between attempts: explicit delays (seconds), or Alipay's
-- schedule times time_scale (e.g. 0.001: 4 minutes become 0.24 s).
local function schedule_of(input)
  if input.delays ~= nil then
    if type(input.delays) ~= "table" or (next(input.delays) ~= nil and input.delays[1] == nil) then
      return nil, "delays: expected a list of seconds"
    end
    if #input.delays > 20 then return nil, "delays: at most 20 retries" end
    local out = {}
    for i, d in ipairs(input.delays) do
      if type(d) ~= "number" or d < 0 or d ~= d or d > 86400 * 2 then
        return nil, "delays[" .. i .. "]: expected seconds between 0 and 172800"
      end
      out[i] = d
    end
    return out
  end
  local scale = input.time_scale
  if scale == nil then scale = 1 end
  if type(scale) ~= "number" or scale <= 0 or scale > 1 or scale ~= scale then
    return nil, "time_scale: expected a number in (0, 1] (1 is Alipay's schedule)"
  end
  local out = {}
  for i, d in ipairs(M.SCHEDULE_S) do out[i] = d * scale end
  return out
end

local function options(input)
  local schedule, err = schedule_of(input)
  if not schedule then return nil, err end
  local timeout = input.timeout_ms
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 1 or timeout > 60000) then
    return nil, "timeout_ms: expected 1..60000"
  end
  if input.wait ~= nil and type(input.wait) ~= "boolean" then return nil, "wait: expected true or false" end
  if input.sign_type ~= nil and input.sign_type ~= "RSA2" and input.sign_type ~= "RSA" then
    return nil, "sign_type: expected RSA2 or RSA"
  end
  return { schedule = schedule, timeout_ms = timeout, wait = input.wait == true, sign_type = input.sign_type }
end

-- ---- records ----

-- The record as the admin endpoints show it.
local function view(record)
  local out = {}
  for k, v in pairs(record) do
    if k:sub(1, 1) ~= "_" then out[k] = v end
  end
  setmetatable(out.attempts, cjson.empty_array_mt)
  return out
end

local function publish(record)
  shared:set("cb:" .. record.n, cjson.encode(view(record)))
end

local function store(record)
  local n = assert(shared:incr("cb_next", 1, 0))
  record.id, record.n = "cb-" .. n, n
  publish(record)
  local first = shared:get("cb_first") or 1
  while n - first >= M.MAX_RECORDS do
    shared:delete("cb:" .. first)
    first = first + 1
  end
  shared:set("cb_first", first)
  return record
end

-- The record of an id, as published, or nil (unknown, or dropped).
local function published(id)
  local n = tonumber(id:match("^cb%-(%d+)$"))
  if not n or n < (shared:get("cb_first") or 1) then return nil end
  return shared:get("cb:" .. n)
end

-- Forgets every record shown (a reset); retries in flight go on unseen.
function M.reset(dict)
  dict:set("cb_first", (dict:get("cb_next") or 0) + 1)
end

-- ---- the gateway check's answer ----

-- Is this the envelope of docs/protocol.md §3.4, signed with the app's key
-- and carrying the app's public key?
local function judge_check(app_key, answer)
  local inner, sign, sign_type = answer:match("^%s*<%?xml[^>]*%?>%s*<alipay><response>(.*)</response>"
    .. "<sign>([^<]*)</sign><sign_type>([^<]*)</sign_type></alipay>%s*$")
  if not inner then return { envelope = false } end
  local result = { envelope = true, success = inner:find("<success>true</success>", 1, true) ~= nil }
  result.signature = app_key:verify(inner, sign, sign_type) == true
  local key_text = inner:match("<biz_content>([^<]*)</biz_content>")
  local ok, key = false, nil
  if key_text then ok, key = pcall(require("alipay.core").public_key, key_text) end
  result.public_key = ok and key ~= nil and key:public_pem() == app_key:public_pem()
  return result
end

-- ---- delivery ----

local attempt, schedule_next

function attempt(record)
  local at = now_ms()
  local res = sender.post(record._target, record.body, { timeout_ms = record._timeout_ms })
  local exact = res.exact
  res.exact = nil
  res.n = #record.attempts + 1
  res.at_ms = at
  res.at = beijing_time.format(math.floor(at / 1000))
  record.attempts[#record.attempts + 1] = res
  record.next_attempt_at_ms = nil
  if record.kind == "check" then
    record.check = exact and judge_check(record._app_key, exact) or { envelope = false }
    local c = record.check
    record.state = (c.envelope and c.success and c.signature and c.public_key) and "verified" or "failed"
    return publish(record)
  end
  if exact == "success" then
    record.state = "delivered"
  elseif res.n >= record.max_attempts then
    record.state = "failed"
  else
    record.state = "retrying"
  end
  publish(record)
end

-- The next attempt, by a timer (not a sleeping request: nginx runs a
-- pending timer early when it stops, and the timer then sends nothing).
function schedule_next(record)
  local delay = record.schedule_s[#record.attempts]
  record.next_attempt_at_ms = now_ms() + math.floor(delay * 1000)
  local ok, err = ngx.timer.at(delay, function(premature)
    if record.state ~= "retrying" then return end
    if premature then
      record.state, record.next_attempt_at_ms = "abandoned", nil
      return publish(record)
    end
    attempt(record)
    if record.state == "retrying" then schedule_next(record) end
  end)
  if not ok then
    record.state, record.next_attempt_at_ms = "abandoned", nil
    record.error = "no timer for the next attempt: " .. tostring(err)
  end
  publish(record)
end

-- The first attempt now; then, with wait, the next ones in this request
-- (when the whole schedule fits in MAX_WAIT_S), else by timers.
local function deliver(record, wait)
  attempt(record)
  if record.state ~= "retrying" then return end
  local left = 0
  for i = #record.attempts, #record.schedule_s do left = left + record.schedule_s[i] end
  if wait and left <= M.MAX_WAIT_S then
    while record.state == "retrying" do
      ngx.sleep(math.max(0.001, record.schedule_s[#record.attempts])) -- nginx counts whole ms
      attempt(record)
    end
    return
  end
  schedule_next(record)
end

local function new_record(kind, url, target, msg, opts, gw)
  local schedule = kind == "check" and {} or opts.schedule
  return store {
    kind = kind, event = msg.event, url = url, body = msg.body, params = msg.fields, rule = msg.rule,
    schedule_s = setmetatable(schedule, cjson.empty_array_mt), max_attempts = #schedule + 1,
    attempts = {}, state = "retrying", created_at_ms = now_ms(),
    _target = target, _timeout_ms = opts.timeout_ms, _app_key = gw.app_key,
  }
end

-- ---- the admin routes ----

-- callback.admin_routes(get_gateway, io) -> {["POST notify"] = fn, ["POST event"] = fn,
-- ["GET callbacks"] = fn}; io = {send_json =, send_error =, read_body =, log =,
-- shared = the dictionary of the records, followers = fn(type, user_id) -> changed}
-- from alipay.sandbox.server (followers changes the world on every worker);
-- get_gateway() -> the gateway object or nil.
function M.admin_routes(get_gateway, io)
  local send_json, send_error, read_body, log = io.send_json, io.send_error, io.read_body, io.log
  shared = io.shared

  local function input_of(name)
    local gw = get_gateway()
    if not gw then return nil, nil, 500, "the sandbox gateway is not running" end
    local input = cjson.decode(read_body())
    if type(input) ~= "table" then return nil, nil, 400, name .. ": expected a JSON object" end
    return input, gw
  end

  local function respond(record)
    log("sandbox: callback %s %s to %s: %s after %d attempt(s)", record.id, record.event or record.kind,
      record.url, record.state, #record.attempts)
    send_json(200, cjson.encode(view(record)))
  end

  local function prepare(name, input)
    local target, err = sender.parse_url(input.url)
    if not target then return nil, nil, name .. ": " .. err end
    local opts
    opts, err = options(input)
    if not opts then return nil, nil, name .. ": " .. err end
    return target, opts
  end

  local routes = {}

  routes["POST notify"] = function()
    local input, gw, status, why = input_of("notify")
    if not input then return send_error(status, why) end
    local target, opts, err = prepare("notify", input)
    if not target then return send_error(400, err) end
    local msg
    msg, err = messages.notification(gw.signer, gw.app_id, input.params,
      { sign_type = opts.sign_type, now = ngx.time() })
    if not msg then return send_error(400, "notify: " .. err) end
    local record = new_record("notify", input.url, target, msg, opts, gw)
    deliver(record, opts.wait)
    respond(record)
  end

  routes["POST event"] = function()
    local input, gw, status, why = input_of("event")
    if not input then return send_error(status, why) end
    local target, opts, err = prepare("event", input)
    if not target then return send_error(400, err) end
    local event = input.event
    if type(event) ~= "table" then return send_error(400, "event: expected {\"event\": {\"type\": ...}}") end
    local msg, kind
    local now, now_ms_value = ngx.time(), now_ms()
    if event.type == "verifygw" or event.type == "check" then
      kind = "check"
      msg, err = messages.gateway_check(gw.signer, gw.app_id,
        { sign_type = opts.sign_type, now = now, now_ms = now_ms_value })
    else
      kind = "event"
      msg, err = messages.life_event(gw.signer, gw.app_id, event,
        { sign_type = opts.sign_type, now = now, now_ms = now_ms_value })
    end
    if not msg then return send_error(400, "event: " .. err) end
    local record = new_record(kind, input.url, target, msg, opts, gw)
    -- Alipay's state changes when the user acts; the message follows.
    if event.type == "follow" or event.type == "unfollow" then
      local changed = io.followers(event.type, event.user_id)
      record.follower = changed and (event.type == "follow" and "added" or "removed") or "unchanged"
      publish(record)
    end
    deliver(record, opts.wait)
    respond(record)
  end

  routes["GET callbacks"] = function()
    local id = ngx.var.arg_id
    if id then
      local text = published(id)
      if not text then
        return send_error(404, "callbacks: no callback " .. (id:match("^cb%-%d+$") or "with that id"))
      end
      return send_json(200, text)
    end
    local list = {}
    for n = shared:get("cb_first") or 1, shared:get("cb_next") or 0 do
      list[#list + 1] = shared:get("cb:" .. n)
    end
    send_json(200, "[" .. table.concat(list, ",") .. "]")
  end

  return routes
end

return M
