-- A complete client session against the local sandbox gateway: start the
-- sandbox, make a v2 and a v3 call over HTTPS, see a typed error, stop.
--   lua5.4 examples/client.lua      (from a checkout, after `make`)
package.cpath = "build/lua5.4/?.so;" .. package.cpath
-- lua/: lua-alipay; sandbox/lua/: the sandbox gateway (lua-alipay-sandbox).
package.path = "lua/?.lua;lua/?/init.lua;sandbox/lua/?.lua;sandbox/lua/?/init.lua;" .. package.path
local fs = require "alipay.util.fs"

local alipay = require "alipay"
local sandbox = require "alipay.sandbox"

local APP_ID = "2021000122671080"
local KEYS = "spec/fixtures/keys/"

local function read(path) return assert(fs.read(path)) end

-- The sandbox verifies our requests with the app public key and signs its
-- answers with its own key, which plays the part of Alipay's.
local sb = assert(sandbox.start {
  app_id = APP_ID,
  app_public_key = read(KEYS .. "app_public.pem"),
  seed = "spec/fixtures/sandbox_seed.json",
})

local ok, failure = pcall(function()
  local client = assert(alipay.new {
    app_id = APP_ID,
    private_key_file = KEYS .. "app_private_pkcs1.pem",
    alipay_public_key = sb.alipay_public_key,
    gateway = sb.https_gateway, -- real TLS: the sandbox's CA verifies its certificate
    ca_file = sb.ca_file,
    timeout_ms = 5000,
  })

  -- v2: is this user following the Life Account?
  local res, err = client:execute("alipay.open.public.user.follow.query",
                                  { user_id = "2088857585575154" })
  assert(res, err) -- err is one printable line; detail the typed error
  print("follow.query: is_follow = " .. res.is_follow)

  -- v3: which mini-program templates did the user subscribe to?
  res, err = client:v3("POST", "/v3/alipay/open/app/messagetemplate/subscribe/query", {
    user_id = "2088857585575154",
    template_id_list = { "MDI4YzIxMDE2M2I5YTQzYjUxNWE4MjA4NmU1MTIyYmM=" },
  })
  assert(res, err)
  for _, rel in ipairs(res.subscribe_relations or {}) do
    print(("subscribe.query: %s %s (state %s)"):format(rel.template_id, rel.subscribe_type, rel.subscribe_state))
  end

  -- A business error is a typed error, not an exception.
  local detail
  res, err, detail = client:execute("alipay.open.public.message.single.send", {
    to_user_id = "2088857585575154",
    template = { template_id = "7d5e0c1f2a9b48c6a1e3f0d2b4c6e8a0", context = {} },
  })
  assert(not res)
  print("single.send to a deleted template: " .. err)
  print(("  kind=%s code=%s sub_code=%s retryable=%s"):format(
    detail.kind, detail.code, detail.sub_code, tostring(detail.retryable)))
end)
sb:stop()
if not ok then error(failure, 0) end
