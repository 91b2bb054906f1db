-- `alipay broadcast`: one Life Account message to many followers
-- (alipay.messaging.life_broadcast, docs/messaging.md §2.7): to every follower
-- (--all: message.total.send), to those carrying a label (--label:
-- message.label.send) or to a user group (--group: message.group.send); and
-- `alipay broadcast recall` to recall a total or group send by its message id.
-- The audience is never implied: broadcasting to every follower needs --all.
-- Nothing is retried: a failure that may have been delivered says so.
local common = require "alipay.cli.common"
local life_broadcast = require "alipay.messaging.life_broadcast"

local M = { summary = "Broadcast a Life Account text or image-text message (all followers, a label, a group)." }

local function message_of(args)
  if args.action == "text" then
    return { text = { title = args.title, content = args.content } }
  end
  local text, err, detail
  if args.articles then
    text = args.articles
  else
    text, err, detail = common.read_text(args.articles_file, "--articles-file")
    if not text then return nil, err, detail end
  end
  local articles
  articles, err = common.decode_json(text, args.articles and "--articles" or args.articles_file)
  if not articles then return nil, common.usage("%s", err) end
  if type(articles) == "table" and articles.title == nil and articles.desc == nil then
    return { articles = articles }
  end
  return { articles = { articles } }   -- one article given as an object
end

local function audience_of(args)
  local n = (args.all and 1 or 0) + (args.label and 1 or 0) + (args.group and 1 or 0)
  if n ~= 1 then
    return nil, common.usage("choose the audience: --all (every follower), --label ID[,ID...] or --group ID")
  end
  if args.all then return "all" end
  if args.group then return "group" end
  return "label"
end

local function send(ctx, args, out)
  local audience, err, detail = audience_of(args)
  if not audience then return nil, err, detail end
  local message
  message, err, detail = message_of(args)
  if not message then return nil, err, detail end
  local channel
  channel, err, detail = ctx:channel("alipaylife")
  if not channel then return nil, err, detail end
  local bc = life_broadcast.new(channel)
  local res
  if audience == "all" then
    res, err, detail = bc:total_send(message)
  elseif audience == "group" then
    res, err, detail = bc:group_send(args.group, message)
  else
    local ids = common.split_list(args.label)
    res, err, detail = bc:label_send(#ids == 1 and { label_id = ids[1] } or { label_ids = ids }, message)
  end
  if not res then
    if detail and detail.unknown then
      out.err("the broadcast may have been delivered: check before sending it again")
    end
    return nil, err, detail
  end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, audience = audience, label = args.label,
                       group = args.group, message_id = res.message_id })
  else
    out.line("broadcast sent on channel %s to %s%s", channel.code,
      audience == "all" and "every follower" or (audience .. " " .. (args.label or args.group)),
      res.message_id and (": message id " .. res.message_id) or "")
    if not res.message_id then
      out.line("(%s)", audience == "label" and "a label send returns no message id: it cannot be recalled"
        or "the answer carried no message id: it cannot be recalled")
    end
  end
  return true
end

local function recall(ctx, args, out)
  local channel, err, detail = ctx:channel("alipaylife")
  if not channel then return nil, err, detail end
  local ok
  ok, err, detail = life_broadcast.new(channel):recall(args.message_id)
  if not ok then return nil, err, detail end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, message_id = args.message_id, recalled = true })
  else
    out.line("recalled message %s on channel %s", args.message_id, channel.code)
  end
  return true
end

local function audience_options(cmd)
  cmd:flag("--all", "Send to every follower of the Life Account (message.total.send).")
  cmd:option("--label", "Send to the followers carrying this label, or any of these labels (comma-separated "
    .. "label ids; message.label.send)."):argname("<ids>")
  cmd:option("--group", "Send to this user group (message.group.send)."):argname("<group_id>")
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  local text = cmd:command("text", "Broadcast a text message.")
  text:option("--content", "The text."):argname("<text>"):count(1)
  text:option("--title", "The title (optional)."):argname("<text>")
  audience_options(text)
  common.options(text, cli, { channel = true, channel_help = "The Life Account channel (default: the only one)." })

  local it = cmd:command("image-text", "Broadcast an image-text message: articles of {title, desc, image_url, "
    .. "url, action_name}; desc and url are required, and image_url on the first of several.")
  it:mutex(
    it:option("--articles", "The articles as JSON: a list, or one object."):argname("<json>"),
    it:option("--articles-file", "The same JSON, from a file."):argname("<file>"))
  audience_options(it)
  common.options(it, cli, { channel = true, channel_help = "The Life Account channel (default: the only one)." })

  local rc = cmd:command("recall", "Recall a broadcast by the message id a --all or --group send printed.")
  rc:argument("message_id", "The message id."):argname("<message_id>")
  common.options(rc, cli, { channel = true, channel_help = "The Life Account channel (default: the only one)." })
end

M.run = common.runner(function(ctx, args, out)
  if args.action == "text" or args.action == "image-text" then
    if args.action == "image-text" and not args.articles and not args.articles_file then
      return nil, common.usage("give the articles: --articles JSON or --articles-file FILE")
    end
    return send(ctx, args, out)
  end
  if args.action == "recall" then return recall(ctx, args, out) end
  return nil, common.usage("unknown action %s", tostring(args.action))
end)

return M
