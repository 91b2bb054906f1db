-- `alipay channel add|list|remove`: the channel file without editing JSON by
-- hand. The work is alipay.workspace.channel_file's; this maps options to fields and
-- prints the outcome.
local common = require "alipay.cli.common"
local channel_file = require "alipay.workspace.channel_file"

local M = { summary = "Add, update, list or remove the channels of the channel file (./alipay.json)." }

-- Option of each field, for the command line and for messages.
local OPTIONS = {
  kind = "--kind", app_id = "--app-id", id_type = "--id-type", env = "--env", gateway = "--gateway",
  private_key_file = "--private-key-file", alipay_public_key_file = "--alipay-public-key-file",
  app_cert_file = "--app-cert", alipay_cert_file = "--alipay-cert", alipay_root_cert_file = "--alipay-root-cert",
  app_public_key_file = "--app-public-key-file", ca_file = "--ca-file",
}

local function config_path(ctx)
  return (ctx:config_path())
end

local function add(ctx, args, out)
  local fields = {}
  for field, option in pairs(OPTIONS) do
    fields[field] = args[option:sub(3):gsub("%-", "_")]
  end
  if fields.env and fields.gateway then return nil, common.usage("give --env or --gateway, not both") end
  local certs = fields.app_cert_file or fields.alipay_cert_file or fields.alipay_root_cert_file
  if fields.alipay_public_key_file and certs then
    return nil, common.usage("give --alipay-public-key-file or --app-cert, --alipay-cert and --alipay-root-cert, "
      .. "not both")
  end
  local file = config_path(ctx)
  local result, err, detail = channel_file.put(file, args.code, fields, { update = args.update, names = OPTIONS })
  if not result then return nil, detail or err end
  if args.json then
    common.json(out, { ok = true, action = result.action, code = result.code, config = file,
                       channel = result.channel })
  else
    out.line("%s channel %s (%s, app %s) in %s", result.action, result.code, result.channel.kind,
      result.channel.app_id, file)
    out.line("check it with: alipay doctor --channel %s%s", result.code,
      args.config and (" --config " .. file) or "")
  end
  return true
end

local function list(ctx, args, out)
  local file = config_path(ctx)
  local rows, err, detail = channel_file.list(file)
  if not rows then return nil, detail or err end
  if args.json then
    common.json(out, { ok = true, config = file, channels = common.array(rows) })
  elseif #rows == 0 then
    out.line("no channels in %s", file)
  else
    common.print_table(out, {
      { key = "code", title = "CHANNEL" }, { key = "kind", title = "KIND" }, { key = "app_id", title = "APP ID" },
      { key = "id_type", title = "ID TYPE" }, { key = "mode", title = "KEYS" }, { key = "endpoint", title = "GATEWAY" },
    }, rows)
  end
  return true
end

local function remove(ctx, args, out)
  local file = config_path(ctx)
  local result, err, detail = channel_file.remove(file, args.code)
  if not result then return nil, detail or err end
  if args.json then
    common.json(out, { ok = true, removed = result.code, left = result.left, config = file })
  else
    out.line("removed channel %s from %s (%d left)", result.code, file, result.left)
  end
  return true
end

local function config_option(cmd, cli)
  cmd:option("--config", "The channel file (default: $ALIPAY_CONFIG, else ./" .. common.DEFAULT_CONFIG .. ").")
    :argname("<file>")
  cli.json_flag(cmd)
end

function M.configure(cmd, cli)
  cmd:command_target("action")
  local a = cmd:command("add", "Add a channel, or change one with --update. Key files are checked first "
    .. "and stored as paths relative to the channel file, never copied into it.")
  a:argument("code", "The channel code, e.g. alipaylife123.")
  a:option("--kind", "alipaylife (a Life Account) or alipaymini (a mini program)."):argname("<kind>")
    :choices { "alipaylife", "alipaymini" }
  a:option("--app-id", "The app's id, e.g. 2021000122671080."):argname("<id>")
  a:option("--private-key-file", "The app private key (PEM or the key tool's base64)."):argname("<file>")
  a:option("--alipay-public-key-file", "Alipay's public key (public-key mode)."):argname("<file>")
  a:option("--app-cert", "Certificate mode: the app public key certificate (appCertPublicKey_….crt)."):argname("<file>")
  a:option("--alipay-cert", "Certificate mode: Alipay's public key certificate (alipayCertPublicKey_RSA2.crt).")
    :argname("<file>")
  a:option("--alipay-root-cert", "Certificate mode: Alipay's root certificate (alipayRootCert.crt)."):argname("<file>")
  a:option("--app-public-key-file", "Optional: the app public key uploaded to Alipay; alipay doctor checks that "
    .. "it pairs with the private key."):argname("<file>")
  a:option("--env", "sandbox or production (default production)."):argname("<env>"):choices { "sandbox", "production" }
  a:option("--gateway", "The gateway URL instead of --env, e.g. http://127.0.0.1:8080/gateway.do."):argname("<url>")
  a:option("--id-type", "How the app identifies users: user_id (default) or open_id."):argname("<type>")
    :choices { "user_id", "open_id" }
  a:option("--ca-file", "CA certificates to trust for the gateway's TLS (a private CA, such as the sandbox's).")
    :argname("<file>")
  a:flag("--update", "Change an existing channel: only the given options change.")
  config_option(a, cli)

  config_option(cmd:command("list", "List the channels of the channel file."), cli)

  local r = cmd:command("remove", "Remove a channel from the channel file.")
  r:argument("code", "The channel code.")
  config_option(r, cli)
end

local ACTIONS = { add = add, list = list, remove = remove }

M.run = common.runner(function(ctx, args, out)
  return ACTIONS[args.action](ctx, args, out)
end)

return M
