-- The size limit on a mini-program message's data (the JSON text sent as
-- biz_content.data of alipay.open.app.mini.templatemessage.send), applied by
-- alipay.messaging.mini before a send and by the template registry's
-- check_mini_data, so that both refuse the same texts.
--
-- The unit of the 2048 limit is not settled by the official SDK sources:
-- alipay-sdk-java-all's AlipayOpenAppMiniTemplatemessageSendModel documents
-- `data` as a String with no length at all, and the .NET SDK's copy of that
-- model (Aop.Api.Domain) only says that each keyword value is at most 50
-- characters; neither states 2048 or what it counts. So the 2048 here is
-- the limit as this library has always stated it, read in the safer unit:
-- bytes of the UTF-8 text. A text within 2048 bytes is within 2048 characters too, so whichever
-- unit Alipay means, a text this refuses locally is the only kind that could
-- be refused remotely (at the price of refusing some long CJK texts Alipay
-- might have taken).
local M = {}

M.DATA_MAX = 2048 -- bytes

-- The data's JSON text -> true | nil, msg
function M.check_data_size(text)
  if #text > M.DATA_MAX then
    return nil, ("data: %d bytes as JSON, at most %d"):format(#text, M.DATA_MAX)
  end
  return true
end

return M
