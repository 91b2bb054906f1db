-- `alipay content`: Life Account image-text contents
-- (alipay.messaging.life_content, docs/messaging.md §2.9): create one, or
-- modify one by its content id.
local common = require "alipay.cli.common"
local life_content = require "alipay.messaging.life_content"

local M = { summary = "Create or modify a Life Account image-text content." }

local function fields_of(args)
  return { title = args.title, cover = args.cover, content = args.body, could_comment = args.could_comment,
           ctype = args.ctype, benefit = args.benefit, ext_tags = args.ext_tags, login_ids = args.login_ids }
end

local function run(ctx, args, out)
  local channel, err, detail = ctx:channel("alipaylife")
  if not channel then return nil, err, detail end
  local contents = life_content.new(channel)
  local res
  if args.action == "create" then
    res, err, detail = contents:create(fields_of(args))
  elseif args.action == "modify" then
    res, err, detail = contents:modify(args.content_id, fields_of(args))
  else
    return nil, common.usage("unknown action %s", tostring(args.action))
  end
  if not res then return nil, err, detail end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, content_id = res.content_id,
                       content_url = res.content_url })
  else
    out.line("%s content %s%s", args.action == "create" and "created" or "modified", res.content_id,
      res.content_url and (": " .. res.content_url) or "")
  end
  return true
end

local function field_options(c, cli)
  c:option("--title", "The title."):argname("<text>"):count(1)
  c:option("--cover", "The cover image URL (from alipay.offline.material.image.upload)."):argname("<url>")
    :count(1)
  c:option("--body", "The body (rich text)."):argname("<text>"):count(1)
  c:option("--could-comment", "Whether users may comment: T or F (default F)."):argname("<T|F>")
  c:option("--ctype", "activity for an activity image-text (default: ordinary)."):argname("<type>")
  c:option("--benefit", "The activity's benefit, at most 10 characters (ctype activity)."):argname("<text>")
  c:option("--ext-tags", "Keywords, comma-separated, at most 5."):argname("<a,b>")
  c:option("--login-ids", "Alipay accounts that may preview it, comma-separated, at most 10."):argname("<a,b>")
  common.options(c, cli, { channel = true, channel_help = "The Life Account channel (default: the only one)." })
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  field_options(cmd:command("create", "Create an image-text content; prints its content id and URL."), cli)
  local modify = cmd:command("modify", "Modify an image-text content (every field is sent again).")
  modify:argument("content_id", "The content id create printed."):argname("<content_id>")
  field_options(modify, cli)
end

M.run = common.runner(run)

return M
