-- What one scenario measured: its counts (soak/tally.lua), the campaign runs
-- it made (every `alipay campaign run|resume` child), problems (a scenario
-- that could not run or finish, a contract the CLI broke: each makes the
-- soak fail) and notes (what it saw, printed as is).
--
--   local outcome = require "soak.outcome"
--   local o = outcome.new("resend")
--   o:ran(n); o:counted(label, result); o:problem(fmt, ...); o:note(fmt, ...)
--   o.runs, o.tally, o.problems, o.notes
local tally = require "soak.tally"

local M = {}

local Outcome = {}
Outcome.__index = Outcome

function M.new(name)
  return setmetatable({ name = name, runs = 0, tally = tally.empty(), problems = {}, notes = {} }, Outcome)
end

function Outcome:ran(n)
  self.runs = self.runs + (n or 1)
end

-- One campaign's result under `label`, with a line saying what it found.
function Outcome:counted(label, result)
  tally.add(self.tally, result)
  local statuses = {}
  for status, n in pairs(result.statuses) do statuses[#statuses + 1] = status .. " " .. n end
  table.sort(statuses)
  self:note("%s: lost=%d duplicated=%d of %d (%s)", label, result.lost, result.duplicated, result.checked,
    table.concat(statuses, ", "))
  for _, e in ipairs(result.examples) do self:note("  %s", e) end
end

function Outcome:problem(fmt, ...)
  self.problems[#self.problems + 1] = fmt:format(...)
end

function Outcome:note(fmt, ...)
  self.notes[#self.notes + 1] = fmt:format(...)
end

return M
