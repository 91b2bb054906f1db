-- Bad data is refused where it enters (issue 13 §5), as a caller sees it:
-- a direct send with a control character in an id, a template value, a URL
-- or a page is refused (kind invalid, the field named) before any call; a
-- campaign row with one is skipped naming the field; a JSONL audience row
-- with a repeated key is skipped as ambiguous; a 1 MB header name is refused
-- naming its line, column and size. Only existing modules are required, so
-- that on a lua-alipay without these checks each case fails on its own.
local helpers = require "helpers"
local cjson = require "cjson"

local LIFE_SEND = "alipay.open.public.message.single.send"

-- A client that must not be reached: a refusal happens before any request.
local unreachable = setmetatable({}, { __index = function(_, k) error("the client was called: " .. k, 2) end })

describe("direct sends refuse control characters with kind invalid, naming the field", function()
  local lifeaccount = require "alipay.messaging.lifeaccount"
  local mini = require "alipay.messaging.mini"
  local life = lifeaccount.new { code = "life", kind = "alipaylife", client = unreachable }
  local app = mini.new { code = "mini", kind = "alipaymini", client = unreachable }
  local CONTEXT = { head_color = "#85be53", url = "https://x/1", action_name = "go",
                    keyword1 = { value = "HU101", color = "#85be53" } }
  local function with(overrides)
    local c = cjson.decode(cjson.encode(CONTEXT))
    for k, v in pairs(overrides) do c[k] = v end
    return c
  end

  local function refused(field, res, err, detail)
    assert.is_nil(res)
    assert.are.equal("invalid", detail.kind, err)
    assert.are.equal(field, detail.field)
    assert.is_false(detail.unknown)
    assert.truthy(err:find(field, 1, true), err)
  end

  it("Life Account: recipient, template id, keyword values, url, action_name", function()
    refused("recipient.user_id", life:send({ user_id = "2088\0" .. "000000000001" }, "T1", CONTEXT))
    refused("recipient.open_id", life:send({ open_id = "abc\27" }, "T1", CONTEXT))
    refused("template", life:send({ user_id = "2088000000000001" }, "T\0" .. "1", CONTEXT))
    refused("context.keyword1.value", life:send({ user_id = "2088000000000001" }, "T1",
      with { keyword1 = { value = "HU\0" .. "101", color = "#85be53" } }))
    refused("context.url", life:send({ user_id = "2088000000000001" }, "T1", with { url = "https://x/\27[2J" }))
    refused("context.action_name", life:send({ user_id = "2088000000000001" }, "T1", with { action_name = "go\n" }))
    refused("context.remark.value", life:send({ user_id = "2088000000000001" }, "T1",
      with { remark = { value = "bye\127", color = "#85be53" } }))
    refused("recipient.user_id", life:is_following { user_id = "2088\0" })
  end)

  it("Life Account: a tab and a line feed in a value are text, and go through", function()
    local seen
    local client = { prepare_v2 = function(_, method, biz) seen = biz return { method = method }, {} end }
    local ok = lifeaccount.new({ code = "life", kind = "alipaylife", client = client })
      :prepare_send({ user_id = "2088000000000001" }, "T1",
        with { keyword1 = { value = "line one\n\tline two", color = "#85be53" } })
    assert.truthy(ok)
    assert.are.equal("line one\n\tline two", seen.template.context.keyword1.value)
  end)

  it("mini program: data values, page, form_id, template ids of a subscription query", function()
    refused("data.keyword1.value", app:send({ open_id = "0123456789abcdef" }, "T1", { "HU\0" .. "101" }))
    refused("data.keyword2.value", app:send({ open_id = "0123456789abcdef" }, "T1", { keyword1 = "a",
      keyword2 = { value = "\27[31m" } }))
    refused("page", app:send({ open_id = "0123456789abcdef" }, "T1", { "a" }, { page = "pages/x?id=\0" }))
    refused("form_id", app:send({ open_id = "0123456789abcdef" }, "T1", { "a" }, { form_id = "f\r" }))
    refused("recipient.open_id", app:send({ open_id = "0123456789abcd\0" }, "T1", { "a" }))
    refused("template_ids[1]", app:subscriptions({ open_id = "0123456789abcdef" }, { "T\0" }))
    assert.are.equal(LIFE_SEND, select(3, life:send({ user_id = "x\0" }, "T1", CONTEXT)).method)
  end)
end)

