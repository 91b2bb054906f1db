-- Several connections on one PostgreSQL campaign (store/postgres/campaigns.lua,
-- docs/messaging.md §6.4), what issue 16's workers build on: claimers
-- never wait for each other and never get the same row (FOR UPDATE SKIP
-- LOCKED), an acquire waits for a claim in progress (the campaign row held
-- FOR KEY SHARE), answers and a heartbeat in one transaction beside
-- another's answers (no deadlock), the token it supersedes writes nothing afterwards, and a
-- campaign id created twice at once is a state error, not a constraint one.
-- Against a real server (spec/support/postgres.lua).
local helpers = require "helpers"
local pg = require "support.postgres"
local store = require "alipay.store"

teardown(function() pg.stop() end)

local NOW = 1700000000

local function campaign_with(st, id, n)
  assert(st:campaign_insert { id = id, channel = "life", template = "t", kind = "alipaylife", spec = "{}",
                              status = "created", created_at = NOW })
  local rows = {}
  for i = 1, n do
    rows[i] = { line = i, id_type = "user_id", alipay_id = ("2088%012d"):format(i), status = "pending",
                updated_at = NOW }
  end
  st:transaction(function(s) assert(s:recipients_add(id, rows)) end)
end

local function lines_of(rows)
  local lines = {}
  for i, r in ipairs(rows) do lines[i] = r.line end
  return lines
end

