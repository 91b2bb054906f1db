-- The send loop of one campaign run: up to policy.in_flight requests on the
-- channel's client (client:submit/wait), paced by the limiter, each
-- recipient's state written to the store around its request.
--
--   local sender = require "alipay.campaign.dispatch"
--   local s = sender.new{ store =, campaign = c (store row; c.lease_token: the run's token), runner =,
--     message = msg, policy =, retry_unknown =, counts = {status = n}, now_s = fn, on_progress = fn,
--     progress_every_ms =, log = fn, signal_caught = fn, drain_ms = n }
--   local stop_reason = s:run()          -- nil when every recipient was handled
--   s.superseded                         -- true when another run took the campaign over: this one stopped
--   s.refused                            -- answers the store refused (superseded) or abandoned in flight
--   s.signal                             -- "INT", "TERM", ... when a signal stopped the run
--   s:drain(max_ms) -> requests still in flight   after run() raised
--   s:stats(status) -> the progress table of campaign.run
--
-- The order that makes a crash harmless: a batch of rows is read and marked
-- inflight (attempts + 1) in ONE transaction (store:recipients_claim) and
-- COMMITTED, and only then submitted; answers are committed once per wait
-- round (store:recipients_finish). Both name the run's fencing token: once
-- another run has claimed the campaign, the claim marks nothing (so no
-- request leaves) and no answer is written; the run stops and says so. A
-- process killed at any point leaves each recipient either pending (never
-- sent), inflight (maybe sent: the next run makes it unknown), or final.
--
-- Signals (signal_caught: core.signal_caught, when the caller catches them
-- with core.signals_catch): the first stops new sends; answers go on being
-- recorded while requests are in flight, for at most drain_ms; then those
-- still in flight are marked unknown (they may have been delivered) and run()
-- returns. A second signal ends the drain at once, after recording what has
-- come. The loop looks at the signal only between its steps, so no answer
-- that has been received is ever dropped (lua5.4's own SIGINT error could
-- strike anywhere, e.g. just after the engine returned finished transfers).
--
-- Memory is bounded by in_flight: pending rows are read from the store in
-- line order, as many as can be sent at once, never the whole audience.
--
-- A circuit breaker: when the gateway is down, each recipient would spend
-- its attempts and end failed (or, on timeouts, unknown) one after the
-- other until the whole audience is gone. After a streak of transient
-- failures with no working answer in between (streak_limit: 3 x in_flight,
-- at least 10) the run stops instead, the rest still pending.
--
-- Throttling never uses up a recipient's attempts (the request did not
-- execute), so a quota that stays exhausted (Alipay also limits calls per
-- day) would keep a campaign retrying at its lowest rate forever. When every
-- answer for policy.max_throttled_s has been a throttle, the run stops,
-- resumable, and says so.
local definition = require "alipay.campaign.definition"
local clock = require "alipay.campaign.clock"
local limiter_mod = require "alipay.campaign.limiter"
local outcome = require "alipay.campaign.outcome"
local classify = require "alipay.classify"
local errors = require "alipay.errors"
local cjson = require("cjson.safe").new()

local M = {}

local MAX_WAIT_MS = 200        -- the loop wakes at least this often (progress, heartbeat)
local MAX_IDLE_SLEEP_MS = 1000 -- nothing in flight: sleep at most this long before looking again
local SIGNAL_SLEEP_MS = 50     -- while signals are watched, idle sleeps look at them this often
local HEARTBEAT_MS = 2000      -- at most; a quarter of the staleness window when that is shorter
local RATE_WINDOW_MS = 5000
local BUCKET_MS = 100

local Sender = {}
Sender.__index = Sender

