-- One retry policy: alipay.classify holds the only table of rules (code /
-- sub_code / kind / reason -> class); alipay.errors derives `retryable` from
-- the class, and the campaign engine (campaign.outcome, which
-- campaign.dispatch drives) acts on the class. For EVERY rule of the table
-- (iterated, never listed by hand) the three views must agree.
local helpers = require "helpers"
local classify = require "alipay.classify"
local errors = require "alipay.errors"
local outcome = require "alipay.campaign.outcome"

-- What each class implies for a retry, stated here on its own so that the
-- mapping in alipay.errors is checked too.
local IMPLIES = { transient = true, throttled = true, template = false, recipient = false, quota = false,
                  configuration = false }

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- The kind the client gives a v3 answer of this HTTP status and code.
local function v3_kind(status, code)
  if status >= 500 or status == 429 or status == 401 or status == 403 then return "gateway" end
  if type(code) == "string" and code:match("^[a-z][a-z%-]*$") then return "gateway" end
  return "business"
end

-- Every rule of classify.rules as cases {rule =, class =, kind =, fields =}:
-- the errors that rule decides, in the shapes the library builds them.
local function cases_of(rules)
  local cases = {}
  local function add(rule, class, kind, fields)
    cases[#cases + 1] = { rule = rule, class = class, kind = kind, fields = fields }
  end
  for _, sub_code in ipairs(sorted_keys(rules.sub_code)) do
    local class = rules.sub_code[sub_code]
    add("sub_code " .. sub_code .. " (v2)", class, "business", { code = "40004", sub_code = sub_code })
    add("sub_code " .. sub_code .. " (v2 gateway)", class, "gateway", { code = "40002", sub_code = sub_code })
    add("sub_code " .. sub_code .. " (v3)", class, v3_kind(400, sub_code),
        { status = 400, code = "400", sub_code = sub_code })
  end
  for _, code in ipairs(sorted_keys(rules.code)) do
    local class, status = rules.code[code], tonumber(code)
    if #code == 3 then
      add("code " .. code .. " (v3)", class, v3_kind(status), { status = status, code = code })
    else
      add("code " .. code, class, code == "40004" and "business" or "gateway", { code = code })
    end
  end
  for _, kind in ipairs(sorted_keys(rules.kind)) do
    add("kind " .. kind, rules.kind[kind], kind, {})
  end
  for _, kind in ipairs(sorted_keys(rules.reason)) do
    for _, reason in ipairs(sorted_keys(rules.reason[kind])) do
      add("kind " .. kind .. " reason " .. reason, rules.reason[kind][reason], kind, { reason = reason })
    end
  end
  for _, reason in ipairs(sorted_keys(rules.invalid)) do
    add("invalid " .. reason, rules.invalid[reason], "invalid", { reason = reason })
  end
  add("default", rules.default, "not-a-kind", {})
  return cases
end

local RULES = { max_attempts = 3, backoff_ms = 100, max_backoff_ms = 1000, now_ms = 1000, retry_unknown = true,
                random = function() return 0.5 end, template_id = "T" }

-- Whether the campaign engine tries this recipient again after err (a send,
-- and a subscription check): pending again, and the campaign goes on.
local function campaign_retries(engine, err)
  local row = { line = 1, status = "inflight", attempts = 0, tries = 0, uncertain = false }
  local sent, send_effects = engine.send(row, nil, err, RULES)
  local checked, check_effects = engine.check(row, nil, err, RULES)
  return sent.status == "pending" and not send_effects.stop,
         checked.status == "pending" and not check_effects.stop
end

-- The rules where the views disagree, as lines; build(kind, fields) makes
-- the error, engine is campaign.outcome (or a stand-in).
local function disagreements(cases, build, engine)
  local found = {}
  for _, case in ipairs(cases) do
    local err = build(case.kind, case.fields)
    local class = classify.classify(err)
    local want = IMPLIES[case.class]
    local send_retries, check_retries = campaign_retries(engine, err)
    local problems = {}
    if class ~= case.class then problems[#problems + 1] = "classify says " .. tostring(class) end
    if err.retryable ~= want then problems[#problems + 1] = "errors says retryable=" .. tostring(err.retryable) end
    if send_retries ~= want then problems[#problems + 1] = "a campaign send retries=" .. tostring(send_retries) end
    if check_retries ~= want then problems[#problems + 1] = "a campaign check retries=" .. tostring(check_retries) end
    if #problems > 0 then
      found[#found + 1] = ("%s -> %s (retryable=%s): %s"):format(case.rule, case.class, tostring(want),
        table.concat(problems, ", "))
    end
  end
  return found
end

-- Code and sub_code rules written again in a file: a table key ["X"] or a
-- comparison == "X" / ~= "X" naming one of classify's codes. Comments are
-- left out (they may cite a code).
local function duplicated_rules(text, rules)
  text = text:gsub("%-%-%[(=*)%[.-%]%1%]", ""):gsub("%-%-[^\n]*", "")
  local found = {}
  for _, map in ipairs { rules.sub_code, rules.code } do
    for _, key in ipairs(sorted_keys(map)) do
      local quoted = '"' .. key:gsub("%p", "%%%0") .. '"'
      if text:find("%[%s*" .. quoted .. "%s*%]") or text:find("[=~]=%s*" .. quoted) then
        found[#found + 1] = key
      end
    end
  end
  return found
end

-- The kinds the library passes by name to errors.fail / errors.new /
-- errors.wrap (kinds passed in a variable come from one of these).
local function kinds_produced()
  local ok, out = helpers.run("grep -rhoE 'errors\\.(fail|new)\\(\\s*\"[a-z_]+\"|"
    .. "errors\\.wrap\\([^)]*\"[a-z_]+\"\\s*[,)]' lua/alipay")
  assert(ok, out)
  local kinds = {}
  for line in out:gmatch("[^\n]+") do
    local kind = line:match('errors%.%a+%(%s*"([%a_]+)"') or line:match('"([%a_]+)"%s*[,)]$')
    if kind then kinds[kind] = true end
  end
  return kinds
end

describe("the retry policy", function()
  local cases = cases_of(classify.rules)

  it("covers every rule of classify's table", function()
    local n = 0
    local rules = classify.rules
    for _, map in ipairs { rules.sub_code, rules.code, rules.kind, rules.invalid } do
      for _ in pairs(map) do n = n + 1 end
    end
    assert.is_true(#cases > n, #cases .. " cases for " .. n .. " rules")
  end)

  it("alipay.errors maps each class to the retry it implies", function()
    for _, class in ipairs(sorted_keys(classify.classes)) do
      assert.are.equal(IMPLIES[class], errors.retryable_classes[class] == true, class)
    end
  end)

  it("every rule: classify's class, errors' retryable and the campaign's retry agree", function()
    local found = disagreements(cases, errors.new, outcome)
    assert(#found == 0, "the retry policy disagrees with itself:\n  " .. table.concat(found, "\n  "))
  end)

  it("the constructors of alipay.errors follow the table too", function()
    for _, reason in ipairs { "timeout", "connect", "reset", "too_large", "other" } do
      local err = errors.transport("failed", reason)
      assert.are.equal(IMPLIES[classify.classify(err)], err.retryable, reason)
    end
    assert.is_false(errors.transport("big", "too_large").retryable)
    assert.is_true(errors.transport("slow", "timeout").retryable)
    assert.is_false(errors.config("app_id", "missing").retryable)
  end)

  it("a rule added to the table changes retryable too", function()
    local saved = classify.rules.sub_code.NEW_RATE_LIMIT
    classify.add("NEW_RATE_LIMIT", "throttled")
    local ok, err = pcall(function()
      assert.is_true(errors.new("business", { code = "40004", sub_code = "NEW_RATE_LIMIT" }).retryable)
    end)
    classify.rules.sub_code.NEW_RATE_LIMIT = saved
    assert(ok, err)
    assert.is_false(errors.new("business", { code = "40004", sub_code = "NEW_RATE_LIMIT" }).retryable)
  end)

  it("no other module writes a code or sub_code rule again", function()
    -- Uses of a code that are not about what to do next.
    local not_policy = {
      -- the one line leaves out the string to sign the gateway echoes
      ["lua/alipay/errors.lua"] = { ["isv.invalid-signature"] = true },
    }
    for _, path in ipairs { "lua/alipay/errors.lua", "lua/alipay/campaign/outcome.lua",
                            "lua/alipay/campaign/dispatch.lua" } do
      local found = {}
      for _, key in ipairs(duplicated_rules(helpers.read(path), classify.rules)) do
        if not (not_policy[path] or {})[key] then found[#found + 1] = key end
      end
      assert(#found == 0, path .. " repeats classify's rules for " .. table.concat(found, ", "))
    end
  end)

  it("fails when a rule is duplicated with a different answer", function()
    -- An alipay.errors with its own list of retryable codes, without
    -- isv.method-call-limited.
    local function old_errors(kind, fields)
      local e = errors.new(kind, fields)
      if e.sub_code == "isv.method-call-limited" then e.retryable = false end
      return e
    end
    local found = disagreements(cases, old_errors, outcome)
    assert.are.equal(3, #found)   -- its v2 business, v2 gateway and v3 shapes
    assert.matches("^sub_code isv%.method%-call%-limited %(v2%) %-> throttled %(retryable=true%): " ..
                   "errors says retryable=false$", found[1])
    -- A campaign engine with its own rule for 40005.
    local engine = {
      send = function(row, node, err, rules)
        if err.code == "40005" then return { status = "failed" }, {} end
        return outcome.send(row, node, err, rules)
      end,
      check = outcome.check,
    }
    found = disagreements(cases, errors.new, engine)
    assert.are.equal(1, #found)
    assert.matches("^code 40005 %-> throttled %(retryable=true%): a campaign send retries=false$", found[1])
    -- A duplicated table in a module's text.
    assert.are.same({ "isp.unknow-error", "40005" }, duplicated_rules(
      '-- ["20000"] is cited here\nlocal t = { ["isp.unknow-error"] = true }\nif code == "40005" then end\n',
      classify.rules))
  end)

  it("the header of alipay.errors and docs/errors.md name every kind the library produces", function()
    local kinds = kinds_produced()
    -- gateway and business come from a computed kind (client.lua)
    for _, kind in ipairs { "gateway", "business" } do kinds[kind] = true end
    local header = helpers.read("lua/alipay/errors.lua"):match("^(.-)\nlocal errors")
    local doc = helpers.read("docs/errors.md")
    local n = 0
    for _, kind in ipairs(sorted_keys(kinds)) do
      n = n + 1
      assert.is_truthy(header:find("\n%-%-%s+" .. kind .. "%s%s+%S"), "errors.lua's header does not list " .. kind)
      assert.is_truthy(doc:find("| `" .. kind .. "` |", 1, true), "docs/errors.md does not list " .. kind)
    end
    assert.is_true(n >= 13, n .. " kinds")
  end)
end)
