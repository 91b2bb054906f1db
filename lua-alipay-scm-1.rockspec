-- lua-alipay, the library: the C core, the client and its transports,
-- notifications, the app gateway, messaging sends (Life Account templates,
-- mini-program subscriptions) and the template and binding registries over a
-- store interface. The local sandbox gateway, a test double, is a rock of
-- its own (lua-alipay-sandbox-scm-1.rockspec) that production hosts skip.
--
-- Why two rockspecs: this part runs everywhere the client must, including
-- LuaJIT inside OpenResty (Lua 5.1 ABI), so it declares lua >= 5.1, < 5.5.
-- The SQLite store, campaigns and the command line use Lua 5.3 features
-- (integer division, math.tointeger, table.unpack), so they are packaged
-- apart in lua-alipay-cli-scm-1.rockspec (lua >= 5.3), which depends on
-- this one. An OpenResty user installs this rock alone with
-- `luarocks --lua-version 5.1 make lua-alipay-scm-1.rockspec`.
rockspec_format = "3.0"
package = "lua-alipay"
version = "scm-1"
source = {
  url = "git+https://github.com/lua-alipay/lua-alipay.git",
}
description = {
  summary = "Alipay Open Platform client for messaging: templates, subscriptions, notifications",
  detailed = [[
    A Lua module with a C core (OpenSSL + libcurl) for the Alipay Open Platform:
    RSA2 signing and response verification, v2 and v3 gateway calls over libcurl or
    nginx cosockets, notifications, the app gateway, Life Account template messages
    and mini-program subscription messages, for Lua 5.1 to 5.4 and
    LuaJIT/OpenResty. The store, campaigns and the `alipay` command are the
    lua-alipay-cli rock; the local sandbox gateway is lua-alipay-sandbox.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",  -- JSON of every request and response
  "luaexpat",   -- lxp: the app gateway parses Alipay's XML event messages
}
external_dependencies = {
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
  CURL = { header = "curl/curl.h", library = "curl" },
}
-- The build type is "command", not "builtin": builtin also copies the whole
-- lua/ directory into every rock it builds, which would put the 5.3-only CLI,
-- store and campaign modules into this rock (and into a LuaJIT tree) and make
-- the two rocks overlap. Here each rock installs exactly the modules it lists
-- (spec/integration/09-packaging_spec.lua checks that every module is in one of the three).
-- The command is POSIX cc; the core needs OpenSSL 3 and libcurl.
build = {
  type = "command",
  build_command = [[$(CC) $(CFLAGS) -std=gnu99 -fvisibility=hidden -Isrc -I"$(LUA_INCDIR)" ]]
    .. [[-I"$(OPENSSL_INCDIR)" -I"$(CURL_INCDIR)" $(LIBFLAG) -o core.so ]]
    .. [[src/core.c src/error.c src/keys.c src/sign.c src/extract.c src/cert.c src/aes.c src/codec.c ]]
    .. [[src/http.c src/charset.c src/clock.c src/class.c src/signal.c ]]
    .. [[-L"$(OPENSSL_LIBDIR)" -L"$(CURL_LIBDIR)" -lssl -lcrypto -lcurl]],
  install = {
    lib = { ["alipay.core"] = "core.so" },
    lua = {
      ["alipay"] = "lua/alipay/init.lua",
      ["alipay.alipaycert"] = "lua/alipay/alipaycert.lua",
      ["alipay.client"] = "lua/alipay/client.lua",
      ["alipay.config"] = "lua/alipay/config.lua",
      ["alipay.errors"] = "lua/alipay/errors.lua",
      ["alipay.classify"] = "lua/alipay/classify.lua",
      ["alipay.inbound.notify"] = "lua/alipay/inbound/notify.lua",
      ["alipay.inbound.app_gateway"] = "lua/alipay/inbound/app_gateway.lua",
      ["alipay.inbound.form"] = "lua/alipay/inbound/form.lua",
      ["alipay.inbound.freshness"] = "lua/alipay/inbound/freshness.lua",
      ["alipay.inbound.message_kind"] = "lua/alipay/inbound/message_kind.lua",
      ["alipay.inbound.policy"] = "lua/alipay/inbound/policy.lua",
      ["alipay.inbound.refusal"] = "lua/alipay/inbound/refusal.lua",
      ["alipay.inbound.replay"] = "lua/alipay/inbound/replay.lua",
      ["alipay.inbound.signature"] = "lua/alipay/inbound/signature.lua",
      ["alipay.inbound.values"] = "lua/alipay/inbound/values.lua",
      ["alipay.inbound.xml"] = "lua/alipay/inbound/xml.lua",
      ["alipay.transport.auto"] = "lua/alipay/transport/auto.lua",
      ["alipay.transport.curl"] = "lua/alipay/transport/curl.lua",
      ["alipay.transport.ngx"] = "lua/alipay/transport/ngx.lua",
      ["alipay.transport.contract"] = "lua/alipay/transport/contract.lua",
      ["alipay.transport.request"] = "lua/alipay/transport/request.lua",
      ["alipay.runtime"] = "lua/alipay/runtime.lua",
      ["alipay.messaging.channels"] = "lua/alipay/messaging/channels.lua",
      ["alipay.messaging.kinds"] = "lua/alipay/messaging/kinds.lua",
      ["alipay.messaging.send"] = "lua/alipay/messaging/send.lua",
      ["alipay.messaging.lifeaccount"] = "lua/alipay/messaging/lifeaccount.lua",
      ["alipay.messaging.life_broadcast"] = "lua/alipay/messaging/life_broadcast.lua",
      ["alipay.messaging.life_labels"] = "lua/alipay/messaging/life_labels.lua",
      ["alipay.messaging.life_content"] = "lua/alipay/messaging/life_content.lua",
      ["alipay.messaging.mini"] = "lua/alipay/messaging/mini.lua",
      ["alipay.messaging.mini_limits"] = "lua/alipay/messaging/mini_limits.lua",
      ["alipay.messaging.mini_templates"] = "lua/alipay/messaging/mini_templates.lua",
      ["alipay.messaging.mini_batch"] = "lua/alipay/messaging/mini_batch.lua",
      ["alipay.messaging.template_diff"] = "lua/alipay/messaging/template_diff.lua",
      ["alipay.messaging.templates"] = "lua/alipay/messaging/templates.lua",
      ["alipay.messaging.users"] = "lua/alipay/messaging/users.lua",
      ["alipay.util.csv"] = "lua/alipay/util/csv.lua",
      ["alipay.util.beijing_time"] = "lua/alipay/util/beijing_time.lua",
      ["alipay.util.fs"] = "lua/alipay/util/fs.lua",
      ["alipay.util.shell"] = "lua/alipay/util/shell.lua",
      ["alipay.util.path"] = "lua/alipay/util/path.lua",
      ["alipay.util.json_source"] = "lua/alipay/util/json_source.lua",
      ["alipay.util.table"] = "lua/alipay/util/table.lua",
      ["alipay.util.utf8"] = "lua/alipay/util/utf8.lua",
      ["alipay.util.control_chars"] = "lua/alipay/util/control_chars.lua",
      ["alipay.util.excerpt"] = "lua/alipay/util/excerpt.lua",
      ["alipay.util.json_keys"] = "lua/alipay/util/json_keys.lua",
      ["alipay.keyfiles"] = "lua/alipay/keyfiles.lua",
      ["alipay.workspace.channel_file"] = "lua/alipay/workspace/channel_file.lua",
      ["alipay.workspace.doctor"] = "lua/alipay/workspace/doctor.lua",
    },
  },
}