function M.new(opts)
  local now = clock.now_ms()
  local policy = opts.policy
  local self = setmetatable({
    store = opts.store, campaign = opts.campaign, id = opts.campaign.id, runner = opts.runner,
    token = opts.campaign.lease_token, superseded = false, refused = 0,
    heartbeat_ms = math.min(HEARTBEAT_MS, (policy.stale_after_s or 60) * 1000 / 4),
    message = opts.message, client = opts.message.channel.client, policy = policy,
    retry_unknown = opts.retry_unknown, counts = opts.counts, now_s = opts.now_s,
    on_progress = opts.on_progress, progress_every_ms = opts.progress_every_ms or 250,
    log = opts.log or function() end,
    limiter = limiter_mod.new { qps = policy.qps, now_ms = now },
    jobs = {}, in_flight = 0,
    started_ms = now, last_progress_ms = -math.huge, last_heartbeat_ms = now,
    buckets = {}, stop_reason = nil,
    streak = 0, streak_limit = math.max(10, 3 * policy.in_flight),
    throttled_since_ms = nil, -- the first throttle after the last answer that was not one
    signal_caught = opts.signal_caught, drain_ms = opts.drain_ms or definition.POLICY.drain_s * 1000,
    signal = nil, drain_deadline_ms = nil, -- set by the first signal
  }, Sender)
  return self
end

-- ---- bookkeeping ----

function Sender:move(from, to)
  if from == to then return end
  self.counts[from] = self.counts[from] - 1
  self.counts[to] = self.counts[to] + 1
end

function Sender:stop(reason)
  if not self.stop_reason then
    self.stop_reason = reason
    self.log("warn", ("campaign %s stops: %s"):format(self.id, reason))
  end
end

-- Another run holds the campaign now: nothing more leaves from this one.
function Sender:supersede()
  if self.superseded then return end
  self.superseded = true
  -- Not logged here: campaign.run fails with the one line that says who took over.
  self.stop_reason = "superseded: another run took this campaign over"
end

function Sender:finished_one(now)
  local k = math.floor(now / BUCKET_MS)
  self.buckets[k] = (self.buckets[k] or 0) + 1
end

-- Recipients finished per second over the last few seconds.
function Sender:rate(now)
  local newest = math.floor(now / BUCKET_MS)
  local oldest = newest - RATE_WINDOW_MS / BUCKET_MS + 1
  local sum = 0
  for k, n in pairs(self.buckets) do
    if k < oldest then self.buckets[k] = nil else sum = sum + n end
  end
  local window_s = math.min(RATE_WINDOW_MS, math.max(now - self.started_ms, BUCKET_MS)) / 1000
  return sum / window_s
end

function Sender:stats(status, now)
  now = now or clock.now_ms()
  local counts = {}
  for k, v in pairs(self.counts) do counts[k] = v end
  local total = 0
  for _, v in pairs(counts) do total = total + v end
  local rate = self:rate(now)
  local left = counts.pending + counts.inflight
  return {
    id = self.id, status = status, stop_reason = self.stop_reason, total = total, counts = counts,
    rate = math.floor(rate * 10 + 0.5) / 10, qps = math.floor(self.limiter.rate * 10 + 0.5) / 10,
    eta_s = (rate > 0 and left > 0) and math.ceil(left / rate) or (left == 0 and 0 or nil),
    elapsed_s = math.floor((now - self.started_ms) / 100 + 0.5) / 10,
  }
end

-- on_progress may return false to stop the run (no new sends; those in
-- flight are awaited), e.g. when an operator asks a server to stop.
function Sender:progress(now, force)
  if not self.on_progress then return end
  if not force and now - self.last_progress_ms < self.progress_every_ms then return end
  self.last_progress_ms = now
  if self.on_progress(self:stats("running", now)) == false then
    self:stop("stopped by the caller (on_progress returned false); run it again to resume")
  end
end

function Sender:rules(now)
  local p = self.policy
  return { max_attempts = p.max_attempts, backoff_ms = p.backoff_ms, max_backoff_ms = p.max_backoff_ms,
           retry_unknown = self.retry_unknown, now_ms = now, template_id = self.message.template_id }
end

-- ---- starting requests ----

local function recipient_of(row)
  return { id_type = row.id_type, id = row.alipay_id }
end

local function vars_of(row)
  if not row.vars then return nil end
  return cjson.decode(row.vars)
end

-- Refused locally (the row's data no longer fits, e.g. the template was
-- imported again with other keywords): skipped, nothing was sent. `detail`
-- is the refusal's typed error.
local function unclaimed(row)
  local update = {}
  for k, v in pairs(row) do update[k] = v end
  -- The claim counted a send attempt for a checked row; none left.
  if row.checked then update.attempts = row.attempts - 1 end
  return update
end

local function put_back(row)
  local back = unclaimed(row)
  back.status = "pending"
  return back
