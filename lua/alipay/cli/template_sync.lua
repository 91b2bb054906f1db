-- `alipay template sync|library|apply`: a mini program's templates from the
-- command line (docs/messaging.md §3.4). `sync` imports what Alipay lists
-- into the registry and marks what it no longer lists invalid; `library`
-- lists the template library; `apply` applies for a library template and
-- imports the new one. A Life Account has no such list (§2.3): its templates
-- are claimed or imported (`alipay template claim|import`).
local common = require "alipay.cli.common"
local errors = require "alipay.errors"
local mini_templates = require "alipay.messaging.mini_templates"

local M = {}

-- The mini-program channel of the run; a Life Account is refused by name.
local function mini_channel(ctx, args, what)
  local kind = nil
  if not args.channel then kind = "alipaymini" end
  local channel, err, detail = ctx:channel(kind)
  if not channel then return nil, err, detail end
  if channel.kind ~= "alipaymini" then
    return errors.fail("config", { channel = channel.code, field = "channel", retryable = false,
      msg = ("channel %s is a Life Account: Alipay has no API that lists a Life Account's templates, so there is "
        .. "nothing to %s; claim them (alipay template claim) or import them (alipay template import)")
        :format(channel.code, what) })
  end
  return channel
end

local function join(list) return table.concat(list or {}, ",") end

local function brief(t)
  return { id = t.id, name = t.name, keywords = common.array(t.keywords), status = t.status }
end

-- ---- sync ----

