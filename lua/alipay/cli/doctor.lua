-- `alipay doctor`: the checks of alipay.workspace.doctor, printed one per line with
-- the fix under each failure, or as one JSON object. Exit 0 when no check
-- failed (warnings and skips allowed), 1 otherwise.
local common = require "alipay.cli.common"
local doctor = require "alipay.workspace.doctor"

local M = { summary = "Check a channel: its file, keys, key pair, certificate SNs, gateway and one signed call." }

local MARK = { pass = "ok  ", warn = "warn", fail = "FAIL", skip = "skip" }

local function run(ctx, args, out)
  local report = doctor.run { config = (ctx:config_path()), channel = args.channel }
  local counts = { pass = 0, warn = 0, fail = 0, skip = 0 }
  for _, c in ipairs(report.checks) do counts[c.verdict] = counts[c.verdict] + 1 end
  if args.json then
    local checks = {}
    for i, c in ipairs(report.checks) do
      checks[i] = { name = c.name, channel = c.channel, verdict = c.verdict, detail = c.detail, fix = c.fix }
    end
    common.json(out, { ok = report.ok, config = report.config, counts = counts, checks = common.array(checks) })
  else
    local channel
    for _, c in ipairs(report.checks) do
      if c.channel and c.channel ~= channel then
        channel = c.channel
        out.line("channel %s", channel)
      end
      out.line("%s%s %-22s %s", c.channel and "  " or "", MARK[c.verdict], c.name, c.detail or "")
      if c.fix and c.verdict ~= "pass" then out.line("%s       fix: %s", c.channel and "  " or "", c.fix) end
    end
    out.line("%d passed, %d warning%s, %d failed, %d skipped", counts.pass, counts.warn,
      counts.warn == 1 and "" or "s", counts.fail, counts.skip)
  end
  return report.ok and common.OK or common.FAILED
end

function M.configure(cmd, cli)
  cmd:option("--channel", "Check only this channel (default: every channel of the file)."):argname("<code>")
  cmd:option("--config", "The channel file (default: $ALIPAY_CONFIG, else ./" .. common.DEFAULT_CONFIG .. ").")
    :argname("<file>")
  cli.json_flag(cmd)
end

M.run = common.runner(run)

return M
