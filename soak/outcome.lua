-- What one scenario measured: its counts (soak/tally.lua), the campaign runs
-- it made (every `alipay campaign run|resume` child), problems (a scenario
-- that could not run or finish, a contract the CLI broke: each makes the
-- soak fail) and notes (what it saw, printed as is).
--
--   local outcome = require "soak.outcome"
--   local o = outcome.new("resend")
--   o:ran(n); o:counted(label, result); o:problem(fmt, ...); o:note(fmt, ...)
--   o:raised(err)        a scenario's error: a problem, except Ctrl-C of the soak itself
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
  self:note("%s: lost=%d duplicated=%d of %d (%s)%s", label, result.lost, result.duplicated, result.checked,
    table.concat(statuses, ", "), result.duplicated_unknown > 0
      and (" (%d of the duplicated are unknown in the store)"):format(result.duplicated_unknown) or "")
  for _, e in ipairs(result.examples) do self:note("  %s", e) end
end

function Outcome:problem(fmt, ...)
  self.problems[#self.problems + 1] = fmt:format(...)
end

-- Ctrl-C of `make soak` raises "interrupted!" wherever the soak is: that
-- ends the soak (run.lua cleans up), it is no problem of a scenario.
function Outcome:raised(err)
  if tostring(err):find("interrupted!", 1, true) then error(err, 0) end
  self:problem("raised: %s", tostring(err))
end

function Outcome:note(fmt, ...)
  self.notes[#self.notes + 1] = fmt:format(...)
end

return M
