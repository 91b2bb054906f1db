-- The fuzz targets' calls, in Lua: the ngx transport's response parser
-- driven by a fake cosocket (used by the fuzz_ngx target), and the same
-- calls the C targets make through the Lua API (used by
-- spec/unit/08-fuzz_regressions_spec.lua to replay corpora and saved inputs).
-- Every function raises when the contract is broken: a core function
-- returns a value or nil, err for any string and never raises; the ngx
-- transport returns a response or nil, a typed transport error.
-- Lua 5.1 (LuaJIT) and 5.4.
local H = {}

-- spec/fixtures/vectors.json, aes[1].
H.KEY_B64 = "aa4BtZ4tspm2wnXLb1ThQA=="
H.CIPHER_B64 = "ILpoMowjIQjfYMR847rnFQ=="
H.EXTRACT_NAMES = { "alipay.trade.query", "alipay_trade_query_response", "error_response", "a" }

local function pack(...) return { n = select("#", ...), ... } end

-- Calls f(...) and checks value | nil, string. Returns the first value.
local function checked(what, f, ...)
  local r = pack(pcall(f, ...))
  if not r[1] then error(what .. " raised: " .. tostring(r[2]), 0) end
  if r.n < 2 then error(what .. " returned nothing", 0) end
  if r[2] == nil and type(r[3]) ~= "string" then error(what .. " returned nil without a message", 0) end
  return r[2]
end
H.checked = checked

function H.extract(core, input)
  for _, name in ipairs(H.EXTRACT_NAMES) do
    local node = checked("extract", core.extract, input, name)
    if node ~= nil then
      if type(node.content) ~= "string" or type(node.node) ~= "string" then
        error("extract: result without content or node", 0)
      end
      if not input:find(node.content, 1, true) then error("extract: content is not part of the body", 0) end
    end
  end
end

function H.keys(core, input)
  local key = checked("private_key", core.private_key, input)
  if key ~= nil then
    checked("bits", key.bits, key)
    checked("format", key.format, key)
    checked("public_pem", key.public_pem, key)
    checked("sign", key.sign, key, "fuzz")
  end
  key = checked("public_key", core.public_key, input)
  if key ~= nil then
    checked("bits", key.bits, key)
    checked("public_base64", key.public_base64, key)
    local ok, err = pcall(key.verify, key, "fuzz", "AAAA")
    if not ok then error("verify raised: " .. tostring(err), 0) end
  end
end

function H.form(core, input)
  local t = checked("form_decode", core.form_decode, input)
  if t ~= nil then
    local again = checked("form_decode(form_encode(t))", core.form_decode, core.form_encode(t))
    if again == nil then error("form_encode output does not decode", 0) end
    for k, v in pairs(t) do
      if again[k] ~= v then error("form_decode(form_encode(t)) differs from t", 0) end
    end
  end
end

function H.codec(core, input)
  local raw = checked("b64decode", core.b64decode, input)
  if raw ~= nil and core.b64decode(core.b64encode(raw)) ~= raw then
    error("b64decode(b64encode(x)) ~= x", 0)
  end
  checked("aes_decrypt(KEY, input)", core.aes_decrypt, H.KEY_B64, input)
  checked("aes_decrypt(input, CIPHER)", core.aes_decrypt, input, H.CIPHER_B64)
end

-- ---- the ngx transport with a fake cosocket ----
--
-- The input's first byte sets the exchange: bit 0 HEAD (else GET), bit 1
-- the stream ends with "timeout" (else "closed"), bit 2 the connection
-- counts as reused (so a dead connection is retried once, reading on from
-- the same stream), bits 3-7 the size of each receiveany chunk (1 + 8k
-- bytes, 31 = everything at once). The rest is what the server sends.
H.NGX_MAX_RESPONSE = 2048

local function fake_ngx(stream, chunk, final_err, reused)
  local pos = 1
  local Sock = {}
  Sock.__index = Sock
  function Sock.settimeouts() end
  function Sock.connect() return true end
  function Sock.getreusedtimes() return reused end
  function Sock.send(_, payload)
    if type(payload) == "table" then payload = table.concat(payload) end
    return #payload
  end
  function Sock.receiveany(_, max)
    if pos > #stream then return nil, final_err end
    local n = chunk < max and chunk or max
    local data = stream:sub(pos, pos + n - 1)
    pos = pos + n
    return data
  end
  function Sock.close() return true end
  function Sock.setkeepalive() return true end
  function Sock.sslhandshake() return true end
  return {
    now = function() return 1000 end,
    update_time = function() end,
    get_phase = function() return "timer" end,
    socket = { tcp = function() return setmetatable({}, Sock) end },
  }
end

-- One request over the fake socket: returns pcall's ok, res, err.
local function ngx_request(input)
  local b = input:byte(1)
  local method = b % 2 == 1 and "HEAD" or "GET"
  local final_err = math.floor(b / 2) % 2 == 1 and "timeout" or "closed"
  local reused = math.floor(b / 4) % 2
  local k = math.floor(b / 8)
  local chunk = k == 31 and 65536 or 1 + 8 * k
  local saved = rawget(_G, "ngx")
  rawset(_G, "ngx", fake_ngx(input:sub(2), chunk, final_err, reused))
  local ok, res, err = pcall(function()
    local t = assert(require("alipay.transport.ngx").new { max_response_bytes = H.NGX_MAX_RESPONSE })
    local res, line, detail = t:request { method = method, url = "http://fuzz.test/gateway.do", timeout_ms = 1000 }
    -- The convention (docs/errors.md): a one-line string, then the typed detail.
    if not res and (type(line) ~= "string" or line:find("\n", 1, true) or line ~= tostring(detail)) then
      error("ngx transport: the second value is not the detail's one-line message: " .. tostring(line), 0)
    end
    return res, detail
  end)
  rawset(_G, "ngx", saved)
  return ok, res, err
end

-- request's res, err for the input (raises what the transport raises).
function H.ngx_request(input)
  local ok, res, err = ngx_request(input)
  if not ok then error(res, 0) end
  return res, err
end

function H.ngx(input)
  if #input < 1 then return end
  local ok, res, err = ngx_request(input)
  if not ok then error("ngx transport raised: " .. tostring(res), 0) end
  if res then
    if type(res.status) ~= "number" or type(res.headers) ~= "table" or type(res.body) ~= "string" then
      error("ngx transport: malformed response table", 0)
    end
    if #res.body > H.NGX_MAX_RESPONSE then error("ngx transport: body over max_response_bytes", 0) end
    for name, value in pairs(res.headers) do
      if type(name) ~= "string" or type(value) ~= "string" or name ~= name:lower() then
        error("ngx transport: bad header " .. tostring(name), 0)
      end
    end
  elseif type(err) ~= "table" or err.kind ~= "transport" or type(err.reason) ~= "string" then
    error("ngx transport: error is not a typed transport error: " .. tostring(err), 0)
  end
end

-- target name -> function(core, input)
H.targets = {
  extract = H.extract,
  keys = H.keys,
  form = H.form,
  codec = H.codec,
  ngx = function(_, input) return H.ngx(input) end,
}

return H
