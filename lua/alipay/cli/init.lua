-- The `alipay` command line: parses arguments with argparse (Debian's
-- lua-argparse) and hands them to one command module.
--
-- A command is a module lua/alipay/cli/<name>.lua listed in COMMANDS:
--   return {
--     summary = "one line for `alipay --help`",
--     configure = function(cmd, cli) ... end,  -- adds options/subcommands to its argparse command
--     run = function(args, out) ... end,       -- true | exit status | nil, err
--   }
-- `out` prints: out.line(fmt, ...), out.json(value), out.err(fmt, ...).
-- cli.json_flag(cmd) adds the shared --json flag. A module that is not
-- installed is skipped: `sandbox` (alipay.cli.sandbox) is in the
-- lua-alipay-sandbox rock, which production hosts need not install. One
-- that is installed but fails to load is listed and reports why, so that a
-- broken install never looks like a missing one.
local argparse = require "argparse"
local cjson = require "cjson"
local exit_status = require "alipay.cli.exit_status"

local M = {}

M.COMMANDS = { "channel", "doctor", "sandbox", "template", "subscription", "followers", "users", "send",
  "broadcast", "label", "content",
  "call", "campaign", "batchsend" }

M.OK, M.FAILED, M.USAGE = exit_status.OK, exit_status.FAILED, exit_status.USAGE

function M.json_flag(cmd)
  return cmd:flag("--json", "Print one JSON object (machine output) instead of readable lines.")
end

function M.output(stdout, stderr)
  stdout, stderr = stdout or io.stdout, stderr or io.stderr
  return {
    line = function(fmt, ...) stdout:write(fmt:format(...), "\n") end,
    -- lua-cjson escapes '/' as "\/"; paths and URLs read better without.
    -- Backslashes come out doubled, so every "\/" left is an escaped '/'.
    json = function(value) stdout:write((cjson.encode(value):gsub("\\/", "/")), "\n") end,
    err = function(fmt, ...) stderr:write(fmt:format(...), "\n") end,
  }
end

-- The module of a command, nil when it is not part of this version, or a
-- stand-in that reports the load error when it is there but broken.
local function load_command(name)
  local modname = "alipay.cli." .. name
  local ok, mod = pcall(require, modname)
  if ok and type(mod) == "table" then return mod end
  -- Not installed: require found no file for modname itself. (A module
  -- that is there but requires a missing one fails with that one's name.)
  local missing = "module '" .. modname .. "' not found"
  if not ok and tostring(mod):sub(1, #missing) == missing then
    return nil
  end
  local why = ok and "the module did not return a table" or tostring(mod)
  return {
    summary = "(unavailable: failed to load)",
    configure = function(cmd) cmd:argument("args"):args("*") end,
    run = function() return nil, "command " .. name .. " failed to load: " .. why end,
  }
end

local function build_parser()
  local parser = argparse("alipay",
    "Alipay Open Platform tools: messaging, campaigns and a local sandbox gateway.")
  parser:command_target("command")
  parser:help_max_width(100)
  parser:add_help_command()
  local modules = {}
  for _, name in ipairs(M.COMMANDS) do
    local mod = load_command(name)
    if mod then
      modules[name] = mod
      mod.configure(parser:command(name, mod.summary), M)
    end
  end
  return parser, modules
end

-- Runs the command line argv (a list of strings); returns the exit status.
-- opts.stdout / opts.stderr redirect the output (tests).
function M.main(argv, opts)
  opts = opts or {}
  local out = M.output(opts.stdout, opts.stderr)
  local list = {}
  for i = 1, #(argv or {}) do list[i] = argv[i] end
  local parser, modules = build_parser()
  local parsed, args = parser:pparse(list)
  if not parsed then
    out.err("alipay: %s", args)
    out.err("Try 'alipay --help' or 'alipay <command> --help'.")
    return M.USAGE
  end
  local mod = modules[args.command]
  local ok, result, err = pcall(mod.run, args, out)
  if not ok then
    out.err("alipay %s: internal error: %s", args.command, tostring(result))
    return M.FAILED
  end
  if result == true then return M.OK end
  if type(result) == "number" then return result end
  out.err("alipay %s: %s", args.command, tostring(err or "failed"))
  return M.FAILED
end

return M
