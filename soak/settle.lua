-- Brings a campaign to its end the way an operator would: `alipay campaign
-- resume ID` until its status is `completed` (every recipient sent, failed,
-- skipped or unknown), a bounded number of times.
--
--   local settle = require "soak.settle"
--   settle(world, id, extra) -> runs, nil | runs, problem
--     extra: more resume options (e.g. "--in-flight 8")
local cjson = require "cjson"
local shell = require "alipay.util.shell"

local MAX_RESUMES = 5

-- The last line of a command's stderr, cut short: enough to say why.
local function last_line(text)
  local line = ""
  for l in tostring(text):gmatch("[^\n]+") do line = l end
  return #line > 200 and line:sub(1, 200) .. "…" or line
end

return function(world, id, extra)
  local runs = 0
  for _ = 1, MAX_RESUMES do
    runs = runs + 1
    local code, out, err = world:alipay(("campaign resume %s --progress none --json --config %s %s")
      :format(id, shell.quote(world.config_path), extra or ""))
    local ok, status = pcall(cjson.decode, out)
    if code == 0 and ok and type(status) == "table" and status.status == "completed" then return runs end
    if code == 2 then return runs, ("resume %s: usage error: %s"):format(id, last_line(err)) end
  end
  local status = world:status(id)
  return runs, ("campaign %s not completed after %d resumes (status %s)"):format(id, MAX_RESUMES,
    status and tostring(status.status) or "?")
end