local function sync(ctx, args, out)
  local channel, err, detail = mini_channel(ctx, args, "sync")
  if not channel then return nil, err, detail end
  local registry
  registry, err, detail = ctx:registry()
  if not registry then return nil, err, detail end
  local opts = { status_list = args.status and common.split_list(args.status) or nil,
                 allow_empty = args.allow_empty }
  local report, serr, sdetail = mini_templates.new(channel, registry):sync(opts)
  if not report then return nil, serr, sdetail end
  local failed = {}
  for _, f in ipairs(report.failed) do failed[f.id or ""] = f.error end
  if args.json then
    local changed, lists = {}, {}
    for i, c in ipairs(report.changed) do
      changed[i] = brief(c.template)
      changed[i].before = { name = c.before.name, keywords = common.array(c.before.keywords) }
      changed[i].changed = common.array((c.name and { "name" } or {}))
      if c.keywords then table.insert(changed[i].changed, "keywords") end
    end
    for _, key in ipairs { "added", "revived", "gone", "unchanged" } do
      lists[key] = {}
      for i, t in ipairs(report[key]) do lists[key][i] = brief(t) end
      lists[key] = common.array(lists[key])
    end
    common.json(out, { ok = #report.failed == 0, channel = channel.code, listed = report.listed,
      added = lists.added, changed = common.array(changed), revived = lists.revived, gone = lists.gone,
      unchanged = lists.unchanged, failed = common.array(report.failed) })
  else
    local function line(what, t, extra)
      out.line("%-9s %s %s%s%s", what, t.id, t.name or "(no name)", extra or "",
        failed[t.id] and ("  NOT IMPORTED: " .. failed[t.id]) or "")
    end
    for _, t in ipairs(report.added) do line("added", t, " [" .. join(t.keywords) .. "]") end
    for _, c in ipairs(report.changed) do
      local parts = {}
      if c.name then parts[#parts + 1] = ("name %s -> %s"):format(c.before.name or "(none)", c.template.name) end
      if c.keywords then
        parts[#parts + 1] = ("keywords [%s] -> [%s]"):format(join(c.before.keywords), join(c.template.keywords))
      end
      line("changed", c.template, " " .. table.concat(parts, "; "))
    end
    for _, t in ipairs(report.revived) do line("revived", t, " (listed again: valid)") end
    for _, t in ipairs(report.gone) do line("gone", t, " (no longer listed: marked invalid)") end
    for _, t in ipairs(report.unchanged) do line("unchanged", t) end
    out.line("channel %s: %d listed; %d added, %d changed, %d revived, %d gone, %d unchanged%s", channel.code,
      report.listed, #report.added, #report.changed, #report.revived, #report.gone, #report.unchanged,
      #report.failed > 0 and (", " .. #report.failed .. " not imported") or "")
  end
  return #report.failed == 0 and true or common.FAILED
end

-- ---- library ----

local function matches(entry, keyword)
  if not keyword then return true end
  if entry.name and entry.name:find(keyword, 1, true) then return true end
  for _, k in ipairs(entry.keywords) do
    if k:find(keyword, 1, true) then return true end
  end
  return false
end

local function library(ctx, args, out)
  local channel, err, detail = mini_channel(ctx, args, "list")
  if not channel then return nil, err, detail end
  local entries, lerr, ldetail = mini_templates.new(channel):library {
    industry_code = args.industry_code, industry_scenario = args.industry_scenario,
    scene_rule = args.scene_rule, has_push = args.has_push or nil }
  if not entries then return nil, lerr, ldetail end
  local shown = {}
  for _, e in ipairs(entries) do
    if matches(e, args.keyword) then shown[#shown + 1] = e end
  end
  if args.json then
    for _, e in ipairs(shown) do e.keywords = common.array(e.keywords) end
    common.json(out, { ok = true, channel = channel.code, library = common.array(shown) })
    return true
  end
  if #shown == 0 then
    out.line("no library templates%s", args.keyword and (" matching " .. args.keyword) or "")
    return true
  end
  local rows = {}
  for i, e in ipairs(shown) do
    rows[i] = { code = e.code, name = e.name, keywords = join(e.keywords), rule = e.scene_rule,
                industry = e.industry_code, selectable = e.selectable == false and "no" or "yes" }
  end
  common.print_table(out, { { key = "code", title = "LIB CODE" }, { key = "name", title = "NAME" },
    { key = "keywords", title = "KEYWORDS" }, { key = "rule", title = "SCENE RULE" },
    { key = "industry", title = "INDUSTRY" }, { key = "selectable", title = "SELECTABLE" } }, rows)
  return true
end

-- ---- apply ----

local function apply(ctx, args, out)
  local channel, err, detail = mini_channel(ctx, args, "apply for")
  if not channel then return nil, err, detail end
  local registry
  registry, err, detail = ctx:registry()
  if not registry then return nil, err, detail end
  local keywords = common.split_list(args.keywords)
  local result, aerr, adetail = mini_templates.new(channel, registry):apply(args.lib_code, keywords,
    { scene_rule = args.scene_rule, name = args.name })
  if not result then return nil, aerr, adetail end
  if args.json then
    common.json(out, { ok = result.imported, channel = channel.code, lib_code = args.lib_code,
      id = result.template_id, keywords = common.array(result.keywords), imported = result.imported,
      import_error = result.import_error })
  else
    out.line("applied for %s on channel %s: template %s", args.lib_code, channel.code, result.template_id)
    if result.imported then
      out.line("imported with %d keywords: %s", #result.keywords, table.concat(result.keywords, ", "))
    else
      out.line("not imported: %s", tostring(result.import_error))
    end
  end
  return result.imported and true or common.FAILED
end

-- ---- argparse ----

function M.configure(cmd, cli)
  local sync_cmd = cmd:command("sync", "Mini programs: import the templates Alipay lists for the app into the "
    .. "registry, mark the ones it no longer lists invalid, and show what changed.")
  sync_cmd:option("--status", "Only templates in these states, comma-separated (Alipay's status values, "
    .. "passed as given; the others are then treated as gone)."):argname("<s1,s2,...>")
  sync_cmd:flag("--allow-empty", "Accept an empty listing, marking every registered template invalid (without "
    .. "it such a sync is refused).")
  common.options(sync_cmd, cli, { channel = true, channel_help = "The mini-program channel (default: the only one)." })

  local lib_cmd = cmd:command("library", "Mini programs: list Alipay's template library.")
  lib_cmd:option("--keyword", "Only templates whose name or a keyword contains this text (filtered here: "
    .. "the API has no such filter)."):argname("<text>")
  lib_cmd:option("--industry-code", "Alipay's filter: the level-1 industry (XS...)."):argname("<code>")
  lib_cmd:option("--industry-scenario", "Alipay's filter: the industry scenario."):argname("<scenario>")
  lib_cmd:option("--scene-rule", "Alipay's filter: one_time_subscribe or long_term_subscribe."):argname("<rule>")
  lib_cmd:flag("--has-push", "Alipay's filter: only templates with push.")
  common.options(lib_cmd, cli, { channel = true, channel_help = "The mini-program channel (default: the only one)." })

  local apply_cmd = cmd:command("apply", "Mini programs: apply for a library template with 2 to 5 of its "
    .. "keywords and import the new template into the registry.")
  apply_cmd:argument("lib_code", "The library template's code (alipay template library).")
  apply_cmd:option("--keywords", "The keyword names, in order, comma-separated."):argname("<k1,k2,...>"):count(1)
  apply_cmd:option("--scene-rule", "one_time_subscribe or long_term_subscribe."):argname("<rule>")
  apply_cmd:option("--name", "The name recorded in the registry (a sync takes Alipay's)."):argname("<name>")
  common.options(apply_cmd, cli, { channel = true, channel_help = "The mini-program channel (default: the only one)." })
end

M.ACTIONS = { sync = sync, library = library, apply = apply }

return M
