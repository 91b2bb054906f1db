-- Bad data and bad echoes at the command line (issue 13 §5), as child
-- processes of bin/alipay: a 1 MB CSV header line or field gives a short
-- message that names the line, the field and its size (it gave 1 MB of
-- stderr); `alipay send` refuses a control character naming the field
-- (kind invalid) before any call; a store this user may not write still
-- serves campaign status, list, export and template list, and a writing
-- command says which file it could not write.
--
-- Nothing here reaches Alipay: the gateway is a closed port, and each case
-- is refused, or its rows skipped, before any request.
local helpers = require "helpers"
local cjson = require "cjson"

local TEMPLATE = "0spec0bad0input0cli0template0001"
local MB = 1000000

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

describe("alipay with bad input (child processes)", function()
  local dir, config

  -- -> exit status, stdout, stderr. `as` runs it as another user.
  local function alipay(args, as)
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local cmd = ("%slua5.4 bin/alipay %s --config %s >%s 2>%s"):format(as or "", args, q(config), q(out), q(err))
    local _, _, code = os.execute(cmd)
    return code, helpers.read(out), helpers.read(err)
  end

  local DATA = cjson.encode {
    head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看订单",
    keyword1 = { value = "{order_no}", color = "#85be53" }, keyword2 = { value = "已发货", color = "#85be53" },
  }

  local function run(id, audience)
    return alipay(("campaign run --channel life --template %s --audience %s --data %s --id %s --progress none")
      :format(TEMPLATE, q(audience), q(DATA), id))
  end

  setup(function()
    dir = helpers.tmpdir()
    local keys = helpers.cwd() .. "/" .. helpers.fixtures .. "/keys/"
    config = dir .. "/alipay.json"
    helpers.write(config, cjson.encode {
      store = dir .. "/store/alipay.db",
      channels = { life = { kind = "alipaylife", app_id = "2021000122671080",
        private_key_file = keys .. "app_private_pkcs1.pem",
        alipay_public_key_file = keys .. "alipay_public_sandbox.pem",
        gateway = "http://127.0.0.1:9/gateway.do" } },
    })
    assert(helpers.run("mkdir " .. q(dir .. "/store")))
    helpers.write(dir .. "/templates.json", cjson.encode { { id = TEMPLATE, keywords = { "订单号", "状态" } } })
    local code, _, err = alipay("template import --channel life " .. q(dir .. "/templates.json"))
    assert(code == 0, err)
  end)

  teardown(function() helpers.cleanup() end)

  local function short(err, what)
    assert.is_true(#err < 2048, ("%s: %d bytes of stderr"):format(what, #err))
  end

  it("campaign run: a 1 MB header line is named by line, column and size, in a short message", function()
    local path = dir .. "/header.csv"
    helpers.write(path, "user_id," .. ("c"):rep(MB) .. "\n2088000000000001,x\n")
    local code, out, err = run("header", path)
    assert.are.equal(1, code)
    short(err, "campaign run")
    assert.is_true(#out < 2048)
    assert.truthy(err:find(path .. " line 1: column 2 of the header is a name of 1000000 bytes (at most 128)", 1, true),
      err)
  end)

  it("campaign run: a 1 MB field skips its row, named by line, field and size", function()
    local path = dir .. "/field.csv"
    helpers.write(path, "user_id,order_no\n2088000000000001," .. ("v"):rep(MB) .. "\n")
    local code, out, err = run("field", path)
    assert.are.equal(0, code, err)
    short(err, "campaign run")
    assert.is_true(#out < 2048)
    code, out, err = alipay("campaign export field --json --output " .. q(dir .. "/field.jsonl") .. " --format jsonl")
    assert.are.equal(0, code, err .. out)
    local row = cjson.decode(helpers.read(dir .. "/field.jsonl"):match("[^\n]+"))
    assert.are.equal(2, row.line)
    assert.are.equal("skipped", row.status)
    assert.truthy(row.msg:find("keyword1 (订单号).value: 1000000 characters; Alipay documents no limit, this library"
      .. " sends at most 2048", 1, true), row.msg)
    assert.is_true(#row.msg < 1024)
  end)

  it("users upload: a 1 MB header line and a 1 MB userid give short messages naming line, field and size", function()
    local path = dir .. "/users_header.csv"
    helpers.write(path, "userid,alipaylife_userid," .. ("c"):rep(MB) .. "\nu1,2088000000000001,x\n")
    local code, out, err = alipay("users upload --channel life " .. q(path))
    assert.are.equal(1, code)
    short(err .. out, "users upload")
    assert.truthy(err:find("line 1: column 3 of the header is a name of 1000000 bytes", 1, true), err)
    path = dir .. "/users_field.csv"
    helpers.write(path, "userid,alipaylife_userid\n" .. ("u"):rep(MB) .. ",2088000000000001\n")
    code, out, err = alipay("users upload --channel life " .. q(path))
    assert.are.equal(1, code)
    short(err .. out, "users upload")
    assert.truthy(out:find("line 2: userid " .. ("u"):rep(40) .. "…(40 of 1000000 bytes): INVALID_USERID: "
      .. "userid: 1000000 characters, at most 64", 1, true), out)
  end)

  it("template import: a 1 MB id or kind is echoed short", function()
    local path = dir .. "/big_templates.json"
    helpers.write(path, cjson.encode { { id = ("i"):rep(MB), keywords = { "a" } },
                                       { id = "T2", kind = ("k"):rep(MB), keywords = { "a" } } })
    local code, out, err = alipay("template import --channel life " .. q(path))
    assert.are.equal(1, code)
    short(out .. err, "template import")
    assert.truthy(out:find("#1 failed   " .. ("i"):rep(256) .. "…(256 of 1000000 bytes): id: at most 64 characters",
      1, true), out)
    local kind = "#2 failed   T2: kind " .. ("k"):rep(40) .. "…(40 of 1000000 bytes) does not match"
    assert.truthy(out:find(kind, 1, true), out)
  end)

  it("send: a control character is refused naming the field, kind invalid, before any call", function()
    local data = cjson.decode(DATA)
    data.url, data.keyword1.value = "https://shop.example/orders/1", "HU\0" .. "101"
    helpers.write(dir .. "/nul.json", cjson.encode(data))
    local code, out = alipay(("send --channel life --template %s --to-user-id 2088000000000001 --data-file %s --json")
      :format(TEMPLATE, q(dir .. "/nul.json")))
    assert.are.equal(1, code)
    local answer = cjson.decode(out)
    assert.is_false(answer.ok)
    assert.are.equal("invalid", answer.error.kind)
    assert.are.equal("context.keyword1.value", answer.error.field)
    code, out = alipay(("send --channel life --template %s --to-user-id %s --data-file %s --json")
      :format(TEMPLATE, q("2088\27[2J"), q(dir .. "/nul.json")))
    assert.are.equal(1, code)
    assert.are.equal("recipient.user_id", cjson.decode(out).error.field)
  end)

  it("a store this user may not write serves status, list, export and template list", function()
    local path = dir .. "/ro.csv"
    helpers.write(path, "user_id,order_no\n2088000000000001,HU\27[31m1\n")
    local code, _, err = run("ro", path)
    assert.are.equal(0, code, err)
    local store_dir = dir .. "/store"
    assert(helpers.run(("chmod 444 %s/alipay.db* && chmod 555 %s && chmod o+rx %s"):format(q(store_dir),
      q(store_dir), q(dir))))
    -- As root, permissions stop nothing: run as nobody then.
    local as = helpers.run("test $(id -u) = 0") and "setpriv --reuid=nobody --regid=nogroup --clear-groups " or ""
    local ok, results = pcall(function()
      local r = {}
      local export = dir .. "/export-ro.csv"
      assert(helpers.run(("touch %s && chmod 666 %s"):format(q(export), q(export))))
      for _, args in ipairs { "campaign status ro", "campaign list", "campaign export ro --output " .. q(export),
                              "template list", "template import --channel life " .. q(dir .. "/templates.json") } do
        r[#r + 1] = { args, alipay(args, as) }
      end
      r.export = helpers.read(export)
      return r
    end)
    assert(helpers.run(("chmod 755 %s && chmod 644 %s/alipay.db*"):format(q(store_dir), q(store_dir))))
    assert(ok, results)
    for i = 1, 4 do
      assert.are.equal(0, results[i][2], results[i][1] .. ": " .. results[i][4])
    end
    assert.truthy(results[1][3]:find("campaign ro", 1, true), results[1][3])
    assert.truthy(results[2][3]:find("ro", 1, true))
    assert.truthy(results[4][3]:find(TEMPLATE, 1, true))
    assert.truthy(results.export:find("context.keyword1.value: a control character (ESC)", 1, true), results.export)
    local import = results[5]
    assert.are.equal(1, import[2])
    assert.truthy(import[4]:find(store_dir .. "/alipay.db: cannot write the file (Permission denied)", 1, true),
      import[4])
  end)
end)
