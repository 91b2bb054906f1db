-- `alipay campaign run|resume|status|export|list|delete` (lua/alipay/cli/campaign.lua)
-- as child processes against the sandbox gateway, with a temporary channel
-- file and store; and the rendering of alipay.cli.progress.
local helpers = require "helpers"
local cjson = require "cjson"
local progress = require "alipay.cli.progress"

local APP_ID = "2021000122671080"
local CHANNEL = "alipaylife_spec"
local TEMPLATE = "0spec0order0template000000000001"
local DELETED = "0spec0deleted0template0000000001"
local FOLLOWERS = 500

local function follower(i) return ("20880000%08d"):format(i) end
local function stranger(i) return ("20889999%08d"):format(i) end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- ---- progress rendering (pure) ----

describe("alipay.cli.progress", function()
  local stats = {
    id = "c1", status = "running", total = 20000, rate = 412.3, qps = 50, eta_s = 27, elapsed_s = 22,
    counts = { pending = 10992, inflight = 8, sent = 8800, failed = 150, skipped = 50, unknown = 0 },
  }

  it("formats counts and durations", function()
    assert.equal("0", progress.count(0))
    assert.equal("999", progress.count(999))
    assert.equal("1,000", progress.count(1000))
    assert.equal("1,234,567", progress.count(1234567))
    assert.equal("45s", progress.duration(45))
    assert.equal("2:05", progress.duration(125))
    assert.equal("1:02:03", progress.duration(3723))
    assert.equal("?", progress.duration(nil))
    assert.equal("?", progress.duration(math.huge))
  end)

  it("draws a bar that never exceeds the width", function()
    for width = 1, 200 do
      local bar = progress.bar(stats, width)
      assert.is_true(#bar <= width, ("width %d: %d characters"):format(width, #bar))
      assert.is_nil(bar:find("\n"))
    end
  end)

  it("shows every count, the rate, the qps limit and the ETA when there is room", function()
    local bar = progress.bar(stats, 160)
    assert.matches("^ 45%% %[#+%.+%]", bar)
    for _, part in ipairs { "9,000/20,000", "sent 8,800", "failed 150", "skipped 50", "unknown 0",
                            "pending 11,000", "412/s", "limit 50/s", "ETA 27s" } do
      assert.truthy(bar:find(part, 1, true), part .. " missing from: " .. bar)
    end
  end)

  it("keeps every count, the rate and the ETA in 80 columns, and the limit in 90", function()
    local bar = progress.bar(stats, 79)
    for _, part in ipairs { "sent 8800", "fail 150", "skip 50", "unk 0", "pend 11000", "412/s", "ETA 27s" } do
      assert.truthy(bar:find(part, 1, true), part .. " missing from: " .. bar)
    end
    assert.truthy(progress.bar(stats, 90):find("max 50", 1, true))
  end)

  it("keeps the bar's length while the numbers grow", function()
    local function cells(s) return #s:match("%[(.-)%]") end
    local first = { total = 20000, rate = 9.5, eta_s = 1980, counts = { sent = 1, pending = 19999 } }
    local later = { total = 20000, rate = 1043, eta_s = 15, counts = { sent = 12345, pending = 7655 } }
    assert.equal(cells(progress.bar(first, 79)), cells(progress.bar(later, 79)))
  end)

  it("fills the bar in proportion", function()
    local function cells(bar)
      local inside = bar:match("%[(.-)%]")
      local _, filled = inside:gsub("#", "")
      return filled, #inside
    end
    local half = { total = 100, counts = { sent = 50, pending = 50 } }
    local filled, width = cells(progress.bar(half, 60))
    assert.equal(math.floor(width / 2 + 0.5), filled)
    local done = { total = 10, status = "completed", counts = { sent = 7, failed = 3 } }
    filled, width = cells(progress.bar(done, 60))
    assert.equal(width, filled)
    assert.matches("^100%%", progress.bar(done, 60))
    assert.truthy(progress.bar(done, 60):find("completed", 1, true))
  end)

  it("survives missing fields (an empty campaign, no rate yet)", function()
    assert.matches("^  0%%", progress.bar({}, 80))
    assert.truthy(progress.line({}):find("0/0", 1, true))
    assert.truthy(progress.bar({ total = 5, counts = { pending = 5 } }, 80):find("ETA ?", 1, true))
  end)

  it("writes a log line with every count", function()
    local line = progress.line(stats)
    assert.matches("^campaign c1 running: 9,000/20,000 %(45%%%)", line)
    for _, part in ipairs { "sent 8,800", "failed 150", "skipped 50", "unknown 0", "pending 10,992",
                            "in flight 8", "412/s (limit 50/s)", "ETA 27s", "elapsed 22s" } do
      assert.truthy(line:find(part, 1, true), part .. " missing from: " .. line)
    end
    local stopped = progress.line { id = "c2", status = "stopped", stop_reason = "template deleted",
      total = 3, counts = { sent = 1, pending = 2 }, elapsed_s = 1 }
    assert.truthy(stopped:find("(stopped: template deleted)", 1, true))
    assert.is_nil(stopped:find("ETA", 1, true))
  end)

  it("summarises by status and by status + code, most frequent first", function()
    local lines = progress.summary {
      id = "c3", status = "stopped", stop_reason = "MSG_TEMPLATE_NOT_EXIST", channel = "life", template = "t",
      total = 12, counts = { sent = 8, failed = 3, skipped = 1, pending = 0, inflight = 0, unknown = 0 },
      by_code = {
        { status = "failed", code = "40004", sub_code = "MSG_TEMPLATE_NOT_EXIST", count = 1 },
        { status = "sent", count = 8 },
        { status = "failed", code = "40004", sub_code = "MSG_SD_NOFOLLOW", count = 2 },
        { status = "skipped", sub_code = "DUPLICATE", count = 1 },
      },
    }
    local text = table.concat(lines, "\n")
    assert.equal("campaign c3: stopped (MSG_TEMPLATE_NOT_EXIST)", lines[1])
    assert.matches("\n  sent%s+8\n", text)
    assert.matches("\n  failed%s+3\n", text)
    assert.matches("\n  total%s+12\n", text)
    assert.is_nil(text:find("unknown", 1, true)) -- zero rows other than sent/failed are left out
    local sent_at = text:find("  sent%s+%-%s+%-%s+8")
    local nofollow_at = text:find("MSG_SD_NOFOLLOW", 1, true)
    local deleted_at = text:find("40004%s+MSG_TEMPLATE_NOT_EXIST")
    assert.truthy(sent_at and nofollow_at and deleted_at)
    assert.is_true(sent_at < nofollow_at and nofollow_at < deleted_at)
  end)

  it("redraws the bar in place and ends it with a line break", function()
    local written = {}
    local r = progress.reporter { mode = "bar", width = 60, write = function(s) written[#written + 1] = s end }
    r:update(stats)
    r:update(stats)
    r:finish(stats)
    assert.equal(4, #written)
    for i = 1, 3 do
      assert.matches("^\r", written[i])
      assert.matches("\27%[K$", written[i])
      assert.is_true(#written[i] - 4 <= 59)
    end
    assert.equal("\n", written[4])
  end)

  it("writes log lines only every few seconds of the campaign's time", function()
    local written = {}
    local r = progress.reporter { mode = "lines", every_s = 5, write = function(s) written[#written + 1] = s end }
    for t = 0, 12, 0.25 do
      r:update { id = "c", total = 10, counts = { pending = 10 }, elapsed_s = t }
    end
    assert.equal(3, #written) -- at 0, 5 and 10 s
    r:finish { id = "c", status = "completed", total = 10, counts = { sent = 10 }, elapsed_s = 13 }
    assert.equal(4, #written)
    assert.matches("^campaign c completed", written[4])
    for _, s in ipairs(written) do assert.is_nil(s:find("\r", 1, true)) end
  end)

  it("writes nothing in mode none, and refuses unknown modes", function()
    local written = 0
    local r = progress.reporter { mode = "none", write = function() written = written + 1 end }
    r:update(stats)
    r:finish(stats)
    assert.equal(0, written)
    assert.has_error(function() progress.reporter { mode = "fancy" } end)
  end)
end)

-- ---- the command against the sandbox ----

describe("alipay campaign (child processes against the sandbox)", function()
  local sandbox = require "alipay.sandbox"
  local sb, dir, good_config, bad_config

  -- Runs bin/alipay with args; returns exit status, stdout, stderr.
  -- opts.interrupt_after_s: sends SIGINT (Ctrl-C) after that long. Only to
  -- the child (--foreground): without it timeout signals the child and then
  -- its process group, and on a loaded machine the child can handle the first
  -- INT before the second arrives, which then kills it as a second Ctrl-C does.
  local function alipay(args, opts)
    local prefix = ""
    if opts and opts.interrupt_after_s then
      prefix = ("timeout --foreground --preserve-status -s INT %s "):format(opts.interrupt_after_s)
    end
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local cmd = ("%slua5.4 bin/alipay %s >%s 2>%s"):format(prefix, args, shell_quote(out), shell_quote(err))
    local _, _, code = os.execute(cmd)
    return code, helpers.read(out), helpers.read(err)
  end

  local function audience(name, lines)
    local path = dir .. "/" .. name
    helpers.write(path, "user_id,userid,order_no\n" .. table.concat(lines, "\n") .. "\n")
    return path
  end

  local DATA = cjson.encode {
    head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看订单",
    keyword1 = { value = "{order_no}", color = "#85be53" },
    keyword2 = { value = "已发货", color = "#85be53" },
    keyword3 = { value = "2026-11-22 10:00", color = "#85be53" },
  }

  local function run_args(config, id, audience_path, extra)
    return ("campaign run --config %s --channel %s --template %s --audience %s --data %s --id %s %s")
      :format(shell_quote(config), CHANNEL, TEMPLATE, shell_quote(audience_path), shell_quote(DATA), id,
        extra or "")
  end

  -- 30 followers, 3 non-followers, 2 duplicate lines, 1 malformed id: 36 lines.
  local SMALL = {}
  for i = 1, 30 do SMALL[#SMALL + 1] = follower(i) .. ",,HU" .. i end
  for i = 1, 3 do SMALL[#SMALL + 1] = stranger(i) .. ",,NF" .. i end
  SMALL[#SMALL + 1] = SMALL[1]
  SMALL[#SMALL + 1] = SMALL[2]
  SMALL[#SMALL + 1] = "12345,,BAD"

  setup(function()
    dir = helpers.tmpdir()
    sb = assert(sandbox.start {
      app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"),
      seed = {
        industries = { { code = "10001/20102", name = "IT科技/IT软件与服务" } },
        industry = { primary = "10001/20102" },
        library = {
          { template_id = "TM000000223", name = "订单状态提醒", industry = "10001/20102",
            keywords = { "订单号", "订单状态", "更新时间" } },
          { template_id = "TM000000226", name = "系统维护通知", industry = "10001/20102",
            keywords = { "维护内容", "维护时间" } },
        },
        claimed = {
          { template_id = "TM000000223", msg_template_id = TEMPLATE },
          { template_id = "TM000000226", msg_template_id = DELETED, deleted = true },
        },
        followers = { generate = { count = FOLLOWERS, user_id_prefix = "20880000" } },
      },
    })
    helpers.write(dir .. "/alipay_public_key.pem", sb.alipay_public_key)
    -- A key the sandbox does not know: every request is refused as
    -- isv.invalid-signature, a configuration error that stops a campaign.
    assert(helpers.run(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null")
      :format(shell_quote(dir .. "/wrong_key.pem"))))
    local p = io.popen("pwd")
    local cwd = p:read("*l")
    p:close()
    local function config(name, key)
      local path = dir .. "/" .. name
      helpers.write(path, cjson.encode {
        store = dir .. "/alipay.db",
        channels = { [CHANNEL] = { kind = "alipaylife", app_id = APP_ID, private_key_file = key,
          alipay_public_key_file = dir .. "/alipay_public_key.pem", gateway = sb.gateway } },
      })
      return path
    end
    good_config = config("alipay.json", cwd .. "/" .. helpers.fixtures .. "/keys/app_private_pkcs1.pem")
    bad_config = config("wrong_key.json", dir .. "/wrong_key.pem")
    -- The templates, imported as an operator would, into the store the channel
    -- file names (then it is closed: the children open it themselves).
    local ws = assert(require("alipay.workspace").open { config = good_config })
    local imported = assert(ws.registry:import({
      { id = TEMPLATE, name = "订单状态提醒", keywords = { "订单号", "订单状态", "更新时间" } },
      { id = DELETED, name = "系统维护通知", keywords = { "维护内容", "维护时间" } },
    }, { channel = CHANNEL }))
    assert(imported.imported == 2)
    ws:close()
  end)

  teardown(function()
    if sb then sb:stop() end
    if not os.getenv("KEEP") then helpers.cleanup() else print("kept", dir) end
  end)

  local function deliveries_to(ids)
    local count = {}
    for _, d in ipairs(assert(sb:deliveries())) do
      if ids[d.to_user_id] then count[d.to_user_id] = (count[d.to_user_id] or 0) + 1 end
    end
    return count
  end

  it("--help explains the actions, resume and Ctrl-C", function()
    local code, out = alipay("campaign --help")
    assert.equal(0, code)
    for _, word in ipairs { "run", "resume", "status", "export", "list", "delete", "Ctrl-C", "unknown" } do
      assert.truthy(out:find(word, 1, true), word .. " missing from --help")
    end
    code, out = alipay("campaign run --help")
    assert.equal(0, code)
    for _, word in ipairs { "--audience", "--data", "--data-file", "--in-flight", "--qps", "--max-attempts",
                            "--max-throttled", "--retry-unknown", "--progress", "--json", "--config", "--store" } do
      assert.truthy(out:find(word, 1, true), word .. " missing from run --help")
    end
  end)

  it("exits 2 on usage errors", function()
    local path = audience("usage.csv", { follower(1) .. ",,U1" })
    local code, _, err = alipay(("campaign run --config %s --template %s --audience %s")
      :format(shell_quote(good_config), TEMPLATE, shell_quote(path)))
    assert.equal(2, code)
    assert.truthy(err:find("--data", 1, true))
    code, _, err = alipay(("campaign run --config %s --template %s --audience %s --data '{oops'")
      :format(shell_quote(good_config), TEMPLATE, shell_quote(path)))
    assert.equal(2, code)
    assert.truthy(err:find("JSON", 1, true))
    code = alipay(run_args(good_config, "usage-1", path, "--progress fancy"))
    assert.equal(2, code)
    code = alipay(run_args(good_config, "usage-2", path, "--in-flight 0"))
    assert.equal(2, code)
    code = alipay("campaign export usage-1")
    assert.equal(2, code) -- --output is required
  end)

  it("runs a small campaign to completion: exit 0, JSON status on stdout", function()
    local path = audience("small.csv", SMALL)
    local code, out, err = alipay(run_args(good_config, "small", path, "--json --progress=lines"))
    assert.equal(0, code, err)
    local status = cjson.decode(out)
    assert.equal("small", status.id)
    assert.equal("completed", status.status)
    assert.equal(CHANNEL, status.channel)
    assert.equal(TEMPLATE, status.template)
    assert.equal(36, status.total)
    assert.equal(30, status.counts.sent)
    assert.equal(3, status.counts.failed)
    assert.equal(3, status.counts.skipped)
    assert.equal(0, status.counts.pending + status.counts.inflight + status.counts.unknown)
    local nofollow = 0
    for _, row in ipairs(status.by_code) do
      if row.sub_code == "MSG_SD_NOFOLLOW" then nofollow = nofollow + row.count end
    end
    assert.equal(3, nofollow)
    -- --progress=lines: plain lines on stderr, never a carriage return.
    assert.truthy(err:find("campaign small completed: 36/36 (100%)", 1, true), err)
    assert.is_nil(err:find("\r", 1, true))
    -- Each follower of the audience got exactly one message.
    local ids = {}
    for i = 1, 30 do ids[follower(i)] = true end
    for i = 1, 3 do ids[stranger(i)] = true end
    local count = deliveries_to(ids)
    for i = 1, 30 do assert.equal(1, count[follower(i)]) end
    for i = 1, 3 do assert.is_nil(count[stranger(i)]) end
  end)

  it("prints the summary by status and by code, and log lines when stderr is not a terminal", function()
    local lines = {}
    for i = 101, 120 do lines[#lines + 1] = follower(i) .. ",,HU" .. i end
    lines[#lines + 1] = stranger(50) .. ",,NF"
    local code, out, err = alipay(run_args(good_config, "readable", audience("readable.csv", lines)))
    assert.equal(0, code, err)
    assert.truthy(out:find("campaign readable: completed", 1, true), out)
    assert.matches("\n  sent%s+20\n", out)
    assert.matches("\n  failed%s+1\n", out)
    assert.matches("failed%s+40004%s+MSG_SD_NOFOLLOW%s+1", out)
    assert.truthy(out:find("this run: 21 recipients settled in", 1, true), out)
    -- The default when stderr is a file: log lines, no bar.
    assert.truthy(err:find("campaign readable completed", 1, true), err)
    assert.is_nil(err:find("\r", 1, true))
  end)

  it("shows a campaign's status, readable and as JSON", function()
    local code, out = alipay(("campaign status small --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code)
    assert.truthy(out:find("campaign small: completed", 1, true))
    assert.matches("\n  sent%s+30\n", out)
    assert.truthy(out:find("created 20", 1, true))
    code, out = alipay(("campaign status small --json --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code)
    local status = cjson.decode(out)
    assert.equal("completed", status.status)
    assert.equal(30, status.counts.sent)
    code = alipay(("campaign status no-such-campaign --config %s"):format(shell_quote(good_config)))
    assert.equal(1, code)
  end)

  it("exports every recipient as CSV and as JSONL", function()
    local csv_path, jsonl_path = dir .. "/small.csv.out", dir .. "/small.jsonl"
    local code, out = alipay(("campaign export small --output %s --format csv --config %s")
      :format(shell_quote(csv_path), shell_quote(good_config)))
    assert.equal(0, code)
    assert.truthy(out:find("exported 36 recipients", 1, true), out)
    local csv = require "alipay.util.csv"
    local f = assert(io.open(csv_path, "rb"))
    local records = csv.reader(f)
    local header = records()
    local col = {}
    for i, name in ipairs(header) do col[name] = i end
    assert.truthy(col.status and col.line)
    local by_status, rows = {}, 0
    for fields in records do
      rows = rows + 1
      by_status[fields[col.status]] = (by_status[fields[col.status]] or 0) + 1
    end
    f:close()
    assert.equal(36, rows)
    assert.same({ sent = 30, failed = 3, skipped = 3 }, by_status)

    code = alipay(("campaign export small --output %s --config %s"):format(shell_quote(jsonl_path),
      shell_quote(good_config)))
    assert.equal(0, code) -- the format follows the file name
    local n, sent = 0, {}
    for line in helpers.read(jsonl_path):gmatch("[^\n]+") do
      local row = cjson.decode(line)
      n = n + 1
      if row.status == "sent" then sent[row.alipay_id or row.user_id] = true end
    end
    assert.equal(36, n)
    for i = 1, 30 do assert.is_true(sent[follower(i)], follower(i)) end
  end)

  it("lists the campaigns of the store", function()
    local code, out = alipay(("campaign list --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code)
    assert.truthy(out:find("small", 1, true) and out:find("readable", 1, true))
    assert.truthy(out:find("completed", 1, true))
    code, out = alipay(("campaign list --json --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code)
    local ids = {}
    for _, c in ipairs(cjson.decode(out)) do ids[c.id] = c.status end
    assert.equal("completed", ids.small)
    assert.equal("completed", ids.readable)
  end)

  it("deletes a campaign: results need --force", function()
    local path = audience("to-delete.csv", { follower(350) .. ",,D350", follower(351) .. ",,D351" })
    local code, _, err = alipay(run_args(good_config, "to-delete", path, "--progress none"))
    assert.equal(0, code, err)
    local out
    code, _, err = alipay(("campaign delete to-delete --config %s"):format(shell_quote(good_config)))
    assert.equal(1, code)
    assert.truthy(err:find("2 recipients with results", 1, true), err)
    -- The next step in CLI terms, not the library's `force = true`.
    assert.truthy(err:find("`alipay campaign export to-delete --output FILE`", 1, true), err)
    assert.truthy(err:find("`alipay campaign delete to-delete --force`", 1, true), err)
    assert.falsy(err:find("force = true", 1, true), err)
    code, out, err = alipay(("campaign delete to-delete --force --json --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code, err)
    local result = cjson.decode(out)
    assert.equal(2, result.recipients)
    assert.equal(2, result.counts.sent)
    code, _, err = alipay(("campaign status to-delete --config %s"):format(shell_quote(good_config)))
    assert.equal(1, code)
    assert.truthy(err:find("does not exist", 1, true), err)
    code, _, err = alipay(("campaign delete to-delete --config %s"):format(shell_quote(good_config)))
    assert.equal(1, code)
    assert.truthy(err:find("does not exist", 1, true), err)
  end)

  it("stops on a deleted template: exit 1 with the reason", function()
    local lines = {}
    for i = 200, 209 do lines[#lines + 1] = follower(i) .. ",,M" .. i end
    local data = cjson.encode { head_color = "#85be53", url = "https://shop.example/s", action_name = "查看",
      keyword1 = { value = "维护", color = "#85be53" }, keyword2 = { value = "02:00", color = "#85be53" } }
    local code, _, err = alipay(("campaign run --config %s --channel %s --template %s --audience %s "
      .. "--data %s --id deleted --progress none"):format(shell_quote(good_config), CHANNEL, DELETED,
      shell_quote(audience("deleted.csv", lines)), shell_quote(data)))
    assert.equal(1, code)
    assert.truthy(err:find("MSG_TEMPLATE_NOT_EXIST", 1, true), err)
    assert.truthy(err:find("campaign resume deleted", 1, true), err)
    local out
    code, out = alipay(("campaign status deleted --json --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code)
    local status = cjson.decode(out)
    assert.equal("stopped", status.status)
    assert.truthy(tostring(status.stop_reason):find("MSG_TEMPLATE_NOT_EXIST", 1, true))
  end)

  it("stops on a configuration error, and resume completes once it is fixed", function()
    local lines, ids = {}, {}
    for i = 300, 339 do
      lines[#lines + 1] = follower(i) .. ",,R" .. i
      ids[follower(i)] = true
    end
    local path = audience("resume.csv", lines)
    local code, out, err = alipay(run_args(bad_config, "resumable", path, "--progress none --json"))
    assert.equal(1, code, err)
    local status = cjson.decode(out)
    assert.equal("stopped", status.status)
    assert.truthy(status.stop_reason)
    assert.truthy(err:find("stopped", 1, true))
    assert.same({}, deliveries_to(ids)) -- the gateway refused every request

    code, out, err = alipay(("campaign resume resumable --json --progress=lines --config %s")
      :format(shell_quote(good_config)))
    assert.equal(0, code, err)
    status = cjson.decode(out)
    assert.equal("completed", status.status)
    assert.equal(40, status.counts.sent)
    local count = deliveries_to(ids)
    for id in pairs(ids) do assert.equal(1, count[id], id) end

    code = alipay(("campaign resume no-such-campaign --config %s"):format(shell_quote(good_config)))
    assert.equal(1, code)
  end)

  it("refuses an audience without recipients, naming the file, and leaves nothing in the store", function()
    local files = {
      { "nobody-empty.csv", "", "has no recipients (the file is empty)" },
      { "nobody-header.csv", "user_id,userid,order_no\n", "has no recipients (only a header row)" },
      { "nobody-empty.jsonl", "", "has no recipients (the file is empty or has only blank lines)" },
      { "nobody-blank.jsonl", "\n  \n", "has no recipients (the file is empty or has only blank lines)" },
    }
    for i, case in ipairs(files) do
      local path = dir .. "/" .. case[1]
      helpers.write(path, case[2])
      local code, _, err = alipay(run_args(good_config, "nobody-" .. i, path, "--progress none"))
      assert.equal(1, code, err)
      assert.truthy(err:find(path .. " " .. case[3], 1, true), err)
      code, _, err = alipay(("campaign status nobody-%d --config %s"):format(i, shell_quote(good_config)))
      assert.equal(1, code)
      assert.truthy(err:find("does not exist", 1, true), err)
    end
  end)

  it("a refused run names the one step that works, never resume", function()
    local path = audience("refused.csv", { follower(360) .. ",,F360" })
    local code, _, err = alipay(run_args(good_config, "refused", path, "--progress none"))
    assert.equal(0, code, err)
    -- Another live process holds it (running, then importing), then the
    -- import is interrupted (the process is gone).
    local store = assert(require("alipay.store").open(dir .. "/alipay.db"))
    assert(require("alipay.store.sqlite.campaigns").attach(store))
    local state = require "alipay.campaign.lease"
    local function hold(status, runner)
      local row = assert(store:campaign_get("refused"))
      row.status, row.runner, row.heartbeat_at = status, runner, os.time()
      assert(store:campaign_update(row))
    end
    local ok, pcall_err = pcall(function()
      local live = state.identity() -- this busted process: alive while the child runs
      hold("running", live)
      code, _, err = alipay(("campaign resume refused --progress none --config %s"):format(shell_quote(good_config)))
      assert.equal(1, code)
      assert.truthy(err:find("is already running in another process", 1, true), err)
      assert.truthy(err:find("wait for it to finish (`alipay campaign status refused` shows its progress)", 1,
        true), err)
      assert.is_nil(err:find("campaign resume refused", 1, true), err)

      hold("importing", live)
      code, _, err = alipay(("campaign resume refused --progress none --config %s"):format(shell_quote(good_config)))
      assert.equal(1, code)
      assert.truthy(err:find("still importing its audience", 1, true), err)
      assert.truthy(err:find("`alipay campaign status refused`", 1, true), err)
      assert.is_nil(err:find("campaign resume refused", 1, true), err)

      hold("importing", state.host .. "/999999999/dead")
      code, _, err = alipay(("campaign resume refused --progress none --config %s"):format(shell_quote(good_config)))
      assert.equal(1, code)
      assert.truthy(err:find("its audience import was interrupted", 1, true), err)
      assert.truthy(err:find("`alipay campaign delete refused`, then `alipay campaign run` again", 1, true), err)
      assert.is_nil(err:find("campaign resume refused", 1, true), err)
      local out
      code, out = alipay(("campaign status refused --config %s"):format(shell_quote(good_config)))
      assert.equal(0, code)
      assert.truthy(out:find("delete the campaign, then create it again", 1, true), out)
      assert.is_nil(out:find("resume", 1, true), out)
    end)
    store:close()
    assert(ok, pcall_err)
    code, _, err = alipay(("campaign delete refused --force --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code, err)
  end)

  it("Ctrl-C stops a run (exit 130); resume settles it, nobody gets two messages", function()
    local lines, ids = {}, {}
    for i = 400, 499 do
      lines[#lines + 1] = follower(i) .. ",,C" .. i
      ids[follower(i)] = true
    end
    local path = audience("interrupt.csv", lines)
    -- Slow answers, so that the interrupt finds requests in flight.
    assert(sb:faults { latency_ms = 300 })
    local code, _, err = alipay(run_args(good_config, "interrupted", path, "--progress none"),
      { interrupt_after_s = 1 })
    assert(sb:faults {})
    assert.equal(130, code, err)
    assert.truthy(err:find("interrupted by SIGINT (Ctrl-C)", 1, true), err)
    assert.truthy(err:find("alipay campaign resume interrupted", 1, true), err)
    local out
    code, out = alipay(("campaign status interrupted --json --config %s"):format(shell_quote(good_config)))
    assert.equal(0, code)
    local status = cjson.decode(out)
    assert.equal("stopped", status.status)
    assert.is_true(status.counts.pending > 0)

    code, out, err = alipay(("campaign resume interrupted --json --progress none --config %s")
      :format(shell_quote(good_config)))
    assert.equal(0, code, err)
    status = cjson.decode(out)
    assert.equal("completed", status.status)
    assert.equal(100, status.counts.sent + status.counts.unknown)
    local count = deliveries_to(ids)
    local delivered = 0
    for id in pairs(ids) do
      assert.is_true((count[id] or 0) <= 1, id)
      delivered = delivered + (count[id] or 0)
    end
    -- Every sent recipient was delivered; an unknown one may or may not have been.
    assert.is_true(delivered >= status.counts.sent and delivered <= 100)
  end)
end)
