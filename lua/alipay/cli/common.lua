-- What every messaging command of `alipay` shares: the --config/--store/
-- --channel options, loading the channel set and opening the store (and the
-- template registry and user bindings over it) once per run, picking the
-- channel, printing tables and JSON, and turning failures into exit codes.
-- The wiring itself is alipay.workspace's.
--
--   local common = require "alipay.cli.common"
--   common.options(cmd, cli, {channel = true})   -- --config, --store, [--channel], --json
--   M.run = common.runner(function(ctx, args, out) ... end)
--     the handler returns true | an exit status | nil, err, detail: err the
--     one-line string that is printed (exit 1), detail the typed error
--     (alipay.errors, docs/errors.md) whose fields --json reports; or
--     nil, common.usage(msg) (exit 2, with a pointer to --help).
--   ctx:channels(), ctx:store(), ctx:registry(), ctx:users(), ctx:channel(kind),
--   ctx:campaign_ctx{log=}
--     -> the thing | nil, err, detail; each is built at most once, and closed by the runner.
--
-- Keys are never taken from the command line (ps and shell histories show
-- it): the configuration names files or environment variables for them.
local cjson = require "cjson"
local errors = require "alipay.errors"
local fs = require "alipay.util.fs"
local kinds = require "alipay.messaging.kinds"
local exit_status = require "alipay.cli.exit_status"
local templates = require "alipay.messaging.templates"
local workspace = require "alipay.workspace"

local common = {}

common.DEFAULT_CONFIG = workspace.DEFAULT_CONFIG
common.DEFAULT_STORE = workspace.DEFAULT_STORE
common.OK, common.FAILED, common.USAGE = exit_status.OK, exit_status.FAILED, exit_status.USAGE

local KIND_NAMES = kinds.NAMES
common.KIND_NAMES = KIND_NAMES

-- ---- usage errors ----

local Usage = {}
Usage.__index = Usage
Usage.__tostring = function(self) return self.msg end

-- A mistake in the command line: reported with exit status 2.
function common.usage(fmt, ...)
  return setmetatable({ msg = select("#", ...) > 0 and fmt:format(...) or fmt }, Usage)
end

function common.is_usage(err)
  return getmetatable(err) == Usage
end

-- ---- options ----

function common.options(cmd, cli, opts)
  opts = opts or {}
  cmd:option("--config", "The channel configuration (JSON or Lua data; default: $ALIPAY_CONFIG, else ./"
    .. common.DEFAULT_CONFIG .. ").")
    :argname("<file>")
  cmd:option("--store", "The state database: an SQLite file, or postgresql://USER@HOST:PORT/DB (the password "
    .. "from PGPASSWORD) (default: the configuration's \"store\", else ./" .. common.DEFAULT_STORE .. ").")
    :argname("<path|url>")
  if opts.channel then
    cmd:option("--channel", opts.channel_help or "The channel code (default: the only channel of the "
      .. "kind this command needs).")
      :argname("<code>")
  end
  cli.json_flag(cmd)
end

