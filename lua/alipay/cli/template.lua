-- `alipay template claim|import|list`: the template registry from the
-- command line. Alipay has no API that lists the templates a Life Account
-- claimed, so a claim is imported into the registry as it happens, and
-- templates claimed in the console are imported from a file.
local common = require "alipay.cli.common"
local excerpt = require "alipay.util.excerpt"
local lifeaccount = require "alipay.messaging.lifeaccount"
local template_sync = require "alipay.cli.template_sync"

local M = { summary = "Claim Life Account templates, import templates from a file, list the registry; "
  .. "sync, list and apply for mini-program templates." }

-- ---- claim ----

-- Keywords of a claimed template's JSON: a list of names, or of objects
-- naming them ({key = "keyword2", name = "订单状态"}), ordered by their keyN
-- when every one has it.
local function keyword_name(k)
  if type(k) == "string" then return k end
  if type(k) ~= "table" then return nil end
  for _, field in ipairs { "name", "keyword_name", "label", "title" } do
    if type(k[field]) == "string" and k[field] ~= "" then return k[field] end
  end
end

local function keywords_of(template)
  local list = template.keywords or template.keyword_list
  if type(list) ~= "table" or #list == 0 then return nil end
  local entries = {}
  for i, k in ipairs(list) do
    local name = keyword_name(k)
    if not name then return nil end
    local position = nil
    if type(k) == "table" and type(k.key) == "string" then position = tonumber(k.key:match("^keyword(%d+)$")) end
    entries[i] = { name = name, position = position, index = i }
  end
  local all_numbered = true
  for _, e in ipairs(entries) do all_numbered = all_numbered and e.position ~= nil end
  if all_numbered then table.sort(entries, function(a, b) return a.position < b.position end) end
  local names = {}
  for i, e in ipairs(entries) do names[i] = e.name end
  return names
end

-- name, keywords of the answer's template (a decoded table, text, or nil)
local function answer_fields(template)
  if type(template) ~= "table" then return nil, nil end
  local name = template.name or template.title or template.template_name
  return type(name) == "string" and name ~= "" and name or nil, keywords_of(template)
