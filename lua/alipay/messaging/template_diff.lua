-- What a template sync changes (docs/messaging.md §3.4), computed without a
-- network or a store: the registry's templates of one mini-program channel
-- against the list Alipay answered. Runs on Lua 5.4 and LuaJIT.
--
--   local diff = require "alipay.messaging.template_diff"
--   local d = diff.compare(registered, listed)
--     registered: the registry's templates of the channel ({id=, name=, keywords=, status=,
--                 invalid_code=}, as reg:list(channel) returns them)
--     listed:     Alipay's templates ({id=, name=, keywords=}, in Alipay's order)
--   -> {added = {listed...}, changed = {{template = listed, before = registered,
--        name = bool, keywords = bool}...}, revived = {listed...}, gone = {registered...},
--        unchanged = {listed...}}
--
--   added      listed, not in the registry
--   changed    listed and registered, with another name or other keywords (in order)
--   revived    listed, registered the same, but marked invalid by an earlier sync
--              (invalid_code diff.GONE_CODE): Alipay lists it again
--   gone       registered and valid, not listed: to be marked invalid (diff.GONE_CODE)
--   unchanged  listed and registered the same (a template marked invalid by a
--              send stays so: Alipay refused it, and listing it does not say why)
-- A registered template that is already invalid and not listed is in no list.
local M = {}

-- The code a sync records on a template Alipay no longer lists: this
-- library's own, not Alipay's.
M.GONE_CODE = "NOT_LISTED"

local function same_keywords(a, b)
  a, b = a or {}, b or {}
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
M.same_keywords = same_keywords

function M.compare(registered, listed)
  local by_id, listed_ids = {}, {}
  for _, t in ipairs(registered) do by_id[t.id] = t end
  local d = { added = {}, changed = {}, revived = {}, gone = {}, unchanged = {} }
  for _, t in ipairs(listed) do
    listed_ids[t.id] = true
    local before = by_id[t.id]
    if not before then
      d.added[#d.added + 1] = t
    else
      local name_changed = t.name ~= nil and t.name ~= before.name
      local keywords_changed = not same_keywords(t.keywords, before.keywords)
      if name_changed or keywords_changed then
        d.changed[#d.changed + 1] = { template = t, before = before, name = name_changed,
                                      keywords = keywords_changed }
      elseif before.status ~= "valid" and before.invalid_code == M.GONE_CODE then
        d.revived[#d.revived + 1] = t
      else
        d.unchanged[#d.unchanged + 1] = t
      end
    end
  end
  for _, t in ipairs(registered) do
    if not listed_ids[t.id] and t.status == "valid" then d.gone[#d.gone + 1] = t end
  end
  return d
end

return M
