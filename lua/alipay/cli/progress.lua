-- What a running campaign looks like on a terminal: the live bar, the
-- periodic log line, and the summary tables at the end. Everything here is
-- a pure function of the engine's stats or status tables (strings out, no
-- I/O), so the rendering is testable; `reporter` only decides when to write
-- and goes through a write function it is given.
--
--   local progress = require "alipay.cli.progress"
--   progress.bar(stats, width)      -> one line, at most `width` columns, no line break
--   progress.line(stats)            -> one log line (no line break)
--   progress.summary(status)        -> { line, ... }: totals by status, then by status + code
--   progress.duration(seconds)      -> "45s", "2:05", "1:02:03"
--   progress.count(n)               -> "20,000"
--   progress.reporter{ mode = "bar"|"lines"|"none", write = fn(text), width = 80,
--                      every_s = 5 } -> r; r:update(stats), r:finish(stats), r:note(text)
--
-- stats = {id, status, stop_reason?, total, counts = {pending, inflight, sent,
--          failed, skipped, unknown}, rate, qps, eta_s?, elapsed_s}
-- Only ASCII is produced, so a string's length is its width on screen.
local M = {}

-- Cells of the bar: a richer layout must leave a bar worth reading, else
-- the next one (fewer words, longer bar) is drawn.
local MIN_BAR, MAX_BAR = { 20, 8, 8, 8, 10, 10 }, 40

-- ---- small formats ----

function M.count(n)
  n = math.floor(tonumber(n) or 0)
  local s = tostring(math.abs(n))
  -- Groups of three from the right: "20000" -> "20,000".
  local grouped = s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  return (n < 0 and "-" or "") .. grouped
end

