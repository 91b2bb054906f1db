-- make demo: the project's main job on the embedded default, the local
-- sandbox gateway. No arguments, no network, nothing left running.
--
--  1. the C core against the protocol vectors (signatures, extraction, SNs, AES);
--  2. a sandbox "Alipay" with a Life Account of 24,000 followers, a library
--     template to claim and an already deleted one;
--  3. a channel configuration and a store in a temporary directory, as an
--     operator would write them;
--  4. the template claimed and imported with its keywords, a few hundred user
--     bindings uploaded (UMS format);
--  5. a 20,000-line audience: followers, bound business user ids, non-followers,
--     duplicates, malformed rows and rows whose data is too long;
--  6. the campaign run through the command line (`alipay campaign run`): a live
--     progress bar on a terminal, then the summary by status and Alipay code;
--  7. the result checked against the sandbox's delivery log: every `sent`
--     recipient delivered exactly once, nothing else delivered;
--  8. the results exported to CSV; a campaign with the deleted template stops.
-- Exits non-zero when anything is off.
package.cpath = (os.getenv("ALIPAY_BUILD") or "build/lua5.4") .. "/?.so;" .. package.cpath
-- lua/: lua-alipay; sandbox/lua/: the sandbox gateway (lua-alipay-sandbox).
package.path = "lua/?.lua;lua/?/init.lua;sandbox/lua/?.lua;sandbox/lua/?/init.lua;" .. package.path
local fs = require "alipay.util.fs"

local alipay = require "alipay"
local cjson = require "cjson"
local core = alipay.core
local csv = require "alipay.util.csv"
local cli = require "alipay.cli"
local sandbox = require "alipay.sandbox"
local lifeaccount = require "alipay.messaging.lifeaccount"
local workspace = require "alipay.workspace"
local campaign = require "alipay.campaign"

local FIXTURES = "spec/fixtures/"
local APP_ID = "2021000122671080"
local CHANNEL = "alipaylife_demo"
local LIBRARY_TEMPLATE = "TM000000223"
local DELETED_TEMPLATE = "7d5e0c1f2a9b48c6a1e3f0d2b4c6e8a0"
local FOLLOWERS = 24000
local FOLLOWER_PREFIX = "20880000"        -- generated followers: 20880000 + 8 digits
local STRANGER_PREFIX = "20889999"        -- never a follower

-- The audience: 20,000 lines of data under the header.
local AUDIENCE = {
  bound = 300,        -- business user ids (userid column), resolved through bindings
  strangers = 400,    -- valid ids of users who do not follow the Life Account
  duplicates = 150,   -- lines repeating an earlier line
  malformed = 30,     -- bad ids, unbound business ids, no id at all
  too_long = 20,      -- a keyword value over the 2048 characters the library sends (its own bound:
                      -- Alipay documents none, docs/messaging.md §2.4)
}
AUDIENCE.followers = 20000 - AUDIENCE.bound - AUDIENCE.strangers - AUDIENCE.duplicates
  - AUDIENCE.malformed - AUDIENCE.too_long

-- 2 cores: the sandbox (nginx) signs every answer, the client signs every
-- request; 16 in flight keeps both busy without queueing much.
local IN_FLIGHT, QPS = 16, 2000

-- ---- output ----

local failures = 0

local function step(title, ok, detail)
  print(("[%s] %-54s %s"):format(ok and " ok " or "FAIL", title, detail or ""))
  if not ok then failures = failures + 1 end
  return ok
end

-- A step that cannot be skipped: the rest depends on it.
local function must(title, value, err)
  if not value then
    step(title, false, tostring(err))
    error("demo stopped", 0)
  end
  return value
end

local function heading(text)
  print("")
  print("== " .. text)
end

-- Wall-clock seconds with sub-millisecond resolution.
local function now() return require("alipay.core").now_ms() / 1000 end

local function count(n)
  return require("alipay.cli.progress").count(n)
end

-- ---- files ----

local function read(path) return assert(fs.read(path)) end

local function write(path, data) assert(fs.write(path, data)) end

-- The working directory (the repository root): the channel file names the
-- fixture key by an absolute path, as a real one would.
local function cwd()
  local p = io.popen("pwd")
  local dir = p:read("*l")
  p:close()
  return dir
end

