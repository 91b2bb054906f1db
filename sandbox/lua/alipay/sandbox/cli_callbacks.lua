-- `alipay sandbox notify|event|callbacks`: the recorded sandbox sends what
-- Alipay sends to an endpoint under test (alipay.sandbox.callback) and
-- shows what was sent and what the endpoint answered. Wired into
-- `alipay sandbox` by alipay.cli.sandbox.
--
--   alipay sandbox notify --to URL [--param k=v ...] [--time-scale F | --delays 1,2] [--wait] [--json]
--   alipay sandbox event --to URL --event follow|unfollow|click|enter|verifygw [--user-id ID]
--                        [--action-param TEXT] [--time-scale F | --delays 1,2] [--wait] [--json]
--   alipay sandbox callbacks [--id cb-N] [--json]
--
-- Exit status 0 when the endpoint accepted the message (delivered; for the
-- gateway check, verified), 1 otherwise (failed, or still retrying: follow
-- it with `alipay sandbox callbacks --id cb-N`).
local M = {}

local EVENTS = { follow = true, unfollow = true, click = true, enter = true, verifygw = true }

-- ---- arguments ----

local function params_of(list)
  local params = {}
  for _, item in ipairs(list or {}) do
    local k, v = item:match("^([^=]+)=(.*)$")
    if not k then return nil, "--param: expected NAME=VALUE" end
    if params[k] ~= nil then return nil, "--param: " .. k .. " is given twice" end
    params[k] = v
  end
  return params
end

local function delays_of(text)
  if text == nil then return nil end
  local out = {}
  if text == "" then return out end -- no retries
  for item in (text .. ","):gmatch("([^,]*),") do
    local n = tonumber(item)
    if not n then return nil, "--delays: expected seconds separated by commas, e.g. 1,2,5" end
    out[#out + 1] = n
  end
  return out
end

local function callback_opts(args)
  local opts = { wait = args.wait or nil }
  if args.time_scale then
    opts.time_scale = tonumber(args.time_scale)
    if not opts.time_scale then return nil, "--time-scale: expected a number such as 0.001" end
  end
  local err
  opts.delays, err = delays_of(args.delays)
  if args.delays and not opts.delays then return nil, err end
  if opts.delays and opts.time_scale then return nil, "--delays and --time-scale: give one" end
  return opts
end

-- ---- output ----

-- JSON numbers come back as floats (200.0) under Lua 5.4.
local function int(n)
  return type(n) == "number" and ("%d"):format(math.floor(n)) or tostring(n)
end

local function print_attempt(out, a)
  local what
  if a.error then
    what = "no answer (" .. a.error .. ")"
  else
    what = ("HTTP %s, answered %q%s"):format(int(a.status), a.answer or "",
      a.truncated and (" (first " .. #a.answer .. " of " .. int(a.answer_bytes) .. " bytes)") or "")
  end
  out.line("  attempt %s at %s (Beijing time): %s", int(a.n), tostring(a.at), what)
end

local function print_record(out, r)
  out.line("%s: %s (rule %s) to %s", r.id, r.kind == "notify" and "notification" or
    (r.kind == "check" and "gateway check" or (tostring(r.event) .. " event")), tostring(r.rule), r.url)
  out.line("  sent: %s", r.body)
  if r.follower then out.line("  follower: %s", r.follower) end
  for _, a in ipairs(r.attempts or {}) do print_attempt(out, a) end
  if r.check then
    out.line("  check reply: envelope %s, success %s, app signature %s, app public key %s",
      tostring(r.check.envelope), tostring(r.check.success), tostring(r.check.signature),
      tostring(r.check.public_key))
  end
  local state = r.state
  if state == "retrying" and r.next_attempt_at_ms then
    state = state .. (" (attempt %d of %s next, `alipay sandbox callbacks --id %s` follows it)")
      :format(#r.attempts + 1, int(r.max_attempts), r.id)
  end
  out.line("  state: %s", state)
end

local function show(args, out, record)
  if args.json then
    out.json(record)
  else
    print_record(out, record)
  end
  return (record.state == "delivered" or record.state == "verified") and true or 1
end

-- ---- actions ----

function M.notify(sb, args, out)
  local params, err = params_of(args.param)
  if not params then return nil, err end
  local opts
  opts, err = callback_opts(args)
  if not opts then return nil, err end
  local record
  record, err = sb:notify(args.to, params, opts)
  if not record then return nil, err end
  return show(args, out, record)
end

function M.event(sb, args, out)
  if not EVENTS[args.event] then
    return nil, "--event: expected follow, unfollow, click, enter or verifygw"
  end
  if args.event ~= "verifygw" and not args.user_id then return nil, "--user-id: required for a " .. args.event end
  local opts, err = callback_opts(args)
  if not opts then return nil, err end
  local record
  record, err = sb:event(args.to, { type = args.event, user_id = args.user_id, action_param = args.action_param },
    opts)
  if not record then return nil, err end
  return show(args, out, record)
end

function M.callbacks(sb, args, out)
  local list, err = sb:callbacks(args.id)
  if not list then return nil, err end
  if args.json then
    out.json(list)
    return true
  end
  if args.id then list = { list } end
  if #list == 0 then out.line("no callbacks recorded") end
  for _, r in ipairs(list) do print_record(out, r) end
  return true
end

-- ---- argparse ----

local function schedule_options(cmd)
  cmd:option("--time-scale", "Scale Alipay's retry schedule (4m, 10m, 10m, 1h, 2h, 6h, 15h), e.g. 0.001 "
    .. "for tests; default 1."):argname("<factor>")
  cmd:option("--delays", "Seconds between attempts instead of Alipay's schedule, e.g. 1,2,5."):argname("<list>")
  cmd:flag("--wait", "Wait for the last attempt (when the schedule fits in 50 seconds).")
end

-- configure(parent, cli, state_option): adds the three commands to
-- `alipay sandbox`.
function M.configure(cmd, cli, state_option)
  local notify_cmd = cmd:command("notify", "Send a signed asynchronous notification (rule V1) to an endpoint, "
    .. "retried until it answers success.")
  notify_cmd:option("--to", "The endpoint's URL (http, IP address or localhost)."):argname("<url>"):count(1)
  notify_cmd:option("--param", "A field of the notification (repeatable), e.g. out_trade_no=SO-1."):argname(
    "<name=value>"):count("*")
  schedule_options(notify_cmd)
  state_option(notify_cmd)
  cli.json_flag(notify_cmd)

  local event_cmd = cmd:command("event", "Send a signed app-gateway message (rule V2): a Life Account event "
    .. "or the gateway check.")
  event_cmd:option("--to", "The app gateway's URL (http, IP address or localhost)."):argname("<url>"):count(1)
  event_cmd:option("--event", "follow, unfollow, click, enter, or verifygw (the gateway check)."):argname(
    "<type>"):count(1)
  event_cmd:option("--user-id", "The user (follow adds them to the followers, unfollow removes them)."):argname(
    "<id>")
  event_cmd:option("--action-param", "ActionParam of the event (a menu's key for click)."):argname("<text>")
  schedule_options(event_cmd)
  state_option(event_cmd)
  cli.json_flag(event_cmd)

  local list_cmd = cmd:command("callbacks", "Show the callbacks the sandbox sent: body, attempts, state.")
  list_cmd:option("--id", "One callback (cb-N)."):argname("<id>")
  state_option(list_cmd)
  cli.json_flag(list_cmd)
end

return M
