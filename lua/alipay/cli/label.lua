-- `alipay label`: a Life Account's custom labels (alipay.messaging.life_labels,
-- docs/messaging.md §2.8): create, list, modify, delete, and label or unlabel
-- users, so that `alipay broadcast … --label ID` can target them.
local common = require "alipay.cli.common"
local life_labels = require "alipay.messaging.life_labels"

local M = { summary = "Manage Life Account labels and label users (for broadcasts to a label)." }

local function users_of(args)
  local users = {}
  for _, id in ipairs(args.user_id or {}) do users[#users + 1] = { user_id = id } end
  for _, id in ipairs(args.open_id or {}) do users[#users + 1] = { open_id = id } end
  if #users == 0 then return nil, common.usage("give the users: --user-id ID or --open-id ID (repeatable)") end
  return users
end

local function print_report(out, args, what, report, channel)
  if args.json then
    common.json(out, { ok = true, channel = channel.code, label_id = args.label_id, calls = report.calls,
                       error_count = report.error_count, error_matchers = common.array(report.error_matchers) })
    return
  end
  out.line("%s label %s: %d call(s), %d user(s) refused", what, args.label_id, report.calls, report.error_count)
  for _, e in ipairs(report.error_matchers) do
    local m = type(e.matcher) == "table" and e.matcher or {}
    out.line("  %s: %s", tostring(m.user_id or m.open_id or m.mobile_no or m.identity_card or "?"),
      tostring(e.error_msg))
  end
end

local ACTIONS = {}

function ACTIONS.create(labels, args, out, channel)
  local id, err, detail = labels:create(args.name)
  if not id then return nil, err, detail end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, label_id = id, label_name = args.name })
  else
    out.line("created label %s: %s", id, args.name)
  end
  return true
end

function ACTIONS.list(labels, args, out, channel)
  local list, err, detail = labels:list()
  if not list then return nil, err, detail end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, labels = common.array(list) })
    return true
  end
  local rows = {}
  for i, l in ipairs(list) do
    rows[i] = { id = tostring(l.label_id), name = tostring(l.label_name), type = tostring(l.type or "") }
  end
  common.print_table(out, { { key = "id", title = "LABEL_ID" }, { key = "name", title = "NAME" },
    { key = "type", title = "TYPE" } }, rows)
  return true
end

function ACTIONS.modify(labels, args, out, channel)
  local ok, err, detail = labels:modify(args.label_id, args.name)
  if not ok then return nil, err, detail end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, label_id = args.label_id, label_name = args.name })
  else
    out.line("label %s is now %s", args.label_id, args.name)
  end
  return true
end

function ACTIONS.delete(labels, args, out, channel)
  local ok, err, detail = labels:delete(args.label_id)
  if not ok then return nil, err, detail end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, label_id = args.label_id, deleted = true })
  else
    out.line("deleted label %s", args.label_id)
  end
  return true
end

local function tagging(what)
  return function(labels, args, out, channel)
    local users, err, detail = users_of(args)
    if not users then return nil, err, detail end
    local report
    if what == "tag" then
      report, err, detail = labels:tag(args.label_id, args.value, users)
    else
      report, err, detail = labels:untag(args.label_id, users)
    end
    if not report then return nil, err, detail end
    print_report(out, args, what == "tag" and "labelled with" or "removed from", report, channel)
    return true
  end
end
ACTIONS.tag, ACTIONS.untag = tagging("tag"), tagging("untag")

local function channel_options(c, cli)
  common.options(c, cli, { channel = true, channel_help = "The Life Account channel (default: the only one)." })
end

local function user_options(c)
  c:option("--user-id", "A user's Alipay user_id (repeatable; sent 10 per call)."):argname("<id>"):count("*")
  c:option("--open-id", "A user's open_id (repeatable)."):argname("<id>"):count("*")
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  local create = cmd:command("create", "Create a custom label (at most 100 per Life Account).")
  create:argument("name", "The label name."):argname("<name>")
  channel_options(create, cli)
  channel_options(cmd:command("list", "List the Life Account's labels."), cli)
  local modify = cmd:command("modify", "Rename a custom label.")
  modify:argument("label_id", "The label id."):argname("<label_id>")
  modify:argument("name", "The new name."):argname("<name>")
  channel_options(modify, cli)
  local delete = cmd:command("delete", "Delete a custom label.")
  delete:argument("label_id", "The label id."):argname("<label_id>")
  channel_options(delete, cli)
  local tag = cmd:command("tag", "Label users with a value.")
  tag:argument("label_id", "The label id."):argname("<label_id>")
  tag:option("--value", "The label value."):argname("<value>"):count(1)
  user_options(tag)
  channel_options(tag, cli)
  local untag = cmd:command("untag", "Remove a label from users.")
  untag:argument("label_id", "The label id."):argname("<label_id>")
  user_options(untag)
  channel_options(untag, cli)
end

M.run = common.runner(function(ctx, args, out)
  local action = ACTIONS[args.action]
  if not action then return nil, common.usage("unknown action %s", tostring(args.action)) end
  local channel, err, detail = ctx:channel("alipaylife")
  if not channel then return nil, err, detail end
  return action(life_labels.new(channel), args, out, channel)
end)

return M