end

local function refused(row, detail)
  local update = unclaimed(row)
  update.status, update.sub_code, update.msg = "skipped", nil, tostring(detail.msg or detail)
  update.code = detail.reason == "recipient" and "INVALID_ID" or "INVALID_DATA"
  return update
end

-- A row to send -> job | nil, update (a row to write instead) | nil, nil, stop reason
function Sender:prepare_send(row)
  local msg = self.message
  local data, page = msg:render(vars_of(row))
  local req, ctx, detail
  if data then
    req, ctx, detail = msg:prepare(recipient_of(row), data, page)
  else
    detail = errors.new("invalid", { reason = "data", msg = page })
  end
  if req then return { kind = "send", row = row, req = req, ctx = ctx } end
  local class = classify.classify(detail)
  if class == "template" or class == "configuration" then
    return nil, nil, ("the template can no longer be used: %s"):format(tostring(detail.msg or detail))
  end
  return nil, refused(row, detail)
end

-- Claims due rows (pending -> inflight under the run's token, read and
-- marked in one transaction) and starts as many requests as slots and
-- tokens allow.
function Sender:fill(now)
  if self.stop_reason then return end
  local n = math.min(self.policy.in_flight - self.in_flight, self.limiter:available(now))
  if n <= 0 then return end
  local now_s = self.now_s()
  local rows, err = self.store:recipients_claim(self.id, self.token, math.floor(now), n, now_s)
  if rows == false then return self:supersede() end
  if not rows then error(err, 0) end
  if #rows == 0 then return end
  local jobs, updates = {}, {}
  for _, row in ipairs(rows) do
    if self.stop_reason then
      updates[#updates + 1] = put_back(row) -- claimed, not sent
    elseif row.checked then
      local job, update, stop = self:prepare_send(row)
      if stop then
        self:stop(stop)
        -- nothing more leaves once the campaign stops
        for _, j in ipairs(jobs) do updates[#updates + 1] = put_back(j.row) end
        jobs = {}
        updates[#updates + 1] = put_back(row)
      elseif job then
        jobs[#jobs + 1] = job
      else
        updates[#updates + 1] = update
      end
    else
      local req, ctx, detail = self.message:prepare_check(recipient_of(row))
      if req then
        jobs[#jobs + 1] = { kind = "check", row = row, req = req, ctx = ctx }
      else
        updates[#updates + 1] = refused(row, detail)
      end
    end
  end
  for _ = 1, #rows do self:move("pending", "inflight") end
  if #updates > 0 then
    for _, row in ipairs(updates) do row.updated_at = now_s end
    local written, refused_n = self.store:recipients_finish(self.id, self.token, updates)
    if not written then error(refused_n, 0) end
    if refused_n > 0 then
      -- Superseded between the claim and now: nothing of this batch leaves.
      self.refused = self.refused + refused_n
      self:supersede()
      return
    end
    for _, row in ipairs(updates) do self:move("inflight", row.status) end
  end
  self.limiter:take(#jobs)
  local failed_to_start = {}
  for _, job in ipairs(jobs) do self:submit(job, now, failed_to_start) end
  if #failed_to_start > 0 then self:handle(failed_to_start) end
end

function Sender:submit(job, now, failed_to_start)
  local id, err = self.client:submit(job.req)
  job.sent_at = now
  self.in_flight = self.in_flight + 1
  if not id then
    -- The transfer never started: certainly not executed.
    id = {}
    failed_to_start[#failed_to_start + 1] = { id = id, err = errors.new("transport", {
      msg = "the request could not be started: " .. tostring(err), reason = "submit", unknown = false }) }
  end
  self.jobs[id] = job
end

-- ---- answers ----

function Sender:handle(done)
  local now = clock.now_ms()
  local rules = self:rules(now)
  local changes = {}
  for _, d in ipairs(done) do
    local job = self.jobs[d.id]
    if job then
      self.jobs[d.id] = nil
      self.in_flight = self.in_flight - 1
      local row, effects
      if job.kind == "send" then
        -- outcome reads the typed error: the detail (third value).
        local node, _, detail = self.message:finish(job.ctx, d.res, d.err, d.detail)
        row, effects = outcome.send(job.row, node, detail, rules)
      else
        local subscription, _, detail = self.message:finish_check(job.ctx, d.res, d.err, d.detail)
        row, effects = outcome.check(job.row, subscription, detail, rules)
      end
      if effects.throttled and self.limiter:throttled(now, job.sent_at) then
        self.log("info", ("campaign %s: throttled, rate now %.1f/s"):format(self.id, self.limiter.rate))
      end
      self:count_throttled(effects, now)
      if effects.stop then self:stop(effects.stop) end
      self:count_streak(effects, row)
      if effects.finished then self:finished_one(now) end
      changes[#changes + 1] = { from = job.row.status, row = row }
    end
  end
  if #changes == 0 then return end
  local now_s = self.now_s()
  local beat = now - self.last_heartbeat_ms >= self.heartbeat_ms
  local rows = {}
  for i, c in ipairs(changes) do
    c.row.updated_at = now_s
    rows[i] = c.row
  end
  local written, refused_n, current = self.store:transaction(function(store)
    local w, r = store:recipients_finish(self.id, self.token, rows)
    if not w then error(r, 0) end
    local alive = true
    if beat and r == 0 then
      local hb, herr = store:campaign_heartbeat(self.id, self.token, now_s)
      if hb == nil then error(herr, 0) end
      alive = hb
    end
    return w, r, alive
  end)
  if beat then self.last_heartbeat_ms = now end
  if refused_n > 0 or not current then
    -- A newer run owns these rows now: their answers are not recorded here.
    self.refused = self.refused + refused_n
    self:supersede()
    return
  end
  if written ~= #rows then error(("recipients_finish wrote %d of %d rows"):format(written, #rows), 0) end
  for _, c in ipairs(changes) do self:move(c.from, c.row.status) end
end

function Sender:count_streak(effects, row)
  if effects.answered then
    self.streak = 0
  elseif effects.transient then
    self.streak = self.streak + 1
    if self.streak >= self.streak_limit then
      self:stop(("the gateway keeps failing: %d answers in a row were network or platform errors (last: %s %s);"
        .. " run the campaign again once it answers"):format(self.streak, tostring(row.code), tostring(row.sub_code
        or row.msg or "")))
    end
  end
end

function Sender:count_throttled(effects, now)
  if not effects.throttled then
    if effects.answered or effects.transient then self.throttled_since_ms = nil end
    return
  end
  self.throttled_since_ms = self.throttled_since_ms or now
  local limit_s = self.policy.max_throttled_s
  if now - self.throttled_since_ms >= limit_s * 1000 then
    self:stop(("every answer for %d s was a throttle (40005; rate down to %.1f/s): the app's call quota may "
      .. "be used up for today; run the campaign again later"):format(limit_s, self.limiter.rate))
  end
end

function Sender:heartbeat(now)
  if now - self.last_heartbeat_ms < self.heartbeat_ms then return end
  local current, err = self.store:campaign_heartbeat(self.id, self.token, self.now_s())
  if current == nil then error(err, 0) end
  self.last_heartbeat_ms = now
  if not current then self:supersede() end
end

-- ---- the loop ----

-- How long to wait for answers before looking for more work.
function Sender:wait_ms(now)
  if self.drain_deadline_ms then return math.max(1, math.min(MAX_WAIT_MS, self.drain_deadline_ms - now)) end
  if self.stop_reason or self.in_flight >= self.policy.in_flight then return MAX_WAIT_MS end
  return math.max(1, math.min(MAX_WAIT_MS, self.limiter:next_token_ms(now)))
end

-- Sleeps ms, in slices while signals are watched, so that one is seen soon.
function Sender:sleep(ms)
  if not self.signal_caught then return clock.sleep_ms(ms) end
  while ms > 0 and not self.signal_caught() do
    clock.sleep_ms(math.min(ms, SIGNAL_SLEEP_MS))
    ms = ms - SIGNAL_SLEEP_MS
  end
end

-- Nothing in flight: sleeps until the next pending row is due (or a token
-- comes). -> false when no row is pending at all.
function Sender:idle(now)
  if self.counts.pending == 0 then return false end
  local due = assert(self.store:recipients_next_due(self.id))
  if not due then return false end
  local ms = math.max(due - now, self.limiter:next_token_ms(now), 1)
  self:sleep(math.min(ms, MAX_IDLE_SLEEP_MS))
  return true
end

-- -> true when a signal ends the run now: a second one, or the drain that
-- the first one started is over. The first stops new sends.
function Sender:signalled(now)
  if not self.signal_caught then return false end
  local name, count = self.signal_caught()
  if not name then return false end
  if not self.signal then
    self.signal, self.drain_deadline_ms = name, now + self.drain_ms
    self:stop(("interrupted by SIG%s%s; run it again to resume"):format(name, name == "INT" and " (Ctrl-C)" or ""))
  end
  return count >= 2 or now >= self.drain_deadline_ms
end

function Sender:signalled_twice()
  if not self.signal_caught then return false end
  local _, count = self.signal_caught()
  return (count or 0) >= 2
end

-- The end of a drain: the requests still in flight may have been delivered,
-- so their recipients become unknown (reason `interrupted`, code INTERRUPTED,
-- uncertain); a subscription check in flight sent nothing, so its recipient
-- goes back to pending. Written like handle's answers, fenced by the run's
-- token. The engine's transfers are forgotten; an answer that comes later is
-- ignored.
function Sender:abandon()
  local rows, now_s = {}, self.now_s()
  for id, job in pairs(self.jobs) do
    local row
    if job.kind == "send" then
      row = {}
      for k, v in pairs(job.row) do row[k] = v end
      row.status, row.code, row.sub_code, row.uncertain = "unknown", "INTERRUPTED", nil, true
      row.msg = ("in flight when the run was interrupted by SIG%s and no answer came within the drain: it may "
        .. "have been delivered"):format(tostring(self.signal))
      row.next_attempt_at = 0
      row.unknown_reason = "interrupted"
    else
      row = put_back(job.row)
    end
    row.updated_at = now_s
    rows[#rows + 1] = row
    self.jobs[id] = nil
    self.in_flight = self.in_flight - 1
  end
  if #rows == 0 then return end
  local written, refused_n = self.store:recipients_finish(self.id, self.token, rows)
  if not written then error(refused_n, 0) end
  if refused_n > 0 then
    -- Superseded meanwhile: the new run marks these rows itself.
    self.refused = self.refused + refused_n
    self:supersede()
    return
  end
  local unknown = 0
  for _, row in ipairs(rows) do
    self:move("inflight", row.status)
    if row.status == "unknown" then unknown = unknown + 1 end
  end
  self.log("warn", ("campaign %s: %d requests still in flight after the %.1f s drain are unknown (they may have "
    .. "been delivered)"):format(self.id, unknown, self.drain_ms / 1000))
end

-- After the loop raised (a store error, an error in on_progress, an
-- interrupt): records the answers of the requests still in flight, for at
-- most max_ms, so that fewer of them end unknown. Raises if the store does.
-- The engine having nothing pending ends it too: the answers of the jobs
-- left were lost with the error (nothing more can come for them).
function Sender:drain(max_ms)
  self:stop("the run was interrupted")
  local deadline = clock.now_ms() + max_ms
  while self.in_flight > 0 and clock.now_ms() < deadline and self.client:pending() > 0 and not self:signalled_twice() do
    local done = self.client:wait(math.max(1, math.min(MAX_WAIT_MS, deadline - clock.now_ms())))
    if #done > 0 then self:handle(done) end
  end
  return self.in_flight
end

function Sender:run()
  while true do
    if self.superseded then
      -- Stop at once: the new run marks what this one has in flight unknown
      -- (superseded); their answers could not be recorded anyway.
      self.refused = self.refused + self.in_flight
      break
    end
    local now = clock.now_ms()
    if self:signalled(now) then
      -- What has come already is recorded, not abandoned: a last look
      -- that does not wait.
      local done = self.in_flight > 0 and self.client:wait(0) or {}
      if #done > 0 then self:handle(done) end
      self:abandon()
      break
    end
    self.limiter:tick(now)
    self:fill(now)
    if self.in_flight > 0 then
      local done = self.client:wait(self:wait_ms(now))
      if #done > 0 then self:handle(done) end
    elseif self.stop_reason or not self:idle(now) then
      break
    end
    now = clock.now_ms()
    self:heartbeat(now)
    self:progress(now)
  end
  return self.stop_reason
end

return M
