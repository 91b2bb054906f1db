-- The biz_content XML of app-gateway messages (docs/protocol.md §3.4
-- and docs/protocol.md §3.5), parsed strictly with expat (lxp): no
-- DOCTYPE, so no entity can expand and nothing external is read.
local lxp = require "lxp"
local refusal = require "alipay.inbound.refusal"

local xml = {}

xml.MAX_DEPTH = 8

local loggable = refusal.loggable

-- xml.parse(text) -> table | nil, err: the biz_content of a gateway
-- message as a table of the root element's children by name, each a
-- string (its text; CDATA verbatim) or, if it has child elements, a table
-- of the same shape. Strict: a document expat refuses, a DOCTYPE (no
-- entities, no external anything), a repeated element or nesting deeper
-- than xml.MAX_DEPTH is an error. `text` is UTF-8 whatever its declaration
-- says (alipay.inbound.values converted it).
function xml.parse(text)
  local stack, root, failure = {}, nil, nil
  local in_cdata = false
  local parser
  local function fail(why)
    failure = failure or why
    parser:stop()
  end
  local callbacks = {
    StartDoctypeDecl = function() fail("a DOCTYPE is not allowed") end,
    StartElement = function(_, name)
      if #stack >= xml.MAX_DEPTH then return fail("elements nested too deeply") end
      stack[#stack + 1] = { name = name, parts = {} }
    end,
    StartCdataSection = function()
      in_cdata = true
      stack[#stack].has_cdata = true
    end,
    EndCdataSection = function() in_cdata = false end,
    CharacterData = function(_, s)
      local parts = stack[#stack].parts
      parts[#parts + 1] = { s, in_cdata }
    end,
    EndElement = function()
      local node = table.remove(stack)
      local value = node.children
      if not value then
        -- With a CDATA section, the layout whitespace around it is not
        -- part of the value; without one, the text is the value.
        local out = {}
        for _, part in ipairs(node.parts) do
          if part[2] or not node.has_cdata or part[1]:find("%S") then out[#out + 1] = part[1] end
        end
        value = table.concat(out)
      end
      local parent = stack[#stack]
      if not parent then
        root = value
        return
      end
      parent.children = parent.children or {}
      if parent.children[node.name] ~= nil then return fail("element " .. loggable(node.name) .. " is repeated") end
      parent.children[node.name] = value
    end,
  }
  parser = lxp.new(callbacks)
  -- Expat knows no GBK: the text is UTF-8 now, whatever the declaration
  -- says, and setencoding makes expat ignore the declared encoding.
  parser:setencoding("UTF-8")
  local ok, err = parser:parse(text)
  if ok then ok, err = parser:parse() end
  -- close() frees the parser, then raises if the document was incomplete
  -- (already reported by parse): the error is not news.
  pcall(parser.close, parser)
  if failure then return nil, "biz_content: " .. failure end
  if not ok then return nil, "biz_content is not well-formed XML (" .. tostring(err) .. ")" end
  if type(root) ~= "table" then return nil, "biz_content has no fields" end
  return root
end

return xml
