-- A mini program's subscription-message templates (docs/messaging.md §3.4):
-- the templates it applied for, the template library, applying for a library
-- template, and syncing the registry with what Alipay lists.
--
--   local mini_templates = require "alipay.messaging.mini_templates"
--   local tpl = mini_templates.new(channel, registry)
--     channel: {code=, kind="alipaymini", client=}; a Life Account channel is misuse
--              (error()): Alipay lists no Life Account templates (§2.3).
--     registry: alipay.messaging.templates registry (needed by sync; apply imports into it)
--
--   tpl:page(page_num, opts) -> {templates = {...}, total_count =, page_num =, page_size =}
--   tpl:list(opts) -> {template, ...} | nil, err, detail, partial
--     alipay.open.mini.message.template.batchquery, every page (page_size 10, the
--     documented maximum). A template is {id=, name=, keywords = {names in order},
--     status=, scene_rule=}: keywords are keyword_desc split at commas.
--     opts.status_list: only templates in these states (values undocumented, passed as given).
--   tpl:sync(opts) -> report | nil, err, detail
--     lists every template, then imports the added, changed and revived ones into the
--     registry (kind alipaymini) and marks the registered ones Alipay no longer lists
--     invalid (code template_diff.GONE_CODE). report = template_diff.compare's lists plus
--     failed = {{id=, error=}} (templates the registry refused, e.g. no keywords).
--     Nothing is written unless the whole listing was read, nor when Alipay lists no
--     template at all while the registry holds valid ones, unless opts.allow_empty (kind "state").
--   tpl:library_page(page_num, opts), tpl:library(opts) -> {entry, ...} | nil, err, detail, partial
--     alipay.open.mini.message.templatelib.batchquery; opts.industry_code,
--     opts.industry_scenario, opts.scene_rule, opts.has_push filter (the model's fields).
--     An entry is {code=, name=, keywords=, scene_rule=, industry_code=, industry_scenario=,
--     has_push=, selectable=, status=}.
--   tpl:apply(lib_code, keywords, opts) -> {template_id =, keywords =, imported = bool}
--     alipay.open.mini.message.template.apply with 2 to 5 of the library template's
--     keyword names; opts.scene_rule (one_time_subscribe | long_term_subscribe), opts.name
--     (the name recorded in the registry). With a registry the new template is imported.
--   prepare_page/finish_page, prepare_library_page/finish_library_page,
--   prepare_apply/finish_apply: the same calls split in two (client:submit/wait).
--
-- Failures follow docs/errors.md. No official code list exists for these methods
-- (docs/conformance.md): their refusals reach the caller classified by the defaults.
local cjson = require "cjson.safe"
local errors = require "alipay.errors"
local sender = require "alipay.messaging.send"
local template_diff = require "alipay.messaging.template_diff"

local M = {}

M.METHODS = {
  list = "alipay.open.mini.message.template.batchquery",
  library = "alipay.open.mini.message.templatelib.batchquery",
  apply = "alipay.open.mini.message.template.apply",
}
-- "分页大小，目前上限为10" (both batchquery models).
M.PAGE_SIZE = 10
-- "需要传入2到5个关键词" (the apply model's keyword_list).
M.APPLY_MIN, M.APPLY_MAX = 2, 5
M.SCENE_RULES = { one_time_subscribe = true, long_term_subscribe = true }
-- A listing that has not ended after this many pages is refused (a gateway
-- that keeps answering full pages would otherwise never end).
local MAX_PAGES = 1000

local invalid, call_opts = sender.invalid, sender.call_opts

local Templates = {}
Templates.__index = Templates

function M.new(channel, registry)
  return sender.new("mini_templates", "alipaymini", Templates, channel, registry)
end

local function present(v)
  if v == cjson.null then return nil end
  return v
end

local function str(v)
  v = present(v)
  if type(v) == "number" then return tostring(v) end
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- keyword_desc "a,b,c" -> {"a", "b", "c"}: "关键词之间用逗号隔开" (a full-width
-- comma is taken as one too; blanks around names are dropped).
function M.split_keywords(desc)
  local out = {}
  if type(desc) ~= "string" then return out end
  for item in (desc:gsub("，", ",")):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then out[#out + 1] = item end
  end
  return out
end

local function decode_fail(method, msg)
  return errors.fail("decode", { method = method, msg = msg, retryable = false })
end

-- ---- one page ----

local function page_biz(method, num)
  if num ~= nil and (type(num) ~= "number" or num % 1 ~= 0 or num < 1) then
    return invalid(method, "request", "page_num", "page_num must be a whole number >= 1")
  end
  return { page_num = math.floor(num or 1) }
end

function Templates:prepare_page(num, opts)
  local method = M.METHODS.list
  opts = opts or {}
  local biz, err, detail = page_biz(method, num)
  if not biz then return nil, err, detail end
  -- "消息类型，目前仅支持查询订阅消息，biz_type:sub_msg"; page_size is a String in the model.
  biz.biz_type, biz.page_size = "sub_msg", tostring(M.PAGE_SIZE)
  if opts.status_list ~= nil then
    if type(opts.status_list) ~= "table" then error("status_list must be a list of strings", 2) end
    biz.status_list = opts.status_list
  end
  local req, call = self.client:prepare_v2(method, biz, call_opts(opts))
  return req, { call = call, method = method, num = biz.page_num }
end

local function page_result(node, list_key, num)
  local list = present(node[list_key])
  if list ~= nil and type(list) ~= "table" then return nil, list_key .. " is not a list" end
  return { items = list or {}, total_count = tonumber(present(node.total_count)),
           page_num = tonumber(present(node.page_num)) or num, page_size = tonumber(present(node.page_size)) }
end

function Templates:finish_page(ctx, res, err, detail)
  local node, e, d = self.client:finish_v2(ctx.call, res, err, detail)
  if not node then return nil, e, d end
  local page, why = page_result(node, "template_list", ctx.num)
  if not page then return decode_fail(ctx.method, why) end
  local templates = {}
  for i, t in ipairs(page.items) do
    local id = type(t) == "table" and str(t.template_id)
    if not id then return decode_fail(ctx.method, ("template_list[%d] has no template_id"):format(i)) end
    templates[i] = { id = id, name = str(t.name), keywords = M.split_keywords(present(t.keyword_desc)),
                     status = str(t.status), scene_rule = str(t.scene_rule) }
  end
  page.templates, page.items = templates, nil
  return page
end

local function blocking(self, prepare, finish, ...)
  local req, ctx, detail = prepare(self, ...)
  if not req then return nil, ctx, detail end
  local res, err, terr = self.client:request(req)
  return finish(self, ctx, res, err, terr)
end

function Templates:page(num, opts)
  return blocking(self, Templates.prepare_page, Templates.finish_page, num, opts)
end

-- Every page of a listing -> items | nil, err, detail, partial. The listing
-- ends on an empty or short page or once total_count items arrived; one
-- that ends short of its total_count is refused (a sync would otherwise
-- take the missing templates for deleted ones).
local function all_pages(self, method, fetch, field, opts)
  local items = {}
  for num = 1, MAX_PAGES do
    local page, err, detail = fetch(self, num, opts)
    if not page then return nil, err, detail, items end
    for _, item in ipairs(page[field]) do items[#items + 1] = item end
    local total, n = page.total_count, #page[field]
    if (total and #items >= total) or n == 0 or n < (page.page_size or M.PAGE_SIZE) then
      if total and #items < total then
        local _, e, d = decode_fail(method, ("the listing ended after %d of %d items"):format(#items, total))
        return nil, e, d, items
      end
      return items
    end
  end
  local _, e, d = decode_fail(method, ("the listing did not end after %d pages"):format(MAX_PAGES))
  return nil, e, d, items
end

function Templates:list(opts)
  return all_pages(self, M.METHODS.list, Templates.page, "templates", opts)
end

-- ---- sync ----

function Templates:sync(opts)
  if not self.registry then error("mini_templates: sync needs a registry", 2) end
  local listed, err, detail = self:list(opts)
  if not listed then return nil, err, detail end
  local registered, rerr, rdetail = self.registry:list(self.code)
  if not registered then return nil, rerr, rdetail end
  local mine = {}
  for _, t in ipairs(registered) do
    if t.kind == "alipaymini" then mine[#mine + 1] = t end
  end
  local report = template_diff.compare(mine, listed)
  -- An empty answer (a wrong biz_type, a transient fault on Alipay's side)
  -- would invalidate every template at once: that takes an explicit yes.
  if #listed == 0 and #report.gone > 0 and not (opts and opts.allow_empty) then
    return errors.fail("state", { channel = self.code, retryable = false,
      msg = ("Alipay lists no templates for channel %s; a sync would mark all %d registered ones invalid: "
        .. "confirm with allow_empty (--allow-empty) if they were all deleted"):format(self.code, #report.gone) })
  end
  local writes = {}
  for _, t in ipairs(report.added) do writes[#writes + 1] = t end
  for _, c in ipairs(report.changed) do writes[#writes + 1] = c.template end
  for _, t in ipairs(report.revived) do writes[#writes + 1] = t end
  local items = {}
  for i, t in ipairs(writes) do
    items[i] = { id = t.id, name = t.name, keywords = t.keywords, channel = self.code, kind = "alipaymini" }
  end
  report.failed = {}
  if #items > 0 then
    local result, ierr, idetail = self.registry:import(items)
    if not result then return nil, ierr, idetail end
    for _, f in ipairs(result.failed) do report.failed[#report.failed + 1] = { id = f.id, error = f.error } end
  end
  for _, t in ipairs(report.gone) do
    local ok, merr, mdetail = self.registry:mark_invalid(self.code, t.id, template_diff.GONE_CODE)
    if not ok then return nil, merr, mdetail end
  end
  report.listed = #listed
  return report
end

-- ---- the library ----

function Templates:prepare_library_page(num, opts)
  local method = M.METHODS.library
  opts = opts or {}
  local biz, err, detail = page_biz(method, num)
  if not biz then return nil, err, detail end
  biz.page_size = M.PAGE_SIZE
  for _, key in ipairs { "industry_code", "industry_scenario", "scene_rule" } do
    local v = opts[key]
    if v ~= nil and (type(v) ~= "string" or v == "") then
      return invalid(method, "request", key, key .. " must be a non-empty string")
    end
    biz[key] = v
  end
  if opts.scene_rule and not M.SCENE_RULES[opts.scene_rule] then
    return invalid(method, "request", "scene_rule", "scene_rule must be one_time_subscribe or long_term_subscribe")
  end
  if opts.has_push ~= nil and type(opts.has_push) ~= "boolean" then
    return invalid(method, "request", "has_push", "has_push must be true or false")
  end
  biz.has_push = opts.has_push
  local ok, cerr, cdetail = sender.clean(method, "request", "filter", biz)
  if not ok then return nil, cerr, cdetail end
  local req, call = self.client:prepare_v2(method, biz, call_opts(opts))
  return req, { call = call, method = method, num = biz.page_num }
end

function Templates:finish_library_page(ctx, res, err, detail)
  local node, e, d = self.client:finish_v2(ctx.call, res, err, detail)
  if not node then return nil, e, d end
  local page, why = page_result(node, "template_lib_list", ctx.num)
  if not page then return decode_fail(ctx.method, why) end
  local entries = {}
  for i, t in ipairs(page.items) do
    local code = type(t) == "table" and str(t.code)
    if not code then return decode_fail(ctx.method, ("template_lib_list[%d] has no code"):format(i)) end
    entries[i] = { code = code, name = str(t.name), keywords = M.split_keywords(present(t.keyword_desc)),
      scene_rule = str(t.scene_rule), industry_code = str(t.industry_code),
      industry_scenario = str(t.industry_scenario), has_push = present(t.has_push),
      selectable = present(t.selectable), status = str(t.status) }
  end
  page.entries, page.items = entries, nil
  return page
end

function Templates:library_page(num, opts)
  return blocking(self, Templates.prepare_library_page, Templates.finish_library_page, num, opts)
end

function Templates:library(opts)
  return all_pages(self, M.METHODS.library, Templates.library_page, "entries", opts)
end

-- ---- applying ----

function Templates:prepare_apply(lib_code, keywords, opts)
  local method = M.METHODS.apply
  opts = opts or {}
  if type(lib_code) ~= "string" or lib_code == "" then
    return invalid(method, "request", "lib_code", "lib_code must be a library template code")
  end
  if type(keywords) ~= "table" or #keywords < M.APPLY_MIN or #keywords > M.APPLY_MAX then
    return invalid(method, "request", "keywords", ("give %d to %d keyword names of the library template")
      :format(M.APPLY_MIN, M.APPLY_MAX))
  end
  local list, seen = {}, {}
  for i, k in ipairs(keywords) do
    if type(k) ~= "string" or k == "" then
      return invalid(method, "request", "keywords", ("keywords[%d] must be a keyword name"):format(i))
    end
    if seen[k] then return invalid(method, "request", "keywords", "keyword " .. k .. " is given twice") end
    seen[k], list[i] = true, { name = k }
  end
  if opts.scene_rule ~= nil and not M.SCENE_RULES[opts.scene_rule] then
    return invalid(method, "request", "scene_rule", "scene_rule must be one_time_subscribe or long_term_subscribe")
  end
  local biz = { lib_code = lib_code, keyword_list = list, scene_rule = opts.scene_rule }
  local ok, cerr, cdetail = sender.clean(method, "request", "apply", biz)
  if not ok then return nil, cerr, cdetail end
  local req, call = self.client:prepare_v2(method, biz, call_opts(opts))
  local names = {}
  for i, k in ipairs(keywords) do names[i] = k end
  return req, { call = call, method = method, lib_code = lib_code, keywords = names, name = opts.name }
end

function Templates:finish_apply(ctx, res, err, detail)
  local node, e, d = self.client:finish_v2(ctx.call, res, err, detail)
  if not node then return nil, e, d end
  local id = str(node.template_id)
  if not id then return decode_fail(ctx.method, "the answer has no template_id") end
  local out = { template_id = id, keywords = ctx.keywords, imported = false }
  if self.registry then
    local result, ierr, idetail = self.registry:import({ { id = id, name = ctx.name, keywords = ctx.keywords,
      channel = self.code, kind = "alipaymini", library_id = ctx.lib_code } })
    if not result then return nil, ierr, idetail end
    out.imported = #result.failed == 0
    out.import_error = result.failed[1] and result.failed[1].error
  end
  return out
end

function Templates:apply(lib_code, keywords, opts)
  return blocking(self, Templates.prepare_apply, Templates.finish_apply, lib_code, keywords, opts)
end

return M
