-- `alipay followers export`: every follower of a Life Account, written to a
-- file page by page (follow.batchquery, up to 10,000 ids a page). An
-- account may have millions of followers, so the export is resumable:
-- after each page is written and flushed, the store records the cursor of
-- the next page and how many bytes of the file are complete. `--resume`
-- cuts off whatever an interrupted run wrote after that (a page written but
-- not recorded) and continues from the cursor, so no page is written twice.
--
-- Store meta keys, per channel code:
--   followers:<code>:cursor  the next page's cursor; absent before the
--                            first page and once the export is complete
--   followers:<code>:export  JSON {output=, format=, bytes=, count=, pages=,
--                            id_type=, status = "running"|"done"}
local common = require "alipay.cli.common"
local errors = require "alipay.errors"
local lifeaccount = require "alipay.messaging.lifeaccount"
local shell = require "alipay.util.shell"

local M = { summary = "Export a Life Account's followers (CSV or JSON lines), resumably." }

-- ---- formats ----

local function csv_field(s)
  if s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local FORMATS = {
  csv = {
    header = "id,id_type\n",
    row = function(id, id_type) return csv_field(id) .. "," .. id_type .. "\n" end,
  },
  jsonl = {
    header = "",
    -- Written by hand so every line has the same key order.
    row = function(id, id_type)
      return '{"id":' .. common.json_text(id) .. ',"id_type":' .. common.json_text(id_type) .. "}\n"
    end,
  },
}

local function format_of(args)
  if args.format then return args.format end
  if args.output:match("%.jsonl$") or args.output:match("%.ndjson$") then return "jsonl" end
  return "csv"
end

-- ---- paths and files ----

