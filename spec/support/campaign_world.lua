-- What the campaign specs with child processes and the sandbox share
-- (71 crash, 73 fence, 74 unknown reasons): the sandbox's Life Account,
-- its template, fixed message data, process helpers, and the world itself:
-- a sandbox plus a workspace (store, channels, registry) over it.
local helpers = require "helpers"
local sandbox = require "alipay.sandbox"
local workspace = require "alipay.workspace"

local M = {
  APP_ID = "2021000122671080",
  LIFE = "alipaylife123",
  TEMPLATE = "14330d60f0ab4516853a0900827cee35",
  SEND = "alipay.open.public.message.single.send",
  FIXED = {
    head_color = "#85be53", url = "https://example.com/sale", action_name = "查看详情",
    keyword1 = { value = "SALE", color = "#85be53" }, keyword2 = { value = "open", color = "#85be53" },
    keyword3 = { value = "2024-06-07 18:41", color = "#85be53" },
  },
}

-- Follower n of the seed's generated followers.
function M.generated(n) return ("20880000%08d"):format(n) end

function M.sleep(seconds) os.execute(("sleep %.3f"):format(seconds)) end

-- Whether pid has exited (gone, or a zombie nobody reaped yet).
function M.process_gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return true end
  local stat = f:read("a")
  f:close()
  return stat:match("^%d+ %b() (%a)") == "Z"
end

-- A sandbox with the seed, and a workspace over it in a fresh directory:
-- -> {sb =, dir =, ws =, ctx =, store =, channel = the channel's fields}.
function M.start(timeout_ms)
  local dir = helpers.tmpdir()
  local sb = assert(sandbox.start { app_id = M.APP_ID, app_public_key = helpers.key_text("app_public.pem"),
                                    seed = "spec/fixtures/sandbox_seed.json" })
  helpers.write(dir .. "/alipay_public.pem", sb.alipay_public_key)
  local channel = { kind = "alipaylife", app_id = M.APP_ID, gateway = sb.gateway, timeout_ms = timeout_ms,
    private_key_file = "spec/fixtures/keys/app_private_pkcs8.pem",
    alipay_public_key_file = dir .. "/alipay_public.pem" }
  local ws = assert(workspace.open { store = dir .. "/state.db", config = { channels = { [M.LIFE] = channel } } })
  assert(ws.registry:import { { channel = M.LIFE, kind = "alipaylife", id = M.TEMPLATE,
                                keywords = { "订单号", "订单状态", "更新时间" } } })
  local ctx = assert(ws:campaign_ctx())
  return { sb = sb, dir = dir, ws = ws, ctx = ctx, store = ctx.store, channel = channel }
end

return M
