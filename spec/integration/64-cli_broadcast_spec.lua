-- `alipay broadcast`, `alipay label` and `alipay content` (bin/alipay, run as
-- child processes) against the sandbox gateway: the README's commands as
-- written, --json on success and failure, exit codes, and the sandbox's
-- delivery log after each broadcast.
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local SEED_PATH = "spec/fixtures/sandbox_seed.json"
local F1, F2 = "2088857585575154", "2088088617867163"
local FOLLOWERS = 25000
local REPO = helpers.cwd()

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The README's ```sh block that holds `marker`.
local function readme_block(marker)
  local blocks, current = {}, nil
  for line in (helpers.read(REPO .. "/README.md") .. "\n"):gmatch("(.-)\n") do
    if current then
      if line:match("^```%s*$") then
        blocks[#blocks + 1], current = current, nil
      else
        current[#current + 1] = line
      end
    elseif line:match("^```sh%s*$") then
      current = {}
    end
  end
  local found
  for _, b in ipairs(blocks) do
    if table.concat(b, "\n"):find(marker, 1, true) then
      assert(not found, "two README blocks hold " .. marker)
      found = b
    end
  end
  return assert(found, "no README block holds " .. marker)
end

describe("bin/alipay broadcast, label, content", function()
  local sb, dir, config

  local function run(args)
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local p = io.popen(("cd %s && ALIPAY_CONFIG=%s PATH=%s:$PATH sh -c %s >%s 2>%s; echo $?")
      :format(q(dir), q(config), q(dir .. "/bin"), q(args), q(out), q(err)))
    local status = tonumber(p:read("*a"):match("(%d+)%s*$"))
    p:close()
    return status, helpers.read(out), helpers.read(err)
  end

  local function run_json(args)
    local status, out, err = run("alipay " .. args .. " --json")
    local ok, value = pcall(cjson.decode, out)
    assert(ok, "not JSON: " .. out .. err)
    return status, value, err
  end

  local function broadcasts()
    local out = {}
    for _, d in ipairs(sb:deliveries()) do
      if d.kind == "broadcast" then out[#out + 1] = d end
    end
    return out
  end

  setup(function()
    local seed = cjson.decode(helpers.read(SEED_PATH))
    seed.groups = { { group_id = "G1", members = { F1 } } }
    seed.quotas = { group_send = 1 }
    sb = assert(sandbox.start { app_id = APP_ID, app_public_key = helpers.key_text("app_public.pem"), seed = seed })
  end)

  teardown(function()
    if sb then sb:stop() end
    helpers.cleanup()
  end)

  before_each(function()
    assert(sb:reset())
    dir = helpers.tmpdir()
    helpers.write(dir .. "/alipay_public.pem", sb.alipay_public_key)
    helpers.write(dir .. "/app.pem", helpers.key_text("app_private_pkcs1.pem"))
    config = dir .. "/alipay.json"
    helpers.write(config, cjson.encode { store = "state.db", channels = { alipaylife123 = {
      kind = "alipaylife", app_id = APP_ID, private_key_file = "app.pem", alipay_public_key_file = "alipay_public.pem",
      gateway = sb.gateway, timeout_ms = 10000 } } })
    assert(os.execute(("mkdir -p %s/bin && ln -s %s/bin/alipay %s/bin/alipay"):format(q(dir), q(REPO), q(dir))))
  end)

  it("runs the README's commands as written", function()
    local lines = readme_block("alipay broadcast recall")
    local ran = 0
    for _, line in ipairs(lines) do
      if line:match("^alipay ") then
        local status, out, err = run(line)
        assert.are.equal(0, status, line .. "\n" .. out .. err)
        ran = ran + 1
        if line:match("^alipay label create") then assert.matches("created label 100001: vip", out, 1, true) end
      end
    end
    assert.is_true(ran >= 8)
    local d = broadcasts()
    assert.are.equal(3, #d)
    assert.are.same({ "label", "all", "all" }, { d[1].audience, d[2].audience, d[3].audience })
    assert.are.same({ F1, F2 }, d[1].ids)
    assert.are.equal(FOLLOWERS, d[2].recipients)
    assert.are.equal("258b4bb072be086d0908b702b3fdc45f", d[2].message_id) -- the id the README recalls
    assert.is_number(d[2].recalled_at)
    assert.is_nil(d[3].recalled_at)
  end)

  it("prints JSON on success and on failure, with the exit codes", function()
    local status, res = run_json("broadcast text --all --content hi")
    assert.are.equal(0, status)
    assert.is_true(res.ok)
    assert.are.equal(broadcasts()[1].message_id, res.message_id)

    assert.are.equal(2, (run("alipay broadcast group --content hi"))) -- not a command
    status, res = run_json("broadcast text --content hi")
    assert.are.equal(2, status)
    assert.are.equal("usage", res.error.kind)
    status, res = run_json("broadcast text --all --label 1 --content hi")
    assert.are.equal(2, status)
    assert.are.equal("usage", res.error.kind)
    assert.are.equal(1, #broadcasts())

    status, res = run_json("broadcast text --group G1 --content hi")
    assert.are.equal(0, status)
    assert.is_string(res.message_id)
    status, res = run_json("broadcast text --group G1 --content hi")
    assert.are.equal(1, status)
    assert.are.equal("MSG_BATCH_SD_OVER", res.error.sub_code)
    assert.is_false(res.error.retryable)

    status, res = run_json("broadcast image-text --all --articles '[{\"desc\":\"d\"}]'")
    assert.are.equal(1, status)
    assert.are.equal("invalid", res.error.kind)
    assert.are.equal(2, #broadcasts())

    status, res = run_json("broadcast recall nope")
    assert.are.equal(1, status)
    assert.are.equal("PUB.RCD_MSG_NOT_EXIST", res.error.sub_code)
  end)

  it("labels: create, list, tag with a refused user, modify, delete, as JSON", function()
    local status, res = run_json("label create vip")
    assert.are.equal(0, status)
    local id = res.label_id
    status, res = run_json("label tag " .. id .. " --value 1 --user-id " .. F1 .. " --user-id 2088999999999999")
    assert.are.equal(0, status)
    assert.are.equal(1, res.error_count)
    assert.are.equal("2088999999999999", res.error_matchers[1].matcher.user_id)
    status, res = run_json("label modify " .. id .. " gold")
    assert.are.equal(0, status)
    assert.are.equal("gold", res.label_name)
    status, res = run_json("label list")
    assert.are.equal(0, status)
    assert.are.same({ { label_id = id, label_name = "gold", data_type = "string", type = "custom" } }, res.labels)
    status, res = run_json("label delete " .. id)
    assert.are.equal(1, status)
    assert.are.equal("LABEL_IS_USED", res.error.sub_code)
    status, res = run_json("label untag " .. id .. " --user-id " .. F1)
    assert.are.equal(0, status)
    assert.are.equal(0, res.error_count)
    status = run_json("label delete " .. id)
    assert.are.equal(0, status)
    status, res = run_json("label tag " .. id .. " --value 1")
    assert.are.equal(2, status)
    assert.are.equal("usage", res.error.kind)
  end)

  it("contents: create and modify, a refused field", function()
    local status, res = run_json("content create --title t --cover https://example.com/c.png --body b "
      .. "--ctype activity --benefit 满100减10 --ext-tags a,b")
    assert.are.equal(0, status)
    assert.is_string(res.content_id)
    local id = res.content_id
    status, res = run_json("content modify " .. id .. " --title t2 --cover https://example.com/c.png --body b")
    assert.are.equal(0, status)
    assert.are.equal(id, res.content_id)
    status, res = run_json("content create --title t --cover c --body b --ext-tags a,b,c,d,e,f")
    assert.are.equal(1, status)
    assert.are.equal("ext_tags", res.error.field)
    local _, out = run("alipay content --help")
    assert.matches("Usage: alipay content", out, 1, true)
  end)
end)
