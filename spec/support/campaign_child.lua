-- Runs (resumes) one campaign in a process of its own, so that
-- spec/integration/71-campaign_crash_spec.lua can kill -9 it at any point.
--
--   lua5.4 spec/support/campaign_child.lua <config.json>
--
-- config = { store = "<db path>", campaign = "<id>", app_id = "...", channel = "<code>",
--            kind = "alipaylife", gateway = "<sandbox gateway>",
--            private_key_file = "...", alipay_public_key_file = "...", retry_unknown = false | true | {reason, ...},
--            stale_after_s = <seconds>?, pid_file = "<path>"?, timeout_ms = <ms>? }
-- Prints the summary's status and counts as one JSON line, and exits 0 when
-- the run ended (completed or stopped), 1 when it could not run (or was
-- superseded by another run). pid_file gets this process's pid first
-- (spec/integration/73 stops and continues it with SIGSTOP/SIGCONT).
-- Run from the repository root (spec/helpers.lua sets the module paths).
package.path = "spec/?.lua;" .. package.path
require "helpers"
local cjson = require "cjson"
local campaign = require "alipay.campaign"
local workspace = require "alipay.workspace"

local function fail(msg)
  io.stderr:write("campaign_child: ", tostring(msg), "\n")
  os.exit(1)
end

local path = arg[1] or fail("usage: campaign_child.lua <config.json>")
local f = io.open(path, "rb") or fail("cannot read " .. path)
local cfg = cjson.decode(f:read("a"))
f:close()

if cfg.pid_file then
  local pf = io.open(cfg.pid_file, "wb") or fail("cannot write " .. cfg.pid_file)
  pf:write(tostring(require("alipay.campaign.lease").pid), "\n")
  pf:close()
end

local ws, werr = workspace.open { store = cfg.store, config = { channels = { [cfg.channel] = {
  kind = cfg.kind, app_id = cfg.app_id, gateway = cfg.gateway, timeout_ms = cfg.timeout_ms or 10000,
  private_key_file = cfg.private_key_file, alipay_public_key_file = cfg.alipay_public_key_file,
} } } }
if not ws then fail(werr) end
local ctx = assert(ws:campaign_ctx())
local c, cerr = campaign.open(ctx, cfg.campaign)
if not c then fail(cerr) end
local retry = cfg.retry_unknown
if retry ~= true and type(retry) ~= "table" then retry = false end
local summary, rerr = c:run { retry_unknown = retry, stale_after_s = cfg.stale_after_s }
if not summary then fail(rerr) end
print(cjson.encode { status = summary.status, stop_reason = summary.stop_reason, counts = summary.counts })
ws:close()
