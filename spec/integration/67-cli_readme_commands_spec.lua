-- Every command-line example in README.md runs as written. The spec reads
-- the README's ```sh blocks that show `alipay` commands (the command-line
-- tour, the sandbox tour, the campaign commands), and runs each command as a
-- child shell in a fresh, empty working directory, with relative paths
-- only, `alipay` on PATH as a user's checkout or install would have it, and
-- no $ALIPAY_CONFIG. A README edit that breaks a command breaks this spec.
--
-- What the spec adds is named here, never hidden in the commands:
--   * PLACEHOLDERS: the README's elided values (`14330d…`, `ID`, …) and the
--     real values they stand for; an elision the table does not know fails.
--   * `[--opt]` and `[--opt a|b]`: each variant runs, the bare one first.
--   * the user's own files (templates.json, bindings.csv, context.json,
--     audience.csv), written before the block runs;
--   * AFTER: commands the README documents elsewhere that a user runs
--     between two shown ones (pointing the production channel of the
--     command-line tour at the local sandbox, adding the mini program).
--   * EXPECTED: a command whose documented result is a refusal.
-- The sandbox tour runs as one script (its `field` function spans lines),
-- from its own empty directory, exactly as printed.
local helpers = require "helpers"
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"

local REPO = helpers.cwd()
local SEED = REPO .. "/spec/fixtures/sandbox_seed.json"
local LIFE_APP = "2021000122671080"
local MINI_APP = "2021000122671081"
local TEMPLATE = "14330d60f0ab4516853a0900827cee35"   -- TM000000223, claimed in the seed
local ZHANGSAN = "2088857585575154"                    -- a listed follower
local MINI_TEMPLATES = { "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=",
                         "NzVmYjA1ZDM0NjQ2NDZkNjk0YzBmMjc4OGM3ZDAxNDE=",
                         "YjU0ZGJkNzU4MzJmNGVkNGE1ZGY1NzQ4MTQ5OTQ3MzQ=",
                         "ZDE3YmM0ODQ0ZDBlNDdjZGE4YjI0NDE1OWVkZmNhN2M=" }
local MINI_OPEN_ID = "0V7KGVDalY9Ks76za6O6goGeF8QreKU60cAqETZaAs3Yp5"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- ---- reading the README ----

