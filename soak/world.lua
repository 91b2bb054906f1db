-- The soak's world: one sandbox gateway on 127.0.0.1, a channel file and a
-- store in a temporary directory, the template imported as an operator
-- would, audiences of followers (each campaign its own block of ids, so the
-- sandbox's delivery log can be split by campaign), and bin/alipay run to
-- its end as a child process.
--
--   local world = assert(require("soak.world").start())
--   world:config(gateway) -> path         a channel file on gateway (default: the sandbox's)
--   world:audience(name, n) -> path, ids  a CSV of n fresh followers; ids = {alipay_id = true}
--   world:run_args(config, id, audience, extra) -> "campaign run ..." arguments (config nil: the sandbox's)
--   world:alipay(args) -> exit status, stdout, stderr
--   world:supports(option) -> bool        `campaign run --help` lists option
--   world:rows(id) -> list | nil, err     the store's recipients (campaign export, JSONL)
--   world:status(id) -> table | nil, err  `campaign status ID --json`
--   world:deliveries() -> list | nil, err the sandbox's delivery log
--   world:stop()
local cjson = require "cjson"
local sandbox = require "alipay.sandbox"
local shell = require "alipay.util.shell"
local fs = require "alipay.util.fs"

local quote = shell.quote

local M = {}

local APP_ID = "2021000122671080"
local KEYS = "spec/fixtures/keys/"
M.CHANNEL = "alipaylife_soak"
M.TEMPLATE = "0soak0order0template000000000001"
-- Enough followers for every audience of every scenario (ids are never reused).
local FOLLOWERS = 6000
local FOLLOWER_PREFIX = "20880000"

local DATA = cjson.encode {
  head_color = "#85be53", url = "https://shop.example/orders/{order_no}", action_name = "查看订单",
  keyword1 = { value = "{order_no}", color = "#85be53" },
  keyword2 = { value = "已发货", color = "#85be53" },
  keyword3 = { value = "2026-11-22 10:00", color = "#85be53" },
}

local World = {}
World.__index = World

local function cwd()
  local pwd = os.getenv("PWD")
  if pwd and pwd:sub(1, 1) == "/" then return pwd end
  local _, out = shell.capture("pwd")
  return (out:gsub("%s+$", ""))
end

function M.start()
  local ok, dir = shell.capture("mktemp -d -t alipay-soak.XXXXXXXX")
  dir = dir:gsub("%s+$", "")
  if not ok or dir == "" then return nil, "mktemp failed" end
  local self = setmetatable({ dir = dir, root = cwd(), next_follower = 1, configs = 0 }, World)
  local sb, err = sandbox.start {
    app_id = APP_ID, app_public_key = fs.read(KEYS .. "app_public.pem"),
    seed = {
      industries = { { code = "10001/20102", name = "IT科技/IT软件与服务" } },
      industry = { primary = "10001/20102" },
      library = { { template_id = "TM000000223", name = "订单状态提醒", industry = "10001/20102",
        keywords = { "订单号", "订单状态", "更新时间" } } },
      claimed = { { template_id = "TM000000223", msg_template_id = M.TEMPLATE } },
      followers = { generate = { count = FOLLOWERS, user_id_prefix = FOLLOWER_PREFIX } },
    },
  }
  if not sb then
    self:stop()
    return nil, "the sandbox did not start: " .. tostring(err)
  end
  self.sb = sb
  fs.write(dir .. "/alipay_public_key.pem", sb.alipay_public_key)
  self.config_path = self:config(sb.gateway)
  -- The template, imported into the store the channel file names; then the
  -- store is closed: the children open it themselves.
  local ws
  ws, err = require("alipay.workspace").open { config = self.config_path }
  if not ws then
    self:stop()
    return nil, "workspace: " .. tostring(err)
  end
  local imported
  imported, err = ws.registry:import({
    { id = M.TEMPLATE, name = "订单状态提醒", keywords = { "订单号", "订单状态", "更新时间" } },
  }, { channel = M.CHANNEL })
  ws:close()
  if not imported then
    self:stop()
    return nil, "template import: " .. tostring(err)
  end
  return self
end

-- A channel file on `gateway` (the sandbox's, or a fault layer in front of
-- it); every channel file names the same store.
function World:config(gateway)
  self.configs = self.configs + 1
  local path = ("%s/alipay-%d.json"):format(self.dir, self.configs)
  fs.write(path, cjson.encode {
    store = self.dir .. "/alipay.db",
    channels = { [M.CHANNEL] = { kind = "alipaylife", app_id = APP_ID,
      private_key_file = self.root .. "/" .. KEYS .. "app_private_pkcs1.pem",
      alipay_public_key_file = self.dir .. "/alipay_public_key.pem", gateway = gateway } },
  })
  return path
end

function World:audience(name, n)
  local lines, ids = { "user_id,userid,order_no" }, {}
  for _ = 1, n do
    local id = ("%s%08d"):format(FOLLOWER_PREFIX, self.next_follower)
    lines[#lines + 1] = ("%s,,SO%d"):format(id, self.next_follower)
    ids[id] = true
    self.next_follower = self.next_follower + 1
  end
  assert(self.next_follower <= FOLLOWERS + 1, "soak: more recipients than sandbox followers")
  local path = self.dir .. "/" .. name .. ".csv"
  fs.write(path, table.concat(lines, "\n") .. "\n")
  return path, ids
end

function World:run_args(config, id, audience, extra)
  config = config or self.config_path
  return ("campaign run --config %s --channel %s --template %s --audience %s --data %s --id %s "
    .. "--progress none %s"):format(quote(config), M.CHANNEL, M.TEMPLATE, quote(audience), quote(DATA), id,
    extra or "")
end

-- The command line of bin/alipay with args, its output to the two files.
function World:command(args, out, err)
  return ("cd %s && exec lua5.4 bin/alipay %s >%s 2>%s"):format(quote(self.root), args, quote(out), quote(err))
end

function World:alipay(args)
  local out, err = self.dir .. "/stdout", self.dir .. "/stderr"
  local _, _, code = os.execute(self:command(args, out, err))
  return code, fs.read(out) or "", fs.read(err) or ""
end

function World:supports(option)
  self.help = self.help or select(2, self:alipay("campaign run --help")) .. select(2,
    self:alipay("campaign resume --help"))
  return self.help:find(option, 1, true) ~= nil
end

function World:rows(id)
  local path = self.dir .. "/" .. id .. ".export.jsonl"
  local code, _, err = self:alipay(("campaign export %s --output %s --format jsonl --config %s")
    :format(id, quote(path), quote(self.config_path)))
  if code ~= 0 then return nil, "campaign export " .. id .. ": " .. err:gsub("%s+$", "") end
  local rows = {}
  for line in (fs.read(path) or ""):gmatch("[^\n]+") do rows[#rows + 1] = cjson.decode(line) end
  return rows
end

-- The campaign's status (`campaign status ID --json`), or nil, err.
function World:status(id)
  local code, out, err = self:alipay(("campaign status %s --json --config %s"):format(id, quote(self.config_path)))
  if code ~= 0 then return nil, "campaign status " .. id .. ": " .. err:gsub("%s+$", "") end
  return cjson.decode(out)
end

function World:deliveries()
  return self.sb:deliveries()
end

function World:stop()
  if self.sb then self.sb:stop() end
  self.sb = nil
  if self.dir and not os.getenv("SOAK_KEEP") then
    shell.execute("rm -rf " .. quote(self.dir))
  end
end

return M