local function tmpdir(template)
  local p = io.popen("mktemp -d /tmp/" .. template .. ".XXXXXX")
  local dir = p:read("*l")
  p:close()
  return dir
end

-- ---- 1. the core ----

local function check_vectors()
  local V = cjson.decode(read(FIXTURES .. "vectors.json"))
  local app_key = assert(core.private_key(read(FIXTURES .. "keys/app_private_pkcs1.pem")))
  local checked, bad = 0, {}
  local function check(name, ok)
    checked = checked + 1
    if not ok then bad[#bad + 1] = name end
  end
  for _, v in ipairs(V.request_sign) do
    local key = assert(core.private_key(read(FIXTURES .. "keys/" .. v.key)))
    local content = core.sign_content(v.params)
    check("v2 sign " .. v.name, content == v.content and key:sign(content, v.alg) == v.sign)
  end
  for _, v in ipairs(V.v3_sign) do check("v3 sign " .. v.name, app_key:sign(v.signed_text) == v.sign) end
  for _, v in ipairs(V.response_verify) do
    local node = core.extract(v.body, v.method)
    local key = assert(core.public_key(read(FIXTURES .. "keys/" .. v.alipay_public_key)))
    check("response " .. v.name, node ~= nil and (key:verify(node.content, node.sign) or false) == v.valid)
  end
  for _, v in ipairs(V.notify) do
    local key = assert(core.public_key(read(FIXTURES .. "keys/" .. v.alipay_public_key)))
    local content = core.sign_content(v.params, v.rule == "V1" and { exclude = { "sign_type" } } or nil)
    check("notify " .. v.name, key:verify(content, v.params.sign, v.params.sign_type) == v.valid)
  end
  for _, v in ipairs(V.cert_sn) do
    local text = read(FIXTURES .. "keys/" .. v.file)
    if v.sn then check("cert SN " .. v.file, core.cert_sn(text) == v.sn)
    else check("root SN " .. v.file, core.root_cert_sn(text) == v.root_sn) end
  end
  for _, v in ipairs(V.aes) do
    local cipher = core.aes_encrypt(v.key, v.plain)
    check("AES " .. #v.plain, cipher == v.cipher and core.aes_decrypt(v.key, cipher) == v.plain)
  end
  check("gateway reply", app_key:sign(V.gateway_verify_reply.response_inner) == V.gateway_verify_reply.sign)
  step("protocol vectors: signatures, extraction, SNs, AES", #bad == 0,
    #bad == 0 and (checked .. " matched") or ("mismatch: " .. table.concat(bad, ", ")))
end

-- ---- 2. the sandbox ----

-- What the Alipay side holds: a Life Account in the IT industry with a
-- library template to claim, a template claimed earlier and deleted since
-- (Life Accounts only learn that from a failed send), and FOLLOWERS
-- followers generated from their index. Everyone else is a non-follower.
local SEED = {
  id_type = "user_id",
  industries = {
    { code = "10001/20102", name = "IT科技/IT软件与服务" },
  },
  industry = { primary = "10001/20102" },
  library = {
    { template_id = LIBRARY_TEMPLATE, name = "订单状态提醒", industry = "10001/20102",
      keywords = { "订单号", "订单状态", "更新时间" } },
    { template_id = "TM000000226", name = "系统维护通知", industry = "10001/20102",
      keywords = { "维护内容", "维护时间" } },
  },
  claimed = { { template_id = "TM000000226", msg_template_id = DELETED_TEMPLATE, deleted = true } },
  followers = { generate = { count = FOLLOWERS, user_id_prefix = FOLLOWER_PREFIX,
    open_id_prefix = "0DemoFollower" } },
}

local function follower(i) return ("%s%08d"):format(FOLLOWER_PREFIX, i) end
local function stranger(i) return ("%s%08d"):format(STRANGER_PREFIX, i) end

-- ---- 3. configuration ----

local function write_config(dir, sb, private_key_file)
  write(dir .. "/alipay_public_key.pem", sb.alipay_public_key)
  local config = {
    store = "alipay.db",
    channels = {
      [CHANNEL] = { kind = "alipaylife", id_type = "user_id", app_id = APP_ID,
        private_key_file = private_key_file, alipay_public_key_file = "alipay_public_key.pem",
        gateway = sb.gateway },
    },
  }
  write(dir .. "/alipay.json", cjson.encode(config))
  return dir .. "/alipay.json"
end

-- ---- 5. the audience ----

local HEADER = "user_id,userid,order_no,state,updated"

-- Writes the CSV; returns what the campaign must do with it: the set of
-- Alipay ids that must be sent to exactly once, and the other lines.
local function write_audience(path, bindings)
  local lines, expected = { HEADER }, {}
  local function row(user_id, userid, order_no)
    lines[#lines + 1] = table.concat({ user_id or "", userid or "", order_no,
      "已发货", "2026-11-22 10:00" }, ",")
  end
  for i = 1, AUDIENCE.followers do
    row(follower(i), nil, ("HU%06d"):format(i))
    expected[follower(i)] = true
  end
  for _, b in ipairs(bindings) do
    row(nil, b.userid, "B" .. b.userid)
    expected[b.alipay_id] = true
  end
  for i = 1, AUDIENCE.strangers do row(stranger(i), nil, ("NF%06d"):format(i)) end
  for i = 1, AUDIENCE.duplicates do
    lines[#lines + 1] = lines[1 + i * 7] -- an earlier follower line, exactly
  end
  local third = AUDIENCE.malformed // 3
  for i = 1, third do row("12345" .. i, nil, "BADID" .. i) end              -- not a user id
  for i = 1, third do row(nil, ("nobody%03d"):format(i), "UNBOUND" .. i) end  -- no binding
  for i = 1, AUDIENCE.malformed - 2 * third do row(nil, nil, "NOID" .. i) end -- no id at all
  for i = 1, AUDIENCE.too_long do
    -- keyword1 is {order_no}: 3000 characters, past the library's 2048.
    row(follower(AUDIENCE.followers + AUDIENCE.bound + i), nil, ("X"):rep(3000))
  end
  write(path, table.concat(lines, "\n") .. "\n")
  return expected, #lines - 1
end

local DATA = {
  head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看订单",
  first = { value = "您的订单有新进展", color = "#333333" },
  keyword1 = { value = "{order_no}", color = "#85be53" },
  keyword2 = { value = "{state}", color = "#85be53" },
  keyword3 = { value = "{updated}", color = "#85be53" },
  remark = { value = "感谢您的惠顾", color = "#999999" },
}

-- ---- 7. checks ----

-- The exported CSV -> {[alipay id] = status}, rows, or nil, err.
local function exported_statuses(path)
  local f = assert(io.open(path, "rb"))
  local records = csv.reader(f)
  local header = records()
  local col = {}
  for i, name in ipairs(header or {}) do col[name] = i end
  local id_col = col.user_id or col.alipay_id or col.recipient or col.id
  if not (id_col and col.status) then
    f:close()
    return nil, "the export has no recipient id or status column: " .. table.concat(header or {}, ",")
  end
  local statuses, rows = {}, 0
  for fields in records do
    rows = rows + 1
    local id = fields[id_col]
    if id and id ~= "" and fields[col.status] == "sent" then
      if statuses[id] then return nil, "recipient " .. id .. " exported as sent twice" end
      statuses[id] = "sent"
    end
  end
  f:close()
  return statuses, rows
end

local function check_deliveries(sb, sent, expected, template_id)
  local deliveries, err = sb:deliveries()
  if not step("delivery log read", deliveries ~= nil, deliveries and (count(#deliveries) .. " deliveries")
    or tostring(err)) then return end
  local seen, twice, unexpected = {}, 0, 0
  for _, d in ipairs(deliveries) do
    local id = d.to_user_id
    if seen[id] then twice = twice + 1 end
    seen[id] = true
    if not sent[id] or d.template_id ~= template_id then unexpected = unexpected + 1 end
  end
  local missing, sent_n, wrong = 0, 0, 0
  for id in pairs(sent) do
    sent_n = sent_n + 1
    if not seen[id] then missing = missing + 1 end
    if not expected[id] then wrong = wrong + 1 end
  end
  local expected_n = 0
  for _ in pairs(expected) do expected_n = expected_n + 1 end
  step("every sent recipient delivered exactly once", missing == 0 and twice == 0,
    ("%s sent, %d not delivered, %d delivered twice"):format(count(sent_n), missing, twice))
  step("nothing else delivered", unexpected == 0 and #deliveries == sent_n,
    ("%s deliveries, %d not marked sent"):format(count(#deliveries), unexpected))
  step("sent = the audience's distinct, valid followers", sent_n == expected_n and wrong == 0,
    ("%s expected, %s sent, %d sent that should not be"):format(count(expected_n), count(sent_n), wrong))
end

-- ---- the job ----

local function main(state)
  heading("1. the C core")
  check_vectors()

  heading("2. the sandbox gateway (local nginx, signed answers, real RSA2 on both sides)")
  local t0 = now()
  local sb = must("sandbox started", sandbox.start {
    app_id = APP_ID, app_public_key = read(FIXTURES .. "keys/app_public.pem"), seed = SEED,
  })
  state.sb = sb
  step("sandbox started", true, sb.gateway)
  step("Life Account seeded", true, ("%s followers, library template %s, deleted template"):format(
    count(FOLLOWERS), LIBRARY_TEMPLATE))

  heading("3. channel configuration and store")
  local dir = tmpdir("lua-alipay-demo")
  state.dir = dir
  local config = write_config(dir, sb, cwd() .. "/" .. FIXTURES .. "keys/app_private_pkcs1.pem")
  step("channel file written", true, config)
  -- The channels, the store the file names, the registry and the bindings.
  local ws = must("channels loaded, store opened", workspace.open { config = config })
  state.close = function() ws:close() end
  step("store opened", true, ws:store_path())
  local channel = must("channel " .. CHANNEL, ws.channels:get(CHANNEL))
  local registry = ws.registry

  heading("4. template and user bindings")
  local life = lifeaccount.new(channel, registry)
  local claimed, err = life:claim_template(LIBRARY_TEMPLATE)
  must("template " .. LIBRARY_TEMPLATE .. " claimed", claimed, err)
  step("template " .. LIBRARY_TEMPLATE .. " claimed", true, "msg_template_id " .. claimed.msg_template_id)
  local keywords = {}
  for i, k in ipairs(claimed.template.keywords or {}) do keywords[i] = k.name end
  local imported = must("template imported", registry:import({
    { id = claimed.msg_template_id, name = claimed.template.name, keywords = keywords,
      library_id = LIBRARY_TEMPLATE },
    -- The deleted one, as an operator copies it from an old export: nothing
    -- tells the registry it is gone until a send fails.
    { id = DELETED_TEMPLATE, name = "系统维护通知", keywords = { "维护内容", "维护时间" },
      library_id = "TM000000226" },
  }, { channel = CHANNEL }))
  step("templates imported with their keywords", imported.imported == 2 and #imported.failed == 0,
    ("%d imported (%s)"):format(imported.imported, table.concat(keywords, ", ")))

  local users = ws.users
  local rows, bindings = {}, {}
  for i = 1, AUDIENCE.bound do
    local userid, alipay_id = ("member%05d"):format(i), follower(AUDIENCE.followers + i)
    rows[i] = { userid = userid, set = { alipaylife = { [CHANNEL] = alipay_id } } }
    bindings[i] = { userid = userid, alipay_id = alipay_id }
  end
  local uploaded = must("bindings uploaded", users:upload(rows))
  step("user bindings uploaded (UMS format)", #uploaded.success == AUDIENCE.bound and #uploaded.fail == 0,
    ("%d bound, %d refused"):format(#uploaded.success, #uploaded.fail))

  heading("5. the audience")
  local audience = dir .. "/audience.csv"
  local expected, lines = write_audience(audience, bindings)
  step("audience written", lines == 20000, ("%s lines: %s followers, %d business ids, %d non-followers, "
    .. "%d duplicates, %d malformed, %d too long"):format(count(lines), count(AUDIENCE.followers),
    AUDIENCE.bound, AUDIENCE.strangers, AUDIENCE.duplicates, AUDIENCE.malformed, AUDIENCE.too_long))
  write(dir .. "/data.json", cjson.encode(DATA))
  -- The CLI opens the store itself: close ours so that only one writer runs.
  state.close()
  state.close = nil

  heading("6. the campaign, through `alipay campaign run`")
  local id = "demo-" .. os.date("!%Y%m%d%H%M%S")
  local base = { "--config", config }
  local function alipay_cli(...)
    local argv = { ... }
    for _, a in ipairs(base) do argv[#argv + 1] = a end
    return cli.main(argv)
  end
  local t_run = now()
  local status = alipay_cli("campaign", "run", "--channel", CHANNEL, "--template", claimed.msg_template_id,
    "--audience", audience, "--data-file", dir .. "/data.json", "--id", id,
    "--in-flight", tostring(IN_FLIGHT), "--qps", tostring(QPS))
  local run_s = now() - t_run
  step("campaign completed (exit 0)", status == 0, ("exit %d after %.1f s"):format(status, run_s))

  heading("7. the result against the sandbox's delivery log")
  ws = must("channels loaded, store opened", workspace.open { config = config })
  state.close = function() ws:close() end
  local ctx = must("campaign context", ws:campaign_ctx { log = function() end })
  local c = must("campaign opened", campaign.open(ctx, id))
  local st = must("campaign status", c:status())
  local settled = st.counts.sent + st.counts.failed + st.counts.skipped + st.counts.unknown
  step("every audience line settled", st.total == lines and settled == lines,
    ("%s of %s lines: %s sent, %s failed, %s skipped, %s unknown"):format(count(settled), count(lines),
      count(st.counts.sent), count(st.counts.failed), count(st.counts.skipped), count(st.counts.unknown)))
  local skips = AUDIENCE.duplicates + AUDIENCE.malformed + AUDIENCE.too_long
  step("non-followers failed, bad lines skipped, none unknown",
    st.counts.failed == AUDIENCE.strangers and st.counts.skipped == skips and st.counts.unknown == 0,
    ("%d failed (expected %d), %d skipped (expected %d)"):format(st.counts.failed, AUDIENCE.strangers,
      st.counts.skipped, skips))
  local results = state.keep_dir .. "/" .. id .. ".csv"
  local exported = must("results exported", c:export(results, "csv"))
  step("results exported to CSV", exported > 0, ("%s rows"):format(count(exported)))
  local sent, why = exported_statuses(results)
  local sent_rows = 0
  for _ in pairs(sent or {}) do sent_rows = sent_rows + 1 end
  if step("export read back", sent ~= nil, sent and (count(sent_rows) .. " rows sent") or why) then
    check_deliveries(sb, sent, expected, claimed.msg_template_id)
  end
  state.results = results

  heading("8. a template deleted on Alipay stops its campaign")
  local small = dir .. "/small.csv"
  local few = { HEADER }
  for i = 1, 50 do few[#few + 1] = follower(i) .. ",,M" .. i .. ",维护,2026-11-23 02:00" end
  write(small, table.concat(few, "\n") .. "\n")
  write(dir .. "/maintenance.json", cjson.encode {
    head_color = "#85be53", url = "https://shop.example/status", action_name = "查看详情",
    keyword1 = { value = "{state}", color = "#85be53" }, keyword2 = { value = "{updated}", color = "#85be53" },
  })
  state.close()
  state.close = nil
  local stop_status = alipay_cli("campaign", "run", "--channel", CHANNEL, "--template", DELETED_TEMPLATE,
    "--audience", small, "--data-file", dir .. "/maintenance.json", "--id", id .. "-deleted",
    "--progress", "none")
  step("campaign stopped (exit 1)", stop_status == 1, "exit " .. stop_status)
  ws = must("store opened", workspace.open { config = config })
  state.close = function() ws:close() end
  local tpl = ws.registry:get(CHANNEL, DELETED_TEMPLATE)
  step("template marked invalid in the registry", tpl and tpl.status == "invalid",
    tpl and (tpl.status .. " (" .. tostring(tpl.invalid_code) .. ")") or "not found")
  state.close()
  state.close = nil

  print("")
  print(("demo: %s audience lines in %.1f s of campaign (%.0f lines/s); %.1f s in all"):format(
    count(lines), run_s, lines / run_s, now() - t0))
end

local state = { keep_dir = tmpdir("lua-alipay-demo-results") }
local ok, err = pcall(main, state)
if state.close then pcall(state.close) end
if state.sb then state.sb:stop() end
if state.dir then os.execute("rm -rf '" .. state.dir .. "'") end
if not ok then
  if err ~= "demo stopped" then print("[FAIL] " .. tostring(err)) end
  failures = failures + 1
end
if state.results and failures == 0 then
  print("results: " .. state.results .. " (kept)")
else
  os.execute("rm -rf '" .. state.keep_dir .. "'")
end
if failures > 0 then
  print(("demo: %d step(s) failed"):format(failures))
  os.exit(1)
end
print("demo finished: every step checked out")
