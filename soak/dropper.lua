-- A fault layer in front of the sandbox gateway, on 127.0.0.1: nginx
-- forwards each request to the sandbox (which delivers it), then drops some
-- answers by closing the connection without a byte (soak/dropper_server.lua
-- says why). The sandbox's own `reset` fault closes before the gateway
-- handles the request, so a resend there is delivered once; this layer is
-- what makes a transport's silent resend show as a duplicate delivery.
--
--   local d = assert(require("soak.dropper").start(sb.base_url, { reused = 0.3, fresh = 0.05 }))
--   d.gateway                 the v2 gateway URL through the layer
--   d:stats() -> {forwarded=, dropped_reused=, dropped_fresh=} | nil, err
--   d:stop()
local cjson = require "cjson"
local runner = require "alipay.sandbox.nginx"

local M = {}

local Dropper = {}
Dropper.__index = Dropper

-- Double-quoted for nginx.conf.
local function nginx_string(s)
  return '"' .. s:gsub("[\\\"]", "\\%0") .. '"'
end

function M.start(upstream, probability, root)
  local lua_path = root .. "/?.lua;;"
  local handler = "require('soak.dropper_server')"
  local srv, err = runner.start {
    lua = true,
    conf = function(port, _, prefix)
      return table.concat({
        "  lua_package_path " .. nginx_string(lua_path) .. ";",
        ("  init_worker_by_lua_block { %s.init_worker(%.4f, %.4f) }")
          :format(handler, probability.reused or 0, probability.fresh or 0),
        "  keepalive_requests 1000000;",
        "  keepalive_timeout 120s;",
        "  client_body_buffer_size 1m;",
        "  server {",
        ("    listen 127.0.0.1:%d;"):format(port),
        "    error_log " .. nginx_string(prefix .. "/error.log") .. " notice;",
        ("    location = /__dropper/stats { content_by_lua_block { %s.stats() } }"):format(handler),
        "    location /__upstream/ {",
        "      internal;",
        ("      proxy_pass %s/;"):format(upstream),
        "      proxy_http_version 1.1;",
        "      proxy_set_header Connection \"\";",
        "    }",
        ("    location / { content_by_lua_block { %s.forward() } }"):format(handler),
        "  }",
      }, "\n")
    end,
  }
  if not srv then return nil, "the dropping layer did not start: " .. tostring(err) end
  local base = "http://127.0.0.1:" .. srv.port
  return setmetatable({ server = srv, base_url = base, gateway = base .. "/gateway.do" }, Dropper)
end

function Dropper:stats()
  local engine, err = require("alipay.core").http { timeout_ms = 10000 }
  if not engine then return nil, err end
  local res
  res, err = engine:request { method = "GET", url = self.base_url .. "/__dropper/stats" }
  engine:close()
  if not res then return nil, err end
  local ok, value = pcall(cjson.decode, res.body)
  if not ok or type(value) ~= "table" then return nil, "dropper stats: not JSON" end
  return value
end

function Dropper:stop()
  if self.server then self.server:stop() end
  self.server = nil
end

return M
