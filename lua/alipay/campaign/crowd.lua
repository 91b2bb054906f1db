-- Audiences whose users Alipay knows and the campaign does not
-- (docs/messaging.md §6.2): a mini program's crowd (棋盘人群), which a
-- campaign sends to in ONE batch send (§3.5), and a Life Account label,
-- which no template campaign can reach (§2.7).
--
--   local crowd = require "alipay.campaign.crowd"
--   crowd.ID_TYPE                                  "crowd": the id type of the one row a crowd campaign stores
--   crowd.refusal(audience, kind, names) -> nil | err, field
--       why a campaign of that audience cannot be made on a channel of that
--       kind with those placeholders (msg.names), before anything is stored
--   crowd.row_fields(code) -> {id_type =, alipay_id =, checked = true}
--   crowd.batch_msg(batch_msg_id) -> the msg a sent crowd row keeps
--   crowd.report(store, campaign_id) -> {crowd_code=, status=, batch_msg_id=, code=, sub_code=,
--       unknown_reason=, per_user_results = false, text = "sent to crowd ... in one batch send ..."} | nil
--
-- Why one row: Alipay picks the crowd's members that subscribed to the
-- template, and the batch send's answer is one batch_msg_id, not a result
-- per user. The row carries the same exactly-once promise as a recipient's
-- (§6.4): inflight before the request leaves, unknown when the outcome is
-- open, sent again only with retry_unknown.
local excerpt = require "alipay.util.excerpt"
local sorted = require("alipay.util.table").sorted_keys

local M = {}

M.ID_TYPE = "crowd"

local BATCH_MSG = "batch_msg_id "

function M.refusal(audience, kind, names)
  if audience.label ~= nil then
    local id = excerpt(tostring(audience.label))
    return ("audience.label: Alipay's message.label.send carries a text or image-text message only, never a "
      .. "template message, and no API lists the users of a label, so a template campaign cannot reach label %s; "
      .. "send to it with `alipay broadcast text --label %s` or `alipay broadcast image-text --label %s` "
      .. "(docs/messaging.md §2.7)"):format(id, id, id), "audience"
  end
  if audience.crowd == nil then return nil end
  if kind ~= "alipaymini" then
    return "audience.crowd: a crowd (棋盘人群) is a mini-program audience (a batch send's crowd_code); a Life "
      .. "Account campaign sends to a file, a list or its followers", "audience"
  end
  local name = sorted(names)[1]
  if name then
    return ("data: the placeholder {%s} takes a value per recipient, but a crowd audience has no recipient rows "
      .. "(Alipay chooses the crowd's users and sends one batch): write the data without placeholders")
      :format(excerpt(name)), "data"
  end
  return nil
end

function M.row_fields(code)
  return { id_type = M.ID_TYPE, alipay_id = code, checked = true }
end

function M.batch_msg(id)
  if id then return BATCH_MSG .. id end
  return "accepted; the answer held no batch_msg_id"
end

local function text_of(r)
  local code = excerpt(r.crowd_code)
  if r.status == "sent" then
    return ("sent to crowd %s in one batch send (batch_msg_id %s); Alipay reports no per-user results")
      :format(code, r.batch_msg_id and excerpt(r.batch_msg_id, 128) or "none in the answer")
  elseif r.status == "unknown" then
    return ("the batch send to crowd %s has an unknown outcome (%s): it may have been delivered; it is sent "
      .. "again only with retry_unknown (--retry-unknown)"):format(code, tostring(r.unknown_reason or "unrecorded"))
  elseif r.status == "failed" or r.status == "skipped" then
    return ("the batch send to crowd %s was %s: %s%s%s"):format(code, r.status == "failed" and "refused" or
      "not made", tostring(r.code), r.sub_code and (" " .. r.sub_code) or "", r.msg and (" (" .. r.msg .. ")") or "")
  elseif r.status == "inflight" then
    return ("the batch send to crowd %s is in flight"):format(code)
  end
  return ("crowd %s: one batch send, not made yet"):format(code)
end

function M.report(store, id)
  local row = store:recipient_get(id, 1)
  if not row or row.id_type ~= M.ID_TYPE then return nil end
  local msg = row.msg
  local batch_id = row.status == "sent" and msg and msg:sub(1, #BATCH_MSG) == BATCH_MSG and msg:sub(#BATCH_MSG + 1)
    or nil
  local r = { crowd_code = row.alipay_id, status = row.status, batch_msg_id = batch_id, code = row.code,
              sub_code = row.sub_code, unknown_reason = row.unknown_reason, per_user_results = false,
              msg = row.status ~= "sent" and msg or nil }
  r.text = text_of(r)
  r.msg = nil
  return r
end

return M
