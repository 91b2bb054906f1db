-- {column} placeholders in a campaign's data and page. Any string of the
-- data (a keyword's value, its color, url, action_name, a mini-program
-- value) may name a column of the audience: "Order {order_no} shipped".
-- A placeholder is a name between braces with no space or brace inside;
-- anything else is left as written.
--
--   local data = require "alipay.campaign.data"
--   data.names(value) -> {name = true}          every placeholder of a string or nested table
--   data.render(value, vars) -> copy | nil, err  the value with each placeholder replaced by
--                                                vars[name]; err names the first one without a value
--   data.sample(value) -> copy                   every placeholder replaced by "x": the shape of the
--                                                data whatever the rows hold (for the pre-flight check)
local M = {}

local PLACEHOLDER = "{([^{}%s]+)}"

local function collect(value, into)
  if type(value) == "string" then
    for name in value:gmatch(PLACEHOLDER) do into[name] = true end
  elseif type(value) == "table" then
    for _, v in pairs(value) do collect(v, into) end
  end
  return into
end

function M.names(value)
  return collect(value, {})
end

-- Copies value, replacing each placeholder through lookup(name) -> string | nil.
local function substitute(value, lookup)
  if type(value) == "string" then
    local missing
    local out = value:gsub(PLACEHOLDER, function(name)
      local v = lookup(name)
      if v == nil then missing = missing or name end
      return v
    end)
    if missing then return nil, ("no value for {%s}"):format(missing) end
    return out
  end
  if type(value) ~= "table" then return value end
  local copy = {}
  for k, v in pairs(value) do
    local rendered, err = substitute(v, lookup)
    if err then return nil, err end
    copy[k] = rendered
  end
  return copy
end

function M.render(value, vars)
  vars = vars or {}
  return substitute(value, function(name)
    local v = vars[name]
    if v == nil then return nil end
    return tostring(v)
  end)
end

function M.sample(value)
  return (substitute(value, function() return "x" end))
end

return M