end
M.answer_fields = answer_fields

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function claim(ctx, args, out)
  local channel, err, detail = ctx:channel("alipaylife")
  if not channel then return nil, err, detail end
  local registry
  registry, err, detail = ctx:registry()
  if not registry then return nil, err, detail end
  local given = args.keywords and common.split_list(args.keywords)
  if given and #given == 0 then return nil, common.usage("--keywords: give the keywords as K1,K2,...") end

  local life = lifeaccount.new(channel, registry)
  local answer, cerr, cdetail = life:claim_template(args.library_id)
  if not answer then return nil, cerr, cdetail end

  local name, keywords = answer_fields(answer.template)
  name = name or args.name
  if keywords and given and not same_list(keywords, given) then
    out.err("note: Alipay's answer lists the keywords %s; --keywords is ignored", table.concat(keywords, ","))
  end
  keywords = keywords or given
  if not keywords then
    -- The claim itself is done (claiming again returns the same id), but a
    -- template without keywords cannot be checked or sent.
    return nil, common.usage("claimed %s as template %s on channel %s, but Alipay's answer lists no "
      .. "keywords: run it again with --keywords K1,K2,... (in the console's order) to import it",
      args.library_id, answer.msg_template_id, channel.code)
  end
  local record = { channel = channel.code, kind = "alipaylife", id = answer.msg_template_id, name = name,
                   keywords = keywords, library_id = args.library_id }
  local result, ierr, idetail = registry:import({ record })
  if not result then return nil, ierr, idetail end
  if #result.failed > 0 then
    return nil, ("claimed %s as template %s, but it could not be imported: %s")
      :format(args.library_id, answer.msg_template_id, result.failed[1].error)
  end
  if args.json then
    common.json(out, { ok = true, channel = channel.code, library_id = args.library_id,
                       id = answer.msg_template_id, name = name, keywords = keywords })
  else
    out.line("claimed %s on channel %s: template %s", args.library_id, channel.code, answer.msg_template_id)
    out.line("imported %s with %d keywords: %s", name or "(no name)", #keywords, table.concat(keywords, ", "))
  end
  return true
end

-- ---- import ----

local function read_items(path)
  local text, err, detail = common.read_text(path, "import")
  if not text then return nil, err, detail end
  local decoded
  decoded, err, detail = common.decode_json(text, path)
  if not decoded then return nil, err, detail end
  if decoded.templates ~= nil then decoded = decoded.templates end
  if type(decoded) ~= "table" or (next(decoded) ~= nil and #decoded == 0) then
    return nil, path .. ': must hold an array of templates or {"templates": [...]}'
  end
  return decoded
end

-- Checks each item's channel against the configuration and fills its
-- kind from the channel: a mini-program template imported as a Life
-- Account one would be refused by every send. -> items to import (with
-- their positions), failures
local function prepare(items, set, default_channel)
  local ready, positions, failed = {}, {}, {}
  for index, item in ipairs(items) do
    local problem
    if type(item) == "table" then
      local code = item.channel or default_channel
      local channel = type(code) == "string" and (set:get(code))
      if code ~= nil and type(code) == "string" and not channel then
        problem = ("channel %s is not configured"):format(excerpt(code))
      elseif channel and item.kind ~= nil and item.kind ~= channel.kind then
        problem = ("kind %s does not match channel %s (%s)"):format(excerpt(item.kind), code, channel.kind)
      else
        local copy = {}
        for k, v in pairs(item) do copy[k] = v end
        copy.channel = code
        if channel and copy.kind == nil then copy.kind = channel.kind end
        item = copy
      end
    end
    if problem then
      failed[#failed + 1] = { index = index, id = type(item.id) == "string" and item.id or nil, error = problem }
    else
      ready[#ready + 1] = item
      positions[#ready] = index
    end
  end
  return ready, positions, failed
end

local function import(ctx, args, out)
  local set, err, detail = ctx:channels()
  if not set then return nil, err, detail end
  local default_channel = args.channel
  if default_channel then
    local _, gerr, gdetail = set:get(default_channel)
    if gerr then return nil, gerr, gdetail end
  elseif #set:list() == 1 then
    default_channel = set:list()[1].code
  end
  local registry
  registry, err, detail = ctx:registry()
  if not registry then return nil, err, detail end
  local items
  items, err, detail = read_items(args.file)
  if not items then return nil, err, detail end

  local ready, positions, failed = prepare(items, set, default_channel)
  local result, ierr, idetail = registry:import(ready)
  if not result then return nil, ierr, idetail end
  local refused = {}
  for _, f in ipairs(result.failed) do
    refused[f.index] = true
    failed[#failed + 1] = { index = positions[f.index], id = f.id, error = f.error }
  end
  table.sort(failed, function(a, b) return a.index < b.index end)
  local imported = {}
  for i, item in ipairs(ready) do
    if not refused[i] then
      imported[#imported + 1] = { index = positions[i], channel = item.channel, id = item.id, name = item.name,
                                  kind = item.kind, keywords = item.keywords }
    end
  end

  if args.json then
    common.json(out, { ok = #failed == 0, imported = common.array(imported), failed = common.array(failed) })
  else
    -- In file order, so an operator can walk the file alongside.
    local lines = {}
    for _, t in ipairs(imported) do
      lines[#lines + 1] = { index = t.index, text = ("imported %s (channel %s, %s, %d keywords)")
        :format(t.id, t.channel, t.name or "no name", #t.keywords) }
    end
    for _, f in ipairs(failed) do
      lines[#lines + 1] = { index = f.index, text = ("failed   %s: %s"):format(f.id or "(no id)", f.error) }
    end
    table.sort(lines, function(a, b) return a.index < b.index end)
    for _, l in ipairs(lines) do out.line("#%d %s", l.index, l.text) end
    out.line("%d imported, %d failed", #imported, #failed)
  end
  return #failed == 0 and true or common.FAILED
end

-- ---- list ----

local function list(ctx, args, out)
  if args.channel and not args.store then
    -- The configuration is loaded anyway (it names the store): catch a typo.
    local set, err, detail = ctx:channels()
    if not set then return nil, err, detail end
    local _, gerr, gdetail = set:get(args.channel)
    if gerr then return nil, gerr, gdetail end
  end
  local registry, err, detail = ctx:registry()
  if not registry then return nil, err, detail end
  local all, lerr, ldetail = registry:list(args.channel)
  if not all then return nil, lerr, ldetail end
  local shown = {}
  for _, t in ipairs(all) do
    if args.all or t.status == "valid" then shown[#shown + 1] = t end
  end
  if args.json then
    common.json(out, { ok = true, templates = common.array(shown) })
    return true
  end
  if #shown == 0 then
    out.line("no %stemplates%s", args.all and "" or "usable ",
      args.channel and (" on channel " .. args.channel) or "")
    return true
  end
  local rows = {}
  for i, t in ipairs(shown) do
    rows[i] = { channel = t.channel, id = t.id, name = t.name, kind = t.kind,
                keywords = table.concat(t.keywords or {}, ","), status = t.status, invalid = t.invalid_code,
                time = common.format_time(t.status == "invalid" and t.invalid_at or t.imported_at) }
  end
  common.print_table(out, {
    { key = "channel", title = "CHANNEL" }, { key = "id", title = "TEMPLATE" }, { key = "name", title = "NAME" },
    { key = "kind", title = "KIND" }, { key = "keywords", title = "KEYWORDS" },
    { key = "status", title = "STATUS" }, { key = "invalid", title = "INVALID CODE" },
    { key = "time", title = "TIME (imported or invalidated)" },
  }, rows)
  return true
end

-- ---- argparse ----

function M.configure(cmd, cli)
  cmd:command_target("action")
  local claim_cmd = cmd:command("claim", "Claim a template of Alipay's library for a Life Account and import "
    .. "it into the registry.")
  claim_cmd:argument("library_id", "The library template id, e.g. TM000000223.")
  claim_cmd:option("--name", "The template's name, when Alipay's answer has none."):argname("<name>")
  claim_cmd:option("--keywords", "The keywords in order, comma-separated, when Alipay's answer has none."):
    argname("<k1,k2,...>")
  common.options(claim_cmd, cli, { channel = true, channel_help = "The Life Account channel (default: the only one)." })

  local import_cmd = cmd:command("import", "Import templates copied from the console: a JSON array of "
    .. "{id, name, keywords, channel, kind}, or {\"templates\": [...]}.")
  import_cmd:argument("file", "The JSON file.")
  common.options(import_cmd, cli, { channel = true,
    channel_help = "The channel of entries that name none (default: the only channel)." })

  local list_cmd = cmd:command("list", "List the imported templates with their status.")
  list_cmd:flag("--all", "Include templates marked invalid (with the code and time Alipay reported).")
  common.options(list_cmd, cli, { channel = true, channel_help = "Only this channel's templates." })
  template_sync.configure(cmd, cli)
end

local ACTIONS = { claim = claim, import = import, list = list }
for name, action in pairs(template_sync.ACTIONS) do ACTIONS[name] = action end

M.run = common.runner(function(ctx, args, out)
  return ACTIONS[args.action](ctx, args, out)
end)

return M
