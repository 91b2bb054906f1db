-- Campaigns (docs/messaging.md §6): one template message to a large audience,
-- quickly, without losing or duplicating anyone, with an exact account of
-- what happened to each recipient.
--
--   local campaign = require "alipay.campaign"
--   local ctx = { store = store, channels = set, registry = registry, users = users,
--                 clock = function() return os.time() end,   -- optional
--                 log = function(level, msg) end }            -- optional; never gets keys or bodies
--   local c, err, detail = campaign.create(ctx, spec)  -- validates, stores, imports the audience (streaming)
--   local summary, err, detail = c:run{ on_progress = fn, progress_every_ms = 250, retry_unknown = false,
--                                       stale_after_s = 60, signals = false, drain_s = nil }
--                                 -- on_progress(stats) returning false stops the run (resumable);
--                                 -- retry_unknown: true (every reason) or a list of reasons
--                                 -- ({"http_5xx", ...}: alipay.campaign.outcome.UNKNOWN_REASONS);
--                                 -- stale_after_s: this run's lease staleness window (default: the policy's)
--   local c, err, detail = campaign.open(ctx, id)
--   c:status()                                  -- status, counts, by_code, times | nil, err, detail
--   c:export(path_or_file, "csv" | "jsonl")     -- per recipient -> count | nil, err, detail
--   campaign.list(ctx)                          -- status tables, newest first | nil, err, detail
--   c:delete{ force = false }                   -- the campaign and its recipients -> counts | nil, err, detail
--
-- Failures follow docs/errors.md: err is a one-line string, detail the typed
-- error. detail.kind: "input" (the spec or the context is wrong, the
-- audience file is malformed), "io" (a file cannot be read or written),
-- "state" (an unknown id, a campaign that exists already, runs or holds
-- results), "store" (the database failed), or the kind of the template
-- registry's refusal ("state": not imported or marked invalid; "input": the
-- data does not fit it).
--
-- spec = { id = "spring-sale" (optional: generated), channel = "<channel code>",
--          template = "<template id>", audience = {file=} | {userids=} | {recipients=} | {followers=true}
--                                               | {crowd="<crowd code>"} (mini programs: one batch send),
--          data = {...}, page = "...", policy = {in_flight=, qps=, max_attempts=, backoff_ms=,
--          max_backoff_ms=, retry_unknown=, max_throttled_s=, stale_after_s=, drain_s=} }
-- (alipay.campaign.definition checks it; alipay.campaign.audience and
-- .importer say how audiences are read; .crowd what a crowd campaign is and
-- why a label audience is refused; .outcome says what every answer does.)
-- A crowd campaign's status and run summary carry `crowd` (crowd.report):
-- its code, the batch_msg_id and a line saying what was done.
--
-- Statuses: created -> running -> completed | stopped. A campaign whose
-- runner died (kill -9, a crash) reads "interrupted" until it is run again;
-- one whose audience import is under way in another process reads
-- "importing". Running a stopped or interrupted campaign resumes it: rows
-- left inflight become unknown (reason runner_died, or superseded when the
-- earlier runner may still be alive: its fencing token no longer counts),
-- retry_unknown makes the unknown rows of the reasons it names pending, then
-- every pending row is sent once. A run that finds its token superseded
-- stops at once and fails with detail.reason "superseded".
--
-- Signals. A library does not take SIGINT or SIGTERM from the application
-- unless asked: by default (signals = false) run installs no handler, and a
-- signal does whatever the application (or the interpreter: lua5.4 raises
-- "interrupted!" at any instruction, and the run then stops as after any
-- error) makes it do. With signals = true (what `alipay campaign` passes) or
-- a list of names ({"INT", "TERM", "HUP"}), run catches them for its duration
-- (core.signals_catch; the previous handlers come back when it returns): the
-- first stops new sends, every answer that came is recorded, those in flight
-- are waited for at most drain_s seconds (opts.drain_s, else the policy's,
-- default 5), then they become unknown (they may have been delivered). A
-- second signal ends the wait at once. The summary then has status
-- "stopped", stop_reason naming the signal, and signal = "INT" | "TERM" | ...;
-- the campaign is resumable. (A third signal ends the process by the
-- signal's default action: the way out of a process that is stuck.)
--
-- Deleting refuses a campaign that a live process runs or imports, and,
-- without force, one whose recipients hold results (sent, failed, unknown
-- or inflight): the store is the only record of who got the message.
local definition = require "alipay.campaign.definition"
local audience = require "alipay.campaign.audience"
local importer = require "alipay.campaign.importer"
local message = require "alipay.campaign.message"
local sender = require "alipay.campaign.dispatch"
local outcome = require "alipay.campaign.outcome"
local crowd = require "alipay.campaign.crowd"
local state = require "alipay.campaign.lease"
local export = require "alipay.campaign.export"
local clock = require "alipay.campaign.clock"
local core = require "alipay.core"
local store_interface = require "alipay.store"
local errors = require "alipay.errors"
local cjson = require("cjson").new()

local M = {}

local Campaign = {}
Campaign.__index = Campaign

-- ---- context ----

local function now_s(ctx)
  return math.floor((ctx.clock or os.time)())
end

local function log(ctx, level, msg)
  if ctx.log then pcall(ctx.log, level, msg) end
end

local function check_ctx(ctx)
  if type(ctx) ~= "table" then
    return errors.fail("input", "campaign: expected a context table {store=, channels=, registry=}")
  end
  for _, field in ipairs { "store", "channels", "registry" } do
    if type(ctx[field]) ~= "table" then
      return errors.fail("input", { field = field, msg = ("campaign: ctx.%s is required"):format(field) })
    end
  end
  -- Any backend will do: the campaign code keeps to the store interface.
  local lacking = store_interface.missing(ctx.store)
  if lacking[1] then
    return errors.fail("store", ("campaign: ctx.store does not implement the store interface (no %s)")
      :format(table.concat(lacking, ", ")))
  end
  return true
end

local function not_found(id)
  return errors.fail("state", { campaign = id, msg = ("campaign %s does not exist"):format(id) })
end

local function decode_spec(text)
  local ok, spec = pcall(cjson.decode, text)
  if not ok or type(spec) ~= "table" then return nil end
  -- JSON numbers come back as floats: the integer settings become integers again.
  spec.policy = definition.with_defaults(spec.policy)
  for k, v in pairs(spec.policy) do
    if type(v) == "number" and math.tointeger(v) then spec.policy[k] = math.tointeger(v) end
  end
  return spec
end

-- A campaign keeps many sends in flight, so the channel's client needs the
-- transport's second tier (docs/architecture.md §6). Refused before any
-- recipient is imported or claimed, not by a misuse error mid-run, when a
-- request would already be recorded as in flight.
local function concurrent_refusal(channel)
  local c = channel.client
  if type(c) == "table" and type(c.concurrent) == "function" and not c:concurrent() then
    return ("channel %s: its transport has request only, no submit/wait/pending; a campaign needs all "
      .. "three (alipay.transport.contract)"):format(tostring(channel.code))
  end
end

local function message_for(ctx, row, spec)
  local channel, err = ctx.channels:get(row.channel)
  if not channel then return nil, tostring(err) end
  local refusal = concurrent_refusal(channel)
  if refusal then return nil, refusal end
  if channel.kind ~= row.kind then
    return nil, ("channel %s is now a %s channel; the campaign was made for %s"):format(row.channel,
      channel.kind, row.kind)
  end
  return message.new { channel = channel, registry = ctx.registry, template = row.template,
                       data = spec.data, page = spec.page }
end

-- ---- create ----

local function import_audience(ctx, def, msg, runner)
  local store = ctx.store
  local source, err, detail = audience.open(def.audience, { life = msg.kind == "alipaylife" and msg.api or nil,
                                                            sleep_ms = clock.sleep_ms })
  if not source then return nil, err, detail end
  local ok, perr, pdetail = msg:preflight(source.columns)
  if not ok then
    source:close()
    return nil, perr, pdetail
  end
  if def.audience.userids or (def.audience.file and source.columns and source.columns.userid) then
    if type(ctx.users) ~= "table" then
      source:close()
      return errors.fail("input", { field = "users",
        msg = "campaign: ctx.users is required to resolve the audience's userids" })
    end
  end
  source, err, detail = audience.nonempty(source, def.audience)
  if not source then return errors.wrap(err, detail, "input") end
  local created, cerr, cdetail = store:campaign_insert {
    id = def.id, channel = def.channel, template = def.template, kind = msg.kind,
    spec = cjson.encode(definition.stored(def)), status = "importing", created_at = now_s(ctx),
  }
  if not created then
    source:close()
    return nil, cerr, cdetail
  end
  local row = assert(store:campaign_get(def.id))
  row.runner, row.heartbeat_at = runner, now_s(ctx)
  assert(store:campaign_update(row))
  local total, ierr, idetail = importer.run {
    store = store, campaign = def.id, source = source, message = msg, channel = msg.channel, users = ctx.users,
    now = function() return now_s(ctx) end, encode = cjson.encode,
    -- Token 0: an importing campaign has never been claimed (claims refuse it).
    progress = function() store:campaign_heartbeat(def.id, 0, now_s(ctx)) end,
  }
  source:close()
  if not total then
    pcall(store.transaction, store, function() assert(store:campaign_delete(def.id)) end)
    -- The importer stops on an audience it cannot read further, on the
    -- store, or on the follower listing: a call's failure goes on as it
    -- is (its line names the method), a local one gets the context.
    if idetail and not errors.LOCAL_KINDS[idetail.kind] then return nil, ierr, idetail end
    return errors.fail(idetail and idetail.kind or "store", { campaign = def.id,
      msg = "campaign: importing the audience failed: " .. tostring(ierr) })
  end
  row.status, row.total, row.runner, row.heartbeat_at = "created", total, nil, nil
  assert(store:campaign_update(row))
  return total
end

function M.create(ctx, spec)
  local ok, err, detail = check_ctx(ctx)
  if not ok then return nil, err, detail end
  local def
  def, err = definition.check(spec)
  if not def then return errors.fail("input", "campaign: " .. err) end
  local channel
  channel, err, detail = ctx.channels:get(def.channel)
  if not channel then
    -- The spec names a channel the configuration does not have.
    return errors.fail("input", { field = "channel", channel = def.channel,
      msg = "campaign: " .. tostring(detail and detail.msg or err) })
  end
  local refusal = concurrent_refusal(channel)
  if refusal then
    return errors.fail("config", { field = "transport", channel = def.channel, msg = "campaign: " .. refusal })
  end
  if def.page ~= nil and channel.kind ~= "alipaymini" then
    return errors.fail("input", { field = "page", msg = "campaign: page: only mini-program messages have a page" })
  end
  local existing, gerr, gdetail = ctx.store:campaign_get(def.id)
  if gerr then return nil, gerr, gdetail end
  if existing then
    return errors.fail("state", { campaign = def.id, msg = ("campaign: a campaign %s already exists"):format(def.id) })
  end
  local msg = message.new { channel = channel, registry = ctx.registry, template = def.template,
                            data = def.data, page = def.page }
  local refused, field = crowd.refusal(def.audience, channel.kind, msg.names)
  if refused then return errors.fail("input", { field = field, msg = "campaign: " .. refused }) end
  local done, total, ierr, idetail = pcall(import_audience, ctx, def, msg, state.identity())
  if not done then return errors.fail("store", "campaign: " .. tostring(total)) end
  if not total then return nil, ierr, idetail end
  log(ctx, "info", ("campaign %s created: channel %s, template %s, %d audience lines"):format(def.id,
    def.channel, def.template, total))
  return setmetatable({ ctx = ctx, id = def.id }, Campaign)
end

-- ---- open, status, list ----

function M.open(ctx, id)
  local ok, err, detail = check_ctx(ctx)
  if not ok then return nil, err, detail end
  if type(id) ~= "string" then return errors.fail("input", "campaign.open: expected a campaign id") end
  local row, gerr, gdetail = ctx.store:campaign_get(id)
  if gerr then return nil, gerr, gdetail end
  if not row then return not_found(id) end
  return setmetatable({ ctx = ctx, id = id }, Campaign)
end

local function status_of(ctx, row)
  local store = ctx.store
  local spec = decode_spec(row.spec)
  local status, reason = state.visible(row, now_s(ctx), spec and spec.policy.stale_after_s)
  return {
    id = row.id, channel = row.channel, template = row.template, kind = row.kind,
    status = status, stop_reason = reason, total = row.total,
    counts = assert(store:recipient_counts(row.id)), by_code = assert(store:recipient_codes(row.id)),
    unknown_by_reason = assert(store:recipient_unknown_reasons(row.id)),
    crowd = spec and spec.audience and spec.audience.crowd and crowd.report(store, row.id) or nil,
    created_at = row.created_at, started_at = row.started_at, finished_at = row.finished_at,
  }
end

function Campaign:status()
  local row, err, detail = self.ctx.store:campaign_get(self.id)
  if err then return nil, err, detail end
  if not row then return not_found(self.id) end
  local ok, st = pcall(status_of, self.ctx, row)
  if not ok then return errors.fail("store", tostring(st)) end
  return st
end

function M.list(ctx)
  local ok, err, detail = check_ctx(ctx)
  if not ok then return nil, err, detail end
  local rows, lerr, ldetail = ctx.store:campaign_list()
  if not rows then return nil, lerr, ldetail end
  for i, row in ipairs(rows) do
    local done, st = pcall(status_of, ctx, row)
    if not done then return errors.fail("store", tostring(st)) end
    rows[i] = st
  end
  return rows
end

function Campaign:export(target, format)
  return export.write(self.ctx.store, self.id, target, format)
end

local RESULT_STATUSES = { "sent", "failed", "unknown", "inflight" }

function Campaign:delete(opts)
  local force = opts ~= nil and opts.force == true
  local ctx, store = self.ctx, self.ctx.store
  local ok, counts, err, detail = pcall(store.transaction, store, function()
    local row, gerr, gdetail = store:campaign_get(self.id)
    if gerr then return nil, gerr, gdetail end
    if not row then return not_found(self.id) end
    if state.held(row, now_s(ctx)) then
      return errors.fail("state", { campaign = self.id, reason = row.status == "importing" and "importing" or "running",
        msg = ("campaign %s is %s in another process (%s): stop it first"):format(self.id,
          row.status == "importing" and "importing its audience" or "running", tostring(row.runner)) })
    end
    local n = assert(store:recipient_counts(self.id))
    local with_results = 0
    for _, status in ipairs(RESULT_STATUSES) do with_results = with_results + n[status] end
    if with_results > 0 and not force then
      return errors.fail("state", { campaign = self.id, reason = "holds_results",
        msg = ("campaign %s has %d recipients with results (sent %d, failed %d, unknown %d, inflight %d); "
          .. "export them first, then delete with force = true"):format(self.id, with_results, n.sent, n.failed,
          n.unknown, n.inflight) })
    end
    assert(store:campaign_delete(self.id))
    return n
  end)
  if not ok then return errors.fail("store", "campaign: deleting failed: " .. tostring(counts)) end
  if not counts then return nil, err, detail end
  log(ctx, "info", ("campaign %s deleted"):format(self.id))
  return counts
end

-- ---- run ----

local DEFAULT_SIGNALS = { "INT", "TERM" }

local INTERRUPTED_MSG = {
  runner_died = "in flight when an earlier run ended: it may have been delivered",
  superseded = "in flight when its run lost the lease to another: it may have been delivered",
}

-- retry_unknown (opts or policy) -> false | true | a set {[reason] = true}
-- | nil, error for a reason name that does not exist.
local function retry_set(value)
  if value == nil or value == false then return false end
  if value == true then return true end
  if type(value) ~= "table" then return nil, "retry_unknown: expected true, false or a list of reasons" end
  local set = {}
  for _, name in ipairs(value) do
    if not outcome.is_unknown_reason(name) then
      return nil, ("retry_unknown: unknown reason %q (known: %s)"):format(tostring(name),
        table.concat(outcome.UNKNOWN_REASONS, ", "))
    end
    set[name] = true
  end
  return set
end

-- Resume: rows an earlier run left inflight become unknown (reason
-- `orphans`), then unknown rows of the reasons retry_unknown names pending.
local function recover(store, row, retry, orphans, at)
  return store:transaction(function()
    local n, ierr = store:recipients_interrupted(row.id, row.lease_token, orphans, INTERRUPTED_MSG[orphans], at)
    if n == nil then error(ierr, 0) end
    if n == false then return false end
    local u = 0
    if retry == true then
      u = assert(store:recipients_retry_unknown(row.id, at))
    elseif retry then
      local list = {}
      for name in pairs(retry) do list[#list + 1] = name end
      table.sort(list)
      u = assert(store:recipients_retry_unknown(row.id, at, list))
    end
    assert(store:recipients_clear_backoff(row.id))
    return n, u
  end)
end

local function summary_of(self, s, status, stop_reason, counts)
  local summary = s and s:stats(status) or { id = self.id, rate = 0, qps = 0, elapsed_s = 0 }
  summary.status, summary.stop_reason, summary.counts = status, stop_reason, counts
  local total = 0
  for _, n in pairs(counts) do total = total + n end
  summary.total = total
  local left = counts.pending + counts.inflight
  if left == 0 then summary.eta_s = 0 end
  return summary
end

-- Ends a run: the campaign's status from what the store holds now.
local function end_run(self, row, s, stop_reason, on_progress)
  local ctx, store = self.ctx, self.ctx.store
  local counts = assert(store:recipient_counts(self.id))
  local status = "completed"
  if stop_reason or counts.pending + counts.inflight > 0 then status = "stopped" end
  if status == "stopped" and not stop_reason then
    stop_reason = "stopped with recipients left to send; run it again to resume"
  end
  local released, rerr = state.release(store, row, status, stop_reason, now_s(ctx))
  if released == nil then error(rerr, 0) end
  if released == false then
    error(("another run (%s) took the campaign over before this one ended; it was not marked %s")
      :format(state.superseded(store, row), status), 0)
  end
  local summary = summary_of(self, s, status, stop_reason, counts)
  summary.signal = s and s.signal or nil
  local spec = decode_spec(row.spec)
  summary.crowd = spec and spec.audience and spec.audience.crowd and crowd.report(store, self.id) or nil
  if summary.crowd then log(ctx, "info", ("campaign %s: %s"):format(self.id, summary.crowd.text)) end
  log(ctx, status == "completed" and "info" or "warn", ("campaign %s %s: %d sent, %d failed, %d skipped, %d unknown%s")
    :format(self.id, status, counts.sent, counts.failed, counts.skipped, counts.unknown,
      stop_reason and (" (" .. stop_reason .. ")") or ""))
  if on_progress then pcall(on_progress, summary) end
  return summary
end

local function finish_run(self, row, s, stop_reason, on_progress)
  local ok, summary = pcall(end_run, self, row, s, stop_reason, on_progress)
  if not ok then return errors.fail("store", "campaign: ending the run failed: " .. tostring(summary)) end
  return summary
end

-- opts.signals -> the names to catch, or nil. Misuse raises.
local function signals_of(opt)
  if opt == nil or opt == false then return nil end
  if opt == true then return DEFAULT_SIGNALS end
  if type(opt) ~= "table" or opt[1] == nil then
    error("campaign run: signals must be true, false or a list of signal names such as {\"INT\", \"TERM\"}", 3)
  end
  return opt
end

local function drain_ms_of(opt, policy)
  local s = opt
  if s == nil then s = policy.drain_s end
  if type(s) ~= "number" or s ~= s or s < 0 or s > definition.MAX_DRAIN_S then
    error(("campaign run: drain_s must be a number of seconds from 0 to %d"):format(definition.MAX_DRAIN_S), 3)
  end
  return s * 1000
end

local function run_campaign(self, opts, watched)
  local ctx, store = self.ctx, self.ctx.store
  local retry_given = opts.retry_unknown
  local retry_unknown, rerr = retry_set(retry_given)
  if retry_unknown == nil then return errors.fail("input", { field = "retry_unknown", msg = "campaign: " .. rerr }) end
  local stale_s = opts.stale_after_s
  if stale_s ~= nil and (type(stale_s) ~= "number" or stale_s < 1 or stale_s > 3600) then
    return errors.fail("input", { field = "stale_after_s",
      msg = "campaign: stale_after_s: expected 1 to 3600 seconds" })
  end
  -- The staleness window judges the earlier runner: this run's option,
  -- else the campaign's stored policy.
  local stored, gerr, gdetail = store:campaign_get(self.id)
  if gerr then return nil, gerr, gdetail end
  local stored_spec = stored and decode_spec(stored.spec)
  stale_s = stale_s or (stored_spec and stored_spec.policy.stale_after_s)
  local row, runner, orphans = state.claim(store, self.id, now_s(ctx), stale_s)
  if not row then return nil, runner, orphans end
  local spec = decode_spec(row.spec)
  if not spec then
    return finish_run(self, row, nil, "the stored definition of the campaign cannot be read", opts.on_progress)
  end
  local policy = spec.policy
  policy.stale_after_s = stale_s or policy.stale_after_s
  if retry_given == nil then retry_unknown = policy.retry_unknown == true end
  local ok, interrupted, retried = pcall(recover, store, row, retry_unknown, orphans, now_s(ctx))
  if ok and interrupted == false then
    return errors.fail("state", { campaign = self.id, reason = "superseded", msg = ("campaign %s: this run was "
      .. "superseded by %s before it sent anything"):format(self.id, state.superseded(store, row)) })
  end
  if not ok then
    pcall(state.release, store, row, "stopped", "resuming failed: " .. tostring(interrupted), now_s(ctx))
    return errors.fail("store", "campaign: resuming failed: " .. tostring(interrupted))
  end
  if interrupted > 0 or retried > 0 then
    log(ctx, "warn", ("campaign %s resumes: %d left in flight by an earlier run are now unknown (%s); "
      .. "%d unknown retried"):format(self.id, interrupted, orphans, retried))
  end
  local msg, merr = message_for(ctx, row, spec)
  if not msg then return finish_run(self, row, nil, merr, opts.on_progress) end
  local fits, ferr = msg:preflight(nil)
  if not fits then return finish_run(self, row, nil, ferr, opts.on_progress) end
  log(ctx, "info", ("campaign %s runs (in_flight %d, qps %s)"):format(self.id, policy.in_flight, policy.qps))
  local counts, cerr, cdetail = store:recipient_counts(self.id)
  if not counts then
    pcall(state.release, store, row, "stopped", cerr, now_s(ctx))
    return errors.fail(cdetail and cdetail.kind or "store", "campaign: " .. tostring(cerr))
  end
  local drain_ms = drain_ms_of(opts.drain_s, policy)
  local s = sender.new {
    store = store, campaign = row, runner = runner, message = msg, policy = policy, retry_unknown = retry_unknown,
    counts = counts, now_s = function() return now_s(ctx) end,
    on_progress = opts.on_progress, progress_every_ms = opts.progress_every_ms,
    log = function(level, text) log(ctx, level, text) end,
    signal_caught = watched and core.signal_caught or nil, drain_ms = drain_ms,
  }
  local ran, stop_reason = pcall(s.run, s)
  if ran and s.superseded then
    -- Another run holds the campaign: this one writes nothing more (the
    -- store would refuse it) and says who took over.
    local text = ("campaign %s: this run was superseded by %s (no heartbeat for more than %s s, e.g. the "
      .. "process was paused); it stopped before sending more; %d answers were not recorded here: the new run "
      .. "marks those recipients unknown (superseded)"):format(self.id, state.superseded(store, row),
      policy.stale_after_s, s.refused)
    return errors.fail("state", { campaign = self.id, reason = "superseded", refused = s.refused, msg = text })
  end
  if not ran then
    -- Record what answers still come; rows left in flight stay inflight and
    -- the next run makes them unknown.
    pcall(s.drain, s, drain_ms)
    local reason = "the run failed: " .. tostring(stop_reason)
    pcall(state.release, store, row, "stopped", reason, now_s(ctx))
    log(ctx, "error", ("campaign %s: %s"):format(self.id, reason))
    -- What raises inside a run is the store (every write is asserted) or
    -- the caller's on_progress: the run stopped, resumable.
    return errors.fail("state", { campaign = self.id, msg = "campaign: " .. reason })
  end
  return finish_run(self, row, s, stop_reason, opts.on_progress)
end

function Campaign:run(opts)
  opts = opts or {}
  local watched = signals_of(opts.signals)
  if opts.drain_s ~= nil then drain_ms_of(opts.drain_s, definition.POLICY) end -- misuse raises before any work
  if not watched then return run_campaign(self, opts, nil) end
  -- Caught from before the claim until the end is recorded: a signal at any
  -- point is only counted (the loop stops at once if it came before), and
  -- it cannot cut the store's writes short. A bad name raises here.
  local caught, err = core.signals_catch(watched)
  if not caught then return errors.fail("state", { campaign = self.id, msg = "campaign: " .. tostring(err) }) end
  local results = table.pack(pcall(run_campaign, self, opts, watched))
  core.signals_restore()
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

M.POLICY = definition.POLICY

return M
