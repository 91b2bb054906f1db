-- `alipay campaign run|resume|status|export|list|delete`: send campaigns
-- (docs/messaging.md §6) from a shell, with a live progress bar on a terminal, a
-- plain log line every few seconds otherwise, and a summary by status and
-- by Alipay code at the end. The engine is alipay.campaign; this file reads
-- options, shows progress and chooses the exit status:
--   0  the campaign completed (every recipient reached a final state)
--   1  it stopped (template deleted, configuration refused, ...) or failed
--   2  the command line was wrong
--   130, 143  Ctrl-C (SIGINT) or SIGTERM (systemd's stop) stopped it, resumable
--
-- Ctrl-C and SIGTERM: run and resume ask the engine to catch them
-- (c:run{signals = true}; a library user's run does not). The first stops
-- new sends, records every answer that came and waits for the requests in
-- flight at most --drain seconds (default 5); those still in flight then
-- become `unknown` (they may have been delivered). A second signal ends the
-- wait at once; a third, or a kill, ends the process as it is. Either way
-- nothing is lost and nothing is sent twice, by design: each recipient's
-- state is written to the store before and after its request, so
-- `alipay campaign resume ID` picks up where the run stopped; `unknown`
-- recipients are only sent again with --retry-unknown.
local common = require "alipay.cli.common"
local progress = require "alipay.cli.progress"
local outcome_reasons = require "alipay.campaign.outcome"
local exit_status = require "alipay.cli.exit_status"

local M = { summary = "Send a template message to an audience, resumably; status, export, list, delete." }

local PROGRESS_EVERY_MS = 250 -- bar redraws
local LOG_EVERY_S = 5         -- plain log lines when stderr is not a terminal

local EPILOG = [[
Ctrl-C (or SIGTERM) stops a run: no new sends, every answer that came is recorded, and the
requests in flight are waited for at most --drain seconds (a second Ctrl-C stops waiting).
Nothing is lost: every recipient's state is in the store, and `alipay campaign resume ID`
continues where it stopped. Recipients still in flight at the end may have been delivered:
they become `unknown` (with a reason: `campaign status` shows them), and are sent again only
with --retry-unknown[=REASON,...].
A runner without a heartbeat for --stale-after seconds (default 60) loses its lease: another
`resume` may take over, and the old runner, if it wakes up, stops before sending more (exit 1).
Exit status: 0 completed, 1 stopped or failed, 2 usage error, 130 Ctrl-C, 143 SIGTERM.]]

-- The engine's context over the command's shared one (alipay.cli.common):
-- channels from the configuration file, the store, the template registry
-- and the user bindings (alipay.workspace), each opened once and closed by
-- common.runner.
local function engine_context(ctx, log)
  return ctx:campaign_ctx { log = log }
end

-- ---- the terminal ----

local function stderr_is_terminal()
  return os.execute("test -t 2") == true
end

local function terminal_width()
  local cols = tonumber(os.getenv("COLUMNS") or "")
  if cols and cols > 0 then return cols end
  -- In a subshell: without a controlling terminal, opening /dev/tty fails
  -- and the shell's complaint must not reach the user.
  local p = io.popen("(stty size </dev/tty) 2>/dev/null")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  return tonumber(out:match("^%d+%s+(%d+)")) or 80
end

local function reporter(args)
  local mode = args.progress or (stderr_is_terminal() and "bar" or "lines")
  return progress.reporter {
    mode = mode, width = mode == "bar" and terminal_width() or 80, every_s = LOG_EVERY_S,
    write = function(text)
      io.stderr:write(text)
      io.stderr:flush()
    end,
  }
end

-- The engine's log lines on stderr, above the bar: warnings and errors
-- always (a resume that turned rows unknown, a stop), its info lines with
-- --verbose. What was said is kept, so the final message need not repeat it.
local function logger(rep, verbose)
  local said = {}
  local log = function(level, msg)
    if level == "debug" or (level == "info" and not verbose) then return end
    said[#said + 1] = tostring(msg)
    rep:note(("alipay campaign: %s: %s"):format(tostring(level), tostring(msg)))
  end
  local function already_said(text)
    for _, m in ipairs(said) do
      if m:find(text, 1, true) then return true end
    end
    return false
  end
  return log, already_said
end

-- ---- output ----

local function settled(counts)
  counts = counts or {}
  local n = 0
  for _, k in ipairs { "sent", "failed", "skipped", "unknown" } do n = n + (tonumber(counts[k]) or 0) end
  return n
end

-- run = {elapsed_s=, settled=}: this run only (a resumed campaign's counts
-- include earlier runs).
-- What each reason means for a retry (README "Campaigns": the guarantee).
local REASON_NOTES = {
  timeout = "sent, no answer in time: may have been delivered",
  reset = "closed before any answer byte: may have been delivered",
  truncated = "an answer began: probably delivered",
  http_5xx = "5xx without Alipay's signed body: may have been delivered",
  unverified = "an answer that could not be checked: probably delivered",
  runner_died = "in flight when its runner died: may have been delivered",
  superseded = "in flight when its runner lost the lease: may have been delivered",
  interrupted = "in flight when the drain ended: may have been delivered",
  unrecorded = "unknown from before reasons were stored",
}

local function unknown_lines(out, status)
  local by = status.unknown_by_reason
  if type(by) ~= "table" or next(by) == nil then return end
  local rows = {}
  for _, name in ipairs(outcome_reasons.UNKNOWN_REASONS) do
    if by[name] then
      rows[#rows + 1] = { reason = name, recipients = progress.count(by[name]), note = REASON_NOTES[name] }
    end
  end
  if by.unrecorded then
    rows[#rows + 1] = { reason = "unrecorded", recipients = progress.count(by.unrecorded),
      note = REASON_NOTES.unrecorded }
  end
  out.line("")
  local indented = { line = function(fmt, ...) out.line("  " .. fmt, ...) end }
  common.print_table(indented, { { key = "reason", title = "unknown by reason" },
    { key = "recipients", title = "recipients" }, { key = "note", title = "what it means" } }, rows)
end

local function print_summary(out, status, run)
  for _, line in ipairs(progress.summary(status)) do out.line("%s", line) end
  -- A crowd campaign's one row is a batch send, not a recipient: say so.
  if status.crowd then
    out.line("")
    out.line("  %s", status.crowd.text)
  end
  unknown_lines(out, status)
  if run then
    out.line("")
    if run.elapsed_s >= 1 then
      out.line("  this run: %s recipients settled in %s, %.1f/s", progress.count(run.settled),
        progress.duration(run.elapsed_s), run.settled / run.elapsed_s)
    else
      out.line("  this run: %s recipients settled in under a second", progress.count(run.settled))
    end
  end
end

-- JSON: lists that may be empty come out as [].
local function json_status(status)
  status.by_code = common.array(status.by_code)
  return status
end

-- Exit status and message of a finished (or stopped) run; signal: the
-- one that stopped it ("INT", "TERM"), unknown: how many this run left unknown.
local function outcome(out, status, already_said, signal, unknown)
  if status.status == "completed" then return true end
  local reason = status.stop_reason and tostring(status.stop_reason)
  if reason and not already_said(reason) then
    out.err("alipay campaign: campaign %s %s: %s", tostring(status.id), tostring(status.status), reason)
  else
    out.err("alipay campaign: campaign %s %s", tostring(status.id), tostring(status.status))
  end
  if signal then
    if unknown > 0 then
      out.err("%d recipients were still in flight: they are unknown (they may have been delivered; "
        .. "--retry-unknown sends them again).", unknown)
    end
    out.err("Continue with `alipay campaign resume %s`.", tostring(status.id))
    return exit_status.SIGNALLED[signal] or exit_status.FAILED
  end
  if status.status == "stopped" then
    out.err("Fix the cause, then continue with `alipay campaign resume %s`.", tostring(status.id))
  end
  return 1
end

-- The command behind the next step of a refusal to run (the engine's
-- message names the step): resuming would be refused the same way.
local REFUSAL_COMMAND = {
  running = "`alipay campaign status %s` shows its progress",
  importing = "`alipay campaign status %s` shows when it is done",
  import_interrupted = "`alipay campaign delete %s`, then `alipay campaign run` again",
}

-- The one next step after `alipay campaign delete` refused, in CLI terms
-- (the library's message speaks of its own `force` option).
local DELETE_REFUSAL = {
  holds_results = "`alipay campaign export %s --output FILE` keeps them; "
    .. "`alipay campaign delete %s --force` then deletes it",
  running = "`alipay campaign status %s` shows its progress",
  importing = "`alipay campaign status %s` shows when it is done",
}

-- A run that ended with an error (Ctrl-C, the store failed): the requests
-- then in flight stay inflight, and the next run makes them unknown. The
-- error goes back to common.runner, which prints it (and JSON with --json).
-- A refusal to start (running elsewhere, an import) is not resumable.
local function run_failed(id, err, detail)
  if type(detail) == "table" and detail.kind == "state" and detail.reason == "superseded" then
    -- Another run has the campaign: resuming here would take it back.
    return nil, ("%s (`alipay campaign status %s` shows its progress)"):format(tostring(err), tostring(id)), detail
  end
  local command = type(detail) == "table" and detail.kind == "state" and REFUSAL_COMMAND[detail.reason]
  if command then
    return nil, ("%s (%s)"):format(tostring(err), command:format(tostring(id))), detail
  end
  local text = tostring(err)
  if text:find("interrupted!", 1, true) then
    text = ("campaign %s interrupted (Ctrl-C)"):format(tostring(id))
  end
  return nil, ("%s; continue with `alipay campaign resume %s` (requests that were in flight become "
    .. "unknown: they may have been delivered; --retry-unknown sends them again)"):format(text, tostring(id)),
    detail
end

-- ---- run and resume ----

-- --data / --data-file -> table | nil, usage error.
local function read_data(args)
  local text, where = args.data, "--data"
  if args.data_file then
    local err
    text, err = common.read_text(args.data_file, "--data-file")
    if not text then return nil, common.usage("%s", err) end
    where = "--data-file " .. args.data_file
  end
  if not text then return nil, common.usage("--data JSON or --data-file FILE is required") end
  local data, err = common.decode_json(text, where)
  if not data then return nil, common.usage("%s", err) end
  return data
end

local function spec_of(args, channel)
  if args.audience == nil and not args.followers and args.crowd == nil and args.label == nil then
    return nil, common.usage("--audience FILE, --followers or --crowd CODE is required")
  end
  local data, err, detail = read_data(args)
  if not data then return nil, err, detail end
  local policy = {
    in_flight = args.in_flight, qps = args.qps, max_attempts = args.max_attempts,
    max_throttled_s = args.max_throttled, retry_unknown = args.retry_unknown or nil,
    stale_after_s = args.stale_after, drain_s = args.drain,
  }
  return {
    id = args.id, channel = channel.code, template = args.template, data = data, page = args.page,
    audience = args.audience and { file = args.audience } or args.crowd and { crowd = args.crowd }
      or args.label and { label = args.label } or { followers = true },
    policy = next(policy) and policy or nil,
  }
end

-- Runs c to its end with the progress display; prints the outcome.
local function drive(c, rep, already_said, args, out)
  local before, err, detail = c:status()
  if not before then return nil, err, detail end
  local result
  result, err, detail = c:run {
    progress_every_ms = PROGRESS_EVERY_MS,
    -- nil: the campaign's own policy decides (set when it was created).
    retry_unknown = args.retry_unknown or nil,
    stale_after_s = args.stale_after, drain_s = args.drain,
    -- A command line owns its process: Ctrl-C and SIGTERM stop the run
    -- cleanly (see the header).
    signals = true,
    on_progress = function(stats) rep:update(stats) end,
  }
  rep:finish(result)
  if not result then return run_failed(c.id, err, detail) end
  local status
  status, err, detail = c:status()
  if not status then return nil, err, detail end
  local this_run = { elapsed_s = tonumber(result.elapsed_s) or 0,
    settled = settled(status.counts) - settled(before.counts) }
  if args.json then
    status.elapsed_s = this_run.elapsed_s
    status.rate = this_run.elapsed_s > 0 and this_run.settled / this_run.elapsed_s or 0
    status.signal = result.signal
    common.json(out, json_status(status))
  else
    print_summary(out, status, this_run)
  end
  return outcome(out, status, already_said, result.signal,
    (tonumber(status.counts.unknown) or 0) - (tonumber(before.counts.unknown) or 0))
end

local run = common.runner(function(ctx, args, out)
  local channel, err, detail = ctx:channel()
  if not channel then return nil, err, detail end
  local spec
  spec, err, detail = spec_of(args, channel)
  if not spec then return nil, err, detail end
  local rep = reporter(args)
  local log, already_said = logger(rep, args.verbose)
  local engine
  engine, err, detail = engine_context(ctx, log)
  if not engine then return nil, err, detail end
  local c
  c, err, detail = require("alipay.campaign").create(engine, spec)
  if not c then return nil, err, detail end
  return drive(c, rep, already_said, args, out)
end)

-- --retry-unknown (every reason) or --retry-unknown=REASON[,REASON] ->
-- true | {reason, ...} | nil | nil, usage error.
local function retry_reasons(value)
  if value == nil then return nil end
  local list = {}
  for _, v in ipairs(value) do
    for name in tostring(v):gmatch("[^,%s]+") do list[#list + 1] = name end
  end
  if #list == 0 then return true end
  for _, name in ipairs(list) do
    if not outcome_reasons.is_unknown_reason(name) then
      local shown = #name > 40 and (name:sub(1, 40) .. "…") or name
      return nil, common.usage("--retry-unknown: unknown reason %q (valid: %s)", shown,
        table.concat(outcome_reasons.UNKNOWN_REASONS, ", "))
    end
  end
  return list
end

local resume = common.runner(function(ctx, args, out)
  local reasons, uerr = retry_reasons(args.retry_unknown)
  if uerr then return nil, uerr end
  args.retry_unknown = reasons
  local rep = reporter(args)
  local log, already_said = logger(rep, args.verbose)
  local engine, err, detail = engine_context(ctx, log)
  if not engine then return nil, err, detail end
  local c
  c, err, detail = require("alipay.campaign").open(engine, args.id)
  if not c then return nil, err, detail end
  return drive(c, rep, already_said, args, out)
end)

-- ---- status, export, list ----

local function open_campaign(ctx, id)
  local engine, err, detail = engine_context(ctx, function() end)
  if not engine then return nil, err, detail end
  return require("alipay.campaign").open(engine, id)
end

local function when(t)
  return common.format_time(tonumber(t) and math.floor(tonumber(t))) or "-"
end

local status_cmd = common.runner(function(ctx, args, out)
  local c, err, detail = open_campaign(ctx, args.id)
  if not c then return nil, err, detail end
  local status
  status, err, detail = c:status()
  if not status then return nil, err, detail end
  if args.json then
    common.json(out, json_status(status))
    return true
  end
  print_summary(out, status)
  out.line("")
  out.line("  created %s, started %s, finished %s", when(status.created_at), when(status.started_at),
    when(status.finished_at))
  return true
end)

local function export_format(args)
  if args.format then return args.format end
  return args.output:lower():match("%.jsonl?$") and "jsonl" or "csv"
end

local export_cmd = common.runner(function(ctx, args, out)
  local c, err, detail = open_campaign(ctx, args.id)
  if not c then return nil, err, detail end
  local format = export_format(args)
  local count
  count, err, detail = c:export(args.output, format)
  if not count then return nil, err, detail end
  if args.json then
    common.json(out, { id = args.id, output = args.output, format = format, count = count })
  else
    out.line("exported %s recipients of campaign %s to %s (%s)", progress.count(count), args.id,
      args.output, format)
  end
  return true
end)

local delete_cmd = common.runner(function(ctx, args, out)
  local c, err, detail = open_campaign(ctx, args.id)
  if not c then return nil, err, detail end
  local counts
  counts, err, detail = c:delete { force = args.force }
  if not counts then
    local step = type(detail) == "table" and detail.kind == "state" and DELETE_REFUSAL[detail.reason]
    if step then
      local text = tostring(err):gsub("; export them first, then delete with force = true$", "")
      local command = step:gsub("%%s", function() return args.id end)
      return nil, ("%s (%s)"):format(text, command), detail
    end
    return nil, err, detail
  end
  local total = 0
  for _, n in pairs(counts) do total = total + n end
  if args.json then
    common.json(out, { id = args.id, deleted = true, recipients = total, counts = counts })
  else
    out.line("deleted campaign %s and its %s recipients", args.id, progress.count(total))
  end
  return true
end)

local LIST_COLUMNS = {
  { key = "id", title = "id" }, { key = "status", title = "status" },
  { key = "channel", title = "channel" }, { key = "template", title = "template" },
  { key = "total", title = "total" }, { key = "sent", title = "sent" },
  { key = "failed", title = "failed" }, { key = "skipped", title = "skipped" },
  { key = "unknown", title = "unknown" }, { key = "created", title = "created" },
}

local list_cmd = common.runner(function(ctx, args, out)
  local engine, err, detail = engine_context(ctx, function() end)
  if not engine then return nil, err, detail end
  local list
  list, err, detail = require("alipay.campaign").list(engine)
  if not list then return nil, err, detail end
  if args.json then
    common.json(out, common.array(list))
    return true
  end
  if #list == 0 then
    out.line("no campaigns in this store")
    return true
  end
  local rows = {}
  for i, s in ipairs(list) do
    local counts = s.counts or {}
    rows[i] = { id = s.id, status = s.status, channel = s.channel, template = s.template,
      total = progress.count(s.total), sent = progress.count(counts.sent),
      failed = progress.count(counts.failed), skipped = progress.count(counts.skipped),
      unknown = progress.count(counts.unknown), created = when(s.created_at) }
  end
  common.print_table(out, LIST_COLUMNS, rows)
  return true
end)

-- ---- argparse ----

local function positive(name, integer)
  return function(text)
    local n = tonumber(text)
    if not n or n <= 0 or (integer and n % 1 ~= 0) then
      return nil, name .. ": expected a positive " .. (integer and "integer" or "number")
    end
    return n
  end
end

local function stale_option(cmd)
  cmd:option("--stale-after", "Lease staleness window: a runner without a heartbeat for this many seconds "
    .. "has lost the campaign to the next run or resume (default 60; heartbeats every quarter of it, at most "
    .. "2 s)."):argname("<s>"):convert(function(text)
      local n = tonumber(text)
      if not n or n < 1 or n > 3600 or n % 1 ~= 0 then return nil, "--stale-after: expected 1 to 3600 seconds" end
      return math.tointeger(n)
    end)
end

local function seconds(name)
  return function(text)
    local n = tonumber(text)
    if not n or n ~= n or n < 0 or n > 3600 then return nil, name .. ": expected seconds from 0 to 3600" end
    return n
  end
end

-- --drain, for run (stored in the campaign's policy) and resume (this run).
local function drain_option(cmd, what)
  cmd:option("--drain", "After Ctrl-C or SIGTERM, wait at most this many seconds for the requests in flight "
    .. "(" .. what .. ").")
    :argname("<s>"):convert(seconds("--drain"))
end

local function progress_options(cmd)
  cmd:flag("-v --verbose", "Also print the engine's informational log lines.")
  cmd:option("--progress", "Progress display on stderr: a bar redrawn in place (default on a "
    .. "terminal), a log line every " .. LOG_EVERY_S .. " s (default otherwise), or none.")
    :choices { "bar", "lines", "none" }
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  cmd:epilog(EPILOG)

  local run_cmd = cmd:command("run", "Create a campaign and send it.")
  run_cmd:epilog(EPILOG)
  run_cmd:option("--template", "Imported template id (what sends name: a Life Account's "
    .. "msg_template_id, a mini program's template id)."):argname("<id>"):count(1)
  run_cmd:mutex(
    run_cmd:option("--audience", "Recipients: a CSV file (with a header row) or JSONL (.jsonl)."):argname("<file>"),
    run_cmd:flag("--followers", "Send to every follower of the Life Account instead of --audience."),
    run_cmd:option("--crowd", "Mini programs: send to a crowd (棋盘人群) in one batch send; Alipay chooses its "
      .. "subscribed users and reports no per-user results (--data without placeholders)."):argname("<code>"),
    -- Accepted so that the refusal can say what Alipay offers instead.
    run_cmd:option("--label", "Refused: Alipay sends a label text or image-text only (`alipay broadcast "
      .. "text|image-text --label ID`), never a template message."):argname("<id>"))
  run_cmd:mutex(
    run_cmd:option("--data", "Message data as a JSON object; \"{column}\" is replaced per recipient.")
      :argname("<json>"),
    run_cmd:option("--data-file", "File holding the --data JSON."):argname("<file>"))
  run_cmd:option("--page", "Mini-program page opened from the message."):argname("<page>")
  run_cmd:option("--id", "Campaign id (default: generated)."):argname("<id>")
  run_cmd:option("--in-flight", "Requests in flight at once (default 8)."):argname("<n>")
    :convert(positive("--in-flight", true))
  run_cmd:option("--qps", "Most requests per second (default 50; lowered on throttling)."):argname("<n>")
    :convert(positive("--qps", false))
  run_cmd:option("--max-attempts", "Attempts per recipient on transient errors (default 5)."):argname("<n>")
    :convert(positive("--max-attempts", true))
  run_cmd:option("--max-throttled", "Stop (resumable) after this many seconds of nothing but throttled "
    .. "answers, e.g. a daily quota used up (default 900)."):argname("<s>")
    :convert(positive("--max-throttled", false))
  run_cmd:flag("--retry-unknown", "Also send to recipients whose earlier attempt has an unknown outcome.")
  stale_option(run_cmd)
  drain_option(run_cmd, "default 5; kept for resume")
  progress_options(run_cmd)
  common.options(run_cmd, cli, { channel = true })

  local resume_cmd = cmd:command("resume", "Continue a stopped or interrupted campaign.")
  resume_cmd:epilog(EPILOG)
  resume_cmd:argument("id", "Campaign id.")
  resume_cmd:option("--retry-unknown", "Send again to unknown recipients: all of them, or with =REASON[,REASON] "
    .. "only those (" .. table.concat(outcome_reasons.UNKNOWN_REASONS, ", ") .. "; `campaign status` counts "
    .. "them). Each may have been delivered already."):args("?"):argname("<reasons>")
  stale_option(resume_cmd)
  drain_option(resume_cmd, "default: what the campaign was run with")
  progress_options(resume_cmd)
  common.options(resume_cmd, cli)

  local status_c = cmd:command("status", "Show a campaign's counts by status and by Alipay code.")
  status_c:argument("id", "Campaign id.")
  common.options(status_c, cli)

  local export_c = cmd:command("export", "Write every recipient's result to a file.")
  export_c:argument("id", "Campaign id.")
  export_c:option("--output", "File to write."):argname("<file>"):count(1)
  export_c:option("--format", "csv or jsonl (default: jsonl for a .jsonl/.json name, else csv).")
    :choices { "csv", "jsonl" }
  common.options(export_c, cli)

  local list_c = cmd:command("list", "List the campaigns of the store.")
  common.options(list_c, cli)

  local delete_c = cmd:command("delete", "Delete a campaign and its recipients from the store (an "
    .. "interrupted import, a campaign no longer needed).")
  delete_c:argument("id", "Campaign id.")
  delete_c:flag("--force", "Also delete a campaign whose recipients hold results (sent, failed, unknown): "
    .. "export them first.")
  common.options(delete_c, cli)
end

local ACTIONS = { run = run, resume = resume, status = status_cmd, export = export_cmd, list = list_cmd,
                  delete = delete_cmd }

function M.run(args, out)
  return ACTIONS[args.action](args, out)
end

return M
