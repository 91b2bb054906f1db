-- luacheck configuration: Lua 5.4 code that also runs under LuaJIT/OpenResty.
std = "max"
max_line_length = 120
codes = true

files["spec/"] = { std = "max+busted" }
files["soak/tally_spec.lua"] = { std = "max+busted" }
files["sandbox/lua/alipay/sandbox/"] = { globals = { "ngx" } }
files["lua/alipay/transport/ngx.lua"] = { globals = { "ngx" } }
files["examples/openresty/"] = { globals = { "ngx" } }
-- The soak's fault layer runs inside nginx (soak/dropper.lua starts it).
files["soak/dropper_server.lua"] = { globals = { "ngx" } }
color = false
