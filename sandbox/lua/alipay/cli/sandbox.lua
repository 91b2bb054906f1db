-- `alipay sandbox start|stop|status|notify|event|callbacks`: runs the local sandbox gateway
-- (alipay.sandbox) in the background and records it in a state file, so a
-- later `stop` or `status`, from another shell, finds it.
--
-- Keys are read from files, never taken from the command line (where `ps`
-- and shell histories would show them).
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"
local callbacks = require "alipay.sandbox.cli_callbacks"

local fs = require "alipay.util.fs"
local shell = require "alipay.util.shell"
local read_file, write_file = fs.read, fs.write_atomic

local M = { summary = "Run the local sandbox gateway (nginx on loopback) for tests and demos." }

local STATE_NAME = "lua-alipay-sandbox"

-- ---- files ----

local function read_input(path, what)
  local text = read_file(path)
  if not text then return nil, what .. ": cannot read " .. path end
  if not text:find("%S") then return nil, what .. ": " .. path .. " is empty" end
  return text
end

local function uid()
  local p = io.popen("id -u 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  return out:match("%d+") or "unknown"
end

function M.default_state_path()
  local dir = os.getenv("XDG_RUNTIME_DIR")
  if dir and dir ~= "" then return dir .. "/" .. STATE_NAME .. ".json" end
  return "/tmp/" .. STATE_NAME .. "-" .. uid() .. ".json"
end

local function read_state(path)
  local text = read_file(path)
  if not text then return nil end
  local ok, state = pcall(cjson.decode, text)
  if not ok or type(state) ~= "table" then return nil end
  return state
end

-- ---- output ----

-- The fields of the Lua API, plus where the PEMs are on disk.
local function report(sb, state_path)
  local files = sb.files or {}
  return {
    pid = sb.pid, prefix = sb.prefix, app_id = sb.app_id, cert_mode = sb.cert_mode,
    gateway = sb.gateway, base_url = sb.base_url,
    https_gateway = sb.https_gateway, https_base_url = sb.https_base_url,
    admin = sb.admin, ca_file = sb.ca_file,
    alipay_public_key = sb.alipay_public_key, alipay_public_key_file = files.alipay_public_key,
    alipay_cert = sb.alipay_cert, alipay_cert_file = files.alipay_cert,
    alipay_root_cert = sb.alipay_root_cert, alipay_root_cert_file = files.alipay_root_cert,
    state = state_path,
  }
end

local READABLE = { "gateway", "base_url", "https_gateway", "https_base_url", "admin", "ca_file",
  "alipay_public_key_file", "alipay_cert_file", "alipay_root_cert_file", "prefix", "state" }

local function print_readable(out, fields)
  for _, name in ipairs(READABLE) do
    if fields[name] ~= nil then out.line("%-23s %s", name, tostring(fields[name])) end
  end
end

-- ---- actions ----

-- The stop command for this state file: with --state, stop needs it too.
local function stop_command(args)
  if not args.state then return "`alipay sandbox stop`" end
  local state = args.state
  if state:find("[^%w%./_%-]") then state = shell.quote(state) end
  return ("`alipay sandbox stop --state %s`"):format(state)
end

local function start(args, out)
  local state_path = args.state or M.default_state_path()
  local previous = read_state(state_path)
  if previous then
    local old = sandbox.attach(previous)
    if old and old:running() then
      return nil, ("a sandbox is already running (pid %s, %s); stop it first with %s")
        :format(tostring(old.pid), tostring(old.base_url), stop_command(args))
    end
  end
  if not args.app_public_key and not args.app_cert then
    return nil, "--app-public-key FILE (or --app-cert FILE) is required"
  end
  local opts = { app_id = args.app_id, seed = args.seed, cert_mode = args.cert_mode }
  local err, detail
  if args.app_public_key then
    opts.app_public_key, err = read_input(args.app_public_key, "--app-public-key")
    if not opts.app_public_key then return nil, err end
  end
  if args.app_cert then
    opts.app_cert, err = read_input(args.app_cert, "--app-cert")
    if not opts.app_cert then return nil, err end
  end
  if args.encrypt_key_file then
    local key
    key, err, detail = read_input(args.encrypt_key_file, "--encrypt-key-file")
    if not key then return nil, err, detail end
    opts.encrypt_key = key:match("^%s*(.-)%s*$")
  end
  local sb
  sb, err, detail = sandbox.start(opts)
  if not sb then return nil, err, detail end
  local ok
  ok, err = write_file(state_path, cjson.encode(sb:describe()))
  if not ok then
    sb:stop()
    return nil, "cannot write the state file " .. state_path .. ": " .. tostring(err)
  end
  local fields = report(sb, state_path)
  if args.json then
    out.json(fields)
  else
    out.line("sandbox running (nginx pid %s); stop it with %s", tostring(sb.pid), stop_command(args))
    print_readable(out, fields)
  end
  return true
end

local function attached(args)
  local state_path = args.state or M.default_state_path()
  local state = read_state(state_path)
  if not state then return nil, "no sandbox recorded in " .. state_path end
  local sb, err = sandbox.attach(state)
  if not sb then return nil, state_path .. ": " .. err end
  return sb, state_path
end

local function stop(args, out)
  local sb, state_path = attached(args)
  if not sb then return nil, state_path end
  local was_running = sb:running()
  sb:stop()
  os.remove(state_path)
  if args.json then
    out.json { stopped = true, was_running = was_running, pid = sb.pid }
  elseif was_running then
    out.line("sandbox stopped (nginx pid %s)", tostring(sb.pid))
  else
    out.line("the sandbox (pid %s) was not running; its state is cleared", tostring(sb.pid))
  end
  return true
end

local function status(args, out)
  local sb, state_path = attached(args)
  if not sb then return nil, state_path end
  local fields = report(sb, state_path)
  fields.running = sb:running()
  if fields.running then
    local health, err = sb:health()
    fields.healthy = health ~= nil and health.ok == true
    fields.health_error = health and health.error or err
  end
  if args.json then
    out.json(fields)
  elseif fields.running then
    out.line("sandbox running (nginx pid %s)%s", tostring(sb.pid),
      fields.healthy and "" or (", unhealthy: " .. tostring(fields.health_error)))
    print_readable(out, fields)
  else
    out.line("sandbox not running (stale state in %s; %s clears it)", state_path, stop_command(args))
  end
  -- Scripts test `alipay sandbox status` for a usable sandbox.
  return (fields.running and fields.healthy) and true or 1
end

-- ---- argparse ----

local function state_option(cmd)
  cmd:option("--state", "Where the running sandbox is recorded (default: "
    .. "$XDG_RUNTIME_DIR/" .. STATE_NAME .. ".json, else /tmp/" .. STATE_NAME .. "-<uid>.json).")
    :argname("<file>")
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  local start_cmd = cmd:command("start", "Start a sandbox gateway and leave it running.")
  start_cmd:option("--app-id", "The app's id (requests must carry it)."):argname("<id>"):count(1)
  start_cmd:option("--app-public-key", "File with the app's public key: requests must verify "
    .. "with it."):argname("<file>")
  start_cmd:option("--app-cert", "File with the app's certificate (certificate mode), instead of "
    .. "--app-public-key."):argname("<file>")
  start_cmd:option("--seed", "JSON file with the seeded state (templates, followers, "
    .. "subscriptions)."):argname("<file>")
  start_cmd:option("--encrypt-key-file", "File with the app's AES content-encryption key "
    .. "(base64)."):argname("<file>")
  start_cmd:flag("--cert-mode", "Answer in certificate mode: generate an Alipay certificate and "
    .. "root bundle.")
  state_option(start_cmd)
  cli.json_flag(start_cmd)

  local stop_cmd = cmd:command("stop", "Stop the recorded sandbox and remove its files.")
  state_option(stop_cmd)
  cli.json_flag(stop_cmd)

  local status_cmd = cmd:command("status",
    "Show the recorded sandbox; exits 1 unless it runs and is healthy.")
  state_option(status_cmd)
  cli.json_flag(status_cmd)

  callbacks.configure(cmd, cli, state_option)
end

-- notify, event, callbacks: the recorded sandbox sends (alipay.sandbox.cli_callbacks).
local function with_sandbox(fn)
  return function(args, out)
    local sb, state_path = attached(args)
    if not sb then return nil, state_path end
    return fn(sb, args, out)
  end
end

local ACTIONS = { start = start, stop = stop, status = status, notify = with_sandbox(callbacks.notify),
  event = with_sandbox(callbacks.event), callbacks = with_sandbox(callbacks.callbacks) }

function M.run(args, out)
  return ACTIONS[args.action](args, out)
end

return M