describe("the PostgreSQL store under concurrent connections", function()
  local u, a, b
  before_each(function()
    u = assert(pg.url())
    a = assert(store.open(u))
    b = assert(store.open(u))
    -- A claim that waited for another's locks would fail here, not hang the suite.
    assert(b:exec("t", "SET statement_timeout = 3000"))
  end)
  after_each(function()
    a:close()
    b:close()
    helpers.cleanup()
  end)

  it("a claimer does not wait for another's claim in progress, and takes other rows", function()
    campaign_with(a, "c", 20)
    local T = assert(a:campaign_acquire("c", 0, "host/1/a", NOW))
    a:transaction(function(s)
      local mine = assert(s:recipients_claim("c", T, NOW * 1000, 5, NOW))
      assert.same({ 1, 2, 3, 4, 5 }, lines_of(mine))
      -- a's transaction still holds its rows and the campaign row (FOR KEY SHARE)
      local theirs, err = b:recipients_claim("c", T, NOW * 1000, 5, NOW)
      assert.is_table(theirs, err)
      assert.same({ 6, 7, 8, 9, 10 }, lines_of(theirs))
      -- and a finish on b goes through beside it too
      for _, r in ipairs(theirs) do r.status = "sent" end
      assert.same({ 5, 0 }, { b:recipients_finish("c", T, theirs) })
    end)
    assert.same({ pending = 10, inflight = 5, sent = 5, failed = 0, skipped = 0, unknown = 0 },
      a:recipient_counts("c"))
  end)

  it("answers and a heartbeat in one transaction go through beside another's answers in progress", function()
    -- campaign/dispatch.lua's transaction: recipients_finish, then campaign_heartbeat. Two
    -- at once, each holding a share lock on the campaign row and then updating it, would
    -- deadlock; under FOR KEY SHARE the heartbeat does not wait for the other's finish.
    campaign_with(a, "c", 10)
    local T = assert(a:campaign_acquire("c", 0, "host/1/a", NOW))
    local mine = assert(a:recipients_claim("c", T, NOW * 1000, 5, NOW))
    local theirs = assert(a:recipients_claim("c", T, NOW * 1000, 5, NOW))
    for _, r in ipairs(mine) do r.status = "sent" end
    for _, r in ipairs(theirs) do r.status = "sent" end
    assert(a:exec("t", "SET statement_timeout = 3000"))
    a:transaction(function(s)
      assert.same({ 5, 0 }, { s:recipients_finish("c", T, theirs) })
      local ok, err = b:transaction(function(other)
        local w, r = other:recipients_finish("c", T, mine)
        if not w then return nil, r end
        local hb, herr = other:campaign_heartbeat("c", T, NOW + 1)
        if hb == nil then return nil, herr end
        return w == 5 and r == 0 and hb
      end)
      assert.is_true(ok, err)
    end)
    assert.same({ pending = 0, inflight = 0, sent = 10, failed = 0, skipped = 0, unknown = 0 },
      a:recipient_counts("c"))
    assert.are.equal(NOW + 1, a:campaign_get("c").heartbeat_at)
  end)

  it("an acquire waits for a claim in progress; the token it supersedes then writes nothing", function()
    campaign_with(a, "c", 6)
    local T = assert(a:campaign_acquire("c", 0, "host/1/old", NOW))
    local dir = helpers.tmpdir()
    local script, out = dir .. "/acquire.lua", dir .. "/out"
    helpers.write(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local st = assert(require("alipay.store").open(%q))
      local token, err = st:campaign_acquire("c", %d, "host/2/new", %d)
      local f = assert(io.open(%q, "w"))
      f:write(tostring(token or err))
      f:close()
      st:close()
    ]]):format(u, T, NOW + 70, out))
    local claimed
    a:transaction(function(s)
      claimed = assert(s:recipients_claim("c", T, NOW * 1000, 3, NOW))
      assert(helpers.run("lua5.4 " .. script .. " >/dev/null 2>&1 &"))
      -- Until this transaction ends, the other process's acquire waits on a lock.
      local waiting
      for _ = 1, 100 do
        local rows = assert(b:query("t", [[SELECT CAST(count(*) AS TEXT) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock']]))
        waiting = rows[1].n ~= "0"
        if waiting then break end
        assert(b:query("t", "SELECT CAST(pg_sleep(0.05) AS TEXT) AS s"))
      end
      assert.is_true(waiting, "the acquire did not wait for the claim")
      assert.are.equal(T, b:campaign_get("c").lease_token)
      assert.is_nil(io.open(out))
    end)
    local got
    for _ = 1, 200 do
      local f = io.open(out)
      if f then got = f:read("a") f:close() end
      if got and got ~= "" then break end
      assert(b:query("t", "SELECT CAST(pg_sleep(0.05) AS TEXT) AS s"))
    end
    assert.are.equal(tostring(T + 1), got)
    -- The claim committed under T; T is superseded now: nothing it does lands.
    assert.same({ 1, 2, 3 }, lines_of(claimed))
    for _, r in ipairs(claimed) do r.status = "sent" end
    assert.same({ 0, 3 }, { a:recipients_finish("c", T, claimed) })
    assert.is_false(a:recipients_claim("c", T, NOW * 1000, 3, NOW + 71))
    assert.is_false(a:recipients_interrupted("c", T, "superseded", "superseded", NOW + 71))
    assert.is_false(a:campaign_heartbeat("c", T, NOW + 71))
    assert.is_false(a:campaign_release("c", T, "completed", nil, NOW + 71))
    assert.same({ pending = 3, inflight = 3, sent = 0, failed = 0, skipped = 0, unknown = 0 },
      a:recipient_counts("c"))
    local c = a:campaign_get("c")
    assert.same({ "running", "host/2/new", T + 1 }, { c.status, c.runner, c.lease_token })
    -- The new token settles what the old one left in flight.
    assert.are.equal(3, b:recipients_interrupted("c", T + 1, "superseded", "superseded", NOW + 72))
    assert.same({ superseded = 3 }, b:recipient_unknown_reasons("c"))
  end)

  it("of two processes creating one campaign id at once, the second gets kind state", function()
    local dir = helpers.tmpdir()
    local script, out = dir .. "/insert.lua", dir .. "/out"
    helpers.write(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local st = assert(require("alipay.store").open(%q))
      local ok, err, detail = st:campaign_insert { id = "dup", channel = "l", template = "t", kind = "alipaylife",
        spec = "{}", status = "created", created_at = 1 }
      local f = assert(io.open(%q, "w"))
      f:write(ok and "inserted" or (detail.kind .. " " .. err))
      f:close()
      st:close()
    ]]):format(u, out))
    a:transaction(function(s)
      assert(s:campaign_insert { id = "dup", channel = "l", template = "t", kind = "alipaylife", spec = "{}",
                                 status = "created", created_at = 1 })
      assert(helpers.run("lua5.4 " .. script .. " >/dev/null 2>&1 &"))
      -- The other insert waits for this transaction (the id's unique entry is not committed yet).
      local waiting
      for _ = 1, 100 do
        local rows = assert(b:query("t", [[SELECT CAST(count(*) AS TEXT) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock']]))
        waiting = rows[1].n ~= "0"
        if waiting then break end
        assert(b:query("t", "SELECT CAST(pg_sleep(0.05) AS TEXT) AS s"))
      end
      assert.is_true(waiting, "the second insert did not wait")
    end)
    local got
    for _ = 1, 200 do
      local f = io.open(out)
      if f then got = f:read("a") f:close() end
      if got and got ~= "" then break end
      assert(b:query("t", "SELECT CAST(pg_sleep(0.05) AS TEXT) AS s"))
    end
    assert.are.equal("state campaign_insert: a campaign dup already exists", got)
  end)

  it("four processes claiming and answering on one campaign never get the same row, nor deadlock", function()
    local N = 600
    campaign_with(a, "c", N)
    local T = assert(a:campaign_acquire("c", 0, "host/1/x", NOW))
    local dir = helpers.tmpdir()
    local script = dir .. "/worker.lua"
    helpers.write(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local st = assert(require("alipay.store").open(%q))
      local f = assert(io.open(arg[1], "w"))
      -- All four start claiming together (a barrier), or the first might take every row.
      assert(io.open(arg[2] .. "/ready." .. arg[3], "w")):close()
      while not io.open(arg[2] .. "/go") do os.execute("sleep 0.02") end
      while true do
        local rows = assert(st:recipients_claim("c", %d, %d, 5, %d))
        if #rows == 0 then break end
        for _, r in ipairs(rows) do
          f:write(r.line, "\n")
          r.status = "sent"
        end
        -- answers and a heartbeat in one transaction, as campaign/dispatch.lua writes them
        local written, refused = st:transaction(function(s)
          local w, r = s:recipients_finish("c", %d, rows)
          if not w then error(r, 0) end
          assert(s:campaign_heartbeat("c", %d, %d) == true, "a heartbeat failed")
          return w, r
        end)
        assert(written == #rows and refused == 0, "a finish was refused")
      end
      f:close()
      st:close()
    ]]):format(u, T, NOW * 1000, NOW, T, T, NOW))
    local ok, outp = helpers.run(("cd %s && pids=; for i in 1 2 3 4; do lua5.4 %s %s/lines.$i %s $i & "
      .. "pids=\"$pids $!\"; done; n=0; while [ $(ls %s/ready.* 2>/dev/null | wc -l) -lt 4 ] && [ $n -lt 500 ]; "
      .. "do sleep 0.02; n=$((n+1)); done; touch %s/go; fail=0; for p in $pids; do wait $p || fail=1; done; "
      .. "test $fail = 0"):format(helpers.cwd(), script, dir, dir, dir, dir))
    assert.is_true(ok, outp)
    local seen, total, busy = {}, 0, 0
    for i = 1, 4 do
      local mine = 0
      for line in io.lines(("%s/lines.%d"):format(dir, i)) do
        local n = tonumber(line)
        assert.is_nil(seen[n], ("line %d claimed twice"):format(n))
        seen[n] = true
        total, mine = total + 1, mine + 1
      end
      if mine > 0 then busy = busy + 1 end
    end
    assert.are.equal(N, total)
    assert.is_true(busy >= 2, "only one worker got rows: nothing ran at once")
    assert.same({ pending = 0, inflight = 0, sent = N, failed = 0, skipped = 0, unknown = 0 },
      a:recipient_counts("c"))
    local rows = assert(a:query("t", [[SELECT CAST(count(*) AS TEXT) AS n FROM campaign_recipients
      WHERE campaign = 'c' AND attempts <> 1]]))
    assert.are.equal("0", rows[1].n)
  end)
end)