function M.duration(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds == math.huge or seconds < 0 then
    return "?"
  end
  local s = math.floor(seconds + 0.5)
  if s < 60 then return s .. "s" end
  local h, m = s // 3600, (s % 3600) // 60
  if h == 0 then return ("%d:%02d"):format(m, s % 60) end
  return ("%d:%02d:%02d"):format(h, m, s % 60)
end

local function rate_text(r)
  r = tonumber(r) or 0
  if r >= 100 or r == math.floor(r) then return ("%d/s"):format(math.floor(r + 0.5)) end
  return ("%.1f/s"):format(r)
end

local function counts_of(stats)
  local c = stats.counts or {}
  local n = {}
  for _, k in ipairs { "pending", "inflight", "sent", "failed", "skipped", "unknown" } do
    n[k] = math.floor(tonumber(c[k]) or 0)
  end
  n.done = n.sent + n.failed + n.skipped + n.unknown
  n.total = math.floor(tonumber(stats.total) or 0)
  -- Before the audience is read the total is unknown; never show 0 of 0.
  if n.total < n.done + n.pending + n.inflight then n.total = n.done + n.pending + n.inflight end
  return n
end

local function fraction(n)
  if n.total <= 0 then return 0 end
  return math.min(1, n.done / n.total)
end

local function percent(n)
  return ("%3d%%"):format(math.floor(fraction(n) * 100))
end

-- ---- the bar ----

local function bar_body(n, width)
  local filled = math.floor(fraction(n) * width + 0.5)
  return "[" .. ("#"):rep(filled) .. ("."):rep(width - filled) .. "]"
end

local function eta_text(stats)
  if stats.status and stats.status ~= "running" then return stats.status end
  if stats.eta_s then return "ETA " .. M.duration(stats.eta_s) end
  return "ETA ?"
end

-- Layouts from the richest to the barest: the first that leaves room for a
-- bar of MIN_BAR[i] cells is drawn, so a narrow terminal loses detail, not the
-- bar, and nothing ever wraps (a wrapped line cannot be redrawn with \r).
-- The words given, skipping nils (the qps limit is optional), joined.
local function words(...)
  local kept = {}
  for i = 1, select("#", ...) do
    local w = select(i, ...)
    if w then kept[#kept + 1] = w end
  end
  return table.concat(kept, " ")
end

-- reserve: the text sized for the largest values it will show (sent and
-- pending up to the total, a rate of 6 characters, an ETA of 9), which is
-- what the bar's length is computed from, so the bar does not shift while
-- the numbers grow (failed, skipped and unknown are usually small: when they
-- gain a digit, the bar may lose a cell).
local function layouts(stats, n, reserve)
  local sent, pending = n.sent, n.pending + n.inflight
  local rate, eta = rate_text(stats.rate), eta_text(stats)
  if reserve then
    sent, pending = n.total, n.total
    rate, eta = ("%6s"):format(rate), ("%-9s"):format(eta)
  end
  local done = M.count(reserve and n.total or n.done) .. "/" .. M.count(n.total)
  local limit = stats.qps and rate_text(stats.qps)
  local max = limit and ("max " .. limit:gsub("/s$", ""))
  return {
    words(done, "sent " .. M.count(sent), "failed " .. M.count(n.failed), "skipped " .. M.count(n.skipped),
      "unknown " .. M.count(n.unknown), "pending " .. M.count(pending), "|", rate,
      limit and ("limit " .. limit), eta),
    -- About 80 columns: every count, in plain digits (the percentage stands
    -- for the totals), with the limit if it fits.
    words("sent " .. sent, "fail " .. n.failed, "skip " .. n.skipped, "unk " .. n.unknown,
      "pend " .. pending, rate, max, eta),
    words("sent " .. sent, "fail " .. n.failed, "skip " .. n.skipped, "unk " .. n.unknown,
      "pend " .. pending, rate, eta),
    words("sent " .. sent, "fail " .. n.failed, "pend " .. pending, rate, eta),
    words(done, rate, eta),
    "",
  }
end

function M.bar(stats, width)
  width = math.floor(tonumber(width) or 80)
  local n = counts_of(stats)
  local head = percent(n)
  local shown, reserved = layouts(stats, n, false), layouts(stats, n, true)
  for i, tail in ipairs(reserved) do
    local room = width - #head - 1 - 2 - (tail ~= "" and #tail + 1 or 0) -- "<pct> [<cells>] <text>"
    if room >= MIN_BAR[i] then
      return head .. " " .. bar_body(n, math.min(room, MAX_BAR)) .. (shown[i] ~= "" and (" " .. shown[i]) or "")
    end
  end
  -- Narrower than any bar: the percentage alone, cut to fit.
  return head:sub(1, math.max(width, 0))
end

-- ---- the log line ----

function M.line(stats)
  local n = counts_of(stats)
  local parts = {
    ("campaign %s %s:"):format(tostring(stats.id or "?"), tostring(stats.status or "running")),
    ("%s/%s (%s)"):format(M.count(n.done), M.count(n.total), percent(n):gsub("^%s+", "")),
    ("sent %s, failed %s, skipped %s, unknown %s, pending %s, in flight %s,"):format(
      M.count(n.sent), M.count(n.failed), M.count(n.skipped), M.count(n.unknown),
      M.count(n.pending), M.count(n.inflight)),
    rate_text(stats.rate) .. (stats.qps and (" (limit " .. rate_text(stats.qps) .. ")") or "") .. ",",
  }
  if stats.eta_s and (stats.status == nil or stats.status == "running") then
    parts[#parts + 1] = "ETA " .. M.duration(stats.eta_s) .. ","
  end
  parts[#parts + 1] = "elapsed " .. M.duration(stats.elapsed_s or 0)
  if stats.stop_reason then parts[#parts + 1] = "(stopped: " .. tostring(stats.stop_reason) .. ")" end
  return table.concat(parts, " ")
end

-- ---- the summary ----

local STATUS_ORDER = { "sent", "failed", "skipped", "unknown", "pending", "inflight" }

local function table_lines(header, rows)
  local widths = {}
  for i, h in ipairs(header) do widths[i] = #h end
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i], #cell) end
  end
  local function render(row)
    local cells = {}
    for i, cell in ipairs(row) do
      -- The last column (counts) is right-aligned, the others left-aligned.
      local fmt = i == #row and ("%" .. widths[i] .. "s") or ("%-" .. widths[i] .. "s")
      cells[i] = fmt:format(cell)
    end
    return "  " .. table.concat(cells, "  ")
  end
  local lines = { render(header) }
  for _, row in ipairs(rows) do lines[#lines + 1] = render(row) end
  return lines
end

local function code_rows(by_code)
  local rows = {}
  for _, r in ipairs(by_code or {}) do
    local code = r.code ~= nil and tostring(r.code) or ""
    local sub = r.sub_code ~= nil and tostring(r.sub_code) or ""
    rows[#rows + 1] = { status = tostring(r.status or "?"), code = code, sub_code = sub,
      count = math.floor(tonumber(r.count) or 0) }
  end
  -- Most frequent first; ties in a stable, readable order.
  table.sort(rows, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    if a.status ~= b.status then return a.status < b.status end
    if a.code ~= b.code then return a.code < b.code end
    return a.sub_code < b.sub_code
  end)
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { r.status, r.code == "" and "-" or r.code, r.sub_code == "" and "-" or r.sub_code, M.count(r.count) }
  end
  return out
end

function M.summary(status)
  local n = counts_of(status)
  local lines = {}
  local head = ("campaign %s: %s"):format(tostring(status.id or "?"), tostring(status.status or "?"))
  if status.stop_reason then head = head .. " (" .. tostring(status.stop_reason) .. ")" end
  lines[1] = head
  if status.channel or status.template then
    lines[#lines + 1] = ("  channel %s, template %s"):format(tostring(status.channel or "?"),
      tostring(status.template or "?"))
  end
  lines[#lines + 1] = ""
  local rows = {}
  for _, k in ipairs(STATUS_ORDER) do
    if n[k] > 0 or k == "sent" or k == "failed" then rows[#rows + 1] = { k, M.count(n[k]) } end
  end
  rows[#rows + 1] = { "total", M.count(n.total) }
  for _, l in ipairs(table_lines({ "status", "recipients" }, rows)) do lines[#lines + 1] = l end
  local by_code = code_rows(status.by_code)
  if #by_code > 0 then
    lines[#lines + 1] = ""
    for _, l in ipairs(table_lines({ "status", "code", "sub_code", "recipients" }, by_code)) do
      lines[#lines + 1] = l
    end
  end
  return lines
end

-- ---- when to write ----

local Reporter = {}
Reporter.__index = Reporter

-- Bar: redrawn in place on every update (\r, then erase to the end of the
-- line in case the new text is shorter). Lines: one every `every_s`
-- seconds of the campaign's own elapsed time, so the reporter needs no clock.
function Reporter:update(stats)
  if self.mode == "bar" then
    self.write("\r" .. M.bar(stats, self.width - 1) .. "\27[K")
    self.drawn = true
  elseif self.mode == "lines" then
    local t = tonumber(stats.elapsed_s) or 0
    if self.last_t == nil or t - self.last_t >= self.every_s then
      self.last_t = t
      self:write_line(M.line(stats))
    end
  end
end

function Reporter:write_line(text)
  self.last_line = text
  self.write(text .. "\n")
end

-- The final state; in lines mode not twice when the last update already
-- wrote it.
function Reporter:finish(stats)
  if self.mode == "bar" then
    if stats then self.write("\r" .. M.bar(stats, self.width - 1) .. "\27[K") end
    if stats or self.drawn then self.write("\n") end
    self.drawn = false
  elseif self.mode == "lines" and stats then
    local text = M.line(stats)
    if text ~= self.last_line then self:write_line(text) end
  end
end

-- A message from elsewhere (the engine's log) between progress updates: on
-- its own line, above the bar, which the next update draws again.
function Reporter:note(text)
  if self.mode == "bar" and self.drawn then
    self.write("\r\27[K" .. text .. "\n")
  else
    self.write(text .. "\n")
  end
end

M.MODES = { bar = true, lines = true, none = true }

function M.reporter(opts)
  opts = opts or {}
  local mode = opts.mode or "lines"
  if not M.MODES[mode] then error("progress.reporter: mode must be bar, lines or none", 2) end
  return setmetatable({
    mode = mode, write = opts.write or function(s) io.stderr:write(s) end,
    width = math.max(tonumber(opts.width) or 80, 2), every_s = tonumber(opts.every_s) or 5,
  }, Reporter)
end

return M
