-- make bench: operations per second of the core's sign, verify and
-- extract, next to the machine's own floor (`openssl speed rsa2048` for
-- RSA, cjson.decode of the same body for extraction). CPU time, one core.
package.cpath = (os.getenv("ALIPAY_BUILD") or "build/lua5.4") .. "/?.so;" .. package.cpath
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local fs = require "alipay.util.fs"

local core = require "alipay.core"
local cjson = require "cjson"

local SECONDS = tonumber(os.getenv("BENCH_SECONDS") or "") or 2

local function read(path) return assert(fs.read(path)) end

-- Runs fn in batches until SECONDS of CPU time have passed; returns ops/s.
local function rate(fn)
  local batch, done = 16, 0
  local start = os.clock()
  local elapsed = 0
  while elapsed < SECONDS do
    for _ = 1, batch do fn() end
    done = done + batch
    elapsed = os.clock() - start
    if elapsed < SECONDS / 10 then batch = batch * 2 end
  end
  return done / elapsed
end

local function openssl_speed()
  local p = assert(io.popen(("openssl speed -seconds %d rsa2048 2>/dev/null"):format(SECONDS)))
  local out = p:read("*a")
  p:close()
  local sign, verify = out:match("rsa%s+2048 bits%s+[%d.]+s%s+[%d.]+s%s+([%d.]+)%s+([%d.]+)")
  assert(sign, "could not read `openssl speed rsa2048` output:\n" .. out)
  return tonumber(sign), tonumber(verify)
end

local key = assert(core.private_key(read("spec/fixtures/keys/app_private_pkcs1.pem")))
local pub = assert(core.public_key(read("spec/fixtures/keys/app_public.pem")))

-- A typical signed request: the string to sign of a template message send.
local params = {
  app_id = "2021000122671080", method = "alipay.open.public.message.single.send",
  format = "JSON", charset = "utf-8", sign_type = "RSA2", timestamp = "2026-11-22 10:00:00",
  version = "1.0",
  biz_content = '{"to_user_id":"2088102146158132","template":{"template_id":' ..
    '"14330d60f0ab4516853a0900827cee35","context":{"head_color":"#85be53",' ..
    '"url":"https://example.com/orders/1","action_name":"查看详情","keyword1":' ..
    '{"color":"#85be53","value":"HU7142"},"keyword2":{"color":"#85be53","value":"已发货"}}}}',
}
local content = core.sign_content(params)
local sig = key:sign(content)
local body = '{"alipay_open_public_message_single_send_response":{"code":"10000",' ..
  '"msg":"Success"},"sign":"' .. sig .. '"}'
local big_body = '{"alipay_open_public_follow_batchquery_response":{"code":"10000","msg":"Success",' ..
  '"count":"10000","next_user_id":"2088000000010000","user_id_list":[' ..
  string.rep('"2088102146158132",', 9999) .. '"2088102146158132"]},"sign":"' .. sig .. '"}'

print(("lua-alipay core benchmark (%s, %ds of CPU per figure)"):format(_VERSION, SECONDS))
local ossl_sign, ossl_verify = openssl_speed()

local rows = {
  { "sign (RSA2, string to sign + sign + base64)", rate(function() key:sign(content) end),
    ossl_sign, "openssl speed rsa2048 sign/s" },
  { "verify (RSA2, base64 + digest + verify)", rate(function() pub:verify(content, sig) end),
    ossl_verify, "openssl speed rsa2048 verify/s" },
  { "extract (small response)",
    rate(function() core.extract(body, "alipay.open.public.message.single.send") end),
    rate(function() cjson.decode(body) end), "cjson.decode of the same body" },
  { ("extract (%d KiB follower page)"):format(#big_body // 1024),
    rate(function() core.extract(big_body, "alipay.open.public.follow.batchquery") end),
    rate(function() cjson.decode(big_body) end), "cjson.decode of the same body" },
  { "sign_content (8 parameters)", rate(function() core.sign_content(params) end), nil, nil },
}

print(("%-46s %12s %12s  %s"):format("operation", "core ops/s", "floor ops/s", "ratio (floor)"))
for _, r in ipairs(rows) do
  if r[3] then
    print(("%-46s %12.0f %12.0f  %.3f (%s)"):format(r[1], r[2], r[3], r[2] / r[3], r[4]))
  else
    print(("%-46s %12.0f %12s  -"):format(r[1], r[2], "-"))
  end
end
