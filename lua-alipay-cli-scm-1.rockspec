-- lua-alipay-cli: the store (SQLite, or PostgreSQL), send campaigns and the `alipay` command,
-- over the lua-alipay library rock (lua-alipay-scm-1.rockspec).
--
-- Lua 5.3 or later: these modules use integer division (cli/progress.lua),
-- math.tointeger (campaign/definition.lua, campaign/init.lua,
-- store/sqlite/) and table.unpack (store/sqlite/init.lua),
-- none of which LuaJIT has. Lua 5.4 is the version they are tested with.
-- The library they drive also runs on LuaJIT (OpenResty), hence two rocks.
rockspec_format = "3.0"
package = "lua-alipay-cli"
version = "scm-1"
source = {
  url = "git+https://github.com/lua-alipay/lua-alipay.git",
}
description = {
  summary = "The alipay command, send campaigns and the SQLite store of lua-alipay",
  detailed = [[
    The `alipay` command line (templates, subscriptions, followers, user bindings,
    sends, raw calls, campaigns), resumable send campaigns to many recipients,
    and the SQLite store they keep their state in. `alipay sandbox` appears
    when the lua-alipay-sandbox rock is installed too.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.3, < 5.5",
  "lua-alipay == scm-1", -- the core, the client and the messaging modules
  "lua-cjson",           -- the store's JSON columns, the CLI's --json output
  "argparse",            -- the command line's subcommands and help
  "luadbi-sqlite3",      -- DBI + its SQLite driver: the store (Debian: lua-dbi-sqlite3)
}
-- Not a dependency: luadbi-postgresql (Debian: lua-dbi-postgresql), the
-- PostgreSQL driver of the same DBI, needed only by a store given as a
-- postgresql:// URL (alipay.store.postgres says so when it is missing).
-- Plain Lua: "none" installs exactly the files listed (builtin would copy
-- the whole lua/ directory, the library's modules included).
build = {
  type = "none",
  install = {
    lua = {
      ["alipay.store"] = "lua/alipay/store/init.lua",
      ["alipay.store.sqlite"] = "lua/alipay/store/sqlite/init.lua",
      ["alipay.store.sqlite.campaigns"] = "lua/alipay/store/sqlite/campaigns.lua",
      ["alipay.store.sqlite.migrations"] = "lua/alipay/store/sqlite/migrations.lua",
      ["alipay.store.url"] = "lua/alipay/store/url.lua",
      ["alipay.store.records"] = "lua/alipay/store/records.lua",
      -- needs luadbi-postgresql, loaded only for a postgresql:// store (see dependencies)
      ["alipay.store.postgres"] = "lua/alipay/store/postgres/init.lua",
      ["alipay.store.postgres.campaigns"] = "lua/alipay/store/postgres/campaigns.lua",
      ["alipay.store.postgres.migrations"] = "lua/alipay/store/postgres/migrations.lua",
      ["alipay.campaign"] = "lua/alipay/campaign/init.lua",
      ["alipay.campaign.audience"] = "lua/alipay/campaign/audience.lua",
      ["alipay.campaign.clock"] = "lua/alipay/campaign/clock.lua",
      ["alipay.campaign.crowd"] = "lua/alipay/campaign/crowd.lua",
      ["alipay.campaign.csv_source"] = "lua/alipay/campaign/csv_source.lua",
      ["alipay.campaign.data"] = "lua/alipay/campaign/data.lua",
      ["alipay.campaign.definition"] = "lua/alipay/campaign/definition.lua",
      ["alipay.campaign.export"] = "lua/alipay/campaign/export.lua",
      ["alipay.campaign.importer"] = "lua/alipay/campaign/importer.lua",
      ["alipay.campaign.limiter"] = "lua/alipay/campaign/limiter.lua",
      ["alipay.campaign.message"] = "lua/alipay/campaign/message.lua",
      ["alipay.campaign.outcome"] = "lua/alipay/campaign/outcome.lua",
      ["alipay.campaign.dispatch"] = "lua/alipay/campaign/dispatch.lua",
      ["alipay.campaign.lease"] = "lua/alipay/campaign/lease.lua",
      -- requires alipay.store, which needs luadbi-sqlite3: this rock
      ["alipay.workspace"] = "lua/alipay/workspace/init.lua",
      ["alipay.cli"] = "lua/alipay/cli/init.lua",
      ["alipay.cli.common"] = "lua/alipay/cli/common.lua",
      ["alipay.cli.exit_status"] = "lua/alipay/cli/exit_status.lua",
      ["alipay.cli.call"] = "lua/alipay/cli/call.lua",
      ["alipay.cli.campaign"] = "lua/alipay/cli/campaign.lua",
      ["alipay.cli.channel"] = "lua/alipay/cli/channel.lua",
      ["alipay.cli.doctor"] = "lua/alipay/cli/doctor.lua",
      ["alipay.cli.followers"] = "lua/alipay/cli/followers.lua",
      ["alipay.cli.progress"] = "lua/alipay/cli/progress.lua",
      ["alipay.cli.send"] = "lua/alipay/cli/send.lua",
      ["alipay.cli.broadcast"] = "lua/alipay/cli/broadcast.lua",
      ["alipay.cli.label"] = "lua/alipay/cli/label.lua",
      ["alipay.cli.content"] = "lua/alipay/cli/content.lua",
      ["alipay.cli.subscription"] = "lua/alipay/cli/subscription.lua",
      ["alipay.cli.template"] = "lua/alipay/cli/template.lua",
      ["alipay.cli.template_sync"] = "lua/alipay/cli/template_sync.lua",
      ["alipay.cli.batchsend"] = "lua/alipay/cli/batchsend.lua",
      ["alipay.cli.users"] = "lua/alipay/cli/users.lua",
    },
    bin = { alipay = "bin/alipay" },
  },
}
