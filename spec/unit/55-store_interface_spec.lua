-- The store interface (lua/alipay/store/init.lua): one suite, run against
-- every backend of BACKENDS, through interface methods only; and checks
-- that the interface list cannot drift from what its callers use.
local helpers = require "helpers"
local store = require "alipay.store"

-- One entry per backend: a name and a factory (dir) -> a fresh, empty
-- store | nil, why (then every spec of that backend fails with why).
-- Adding a backend is one line here.
local BACKENDS = {
  { name = "sqlite", open = function(dir) return store.open(dir .. "/state.db") end },
  { name = "postgres", open = function() return require("support.postgres").fresh_store() end },
}

local CALLER_DIRS = { "lua/alipay/campaign", "lua/alipay/messaging", "lua/alipay/cli", "lua/alipay/workspace",
                      "lua/alipay/inbound" }

local function lua_files(dir)
  local p = assert(io.popen(("ls %s/*.lua 2>/dev/null"):format(dir)))
  local list = {}
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

-- Every method called on a store object in a source text -> {name = "file:line"}.
-- Store objects are the names ending in `store` (store, self.store,
-- ctx.store) and the CLI's `st`; calls are `x:m(`, `x:m {`, `x:m "` and the
-- pcall form `pcall(x.m, x, ...)`.
local function store_calls(text, file, found)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local code = line:gsub("%-%-.*$", "")
    for recv, name in code:gmatch("([%w_%.]*)[:](%l[%w_]*)%s*[%({\"']") do
      local last = recv:match("([%w_]+)$") or ""
      if last:match("store$") or last == "st" then found[name] = found[name] or (file .. ":" .. n) end
    end
    for recv, name, again in code:gmatch("([%w_%.]+)%.(%l[%w_]*)%s*,%s*([%w_%.]+)") do
      local last = recv:match("([%w_]+)$") or ""
      if recv == again and (last:match("store$") or last == "st") then
        found[name] = found[name] or (file .. ":" .. n)
      end
    end
  end
  return found
end

local function is_listed(name)
  for _, m in ipairs(store.interface) do if m == name then return true end end
  return false
end

