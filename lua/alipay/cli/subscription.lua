-- `alipay subscription query`: which mini-program templates a user
-- subscribed to. Alipay never says when a user unsubscribes, so this is
-- what an operator runs before a campaign.
local cjson = require "cjson"
local common = require "alipay.cli.common"
local mini = require "alipay.messaging.mini"

local M = { summary = "Query a user's mini-program message subscriptions." }

-- The recipient of --user-id / --open-id: the id type is what the operator
-- said, never guessed from the id.
local function recipient_of(args)
  if args.user_id then return { user_id = args.user_id } end
  if args.open_id then return { open_id = args.open_id } end
  return nil, common.usage("give the user as --user-id ID or --open-id ID")
end

-- What a row says about one template, for people.
local function describe(s)
  if s.subscribed then return "yes" end
  if s.subscribed == false then
    if s.state ~= nil then return ("no (state %s)"):format(tostring(s.state)) end
    return "no (never answered)"
  end
  -- Alipay answered with a state nobody has told the channel the meaning of.
  return ("unknown (state %s)"):format(tostring(s.state))
end

local function query(ctx, args, out)
  local recipient, err, detail = recipient_of(args)
  if not recipient then return nil, err, detail end
  local channel
  channel, err, detail = ctx:channel("alipaymini")
  if not channel then return nil, err, detail end
  local app = mini.new(channel)
  local result, qerr, qdetail, partial = app:subscriptions(recipient, args.template_ids)
  result = result or partial or {}

  -- In the order given, each template once.
  local rows, seen = {}, {}
  for _, tid in ipairs(args.template_ids) do
    local s = result[tid]
    if s and not seen[tid] then
      seen[tid] = true
      rows[#rows + 1] = { template_id = tid, subscribed = s.subscribed, type = s.type, state = s.state,
                          keep_state = s.keep_state, show = s.show }
    end
  end
  if args.json then
    if qerr then return nil, qerr, qdetail end
    -- JSON null, not an absent key, for "unknown" (docs/messaging.md §3.2).
    for _, r in ipairs(rows) do
      if r.subscribed == nil then r.subscribed = cjson.null end
    end
    common.json(out, { ok = true, channel = channel.code, user_id = recipient.user_id,
                       open_id = recipient.open_id, subscriptions = common.array(rows) })
    return true
  end
  if #rows > 0 then
    local lines = {}
    for i, r in ipairs(rows) do
      lines[i] = { template = r.template_id, subscribed = describe(r), type = r.type }
    end
    common.print_table(out, { { key = "template", title = "TEMPLATE" },
      { key = "subscribed", title = "SUBSCRIBED" }, { key = "type", title = "TYPE" } }, lines)
  end
  -- Batches answered before a failure are shown above; the rest is not known.
  if qerr then return nil, qerr, qdetail end
  return true
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  local q = cmd:command("query", "Show, for each template, whether the user subscribed and how "
    .. "(longterm or onetime). Templates are queried 3 at a time.")
  q:argument("template_ids", "Mini-program template ids."):args("+"):argname("<template_id>")
  q:mutex(
    q:option("--user-id", "The user's Alipay user_id (2088...)."):argname("<id>"),
    q:option("--open-id", "The user's open_id in this mini program."):argname("<id>"))
  common.options(q, cli, { channel = true, channel_help = "The mini-program channel (default: the only one)." })
end

M.run = common.runner(function(ctx, args, out)
  if args.action == "query" then return query(ctx, args, out) end
  return nil, common.usage("unknown action %s", tostring(args.action))
end)

return M
