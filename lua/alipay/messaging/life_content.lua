-- Life Account image-text contents (docs/messaging.md §2.9):
-- alipay.open.public.message.content.create and .modify.
--
--   local life_content = require "alipay.messaging.life_content"
--   local contents = life_content.new(channel)
--   contents:create(fields)               -> {content_id =, content_url =} | nil, err, detail
--   contents:modify(content_id, fields)   -> {content_id =, content_url =} | nil, err, detail
--   fields = {title =, cover = (an image_url from alipay.offline.material.image.upload),
--             content = (the body, rich text), could_comment = "T" | "F", ctype = "activity",
--             benefit = (activity only, at most 10 characters),
--             ext_tags = {"a", "b"} or "a,b" (at most 5),
--             login_ids = {...} or "a,b" (preview accounts, at most 10)}
-- title, cover and content are required (alipay-easysdk's APIDoc); the limits are
-- the models' field docs. The cover's documented size (996*450, at most 3M) is an
-- image's, which this library cannot see from a URL: Alipay checks it.
local errors = require "alipay.errors"
local sender = require "alipay.messaging.send"

local M = {}

M.METHODS = {
  create = "alipay.open.public.message.content.create",
  modify = "alipay.open.public.message.content.modify",
}

M.LIMITS = { benefit_chars = 10, ext_tags = 5, login_ids = 10 }

local FIELDS = { title = true, cover = true, content = true, could_comment = true, ctype = true, benefit = true,
                 ext_tags = true, login_ids = true }

local Content = {}
Content.__index = Content

local invalid, call_opts, chars = sender.invalid, sender.call_opts, sender.chars

function M.new(channel)
  return sender.new("life_content", "alipaylife", Content, channel)
end

local function str(v)
  return type(v) == "string" and v ~= ""
end

-- A list or a comma-separated text -> the text, the item count | nil, msg
local function comma_list(v, name)
  local items = {}
  if type(v) == "string" then
    for item in (v .. ","):gmatch("([^,]*),") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then items[#items + 1] = item end
    end
  elseif type(v) == "table" then
    for i, item in ipairs(v) do
      if not str(item) or item:find(",", 1, true) then
        return nil, ("%s[%d] must be a non-empty string without a comma"):format(name, i)
      end
      items[i] = item
    end
  else
    return nil, name .. " must be a list or a comma-separated text"
  end
  return table.concat(items, ","), #items
end

local function biz_of(method, fields)
  if type(fields) ~= "table" then return invalid(method, "data", "fields", "fields must be a table") end
  local biz = {}
  for k, v in pairs(fields) do
    if not FIELDS[k] then return invalid(method, "data", tostring(k), "unknown field " .. tostring(k)) end
    biz[k] = v
  end
  for _, k in ipairs { "title", "cover", "content" } do
    if not str(fields[k]) then return invalid(method, "data", k, k .. " is required (a non-empty string)") end
  end
  for _, k in ipairs { "could_comment", "ctype", "benefit" } do
    if fields[k] ~= nil and type(fields[k]) ~= "string" then
      return invalid(method, "data", k, k .. " must be a string")
    end
  end
  if fields.could_comment ~= nil and fields.could_comment ~= "T" and fields.could_comment ~= "F" then
    return invalid(method, "data", "could_comment", "could_comment must be T or F")
  end
  if fields.ctype ~= nil and fields.ctype ~= "activity" then
    return invalid(method, "data", "ctype", "ctype must be activity, or absent for an ordinary image-text")
  end
  if fields.benefit ~= nil and chars(fields.benefit) > M.LIMITS.benefit_chars then
    return invalid(method, "data", "benefit", ("benefit: at most %d characters, got %d")
      :format(M.LIMITS.benefit_chars, chars(fields.benefit)))
  end
  for _, k in ipairs { "ext_tags", "login_ids" } do
    if fields[k] ~= nil then
      local text, n = comma_list(fields[k], k)
      if not text then return invalid(method, "data", k, n) end
      if n > M.LIMITS[k] then
        return invalid(method, "data", k, ("%s: at most %d, got %d"):format(k, M.LIMITS[k], n))
      end
      biz[k] = text
    end
  end
  local ok, err, detail = sender.clean(method, "data", "fields", biz)
  if not ok then return nil, err, detail end
  return biz
end

local function answer(method, res)
  if not str(res.content_id) then
    return errors.fail("decode", { method = method, retryable = false, unknown = false,
                                   msg = "the answer has no content_id" })
  end
  return { content_id = res.content_id, content_url = str(res.content_url) and res.content_url or nil }
end

function Content:create(fields, opts)
  local method = M.METHODS.create
  local biz, err, detail = biz_of(method, fields)
  if not biz then return nil, err, detail end
  local res
  res, err, detail = self.client:execute(method, biz, call_opts(opts))
  if not res then return nil, err, detail end
  return answer(method, res)
end

function Content:modify(content_id, fields, opts)
  local method = M.METHODS.modify
  if not str(content_id) then return invalid(method, "request", "content_id", "content_id is required") end
  local biz, err, detail = biz_of(method, fields)
  if not biz then return nil, err, detail end
  biz.content_id = content_id
  local ok
  ok, err, detail = sender.clean(method, "request", "content_id", content_id)
  if not ok then return nil, err, detail end
  local res
  res, err, detail = self.client:execute(method, biz, call_opts(opts))
  if not res then return nil, err, detail end
  return answer(method, res)
end

return M