-- The state names the file absolutely: a resume from another directory
-- must find the same file. The working directory comes from sh's pwd, not
-- from $PWD: a parent that changed our directory without updating $PWD
-- (any exec with a cwd) leaves it stale, and sh checks it against ".".
-- "." segments are dropped so that ./f.csv and f.csv resume each other;
-- ".." stays (through a symlink it is not the lexical parent).
local function absolute(path)
  if path:sub(1, 1) ~= "/" then
    local ok, text = shell.capture("pwd")
    local pwd = ok and text:match("^%s*(/.-)%s*$") or nil
    if not pwd then return path end
    path = pwd .. "/" .. path
  end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part ~= "." then parts[#parts + 1] = part end
  end
  return "/" .. table.concat(parts, "/")
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
end

-- ---- state ----

local function cursor_key(code) return "followers:" .. code .. ":cursor" end
local function state_key(code) return "followers:" .. code .. ":export" end

local function read_state(st, code)
  local text = st:meta_get(state_key(code))
  if not text then return nil end
  local state = common.decode_json(text, "the recorded export")
  return state
end

-- The state and the cursor change together: a resume must never see the
-- bytes of one page with the cursor of another.
local function save(st, code, state, cursor)
  local ok, err = pcall(st.transaction, st, function(s)
    assert(s:meta_put(cursor_key(code), cursor))
    assert(s:meta_put(state_key(code), common.json_text(state)))
  end)
  if not ok then return errors.fail("store", "cannot record the export's progress: " .. tostring(err)) end
  return true
end

-- ---- starting or resuming ----

-- -> file handle, state, cursor | nil, err, detail
local function start_fresh(st, code, output, format)
  local fh, err = io.open(output, "wb")
  if not fh then return errors.fail("io", "cannot write " .. tostring(err)) end
  local header = FORMATS[format].header
  fh:write(header)
  fh:flush()
  local state = { output = output, format = format, bytes = #header, count = 0, pages = 0, status = "running",
                  started_at = os.time() }
  local ok, serr, sdetail = save(st, code, state, nil)
  if not ok then
    fh:close()
    return nil, serr, sdetail
  end
  return fh, state, nil
end

local function resume(st, code, state, out)
  local size = file_size(state.output)
  if not size then
    return errors.fail("io", ("cannot resume: %s is gone; export again without --resume"):format(state.output))
  end
  if size < state.bytes then
    return errors.fail("state", ("cannot resume: %s has %d bytes, fewer than the %d recorded: it was changed; "
      .. "export again without --resume"):format(state.output, size, state.bytes))
  end
  if size > state.bytes then
    -- A page written but not recorded (the run was interrupted): drop it,
    -- it is fetched again.
    out.err("dropping %d bytes of an unrecorded page at the end of %s", size - state.bytes, state.output)
    if not shell.execute(("truncate -s %d -- %s"):format(state.bytes, shell.quote(state.output))) then
      return errors.fail("io", "cannot truncate " .. state.output .. " to its last complete page")
    end
  end
  local fh, err = io.open(state.output, "ab")
  if not fh then return errors.fail("io", "cannot append to " .. tostring(err)) end
  local cursor = st:meta_get(cursor_key(code))
  if not cursor and state.pages > 0 then
    fh:close()
    return errors.fail("state", ("cannot resume: the store has no cursor after page %d; export again without "
      .. "--resume"):format(state.pages))
  end
  return fh, state, cursor
end

-- ---- the export ----

local function summary(args, out, s)
  if args.json then
    common.json(out, { ok = true, channel = s.channel, output = s.state.output, format = s.state.format,
                       followers = s.state.count, pages = s.state.pages, complete = s.state.status == "done",
                       resumed = s.resumed })
  elseif s.state.status == "done" then
    out.line("exported %d followers of channel %s to %s (%s, %d pages)", s.state.count, s.channel,
      s.state.output, s.state.format, s.state.pages)
  else
    out.line("stopped after %d page%s (%d followers so far in %s); continue with --resume", s.state.pages,
      s.state.pages == 1 and "" or "s", s.state.count, s.state.output)
  end
  return true
end

local function export(ctx, args, out)
  local format = format_of(args)
  local output = absolute(args.output)
  local channel, err, detail = ctx:channel("alipaylife")
  if not channel then return nil, err, detail end
  local st
  st, err, detail = ctx:store()
  if not st then return nil, err, detail end
  local code = channel.code

  local previous = read_state(st, code)
  local fh, state, cursor
  local resumed = false
  if args.resume and previous and previous.output == output then
    if previous.format ~= format then
      return nil, common.usage("%s was exported as %s: resume with --format %s", output, previous.format,
        previous.format)
    end
    if previous.status == "done" then
      out.err("the export of channel %s to %s is already complete: nothing to resume", code, output)
      return summary(args, out, { channel = code, state = previous, resumed = true })
    end
    fh, state, cursor = resume(st, code, previous, out)
    resumed = true
  else
    if args.resume then
      out.err(previous and previous.status ~= "done"
        and ("the interrupted export of channel %s writes %s, not %s: starting from the beginning")
          :format(code, previous.output, output)
        or ("no interrupted export of channel %s to resume: starting from the beginning"):format(code))
    end
    fh, state, cursor = start_fresh(st, code, output, format)
  end
  if not fh then return nil, state, cursor end -- (nil, err, detail)
  if resumed then
    out.err("resuming after page %d (%d followers)", state.pages, state.count)
  end

  local row = FORMATS[format].row
  local pages = lifeaccount.new(channel):followers { start = cursor, start_field = cursor and state.cursor_field }
  local this_run = 0
  while not pages.done do
    if args.max_pages and this_run >= args.max_pages then break end
    local page = pages()
    if not page then break end
    local lines = {}
    for i, id in ipairs(page.ids) do lines[i] = row(id, page.id_type) end
    local chunk = table.concat(lines)
    local ok, werr = fh:write(chunk)
    if ok then ok, werr = fh:flush() end
    if not ok then
      fh:close()
      return errors.fail("io", ("writing %s: %s; resume with --resume once fixed"):format(output, tostring(werr)))
    end
    this_run = this_run + 1
    state.bytes, state.count, state.pages = state.bytes + #chunk, state.count + #page.ids, state.pages + 1
    state.id_type = page.id_type
    state.cursor_field = page.next_field -- the request field the cursor goes back in
    if pages.done and not pages.err then state.status, state.finished_at = "done", os.time() end
    local saved, serr, sdetail = save(st, code, state, not pages.done and page.next or nil)
    if not saved then
      fh:close()
      return nil, serr, sdetail
    end
    out.err("page %d: %d followers (%d in total)", state.pages, #page.ids, state.count)
  end
  fh:close()
  if pages.err then
    -- The line says how to go on; --json reports the listing's own detail.
    return nil, ("%s (after %d complete pages; run again with --resume to continue)")
      :format(tostring(pages.err), state.pages), pages.detail
  end
  if pages.done and state.status ~= "done" then
    -- The listing ended on an empty page.
    state.status, state.finished_at = "done", os.time()
    local saved, serr, sdetail = save(st, code, state, nil)
    if not saved then return nil, serr, sdetail end
  end
  return summary(args, out, { channel = code, state = state, resumed = resumed })
end

-- ---- argparse ----

function M.configure(cmd, cli)
  cmd:command_target("action")
  local e = cmd:command("export", "Write every follower id with its type (user_id or open_id) to a file, "
    .. "page by page. Progress goes to stderr.")
  e:option("--output", "The file to write."):argname("<file>"):count(1)
  e:option("--format", "csv (a header id,id_type) or jsonl (one {\"id\", \"id_type\"} per line); default: "
    .. "jsonl for a .jsonl file, else csv."):choices { "csv", "jsonl" }
  e:flag("--resume", "Continue an interrupted export to the same file from its last complete page.")
  -- Tests stop an export part-way with it, as an interruption would.
  e:option("--max-pages", "Stop after this many pages."):argname("<n>"):convert(function(v)
    local n = tonumber(v)
    if not n or n < 1 or n % 1 ~= 0 then return nil, "--max-pages must be a positive integer" end
    return n
  end):hidden(true)
  common.options(e, cli, { channel = true, channel_help = "The Life Account channel (default: the only one)." })
end

M.run = common.runner(function(ctx, args, out)
  if args.action == "export" then return export(ctx, args, out) end
  return nil, common.usage("unknown action %s", tostring(args.action))
end)

return M
