-- `alipay batchsend`: one mini-program subscription message to the
-- subscribers of a template (or to those of them in a crowd), now or at a
-- scheduled time, in one call (docs/messaging.md §3.5). The send is never
-- repeated: when the outcome is unknown (a timeout, a reset), the command
-- says so and leaves the decision to send again to the operator.
local common = require "alipay.cli.common"
local mini_batch = require "alipay.messaging.mini_batch"

local M = { summary = "Send one mini-program message to a template's subscribers or a crowd (batch send)." }

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

local function batchsend(ctx, args, out)
  local channel, err, detail = ctx:channel("alipaymini")
  if not channel then return nil, err, detail end
  local data
  data, err, detail = data_for(args)
  if not data then return nil, err, detail end
  local registry
  registry, err, detail = ctx:registry()
  if not registry then return nil, err, detail end
  local result, serr, sdetail = mini_batch.new(channel, registry):batchsend(args.template, data,
    { crowd_code = args.crowd, schedule_send_time = args.at, page = args.page })
  if not result then
    if sdetail and sdetail.unknown then
      out.err("the batch send may have been executed (%s): check before sending it again", tostring(serr))
    end
    return nil, serr, sdetail
  end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, template = args.template, crowd_code = args.crowd,
                       schedule_send_time = args.at, batch_msg_id = result.batch_msg_id })
  else
    out.line("batch send of template %s accepted on channel %s: batch_msg_id %s%s%s", args.template,
      channel.code, tostring(result.batch_msg_id or "(none in the answer)"),
      args.crowd and (", crowd " .. args.crowd) or ", every subscriber",
      args.at and (", scheduled for " .. args.at) or ", now")
  end
  return true
end

function M.configure(cmd, cli)
  cmd:argument("template", "The mini-program template id (imported in the registry).")
  cmd:mutex(
    cmd:option("--data", "The content as JSON: {keyword1: {value}, ...} or [\"v1\", \"v2\", ...]."):argname("<json>"),
    cmd:option("--data-file", "The same JSON, from a file."):argname("<file>"))
  cmd:option("--crowd", "A crowd code (棋盘人群): only the template's subscribers in it (default: every "
    .. "subscriber)."):argname("<crowd_code>")
  cmd:option("--at", "Send at this time, \"YYYY-MM-DD HH:MM:SS\", Beijing time (default: now)."):
    argname("<time>")
  cmd:option("--page", "The page the message opens (its query is URL-encoded)."):argname("<page>")
  common.options(cmd, cli, { channel = true, channel_help = "The mini-program channel (default: the only one)." })
end

M.run = common.runner(batchsend)

return M
