-- `alipay users upload|show`: the bindings of business user ids to Alipay
-- ids per channel (the UMS user upload). An upload keeps every valid row
-- and reports each bad one where the operator can find it: its position in
-- a JSON array, or its line in a CSV file.
local common = require "alipay.cli.common"

local M = { summary = "Upload user bindings (UMS JSON or CSV) and show a user's bindings." }

local function upload(ctx, args, out)
  local file = args.file
  local is_csv = file:lower():match("%.csv$") ~= nil
  if not is_csv and not file:lower():match("%.json$") then
    return nil, common.usage("%s: the file must end in .json (UMS rows) or .csv (a spreadsheet)", file)
  end
  if not is_csv and (args.channel or args.op) then
    return nil, common.usage("--channel and --op apply to CSV files; each JSON row names its operation "
      .. "and channels")
  end
  local u, err, detail = ctx:users()
  if not u then return nil, err, detail end
  local result
  if is_csv then
    local channel
    channel, err, detail = ctx:channel(nil)
    if not channel then return nil, err, detail end
    result, err, detail = u:upload_csv(file, { channel = channel.code, op = args.op or "set" })
  else
    result, err, detail = u:upload_json(file)
  end
  if not result then return nil, err, detail end

  local where = is_csv and "line" or "row"
  if args.json then
    local failures = {}
    for i, f in ipairs(result.fail) do
      failures[i] = { [where] = f.row, userid = f.userid, errcode = f.errcode, errmsg = f.errmsg }
    end
    common.json(out, { ok = #result.fail == 0, success_count = #result.success,
                       success = common.array(result.success), fail = common.array(failures) })
  else
    out.line("%d rows uploaded, %d failed", #result.success, #result.fail)
    for _, f in ipairs(result.fail) do
      out.line("%s %d: %s%s: %s", where, f.row, f.userid and ("userid " .. f.userid .. ": ") or "",
        f.errcode, f.errmsg)
    end
  end
  return #result.fail == 0 and true or common.FAILED
end

local function show(ctx, args, out)
  local u, err, detail = ctx:users()
  if not u then return nil, err, detail end
  local map
  map, err, detail = u:show(args.userid)
  if not map then return nil, err, detail end
  local rows = {}
  for code, b in pairs(map) do
    rows[#rows + 1] = { channel = code, kind = b.kind, id_type = b.id_type, alipay_id = b.alipay_id }
  end
  table.sort(rows, function(a, b) return a.channel < b.channel end)
  if args.json then
    common.json(out, { ok = #rows > 0, userid = args.userid, bindings = common.array(rows) })
  elseif #rows == 0 then
    out.err("user %s has no bindings", args.userid)
  else
    common.print_table(out, { { key = "channel", title = "CHANNEL" }, { key = "kind", title = "KIND" },
      { key = "id_type", title = "ID TYPE" }, { key = "alipay_id", title = "ALIPAY ID" } }, rows)
  end
  -- Scripts test `alipay users show X` for a bound user.
  return #rows > 0 and true or common.FAILED
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  local up = cmd:command("upload", "Upload bindings: a .json file of UMS rows "
    .. "([{\"userid\":…,\"set\"|\"add\"|\"del\":{\"alipaylife\":{\"<channel>\":\"2088…\"}}}]) or a .csv file "
    .. "with a userid column and <kind>_userid or <kind>_openid (e.g. alipaylife_userid). Valid rows are "
    .. "kept; exits 1 when any row failed.")
  up:argument("file", "The .json or .csv file.")
  up:option("--op", "CSV only: set replaces the user's bindings of the channel's kind, add adds "
    .. "(default: set)."):choices { "set", "add" }
  common.options(up, cli, { channel = true, channel_help = "CSV only: the channel the ids belong to "
    .. "(default: the only channel)." })

  local sh = cmd:command("show", "Show a user's bindings; exits 1 when there are none.")
  sh:argument("userid", "The business user id.")
  common.options(sh, cli)
end

local ACTIONS = { upload = upload, show = show }

M.run = common.runner(function(ctx, args, out)
  return ACTIONS[args.action](ctx, args, out)
end)

return M
