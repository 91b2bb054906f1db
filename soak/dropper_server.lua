-- The nginx side of soak/dropper.lua (runs inside Debian's nginx Lua module,
-- LuaJIT, one worker): every request is forwarded to the sandbox gateway,
-- which handles it (a send is delivered); then, with the configured
-- probability, the answer is thrown away and the client's connection closed
-- without a byte (444). That is the server of issue 13 §1: it read the
-- request, did the work and closed the reused keep-alive connection without
-- answering; libcurl then sends the request again on a new connection.
--   init_worker(reused, fresh)   drop probabilities on a reused connection
--                                (connection_requests > 1) and on a new one
--   forward()                    location /: forward, then answer or drop
--   stats()                      location = /__dropper/stats: JSON counts
local M = {}

local probability = { reused = 0, fresh = 0 }
local counts = { forwarded = 0, dropped_reused = 0, dropped_fresh = 0 }

-- Headers of the upstream answer that belong to that hop, not to ours.
local HOP = { connection = true, ["keep-alive"] = true, ["transfer-encoding"] = true,
  ["content-length"] = true }

function M.init_worker(reused, fresh)
  math.randomseed(ngx.time() * 1000 + ngx.worker.pid())
  probability.reused, probability.fresh = reused, fresh
end

function M.forward()
  ngx.req.read_body()
  local verb = ngx.req.get_method()
  local res = ngx.location.capture("/__upstream" .. ngx.var.uri, {
    method = verb == "GET" and ngx.HTTP_GET or ngx.HTTP_POST,
    args = ngx.var.args, body = ngx.req.get_body_data(),
  })
  counts.forwarded = counts.forwarded + 1
  local reused = (tonumber(ngx.var.connection_requests) or 1) > 1
  if math.random() < (reused and probability.reused or probability.fresh) then
    local key = reused and "dropped_reused" or "dropped_fresh"
    counts[key] = counts[key] + 1
    return ngx.exit(444)
  end
  ngx.status = res.status
  for name, value in pairs(res.header) do
    if not HOP[name:lower()] then ngx.header[name] = value end
  end
  ngx.header["Content-Length"] = #res.body
  ngx.print(res.body)
end

function M.stats()
  ngx.header["Content-Type"] = "application/json"
  ngx.print(('{"forwarded":%d,"dropped_reused":%d,"dropped_fresh":%d}')
    :format(counts.forwarded, counts.dropped_reused, counts.dropped_fresh))
end

return M
