rockspec_format = "3.0"
package = "lua-alipay"
version = "scm-1"
source = {
  url = "git+https://github.com/lua-alipay/lua-alipay.git",
}
description = {
  summary = "Alipay Open Platform client for messaging: templates, subscriptions, campaigns",
  detailed = [[
    A Lua module with a C core (OpenSSL + libcurl) for the Alipay Open Platform:
    RSA2 signing and response verification, v2 and v3 gateway calls, notifications,
    Life Account template messages, mini-program subscription messages and send
    campaigns, for Lua 5.4 and LuaJIT/OpenResty.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
  "argparse",
  "luaexpat",
}
external_dependencies = {
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
  CURL = { header = "curl/curl.h", library = "curl" },
}
build = {
  type = "builtin",
  modules = {
    ["alipay.core"] = {
      sources = {
        "src/core.c", "src/keys.c", "src/sign.c", "src/extract.c", "src/cert.c",
        "src/aes.c", "src/codec.c", "src/http.c", "src/charset.c",
        "src/clock.c",
      },
      libraries = { "ssl", "crypto", "curl" },
      incdirs = { "src", "$(OPENSSL_INCDIR)", "$(CURL_INCDIR)" },
      libdirs = { "$(OPENSSL_LIBDIR)", "$(CURL_LIBDIR)" },
    },
    ["alipay"] = "lua/alipay/init.lua",
    ["alipay.client"] = "lua/alipay/client.lua",
    ["alipay.config"] = "lua/alipay/config.lua",
    ["alipay.errors"] = "lua/alipay/errors.lua",
    ["alipay.notify"] = "lua/alipay/notify.lua",
    ["alipay.gateway"] = "lua/alipay/gateway.lua",
    ["alipay.campaign.audience"] = "lua/alipay/campaign/audience.lua",
    ["alipay.campaign.clock"] = "lua/alipay/campaign/clock.lua",
    ["alipay.campaign.csv_source"] = "lua/alipay/campaign/csv_source.lua",
    ["alipay.campaign.data"] = "lua/alipay/campaign/data.lua",
    ["alipay.campaign.definition"] = "lua/alipay/campaign/definition.lua",
    ["alipay.campaign.export"] = "lua/alipay/campaign/export.lua",
    ["alipay.campaign.importer"] = "lua/alipay/campaign/importer.lua",
    ["alipay.campaign"] = "lua/alipay/campaign/init.lua",
    ["alipay.campaign.limiter"] = "lua/alipay/campaign/limiter.lua",
    ["alipay.campaign.message"] = "lua/alipay/campaign/message.lua",
    ["alipay.campaign.outcome"] = "lua/alipay/campaign/outcome.lua",
    ["alipay.campaign.sender"] = "lua/alipay/campaign/sender.lua",
    ["alipay.campaign.state"] = "lua/alipay/campaign/state.lua",
    ["alipay.store.campaigns"] = "lua/alipay/store/campaigns.lua",
    ["alipay.channels"] = "lua/alipay/channels.lua",
    ["alipay.classify"] = "lua/alipay/classify.lua",
    ["alipay.lifeaccount"] = "lua/alipay/lifeaccount.lua",
    ["alipay.mini"] = "lua/alipay/mini.lua",
    ["alipay.sender"] = "lua/alipay/sender.lua",
    ["alipay.csv"] = "lua/alipay/csv.lua",
    ["alipay.store"] = "lua/alipay/store/init.lua",
    ["alipay.store.sqlite"] = "lua/alipay/store/sqlite.lua",
    ["alipay.templates"] = "lua/alipay/templates.lua",
    ["alipay.users"] = "lua/alipay/users.lua",
    ["alipay.util.fs"] = "lua/alipay/util/fs.lua",
    ["alipay.util.shell"] = "lua/alipay/util/shell.lua",
    ["alipay.transport.auto"] = "lua/alipay/transport/auto.lua",
    ["alipay.transport.curl"] = "lua/alipay/transport/curl.lua",
    ["alipay.transport.ngx"] = "lua/alipay/transport/ngx.lua",
    ["alipay.sandbox"] = "lua/alipay/sandbox/init.lua",
    ["alipay.sandbox.nginx"] = "lua/alipay/sandbox/nginx.lua",
    ["alipay.sandbox.server"] = "lua/alipay/sandbox/server.lua",
    ["alipay.sandbox.gateway"] = "lua/alipay/sandbox/gateway.lua",
    ["alipay.sandbox.state"] = "lua/alipay/sandbox/state.lua",
    ["alipay.sandbox.apis"] = "lua/alipay/sandbox/apis.lua",
    ["alipay.cli"] = "lua/alipay/cli/init.lua",
    ["alipay.cli.sandbox"] = "lua/alipay/cli/sandbox.lua",
    ["alipay.cli.common"] = "lua/alipay/cli/common.lua",
    ["alipay.cli.template"] = "lua/alipay/cli/template.lua",
    ["alipay.cli.subscription"] = "lua/alipay/cli/subscription.lua",
    ["alipay.cli.followers"] = "lua/alipay/cli/followers.lua",
    ["alipay.cli.users"] = "lua/alipay/cli/users.lua",
    ["alipay.cli.send"] = "lua/alipay/cli/send.lua",
    ["alipay.cli.call"] = "lua/alipay/cli/call.lua",
    ["alipay.cli.campaign"] = "lua/alipay/cli/campaign.lua",
    ["alipay.cli.progress"] = "lua/alipay/cli/progress.lua",
  },
  install = {
    bin = { alipay = "bin/alipay" },
  },
}
