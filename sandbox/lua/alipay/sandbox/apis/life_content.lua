-- The sandbox gateway's Life Account image-text contents (docs/messaging.md
-- §2.9): message.content.create and message.content.modify. Fields and limits
-- from the official models (AlipayOpenPublicMessageContentCreateModel, …Modify…)
-- and alipay-easysdk's APIDoc (title, cover, content required); codes from the
-- methods' official lists, matched to a field by their names.
local support = require "alipay.sandbox.apis.support"

local fail = support.fail
local opt_string = support.opt_string
local chars = require("alipay.util.utf8").chars

local BENEFIT_CHARS = 10   -- "活动利益点，最多10个字符"
local EXT_TAGS = 5         -- "关键词列表，英文逗号分隔，最多不超过5个"
local LOGIN_IDS = 10       -- "可预览支付宝账号列表，英文逗号分隔，最多不超过10个"

local function count_items(text)
  local n = 0
  for item in (text .. ","):gmatch("([^,]*),") do
    if item:find("%S") then n = n + 1 end
  end
  return n
end

local REQUIRED = { title = "MSG_CONTENT_TITLE_INVALID", cover = "MSG_CONTENT_COVER_INVALID",
                   content = "MSG_CONTENT_BODY_INVALID" }
local FIELDS = { "title", "cover", "content", "could_comment", "ctype", "benefit", "ext_tags", "login_ids" }

local function read_fields(biz)
  local f = {}
  for _, key in ipairs { "title", "cover", "content" } do
    f[key] = opt_string(biz, key) or fail(REQUIRED[key], key .. " is required")
  end
  for _, key in ipairs(FIELDS) do
    if f[key] == nil then f[key] = opt_string(biz, key) end
  end
  if f.could_comment and f.could_comment ~= "T" and f.could_comment ~= "F" then
    fail("MSG_CONTENT_COULDCOMMENT_INVALID", "could_comment must be T or F")
  end
  if f.ctype and f.ctype ~= "activity" then
    fail("MSG_CONTENT_ACTIVITY_INVALID", "ctype must be activity or absent")
  end
  if f.benefit and chars(f.benefit) > BENEFIT_CHARS then
    fail("MSG_CONTENT_BENEFIT_INVALID", "benefit is longer than 10 characters")
  end
  if f.ext_tags and count_items(f.ext_tags) > EXT_TAGS then
    fail("MSG_CONTENT_EXTTAGS_INVALID", "ext_tags: at most 5")
  end
  if f.login_ids and count_items(f.login_ids) > LOGIN_IDS then
    fail("MSG_CONTENT_PREVIEWIDS_INVALID", "login_ids: at most 10")
  end
  return f
end

-- The sandbox's own address for a content (.invalid: not a real host).
local function url_of(id)
  return "https://sandbox.invalid/life/content/" .. id
end

local function content_create(state, biz)
  if opt_string(biz, "content_id") then fail("MSG_CONTENT_ADD_HAS_CONTENTID", "create takes no content_id") end
  local c = state:create_content(read_fields(biz))
  return { content_id = c.content_id, content_url = url_of(c.content_id) }
end

local function content_modify(state, biz)
  local id = opt_string(biz, "content_id") or fail("MSG_CONTENT_ID_INVALID", "content_id is required")
  local c = state:content(id)
  if not c then fail("MSG_CONTENT_NOT_EXISTS", "内容不存在：" .. id) end
  local f = read_fields(biz)
  for _, key in ipairs(FIELDS) do c[key] = f[key] end
  return { content_id = id, content_url = url_of(id) }
end

return {
  ["alipay.open.public.message.content.create"] = { handler = content_create, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/message/content/create", verbs = { POST = true } },
  ["alipay.open.public.message.content.modify"] = { handler = content_modify, invalid_code = "ILLEGAL_BIZ_PARAMS",
    path = "/v3/alipay/open/public/message/content/modify", verbs = { POST = true } },
}
