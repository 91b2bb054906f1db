-- `alipay send`: one template message to one recipient, on a Life Account
-- (alipay.open.public.message.single.send) or a mini program
-- (alipay.open.app.mini.templatemessage.send). The message is checked
-- against the imported template before any call, and a template Alipay
-- reports missing is marked invalid in the registry, as a campaign would.
local common = require "alipay.cli.common"
local lifeaccount = require "alipay.messaging.lifeaccount"
local mini = require "alipay.messaging.mini"

local M = { summary = "Send one template message (Life Account or mini program) to one user." }

-- The channel: --channel, the only channel, or the only channel the
-- template is imported on.
local function channel_for(ctx, args)
  local set, err, detail = ctx:channels()
  if not set then return nil, err, detail end
  if args.channel or #set:list() == 1 then return ctx:channel(nil) end
  local st
  st, err, detail = ctx:store()
  if not st then return nil, err, detail end
  local found = {}
  for _, channel in ipairs(set:list()) do
    local t, terr, tdetail = st:template_get(channel.code, args.template)
    if terr then return nil, terr, tdetail end
    if t then found[#found + 1] = channel end
  end
  if #found == 1 then return found[1] end
  if #found == 0 then
    return nil, ("template %s is not imported on any channel: import it first (alipay template import "
      .. "or claim)"):format(args.template)
  end
  local codes = {}
  for i, c in ipairs(found) do codes[i] = c.code end
  return nil, common.usage("template %s is imported on several channels (%s): choose one with --channel",
    args.template, table.concat(codes, ", "))
end

local function recipient_for(ctx, args, channel)
  if args.to_user_id then return { user_id = args.to_user_id } end
  if args.to_open_id then return { open_id = args.to_open_id } end
  if args.user then
    local u, err, detail = ctx:users()
    if not u then return nil, err, detail end
    local id, id_type = u:resolve(args.user, channel.code)
    if not id then return nil, id_type end
    return { id_type = id_type, id = id }
  end
  return nil, common.usage("give the recipient: --to-user-id ID, --to-open-id ID or --user USERID")
end

local function data_for(args)
  if args.data then
    local data, err = common.decode_json(args.data, "--data")
    if not data then return nil, common.usage("%s", err) end
    return data
  end
  if args.data_file then
    local text, err, detail = common.read_text(args.data_file, "--data-file")
    if not text then return nil, err, detail end
    return common.decode_json(text, args.data_file)
  end
  return nil, common.usage("give the message content: --data JSON or --data-file FILE")
end

local function send(ctx, args, out)
  local channel, err, detail = channel_for(ctx, args)
  if not channel then return nil, err, detail end
  if args.page and channel.kind ~= "alipaymini" then
    return nil, common.usage("--page applies to mini-program messages; a Life Account message carries its "
      .. "link as url in --data")
  end
  local recipient
  recipient, err, detail = recipient_for(ctx, args, channel)
  if not recipient then return nil, err, detail end
  local data
  data, err, detail = data_for(args)
  if not data then return nil, err, detail end
  local registry
  registry, err, detail = ctx:registry()
  if not registry then return nil, err, detail end

  local node
  if channel.kind == "alipaylife" then
    node, err, detail = lifeaccount.new(channel, registry):send(recipient, args.template, data)
  else
    node, err, detail = mini.new(channel, registry):send(recipient, args.template, data, { page = args.page })
  end
  if not node then
    local t = registry:get(channel.code, args.template)
    if t and t.status == "invalid" and not (detail and detail.kind == "invalid") then
      out.err("template %s of channel %s is now marked invalid (%s); re-import it once fixed",
        args.template, channel.code, tostring(t.invalid_code))
    end
    return nil, err, detail
  end

  local id_type, id = recipient.id_type, recipient.id
  if not id_type then id_type = recipient.user_id and "user_id" or "open_id"; id = recipient[id_type] end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, kind = channel.kind, template = args.template,
                       id_type = id_type, id = id, user = args.user, result = node })
  else
    out.line("sent template %s to %s %s on channel %s (%s %s)", args.template, id_type, id, channel.code,
      tostring(node.code or "10000"), tostring(node.msg or "Success"))
    if channel.kind == "alipaylife" then
      out.line("(Alipay returns no message id for a single Life Account message: it cannot be tracked later)")
    end
  end
  return true
end

function M.configure(cmd, cli)
  cmd:option("--template", "The template id: a Life Account msg_template_id or a mini program's "
    .. "user_template_id, imported in the registry."):argname("<id>"):count(1)
  cmd:mutex(
    cmd:option("--to-user-id", "The recipient's Alipay user_id."):argname("<id>"),
    cmd:option("--to-open-id", "The recipient's open_id."):argname("<id>"),
    cmd:option("--user", "A business user id, resolved through its binding for the channel."):argname("<userid>"))
  cmd:mutex(
    cmd:option("--data", "The content as JSON: a Life Account context {head_color, url, action_name, "
      .. "keyword1: {value, color}, ...} or mini-program data {keyword1: {value}, ...}."):argname("<json>"),
    cmd:option("--data-file", "The same JSON, from a file."):argname("<file>"))
  cmd:option("--page", "Mini program only: the page the message opens (its query is URL-encoded)."):
    argname("<page>")
  common.options(cmd, cli, { channel = true, channel_help = "The channel (default: the only channel, or the "
    .. "only one the template is imported on)." })
end

M.run = common.runner(send)

return M