describe("alipay.store interface", function()
  it("gives every method a one-line contract, once", function()
    local seen = {}
    assert.is_true(#store.methods >= 30)
    for i, m in ipairs(store.methods) do
      assert.are.equal("string", type(m[1]))
      assert.is_nil(seen[m[1]], m[1] .. " is listed twice")
      seen[m[1]] = true
      assert.matches("^%(.-%) %->", m[2], m[1])
      assert.is_nil(m[2]:find("\n"), m[1])
      assert.are.equal(m[1], store.interface[i])
    end
  end)

  it("lists every store method campaign/, messaging/ and cli/ call", function()
    local found = {}
    for _, dir in ipairs(CALLER_DIRS) do
      for _, path in ipairs(lua_files(dir)) do store_calls(helpers.read(path), path, found) end
    end
    -- The scan itself must see the callers, or it proves nothing.
    for _, name in ipairs { "campaign_insert", "recipients_add", "recipients_claim", "recipients_finish",
                            "template_put", "binding_put", "meta_get", "transaction" } do
      assert.is_truthy(found[name], "the scan no longer finds " .. name)
    end
    for name, where in pairs(found) do
      assert.is_true(is_listed(name), ("%s calls store:%s, which store.interface does not list"):format(where, name))
    end
  end)

  it("the scan sees every call form", function()
    local found = store_calls(table.concat({
      "store:a_one(x)", "self.store:b_two { }", "ctx.store:c_three \"x\"", "st:d_four(1)",
      "pcall(self.store.e_five, self.store, f)", "other:not_me(1)", "-- store:nor_me(1)",
    }, "\n"), "t", {})
    assert.same({ "a_one", "b_two", "c_three", "d_four", "e_five" }, (function()
      local names = {}
      for k in pairs(found) do names[#names + 1] = k end
      table.sort(names)
      return names
    end)())
  end)

  it("store.missing names what a store lacks", function()
    assert.same(store.interface, store.missing({}))
    assert.same(store.interface, store.missing(nil))
  end)
end)

for _, backend in ipairs(BACKENDS) do
  describe("store backend " .. backend.name, function()
    local dir, st
    before_each(function()
      dir = helpers.tmpdir()
      local why
      st, why = backend.open(dir)
      assert(st, why)
    end)
    after_each(function()
      st:close()
      helpers.cleanup()
    end)

    it("implements every method the interface lists", function()
      assert.same({}, store.missing(st))
    end)

    describe("templates", function()
      local function t(fields)
        local v = { channel = "life", id = "tpl1", name = "Shipped", keywords = { "订单号", "运单号" },
                    kind = "alipaylife", imported_at = 1700000000 }
        for k, x in pairs(fields or {}) do v[k] = x end
        return v
      end

      it("puts, gets, lists, sets the status and deletes", function()
        assert.is_true(st:template_put(t()))
        assert.is_true(st:template_put(t { id = "tpl0", channel = "life" }))
        assert.is_true(st:template_put(t { channel = "a_mini", kind = "alipaymini", library_id = "L1" }))
        local got = assert(st:template_get("life", "tpl1"))
        assert.same({ "订单号", "运单号" }, got.keywords)
        assert.are.equal("valid", got.status)
        assert.are.equal(1700000000, got.imported_at)
        assert.is_nil(st:template_get("life", "nope"))
        local all = assert(st:template_list())
        assert.same({ "a_mini/tpl1", "life/tpl0", "life/tpl1" },
          { all[1].channel .. "/" .. all[1].id, all[2].channel .. "/" .. all[2].id,
            all[3].channel .. "/" .. all[3].id })
        assert.are.equal(2, #assert(st:template_list("life")))
        assert.are.equal(1, st:template_set_status("life", "tpl1", "invalid", "TEMPLATE_GONE", 1700000100))
        got = st:template_get("life", "tpl1")
        assert.same({ "invalid", "TEMPLATE_GONE", 1700000100 }, { got.status, got.invalid_code, got.invalid_at })
        assert.are.equal(0, st:template_set_status("life", "nope", "valid"))
        assert.is_true(st:template_put(t { name = "Renamed" })) -- upsert
        assert.are.equal("Renamed", st:template_get("life", "tpl1").name)
        assert.are.equal(1, st:template_delete("life", "tpl1"))
        assert.are.equal(0, st:template_delete("life", "tpl1"))
      end)

      it("refuses a bad template with kind input", function()
        local ok, err, detail = st:template_put(t { kind = "sms" })
        assert.is_nil(ok)
        assert.matches("^template_put: ", err)
        assert.are.equal("input", detail.kind)
      end)
    end)

    describe("bindings and meta", function()
      it("puts, gets, counts and deletes bindings", function()
        assert.is_true(st:binding_put("u1", "life", "2088000000000001", "user_id"))
        assert.is_true(st:binding_put("u1", "mini", "open-id-abcdefghijk", "open_id"))
        assert.is_true(st:binding_put("u2", "life", "2088000000000002", "user_id"))
        assert.same({ alipay_id = "2088000000000001", id_type = "user_id" }, st:binding_get("u1", "life"))
        assert.is_nil(st:binding_get("u1", "other"))
        local of = assert(st:bindings_of("u1"))
        assert.same({ "life", "mini" }, (function()
          local k = {}
          for c in pairs(of) do k[#k + 1] = c end
          table.sort(k)
          return k
        end)())
        assert.same({}, st:bindings_of("nobody"))
        assert.are.equal(3, st:binding_count())
        assert.are.equal(2, st:binding_count("life"))
        assert.are.equal(1, st:binding_delete("u1", "mini"))
        assert.are.equal(1, st:binding_delete("u1"))
        assert.are.equal(0, st:binding_delete("u1"))
        local ok, err, detail = st:binding_put("u3", "life", "x", "phone")
        assert.is_nil(ok)
        assert.matches("^binding_put: ", err)
        assert.are.equal("input", detail.kind)
      end)

      it("puts, reads back as strings and deletes meta", function()
        assert.is_nil(st:meta_get("cursor"))
        assert.is_true(st:meta_put("cursor", "abc"))
        assert.is_true(st:meta_put("count", 42))
        assert.are.equal("abc", st:meta_get("cursor"))
        assert.are.equal("42", st:meta_get("count"))
        assert.is_true(st:meta_put("cursor", nil))
        assert.is_nil(st:meta_get("cursor"))
      end)
    end)

    describe("transactions", function()
      it("commits what fn did and returns its results", function()
        local a, b = st:transaction(function(s)
          assert(s:meta_put("k", "v"))
          return 1, nil, 3
        end)
        assert.same({ 1, nil }, { a, b })
        assert.are.equal("v", st:meta_get("k"))
      end)

      it("commits when fn returns nil, err", function()
        local r, err = st:transaction(function(s)
          assert(s:meta_put("k", "kept"))
          return nil, "soft"
        end)
        assert.same({ nil, "soft" }, { r, err })
        assert.are.equal("kept", st:meta_get("k"))
      end)

      it("rolls back on an error and re-raises it as it was", function()
        local boom = { "a table error" }
        local ok, err = pcall(st.transaction, st, function(s)
          assert(s:meta_put("k", "lost"))
          assert(s:binding_put("u", "life", "2088000000000001", "user_id"))
          error(boom)
        end)
        assert.is_false(ok)
        assert.are.equal(boom, err)
        assert.is_nil(st:meta_get("k"))
        assert.are.equal(0, st:binding_count())
      end)

      it("nests: an inner failure undoes only the inner part", function()
        -- messaging/users.lua applies each plan in an inner transaction
        -- and carries on with the next when one fails.
        st:transaction(function(s)
          assert(s:meta_put("outer", "1"))
          local ok = pcall(s.transaction, s, function(inner)
            assert(inner:meta_put("inner", "1"))
            error("inner fails")
          end)
          assert.is_false(ok)
          s:transaction(function(inner) assert(inner:meta_put("inner2", "1")) end)
        end)
        assert.are.equal("1", st:meta_get("outer"))
        assert.is_nil(st:meta_get("inner"))
        assert.are.equal("1", st:meta_get("inner2"))
        -- An outer failure undoes the committed inner part too.
        pcall(st.transaction, st, function(s)
          s:transaction(function(inner) assert(inner:meta_put("gone", "1")) end)
          error("outer fails")
        end)
        assert.is_nil(st:meta_get("gone"))
        -- and the store still works afterwards.
        assert.is_true(st:meta_put("after", "1"))
      end)
    end)

    describe("campaigns", function()
      local NOW = 1700000000
      local function campaign(id, created_at)
        return { id = id, channel = "life", template = "tpl1", kind = "alipaylife", spec = '{"data":{}}',
                 status = "importing", created_at = created_at or NOW }
      end
      local function rec(line, alipay_id, fields)
        local r = { line = line, id_type = alipay_id and "user_id" or nil, alipay_id = alipay_id,
                    status = "pending", checked = true, updated_at = NOW, vars = '{"n":"' .. line .. '"}' }
        for k, v in pairs(fields or {}) do r[k] = v end
        return r
      end
      local function import(id, rows)
        return st:transaction(function(s) return assert(s:recipients_add(id, rows)) end)
      end

      it("inserts once, gets, lists newest first, updates and heartbeats", function()
        assert.is_true(st:campaign_insert(campaign("old", NOW - 10)))
        assert.is_true(st:campaign_insert(campaign("new", NOW)))
        local ok, err, detail = st:campaign_insert(campaign("new"))
        assert.is_nil(ok)
        assert.matches("^campaign_insert: ", err)
        assert.are.equal("state", detail.kind)
        assert.is_nil(st:campaign_get("none"))
        local c = assert(st:campaign_get("new"))
        assert.same({ "new", "life", "tpl1", "alipaylife", '{"data":{}}', "importing", 0, NOW },
          { c.id, c.channel, c.template, c.kind, c.spec, c.status, c.total, c.created_at })
        local list = assert(st:campaign_list())
        assert.same({ "new", "old" }, { list[1].id, list[2].id })
        assert.are.equal(0, c.lease_token)
        c.total = 3
        assert.are.equal(1, st:campaign_update(c))
        -- A claim as campaign/lease.lua makes it: the token only grows.
        assert.are.equal(1, st:campaign_acquire("new", 0, "host/1/x", NOW))
        c = st:campaign_get("new")
        assert.same({ "running", "host/1/x", NOW, NOW, 3, 1 }, { c.status, c.runner, c.heartbeat_at, c.started_at,
          c.total, c.lease_token })
        assert.is_false(st:campaign_acquire("new", 0, "host/2/y", NOW)) -- a stale token claims nothing
        assert.is_true(st:campaign_heartbeat("new", 1, NOW + 5))
        assert.is_false(st:campaign_heartbeat("new", 0, NOW + 9))
        assert.are.equal(NOW + 5, st:campaign_get("new").heartbeat_at)
        assert.is_false(st:campaign_release("new", 0, "stopped", "stale", NOW + 6))
        assert.are.equal("running", st:campaign_get("new").status)
        assert.is_true(st:campaign_release("new", 1, "stopped", "operator", NOW + 6))
        c = st:campaign_get("new")
        assert.same({ "stopped", "operator", NOW + 6, 1 }, { c.status, c.stop_reason, c.finished_at, c.lease_token })
        assert.is_nil(c.runner)
        -- The next claim keeps started_at and clears the end.
        assert.are.equal(2, st:campaign_acquire("new", 1, "host/3/z", NOW + 7))
        c = st:campaign_get("new")
        assert.same({ "running", NOW, 2 }, { c.status, c.started_at, c.lease_token })
        assert.is_nil(c.finished_at)
        assert.is_nil(c.stop_reason)
        c.status, c.stop_reason, c.runner, c.finished_at = "stopped", "operator", nil, NOW + 8
        assert.are.equal(1, st:campaign_update(c))
        assert.are.equal(2, st:campaign_get("new").lease_token) -- campaign_update never moves the token
        assert.are.equal(0, st:campaign_update(campaign("none")))
      end)

      it("imports recipients in batches, a repeated id stored as a skipped duplicate", function()
        assert(st:campaign_insert(campaign("c1")))
        assert(st:campaign_insert(campaign("c2")))
        assert.are.equal(3, import("c1", { rec(1, "2088000000000001"), rec(2, "2088000000000002"),
                                           rec(3, "2088000000000001") }))
        -- A later batch still sees the first batch's ids; other campaigns do not count.
        assert.are.equal(2, import("c1", { rec(4, "2088000000000002"),
          rec(5, nil, { status = "skipped", code = "INVALID_ID", msg = "no recipient id" }) }))
        assert.are.equal(1, import("c2", { rec(1, "2088000000000001") }))
        assert.are.equal(0, st:transaction(function(s) return s:recipients_add("c1", {}) end))
        local dup = assert(st:recipient_get("c1", 3))
        assert.same({ "skipped", "DUPLICATE", 1, "duplicate of line 1" }, { dup.status, dup.code, dup.dup_of, dup.msg })
        assert.are.equal(2, st:recipient_get("c1", 4).dup_of)
        local first = st:recipient_get("c1", 1)
        assert.same({ "2088000000000001", "user_id", "pending", true, '{"n":"1"}', 0, 0, false, 0 },
          { first.alipay_id, first.id_type, first.status, first.checked, first.vars, first.attempts,
            first.tries, first.uncertain, first.next_attempt_at })
        assert.are.equal("INVALID_ID", st:recipient_get("c1", 5).code)
        assert.is_nil(st:recipient_get("c1", 99))
        assert.same({ pending = 2, inflight = 0, sent = 0, failed = 0, skipped = 3, unknown = 0 },
          st:recipient_counts("c1"))
      end)

      it("rolls a failed import batch back whole", function()
        assert(st:campaign_insert(campaign("c1")))
        local ok = pcall(st.transaction, st, function(s)
          assert(s:recipients_add("c1", { rec(1, "2088000000000001") }))
          error("the audience broke")
        end)
        assert.is_false(ok)
        assert.is_nil(st:recipient_get("c1", 1))
      end)

      it("moves recipients through the states campaign/dispatch uses", function()
        assert(st:campaign_insert(campaign("c1")))
        local rows = {}
        for i = 1, 12 do rows[i] = rec(i, ("20880000000000%02d"):format(i)) end
        import("c1", rows)
        local T = assert(st:campaign_acquire("c1", 0, "host/1/x", NOW))
        -- Due rows come in line order (10 after 9, not after 1), up to the limit.
        local due = assert(st:recipients_due("c1", NOW * 1000, 10))
        assert.are.equal(10, #due)
        for i = 1, 10 do assert.are.equal(i, due[i].line) end
        -- Claim: read and marked pending -> inflight in one call, under the token.
        local claimed = assert(st:recipients_claim("c1", T, NOW * 1000, 4, NOW + 1))
        assert.are.equal(4, #claimed)
        for i = 1, 4 do
          assert.same({ i, "inflight", 1, T, NOW + 1 }, { claimed[i].line, claimed[i].status, claimed[i].attempts,
            claimed[i].lease_token, claimed[i].updated_at })
          assert.same({ "inflight", 1, T }, { st:recipient_get("c1", i).status, st:recipient_get("c1", i).attempts,
            st:recipient_get("c1", i).lease_token })
        end
        assert.are.equal(8, #st:recipients_due("c1", NOW * 1000, 100))
        -- Outcomes: sent; failed; a backoff (pending, not due before its time); unknown.
        local r1, r2, r3 = claimed[1], claimed[2], claimed[3]
        r1.status, r1.code, r1.updated_at = "sent", nil, NOW + 2
        r2.status, r2.code, r2.sub_code, r2.msg, r2.tries = "failed", "40004", "isv.user-not-exist", "gone", 1
        r3.status, r3.tries, r3.next_attempt_at, r3.uncertain, r3.unknown_reason = "pending", 1, NOW * 1000 + 60000,
          true, "timeout"
        assert.same({ 3, 0 }, { st:recipients_finish("c1", T, { r1, r2, r3 }) })
        -- Written once: the rows are no longer inflight.
        assert.same({ 0, 1 }, { st:recipients_finish("c1", T, { r1 }) })
        local three = st:recipient_get("c1", 3)
        assert.same({ "pending", 1, 1, NOW * 1000 + 60000, true, "timeout" }, { three.status, three.attempts,
          three.tries, three.next_attempt_at, three.uncertain, three.unknown_reason })
        assert.are.equal(8, #st:recipients_due("c1", NOW * 1000, 100)) -- 3 waits
        assert.are.equal(9, #st:recipients_due("c1", NOW * 1000 + 60000, 100))
        assert.are.equal(0, st:recipients_next_due("c1"))
        -- A crash left line 4 inflight: the next run (a newer token) marks it unknown.
        local T2 = assert(st:campaign_acquire("c1", T, "host/2/y", NOW + 3))
        assert.is_false(st:recipients_interrupted("c1", T, "runner_died", "interrupted", NOW + 3))
        assert.are.equal(1, st:recipients_interrupted("c1", T2, "runner_died", "interrupted", NOW + 3))
        local four = st:recipient_get("c1", 4)
        assert.same({ "unknown", "INTERRUPTED", true, "runner_died" }, { four.status, four.code, four.uncertain,
          four.unknown_reason })
        assert.are.equal(0, st:recipients_interrupted("c1", T2, "runner_died", "interrupted", NOW + 3))
        assert.same({ runner_died = 1 }, st:recipient_unknown_reasons("c1"))
        local codes = assert(st:recipient_codes("c1"))
        local by = {}
        for _, c in ipairs(codes) do by[c.status .. ":" .. tostring(c.code)] = c.count end
        assert.same({ ["sent:nil"] = 1, ["failed:40004"] = 1, ["unknown:INTERRUPTED"] = 1 }, by)
        assert.are.equal("isv.user-not-exist", (function()
          for _, c in ipairs(codes) do if c.status == "failed" then return c.sub_code end end
        end)())
        -- Retry by reason: only the reasons named.
        assert.are.equal(0, st:recipients_retry_unknown("c1", NOW + 4, { "timeout", "http_5xx" }))
        assert.are.equal("unknown", st:recipient_get("c1", 4).status)
        assert.are.equal(1, st:recipients_retry_unknown("c1", NOW + 4, { "runner_died" }))
        assert.are.equal("pending", st:recipient_get("c1", 4).status)
        assert.are.equal(1, st:recipients_clear_backoff("c1"))
        assert.are.equal(0, st:recipient_get("c1", 3).next_attempt_at)
        assert.are.equal(10, #st:recipients_due("c1", NOW * 1000, 100))
        -- A subscription check in flight (checked = 0) sent nothing: interrupted makes it pending, and
        -- its claim did not count an attempt.
        local r5 = st:recipient_get("c1", 5)
        r5.checked = false
        st:recipient_update("c1", r5)
        local c5 = assert(st:recipients_claim("c1", T2, NOW * 1000, 3, NOW + 5))
        assert.same({ 3, 4, 5 }, { c5[1].line, c5[2].line, c5[3].line })
        assert.same({ 2, 2, 0 }, { c5[1].attempts, c5[2].attempts, c5[3].attempts })
        assert.are.equal(0, st:recipient_get("c1", 5).attempts)
        assert.are.equal(2, st:recipients_interrupted("c1", T2, "interrupted", "interrupted", NOW + 5))
        assert.are.equal("pending", st:recipient_get("c1", 5).status)
        assert.same({ interrupted = 2 }, st:recipient_unknown_reasons("c1"))
        assert.same({ pending = 8, inflight = 0, sent = 1, failed = 1, skipped = 0, unknown = 2 },
          st:recipient_counts("c1"))
        -- Nothing pending: next_due is nil.
        local all = assert(st:recipients_claim("c1", T2, NOW * 1000, 100, NOW + 6))
        for _, r in ipairs(all) do r.status = "sent" end
        assert.same({ 8, 0 }, { st:recipients_finish("c1", T2, all) })
        assert.is_nil(st:recipients_next_due("c1"))
      end)

      it("fences every transition with the lease token", function()
        assert(st:campaign_insert(campaign("f")))
        local rows = {}
        for i = 1, 6 do rows[i] = rec(i, ("20880000000001%02d"):format(i)) end
        import("f", rows)
        local old = assert(st:campaign_acquire("f", 0, "host/1/old", NOW))
        local a = assert(st:recipients_claim("f", old, NOW * 1000, 2, NOW))
        assert.are.equal(2, #a)
        -- Another run takes over (the old one's heartbeat went stale).
        local new = assert(st:campaign_acquire("f", old, "host/2/new", NOW + 70))
        assert.is_true(new > old)
        -- The old runner: claims nothing, heartbeats fail, answers are refused.
        assert.is_false(st:recipients_claim("f", old, NOW * 1000, 2, NOW + 71))
        assert.is_false(st:campaign_heartbeat("f", old, NOW + 71))
        a[1].status = "sent"
        assert.same({ 0, 1 }, { st:recipients_finish("f", old, { a[1] }) })
        assert.are.equal("inflight", st:recipient_get("f", 1).status)
        -- The new one marks what the old one had in flight, superseded.
        assert.are.equal(2, st:recipients_interrupted("f", new, "superseded", "superseded", NOW + 71))
        assert.same({ superseded = 2 }, st:recipient_unknown_reasons("f"))
        -- A row inflight under the current token but claimed by another token is not its to finish.
        local b = assert(st:recipients_claim("f", new, NOW * 1000, 1, NOW + 72))
        assert.are.equal(3, b[1].line)
        b[1].status = "sent"
        assert.same({ 0, 1 }, { st:recipients_finish("f", old, b) })
        assert.same({ 1, 0 }, { st:recipients_finish("f", new, b) })
        -- A row that is no longer pending is never claimed again: claims see only pending rows.
        local c = assert(st:recipients_claim("f", new, NOW * 1000, 10, NOW + 73))
        assert.same({ 4, 5, 6 }, { c[1].line, c[2].line, c[3].line })
        assert.same({}, assert(st:recipients_claim("f", new, NOW * 1000, 10, NOW + 73)))
        -- A bad reasons argument is an input error.
        local ok, _, detail = st:recipients_retry_unknown("f", NOW, "superseded")
        assert.is_nil(ok)
        assert.are.equal("input", detail.kind)
      end)

      it("pages every row in line order for the export", function()
        assert(st:campaign_insert(campaign("c1")))
        local rows = {}
        for i = 1, 25 do rows[i] = rec(i, ("208800000000%04d"):format(i)) end
        import("c1", rows)
        local lines, after = {}, 0
        repeat
          local page = assert(st:recipients_page("c1", after, 10))
          for _, r in ipairs(page) do lines[#lines + 1] = r.line end
          after = page[#page] and page[#page].line or after
        until #page < 10
        assert.are.equal(25, #lines)
        for i = 1, 25 do assert.are.equal(i, lines[i]) end
        assert.same({}, st:recipients_page("none", 0, 10))
      end)

      it("deletes a campaign with its recipients, in a transaction as campaign/ does", function()
        assert(st:campaign_insert(campaign("c1")))
        assert(st:campaign_insert(campaign("c2")))
        import("c1", { rec(1, "2088000000000001") })
        import("c2", { rec(1, "2088000000000001") })
        assert.are.equal(1, st:transaction(function(s) return s:campaign_delete("c1") end))
        assert.is_nil(st:campaign_get("c1"))
        assert.is_nil(st:recipient_get("c1", 1))
        assert.are.equal(0, st:recipient_counts("c1").pending)
        assert.is_truthy(st:recipient_get("c2", 1))
        assert.are.equal(0, st:campaign_delete("c1"))
        -- The id can be used again.
        assert.is_true(st:campaign_insert(campaign("c1")))
        assert.are.equal(1, import("c1", { rec(1, "2088000000000001") }))
      end)
    end)

    describe("close", function()
      it("is idempotent; later calls fail with kind state", function()
        assert.is_true(st:close())
        assert.is_true(st:close())
        local v, err, detail = st:meta_get("k")
        assert.is_nil(v)
        assert.matches("closed", err)
        assert.are.equal("state", detail.kind)
        v, err = st:campaign_get("c1")
        assert.is_nil(v)
        assert.matches("closed", err)
      end)
    end)
  end)
end

-- The PostgreSQL server the postgres backend's specs started (if any).
describe("store backends", function()
  teardown(function() require("support.postgres").stop() end)
  it("stop the servers they started", function() end)
end)