describe("a campaign skips a row with a control character, naming the field", function()
  local workspace = require "alipay.workspace"
  local campaign = require "alipay.campaign"
  local TEMPLATE, MINI_TEMPLATE = "0spec0bad0input0template00000001", "MINI0BAD0INPUT"
  local dir, ws, ctx

  before_each(function()
    dir = helpers.tmpdir()
    local keys = helpers.cwd() .. "/" .. helpers.fixtures .. "/keys/"
    local function channel(kind)
      return { kind = kind, id_type = "user_id", app_id = "2021000122671080",
               private_key_file = keys .. "app_private_pkcs1.pem",
               alipay_public_key_file = keys .. "alipay_public_sandbox.pem",
               gateway = "http://127.0.0.1:9/gateway.do" } -- nothing is sent: create only imports
    end
    ws = assert(workspace.open { config = { store = dir .. "/alipay.db",
      channels = { life = channel("alipaylife"), mini = channel("alipaymini") } } })
    assert(ws.registry:import({ { id = TEMPLATE, keywords = { "订单号", "状态" } } }, { channel = "life" }))
    assert(ws.registry:import({ { id = MINI_TEMPLATE, keywords = { "订单号", "状态" } } },
      { channel = "mini", kind = "alipaymini" }))
    ctx = assert(ws:campaign_ctx())
  end)

  after_each(function()
    ws:close()
    helpers.cleanup()
  end)

  local LIFE_DATA = { head_color = "#85be53", url = "https://shop.example/{order_no}", action_name = "查看",
                      keyword1 = { value = "{order_no}", color = "#85be53" },
                      keyword2 = { value = "{state}", color = "#85be53" } }

  local function create(id, channel, template, lines, extra)
    local path = dir .. "/" .. id .. ".csv"
    helpers.write(path, table.concat(lines, "\n") .. "\n")
    local spec = { id = id, channel = channel, template = template, audience = { file = path },
                   data = channel == "life" and LIFE_DATA or { "{order_no}", "{state}" } }
    for k, v in pairs(extra or {}) do spec[k] = v end
    return assert(campaign.create(ctx, spec))
  end

  local function row(id, line) return assert(ctx.store:recipient_get(id, line)) end

  it("a keyword value, the url, a business userid, a user_id", function()
    create("life", "life", TEMPLATE, {
      "user_id,userid,order_no,state",
      "2088000000000001,,HU\0" .. "101,shipped",          -- 2: the issue's HU\0 101
      "2088000000000002,,HU102,line one\nline two",       -- 3-4: an unquoted LF ends the record
      '2088000000000003,,HU103,"line one\nline two"',     -- 5-6: a quoted LF is text: sent
      "2088000000000004,,HU\27[2J104,shipped",           -- 7: ESC in the url and keyword1
      ",HU\0" .. "105,HU105,shipped",                     -- 8: a business userid
      "2088000000000006\127,,HU106,shipped",              -- 9: DEL in a user_id
    })
    local r = row("life", 2)
    assert.are.equal("skipped", r.status)
    assert.are.equal("INVALID_DATA", r.code)
    assert.truthy(r.msg:find("context.keyword1.value: a control character (NUL) at byte 3", 1, true), r.msg)
    assert.are.equal("INVALID_ROW", row("life", 4).code)
    assert.are.equal("pending", row("life", 5).status)
    r = row("life", 7)
    assert.are.equal("skipped", r.status)
    assert.truthy(r.msg:find("ESC", 1, true), r.msg)
    assert.truthy(r.msg:find("context.keyword1.value", 1, true) or r.msg:find("context.url", 1, true), r.msg)
    r = row("life", 8)
    assert.are.equal("skipped", r.status)
    assert.truthy(r.msg:find("userid: a control character (NUL) at byte 3", 1, true), r.msg)
    r = row("life", 9)
    assert.are.equal("skipped", r.status)
    assert.truthy(r.msg:find("user_id: a control character (DEL)", 1, true), r.msg)
  end)

  it("a mini-program value and page", function()
    create("mini", "mini", MINI_TEMPLATE, {
      "user_id,order_no,state,p",
      "2088000000000001,HU\0" .. "101,shipped,a",
      "2088000000000002,HU102,shipped,b\27",
      "2088000000000003,HU103,shipped,c",
    }, { page = "pages/order?id={p}" })
    local r = row("mini", 2)
    assert.are.equal("skipped", r.status)
    assert.truthy(r.msg:find("data.keyword1.value: a control character (NUL)", 1, true), r.msg)
    r = row("mini", 3)
    assert.are.equal("skipped", r.status)
    assert.truthy(r.msg:find("page: a control character (ESC)", 1, true), r.msg)
    assert.are_not.equal("skipped", row("mini", 4).status)
  end)

  it("fixed data or a template id with a control character refuses the campaign", function()
    local path = dir .. "/fixed.csv"
    helpers.write(path, "user_id\n2088000000000001\n")
    local data = cjson.decode(cjson.encode(LIFE_DATA))
    data.url, data.keyword1.value, data.keyword2.value = "https://shop.example/\0", "SALE", "now"
    local c, err = campaign.create(ctx, { id = "fixed", channel = "life", template = TEMPLATE,
      audience = { file = path }, data = data })
    assert.is_nil(c)
    assert.truthy(err:find("context.url: a control character (NUL)", 1, true), err)
    data.url = "https://shop.example/"
    c, err = campaign.create(ctx, { id = "tpl", channel = "life", template = TEMPLATE .. "\27",
      audience = { file = path }, data = data })
    assert.is_nil(c)
    assert.truthy(err:find("template: a control character (ESC)", 1, true), err)
  end)

  it("a JSONL row with a repeated key is skipped as ambiguous, with its line", function()
    local path = dir .. "/a.jsonl"
    helpers.write(path, table.concat({
      '{"user_id":"2088000000000001","order_no":"HU1","state":"s"}',
      '{"user_id":"2088000000000002","user_id":"2088000000000009","order_no":"HU2","state":"s"}',
      '{"user_id":"2088000000000003","order_no":"HU3","state":"s","order_no":"HU4"}',
      '{"user_id":"2088000000000004","order_no":"a\\":b","state":"s"}',
    }, "\n") .. "\n")
    assert(campaign.create(ctx, { id = "jsonl", channel = "life", template = TEMPLATE,
      audience = { file = path }, data = LIFE_DATA }))
    assert.are.equal("pending", row("jsonl", 1).status)
    for line, key in pairs { [2] = "user_id", [3] = "order_no" } do
      local r = row("jsonl", line)
      assert.are.equal("skipped", r.status)
      assert.are.equal("INVALID_ROW", r.code)
      assert.truthy(r.msg:find(('the key "%s" appears twice: ambiguous'):format(key), 1, true), r.msg)
    end
    assert.are.equal("pending", row("jsonl", 4).status)
  end)

  it("a 1 MB header name is refused naming the line, the column and its size", function()
    local path = dir .. "/h.csv"
    helpers.write(path, "user_id," .. ("c"):rep(1000000) .. "\n2088000000000001,x\n")
    local c, err = campaign.create(ctx, { id = "header", channel = "life", template = TEMPLATE,
      audience = { file = path }, data = LIFE_DATA })
    assert.is_nil(c)
    assert.is_true(#err < 400, #err .. " bytes")
    assert.truthy(err:find("line 1: column 2 of the header is a name of 1000000 bytes", 1, true), err)
  end)

  it("the columns a placeholder did not find are listed short", function()
    local names = {}
    for i = 1, 50 do names[i] = ("column_%03d_"):format(i) .. ("n"):rep(100) end
    local path = dir .. "/many.csv"
    helpers.write(path, "user_id," .. table.concat(names, ",") .. "\n2088000000000001" .. (","):rep(50) .. "\n")
    local c, err = campaign.create(ctx, { id = "many", channel = "life", template = TEMPLATE,
      audience = { file = path }, data = LIFE_DATA })
    assert.is_nil(c)
    assert.truthy(err:find("names no column of the audience", 1, true), err)
    assert.truthy(err:find("and 41 more", 1, true), err)
    assert.is_true(#err < 1024, #err .. " bytes")
  end)
end)
