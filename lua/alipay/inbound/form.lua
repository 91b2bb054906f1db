-- The request body of an inbound message (docs/protocol.md §3.1): bounded
-- before anything is parsed, decoded exactly once, read from nginx.
--
-- Limits (both endpoints take them as options):
--   opts.max_body_bytes  default form.MAX_BODY_BYTES (64 KiB; Alipay's
--                        messages are a few KiB: a payment notification with
--                        its fund_bill_list, a Life Account event's XML)
--   opts.max_fields      default form.MAX_FIELDS (200; a notification has
--                        about 30)
-- Over a limit the body is refused with reason "too_large" before it is
-- decoded, so an unsigned body costs at most one pass over its bytes.
local core = require "alipay.core"
local fs = require "alipay.util.fs"
local runtime = require "alipay.runtime"
local refusal = require "alipay.inbound.refusal"

local form = {}

form.MAX_BODY_BYTES = 64 * 1024
form.MAX_FIELDS = 200

local FORM_TYPE = "application/x-www-form-urlencoded"
local loggable = refusal.loggable

local function whole_number(value, name)
  if value ~= nil and (type(value) ~= "number" or value < 1 or value ~= math.floor(value)) then
    error("inbound: opts." .. name .. " must be a positive whole number", 3)
  end
  return value
end

-- form.limits(opts) -> max_body_bytes, max_fields (misuse raises).
function form.limits(opts)
  opts = opts or {}
  return whole_number(opts.max_body_bytes, "max_body_bytes") or form.MAX_BODY_BYTES,
         whole_number(opts.max_fields, "max_fields") or form.MAX_FIELDS
end

local function too_large(what)
  return refusal.fail("too_large", what)
end

-- Fields of a form body: one more than its '&'s. string.find with a plain
-- pattern walks the bytes in C, allocating nothing, and stops at the cap.
local function over_field_cap(body, max_fields)
  local n, at = 1, 0
  while true do
    at = body:find("&", at + 1, true)
    if not at then return false end
    n = n + 1
    if n > max_fields then return true end
  end
end

-- A copy of an already decoded parameter table. nginx's query tables use
-- `true` for a bare flag (what form_decode turns into "") and a list for a
-- repeated field (refused, as form_decode refuses it).
local function copy_params(t, max_fields)
  local out, n = {}, 0
  for k, v in pairs(t) do
    n = n + 1
    if n > max_fields then return too_large("more than " .. max_fields .. " parameters") end
    if type(k) ~= "string" then return refusal.fail("malformed", "a parameter name is not a string") end
    if v == true then
      v = ""
    elseif type(v) == "table" then
      return refusal.fail("malformed", "parameter " .. loggable(k) .. " appears more than once")
    elseif type(v) ~= "string" then
      return refusal.fail("malformed", "parameter " .. loggable(k) .. " is not a string")
    end
    out[k] = v
  end
  return out
end

-- form.decode(body[, opts]) -> params | nil, err, detail. A string body is
-- checked against the limits, then decoded with core.form_decode, exactly
-- once: `+` is a space, `%2B` a plus, and the values are never decoded
-- again. A table (a return_url query nginx decoded) is copied.
function form.decode(body, opts)
  local max_bytes, max_fields = form.limits(opts)
  local params, err
  if type(body) == "table" then
    local detail
    params, err, detail = copy_params(body, max_fields)
    if not params then return nil, err, detail end
  elseif type(body) == "string" then
    if #body > max_bytes then
      return too_large("the body is " .. #body .. " bytes, more than " .. max_bytes)
    end
    if over_field_cap(body, max_fields) then return too_large("the body has more than " .. max_fields .. " fields") end
    params, err = core.form_decode(body)
    if not params then
      -- form_decode names a repeated field; keep the name only if harmless.
      err = tostring(err):gsub("'(.*)'", function(name) return "'" .. loggable(name) .. "'" end)
      return refusal.fail("malformed", "the body is not a valid form: " .. err)
    end
  else
    error("inbound: body must be a string or a table of parameters, got a " .. type(body), 3)
  end
  if next(params) == nil then return refusal.fail("malformed", "the message is empty") end
  return params
end

-- form.read_ngx_body([ngx][, opts]) -> body | nil, err, detail: the form
-- body of the current request. Refuses anything but a form-urlencoded
-- POST, and a body over opts.max_body_bytes before reading it when the
-- request declares its length (nginx's client_max_body_size should be the
-- first bound: examples/openresty/nginx.conf sets both to 64 KiB).
-- `ngx` defaults to nginx's own (alipay.runtime; a fake in tests).
function form.read_ngx_body(ngx, opts)
  ngx = ngx or runtime.ngx()
  if not ngx then error("inbound: not running inside nginx (no ngx)", 2) end
  local max_bytes = form.limits(opts)
  local method = ngx.req.get_method()
  if method ~= "POST" then return refusal.fail("malformed", "expected a POST, got " .. loggable(method)) end
  local media = (ngx.var.content_type or ""):match("^%s*([^;%s]+)")
  if not media or media:lower() ~= FORM_TYPE then
    return refusal.fail("malformed", "the content type is not " .. FORM_TYPE)
  end
  local declared = tonumber(ngx.var.content_length)
  if declared and declared > max_bytes then
    return too_large("the body is " .. math.floor(declared) .. " bytes, more than " .. max_bytes)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  -- A body larger than client_body_buffer_size was written to a file.
  local path = ngx.req.get_body_file()
  if not path then return "" end
  local _, size
  body, _, size = fs.read(path, max_bytes)
  if size then return too_large("the body is " .. size .. " bytes, more than " .. max_bytes) end
  if not body then return refusal.fail("malformed", "the buffered request body cannot be read") end
  return body
end

return form