-- The ```sh blocks of README.md, in order.
local function sh_blocks()
  local blocks, current = {}, nil
  for line in (helpers.read(REPO .. "/README.md") .. "\n"):gmatch("(.-)\n") do
    if current then
      if line:match("^```%s*$") then
        blocks[#blocks + 1], current = table.concat(current, "\n"), nil
      else
        current[#current + 1] = line
      end
    elseif line:match("^```sh%s*$") then
      current = {}
    end
  end
  return blocks
end

-- The one block containing `marker`.
local function block_with(marker)
  local found
  for _, block in ipairs(sh_blocks()) do
    if block:find(marker, 1, true) then
      assert(not found, "two README blocks contain " .. marker)
      found = block
    end
  end
  return assert(found, "no README ```sh block contains " .. marker)
end

-- Commands of a block: continuation lines joined, trailing comments (two or
-- more spaces, then #) dropped.
local function commands_of(block)
  local list, pending = {}, ""
  for line in (block .. "\n"):gmatch("(.-)\n") do
    local command = (pending .. line):gsub("%s%s+#.*$", "")
    if command:match("\\%s*$") then
      pending = command:gsub("\\%s*$", "")
    else
      pending = ""
      command = command:gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s%s+", " ")
      if command ~= "" then list[#list + 1] = command end
    end
  end
  return list
end

-- `a [--x] b` -> {"a b", "a --x b"}; `[--f a|b]` -> bare, "--f a", "--f b".
local function variants(command)
  local head, inner, tail = command:match("^(.-)%s*%[([^%]]+)%](.*)$")
  if not head then return { command } end
  local options = { "" }
  local flag, choices = inner:match("^(%S+)%s+(%S+|%S+)$")
  if flag then
    for choice in choices:gmatch("[^|]+") do options[#options + 1] = flag .. " " .. choice end
  else
    options[#options + 1] = inner
  end
  local out = {}
  for _, option in ipairs(options) do
    for _, rest in ipairs(variants(tail)) do
      out[#out + 1] = (head .. (option ~= "" and " " .. option or "") .. rest)
    end
  end
  return out
end

-- ---- running ----

describe("every README command-line example, as written, from an empty directory", function()
  local bindir, campaign_id

  -- README elisions -> what they stand for (the campaign id once known).
  local function placeholders()
    return {
      { "14330d…", TEMPLATE },
      { "0a1b…", MINI_OPEN_ID },
      { " t1 t2 t3 t4", " " .. table.concat(MINI_TEMPLATES, " ") },
      { " ID", campaign_id and " " .. campaign_id, "%f[%w]ID%f[%W]" },
    }
  end

  local function substitute(command)
    for _, p in ipairs(placeholders()) do
      local plain, value, pattern = p[1], p[2], p[3]
      if command:find(pattern or plain, 1, pattern == nil) then
        assert(value, "no value yet for the README placeholder " .. plain .. " in: " .. command)
        if pattern then
          command = command:gsub(pattern, function() return (value:gsub("^ ", "")) end)
        else
          local at = command:find(plain, 1, true)
          command = command:sub(1, at - 1) .. value .. command:sub(at + #plain)
        end
      end
    end
    assert(not command:find("…", 1, true), "a README placeholder this spec does not know: " .. command)
    return command
  end

  -- Runs `command` with bash in dir -> status, stdout, stderr.
  local function run(dir, command)
    helpers.write(dir .. "/.command.sh", command .. "\n")
    local shell = ("cd %s && env -u ALIPAY_CONFIG PATH=%s:\"$PATH\" XDG_RUNTIME_DIR=%s "
      .. "bash .command.sh >.stdout 2>.stderr; echo $?"):format(q(dir), q(bindir), q(dir))
    local p = io.popen(shell)
    local status = tonumber(p:read("*a"):match("(%d+)%s*$"))
    p:close()
    return status, helpers.read(dir .. "/.stdout"), helpers.read(dir .. "/.stderr")
  end

  local function ok(dir, command)
    local status, out, err = run(dir, command)
    assert(status == 0, ("`%s` exited %s:\n%s%s"):format(command, tostring(status), out, err))
    return out
  end

  setup(function()
    -- `alipay` on PATH: a symlink to the checkout's bin/alipay, as a user
    -- who links it into ~/bin has it (bin/alipay finds lua/ through it).
    bindir = helpers.tmpdir()
    assert(os.execute(("ln -s %s/bin/alipay %s/alipay"):format(q(REPO), q(bindir))))
  end)

  teardown(function()
    helpers.cleanup()
  end)

  it("the sandbox tour: 7 checks pass, 1 warning, as its comment says", function()
    local dir = helpers.tmpdir()
    local block = block_with("alipay sandbox start")
    assert.truthy(block:find("alipay sandbox stop", 1, true), "the tour must stop its sandbox")
    local status, out, err = run(dir, "set -e\n" .. block)
    -- Whatever happened, leave no sandbox behind (its state file is in dir).
    run(dir, "alipay sandbox stop >/dev/null 2>&1 || true")
    assert.equal(0, status, out .. err)
    local claimed = block:match("alipay doctor%s+#%s*(%d+ passed, %d+ warnings?)")
    assert.truthy(claimed, "the tour's doctor comment names no counts")
    assert.truthy(out:find(claimed .. ", 0 failed", 1, true), "README says " .. claimed .. "; doctor said:\n" .. out)
    assert.truthy(out:find("stopped", 1, true), out)
    -- Only relative paths were stored, relative to the channel file.
    local config = cjson.decode(helpers.read(dir .. "/alipay.json"))
    assert.equal("keys/app_private_key.pem", config.channels.alipaylife123.private_key_file)
  end)

  describe("the command-line tour and the campaign commands", function()
    local life, mini, dir

    setup(function()
      dir = helpers.tmpdir()
      ok(dir, "mkdir -p keys && openssl genrsa -out keys/app_private_key.pem 2048 2>/dev/null"
        .. " && openssl rsa -in keys/app_private_key.pem -pubout -out keys/app_public_key.pem 2>/dev/null")
      local app_public = helpers.read(dir .. "/keys/app_public_key.pem")
      life = assert(sandbox.start { app_id = LIFE_APP, app_public_key = app_public, seed = SEED })
      -- The mini program is an app of its own that names users by open_id.
      local seed = cjson.decode(helpers.read(SEED))
      seed.id_type = "open_id"
      seed.subscriptions = {
        { open_id = MINI_OPEN_ID, template_id = MINI_TEMPLATES[1], type = "longterm" },
        { open_id = MINI_OPEN_ID, template_id = MINI_TEMPLATES[2], type = "onetime" },
      }
      helpers.write(dir .. "/.mini_seed.json", cjson.encode(seed))
      mini = assert(sandbox.start { app_id = MINI_APP, app_public_key = app_public, seed = dir .. "/.mini_seed.json" })
      helpers.write(dir .. "/keys/alipay_public_key.pem", life.alipay_public_key)
      helpers.write(dir .. "/keys/mini_alipay_public_key.pem", mini.alipay_public_key)
      -- The user's own files the tour names.
      helpers.write(dir .. "/templates.json", cjson.encode {
        { id = "0readme0imported0template0000001", name = "账户变动通知", keywords = { "变动类型", "变动金额" },
          channel = "alipaylife123", kind = "alipaylife" } })
      helpers.write(dir .. "/bindings.csv", "userid,alipaylife_userid\nzhangsan," .. ZHANGSAN .. "\n")
      helpers.write(dir .. "/context.json", cjson.encode {
        head_color = "#85be53", url = "https://shop.example/orders/A1", action_name = "查看详情",
        keyword1 = { value = "A1", color = "#85be53" }, keyword2 = { value = "已发货", color = "#85be53" },
        keyword3 = { value = "2026-12-07 10:00", color = "#85be53" } })
      local audience = { "user_id" }
      for _, row in ipairs(seed.followers.list) do audience[#audience + 1] = row.user_id end
      helpers.write(dir .. "/audience.csv", table.concat(audience, "\n") .. "\n")
    end)

    teardown(function()
      if life then life:stop() end
      if mini then mini:stop() end
    end)

    -- Between two README commands, what a user of the sandbox runs (both
    -- forms are documented: `--update` and `channel add --kind alipaymini`).
    local function after(command)
      if command:match("^alipay channel add alipaylife123 ") then
        ok(dir, "alipay channel add alipaylife123 --update --gateway " .. life.gateway)
        ok(dir, ("alipay channel add mini456 --kind alipaymini --app-id %s --id-type open_id "
          .. "--private-key-file keys/app_private_key.pem --alipay-public-key-file keys/mini_alipay_public_key.pem "
          .. "--gateway %s"):format(MINI_APP, mini.gateway))
      end
    end

    -- What each command must show beyond exiting 0.
    local function check(command, out)
      if command == "alipay doctor" then
        assert.truthy(out:find("0 failed", 1, true), out)
      elseif command:match("^alipay template list") then
        assert.truthy(out:find(TEMPLATE, 1, true), out)
        assert.truthy(out:find("0readme0imported0template0000001", 1, true), out)
      elseif command:match("^alipay subscription query") then
        assert.truthy(out:find(MINI_TEMPLATES[1], 1, true), out)
      elseif command:match("^alipay followers export") then
        local _, rows = helpers.read(dir .. "/followers.csv"):gsub("\n", "")
        assert.equal(25001, rows)   -- the header and the seed's 25,000 followers
      elseif command:match("^alipay users show") then
        assert.truthy(out:find(ZHANGSAN, 1, true), out)
      elseif command:match("^alipay campaign export") then
        local _, rows = helpers.read(dir .. "/results.csv"):gsub("\n", "")
        assert.is_true(rows >= 30, out)
      end
    end

    it("runs every command of the command-line tour", function()
      local block = block_with("alipay template claim")
      assert.truthy(block:find("alipay channel add", 1, true) and block:find("alipay doctor", 1, true),
        "the first command-line example shows channel add and doctor")
      local ran = 0
      for _, written in ipairs(commands_of(block)) do
        for _, command in ipairs(variants(substitute(written))) do
          check(command, ok(dir, command))
          ran = ran + 1
        end
        after(written)
      end
      assert.is_true(ran >= 12, ran .. " commands")
    end)

    it("runs every campaign command, the documented refusal included", function()
      local ran = 0
      for _, written in ipairs(commands_of(block_with("alipay campaign run --channel alipaylife123"))) do
        for _, command in ipairs(variants(substitute(written))) do
          if command:match("^alipay campaign delete %S+$") then
            -- Documented: a campaign whose recipients hold results needs --force.
            local status, _, err = run(dir, command)
            assert.equal(1, status, err)
            assert.truthy(err:find("--force", 1, true), err)
          else
            check(command, ok(dir, command))
          end
          ran = ran + 1
          if command:match("^alipay campaign run ") then
            local list = cjson.decode(ok(dir, "alipay campaign list --json"))
            assert.equal(1, #list)
            assert.equal("completed", list[1].status)
            assert.equal(30, list[1].counts.sent)
            campaign_id = list[1].id
          end
        end
      end
      assert.is_true(ran >= 10, ran .. " commands")
      local status = run(dir, "alipay campaign status " .. campaign_id)
      assert.equal(1, status)   -- deleted by the last command
    end)
  end)
end)
