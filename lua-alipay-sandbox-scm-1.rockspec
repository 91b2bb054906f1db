-- lua-alipay-sandbox: the local sandbox gateway, a stand-in for
-- openapi.alipay.com that the specs, the demo and `alipay sandbox` run
-- (nginx + the Lua module on loopback), and that command itself.
--
-- A rock of its own so that the library and CLI rocks, installed on every
-- production host, carry no test double. Its modules live in sandbox/lua/
-- (module names alipay.sandbox.* and alipay.cli.sandbox); the CLI shows
-- `alipay sandbox` only when this rock is installed.
--
-- Beside the other two rockspecs at the root, not in sandbox/: `luarocks
-- make` builds from the current directory and `luarocks pack` from the root
-- of the git clone, so the paths below are relative to the root either way,
-- and `luarocks make lua-alipay-sandbox-scm-1.rockspec` runs like its siblings.
--
-- Lua 5.1 to 5.4: the gateway's code runs under LuaJIT inside nginx, the
-- starter under Lua 5.4 (the CLI) or LuaJIT; nginx loads the LuaJIT build of
-- alipay.core (lua-alipay built with --lua-version 5.1, or `make install`).
rockspec_format = "3.0"
package = "lua-alipay-sandbox"
version = "scm-1"
source = {
  url = "git+https://github.com/lua-alipay/lua-alipay.git",
}
description = {
  summary = "A local Alipay Open Platform sandbox gateway (nginx on loopback) for tests and demos",
  detailed = [[
    A local stand-in for the Alipay gateway: v2 and v3 calls signed and verified
    with the app's keys, seeded templates, subscriptions and followers, a delivery
    log, injected faults, and the `alipay sandbox start|stop|status` command.
    Needs nginx with its Lua module (Debian: nginx, libnginx-mod-http-lua) and
    the openssl command. For development and CI hosts, not for production.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-alipay == scm-1", -- alipay.core (signing, HTTP), alipay.util.fs/shell
  "lua-cjson",           -- the gateway's JSON, the state file
}
build = {
  type = "none",
  install = {
    lua = {
      ["alipay.sandbox"] = "sandbox/lua/alipay/sandbox/init.lua",
      ["alipay.sandbox.nginx"] = "sandbox/lua/alipay/sandbox/nginx.lua",
      ["alipay.sandbox.server"] = "sandbox/lua/alipay/sandbox/server.lua",
      ["alipay.sandbox.openapi"] = "sandbox/lua/alipay/sandbox/openapi.lua",
      ["alipay.sandbox.world"] = "sandbox/lua/alipay/sandbox/world/init.lua",
      ["alipay.sandbox.world.seed"] = "sandbox/lua/alipay/sandbox/world/seed.lua",
      ["alipay.sandbox.world.life"] = "sandbox/lua/alipay/sandbox/world/life.lua",
      ["alipay.sandbox.world.mini"] = "sandbox/lua/alipay/sandbox/world/mini.lua",
      ["alipay.sandbox.replica"] = "sandbox/lua/alipay/sandbox/replica.lua",
      ["alipay.sandbox.callback"] = "sandbox/lua/alipay/sandbox/callback.lua",
      ["alipay.sandbox.callback_messages"] = "sandbox/lua/alipay/sandbox/callback_messages.lua",
      ["alipay.sandbox.callback_sender"] = "sandbox/lua/alipay/sandbox/callback_sender.lua",
      ["alipay.sandbox.apis"] = "sandbox/lua/alipay/sandbox/apis/init.lua",
      ["alipay.sandbox.apis.support"] = "sandbox/lua/alipay/sandbox/apis/support.lua",
      ["alipay.sandbox.apis.life"] = "sandbox/lua/alipay/sandbox/apis/life.lua",
      ["alipay.sandbox.apis.mini"] = "sandbox/lua/alipay/sandbox/apis/mini.lua",
      ["alipay.sandbox.apis.mini_templates"] = "sandbox/lua/alipay/sandbox/apis/mini_templates.lua",
      ["alipay.sandbox.apis.mini_batch"] = "sandbox/lua/alipay/sandbox/apis/mini_batch.lua",
      ["alipay.sandbox.apis.cert"] = "sandbox/lua/alipay/sandbox/apis/cert.lua",
      ["alipay.sandbox.apis.life_broadcast"] = "sandbox/lua/alipay/sandbox/apis/life_broadcast.lua",
      ["alipay.sandbox.apis.life_labels"] = "sandbox/lua/alipay/sandbox/apis/life_labels.lua",
      ["alipay.sandbox.apis.life_content"] = "sandbox/lua/alipay/sandbox/apis/life_content.lua",
      ["alipay.cli.sandbox"] = "sandbox/lua/alipay/cli/sandbox.lua",
      ["alipay.sandbox.cli_callbacks"] = "sandbox/lua/alipay/sandbox/cli_callbacks.lua",
    },
  },
}