-- A comma-separated list ("a, b,c") -> {"a", "b", "c"}; empty items dropped.
function common.split_list(text)
  local list = {}
  for item in (text or ""):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then list[#list + 1] = item end
  end
  return list
end

-- ---- JSON ----

-- A private cjson instance: the settings below must not leak into other
-- users of the module in the same process.
local json = cjson.new()
-- Paths and URLs read better without "\/". OpenResty's cjson has the switch;
-- Debian's 2.1.0 does not, and there every "\/" left after encoding is an
-- escaped '/' (a backslash itself comes out doubled).
local has_slash_switch = type(json.encode_escape_forward_slash) == "function"
if has_slash_switch then json.encode_escape_forward_slash(false) end

-- cjson encodes an empty table as {}; lists that may be empty are marked
-- with common.array so they come out as []. Newer cjson has empty_array;
-- otherwise a placeholder string is replaced after encoding.
local EMPTY_PLACEHOLDER = "@@alipay.cli.empty-array@@"
local EMPTY = json.empty_array or EMPTY_PLACEHOLDER

function common.array(list)
  if list == nil or next(list) == nil then return EMPTY end
  return list
end

function common.json_text(value)
  local text = json.encode(value)
  if not has_slash_switch then text = text:gsub("\\/", "/") end
  if EMPTY == EMPTY_PLACEHOLDER then text = text:gsub('"' .. EMPTY_PLACEHOLDER:gsub("%p", "%%%0") .. '"', "[]") end
  return text
end

function common.json(out, value)
  out.line("%s", common.json_text(value))
end

-- JSON input: a table | nil, message naming `what` and cjson's position.
function common.decode_json(text, what)
  local ok, value = pcall(json.decode, text)
  if not ok then return nil, ("%s is not valid JSON: %s"):format(what, tostring(value)) end
  if type(value) ~= "table" then return nil, ("%s must be a JSON object"):format(what) end
  return value
end

-- ---- readable output ----

-- Display width: CJK characters take two columns in a terminal.
local function width(s)
  local _, w = templates.measure(s)
  return w or #s
end

-- Prints rows as aligned columns under a header.
--   columns = {{key =, title =}, ...}; a cell is row[key], nil shows as "-".
function common.print_table(out, columns, rows)
  local cells, widths = {}, {}
  local function cell_text(v)
    if v == nil or v == "" then return "-" end
    return tostring(v)
  end
  for c, col in ipairs(columns) do widths[c] = width(col.title) end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for c, col in ipairs(columns) do
      local text = cell_text(row[col.key])
      cells[r][c] = text
      if width(text) > widths[c] then widths[c] = width(text) end
    end
  end
  local function emit(texts)
    local parts = {}
    for c, text in ipairs(texts) do
      parts[c] = c < #texts and (text .. (" "):rep(widths[c] - width(text))) or text
    end
    out.line("%s", table.concat(parts, "  "))
  end
  local titles = {}
  for c, col in ipairs(columns) do titles[c] = col.title end
  emit(titles)
  for _, texts in ipairs(cells) do emit(texts) end
end

function common.format_time(t)
  if not t then return nil end
  return os.date("!%Y-%m-%d %H:%M:%S UTC", t)
end

-- ---- error reporting ----

local ERROR_FIELDS = { "kind", "code", "msg", "sub_code", "sub_msg", "reason", "field", "channel",
  "method", "status", "trace_id", "retryable", "unknown", "config_file", "template_id" }

-- The detail of a failure: the third value, or a typed error given as the
-- second (a usage error is one).
local function detail_of(err, detail)
  if errors.is_error(detail) then return detail end
  if errors.is_error(err) then return err end
  return nil
end

-- The log-safe fields of a failure, for --json output: the message is the
-- printed line, the other fields come from the detail.
function common.error_fields(err, detail)
  local fields = { message = tostring(err) }
  if common.is_usage(err) then
    fields.kind = "usage"
    return fields
  end
  detail = detail_of(err, detail)
  if detail then
    for _, k in ipairs(ERROR_FIELDS) do
      local v = detail[k]
      if type(v) == "string" or type(v) == "number" or type(v) == "boolean" then fields[k] = v end
    end
  end
  return fields
end

-- "alipay template claim": the command path, for messages.
local function command_name(args)
  local name = "alipay " .. tostring(args.command)
  if args.action then name = name .. " " .. args.action end
  return name
end
common.command_name = command_name

-- Reports a failure (err the line, detail the typed error); returns the exit status.
function common.report(args, out, err, detail)
  local name = command_name(args)
  if args.json then common.json(out, { ok = false, error = common.error_fields(err, detail) }) end
  if common.is_usage(err) then
    out.err("%s: %s", name, err.msg)
    out.err("Try '%s --help'.", name)
    return common.USAGE
  end
  out.err("%s: %s", name, tostring(err or "failed"))
  return common.FAILED
end

-- ---- the context of one run ----

-- The parts come from alipay.workspace, lazily: a command builds only what
-- it asks for (one that lists channels never creates the store; one given
-- --store needs no channel file for it).
local Context = {}
Context.__index = Context

local SOURCE_NAMES = { option = "--config" }

-- The commands that only read the store open it read-only, so that they
-- still serve a store on a read-only mount or owned by another user.
common.READ_ONLY = { ["alipay campaign status"] = true, ["alipay campaign list"] = true,
                     ["alipay campaign export"] = true, ["alipay template list"] = true }

function common.context(args)
  local ws = workspace.open { config = args.config, store = args.store, default_store = "./" .. common.DEFAULT_STORE,
    lazy = true, missing_hint = "give --config FILE or set ALIPAY_CONFIG",
    readonly = common.READ_ONLY[command_name(args)] }
  return setmetatable({ args = args, ws = ws }, Context)
end

function Context:config_path()
  return self.ws.config, SOURCE_NAMES[self.ws.config_source] or self.ws.config_source
end

-- Each -> the part | nil, err, detail; a channel file's errors name the
-- file, then the channel and the field.
function Context:channels() return self.ws:get("channels") end
function Context:store() return self.ws:get("store") end
function Context:registry() return self.ws:get("registry") end
function Context:users() return self.ws:get("users") end

-- The campaign engine's context; extra: log=, clock=.
function Context:campaign_ctx(extra) return self.ws:campaign_ctx(extra) end

local function kind_label(kind)
  return ("%s (%s)"):format(KIND_NAMES[kind] or kind, kind)
end

local function codes_of(list)
  local codes = {}
  for i, c in ipairs(list) do codes[i] = c.code end
  return table.concat(codes, ", ")
end

-- The channel of this run: --channel, else the only channel (of `kind`,
-- when the command needs one kind). `kind` nil accepts either.
function Context:channel(kind)
  local set, err, detail = self:channels()
  if not set then return nil, err, detail end
  local code = self.args.channel
  if code then
    local channel, gerr, gdetail = set:get(code)
    if not channel then return nil, gerr, gdetail end
    if kind and channel.kind ~= kind then
      return errors.fail("config", { channel = code, field = "channel", retryable = false,
        msg = ("channel %s is a %s channel; this command needs a %s channel")
          :format(code, kind_label(channel.kind), kind_label(kind)) })
    end
    return channel
  end
  local candidates = {}
  for _, channel in ipairs(set:list()) do
    if not kind or channel.kind == kind then candidates[#candidates + 1] = channel end
  end
  if #candidates == 1 then return candidates[1] end
  if #candidates == 0 then
    return errors.fail("config", { field = "channels", retryable = false,
      msg = ("%s configures no %s channel"):format((self:config_path()), kind_label(kind)) })
  end
  return nil, common.usage("%s channels are configured (%s): choose one with --channel",
    kind and kind_label(kind) or "several", codes_of(candidates))
end

function Context:close()
  self.ws:close()
end

-- ---- running ----

-- Wraps a handler(ctx, args, out) into a command module's run(args, out):
-- the context is closed whatever happens, and failures become exit codes.
function common.runner(handler)
  return function(args, out)
    local ctx = common.context(args)
    local ok, result, err, detail = pcall(handler, ctx, args, out)
    ctx:close()
    if not ok then error(result, 0) end
    if result == true then return common.OK end
    if type(result) == "number" then return result end
    return common.report(args, out, err, detail)
  end
end

-- ---- files ----

-- A text file the operator names (JSON data, a request body, templates),
-- without the UTF-8 BOM some editors put first -> text | nil, err, detail
function common.read_text(path, what)
  local text, err = fs.read(path)
  if not text then return errors.fail("io", ("%s: cannot read %s"):format(what, tostring(err))) end
  return (text:gsub("^\239\187\191", ""))
end

return common
