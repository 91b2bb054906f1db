local helpers = require "helpers"
local core = require "alipay.core"
local cjson = require "cjson"

local vectors = helpers.vectors()

-- A body in the shape Alipay sends: the node, then the siblings given as
-- raw JSON text.
local function body_of(node_json, siblings)
  return '{"alipay_trade_create_response":' .. node_json .. (siblings or ',"sign":"c2ln"') .. "}"
end

-- extract must fail with a message that names the problem and carries none
-- of the body.
local function assert_fails(body, node, pattern, secret)
  local res, err = core.extract(body, node or "alipay.trade.create")
  assert.is_nil(res)
  assert.are.equal("string", type(err))
  assert.matches("^extract: ", err)
  if pattern then assert.matches(pattern, err) end
  assert.is_true(#err < 120, "error message too long: " .. #err)
  if secret then assert.is_nil(err:find(secret, 1, true), "error echoes the body: " .. err) end
  return err
end

describe("core.extract", function()
  describe("fixture vectors", function()
    for i, v in ipairs(vectors.extract) do
      it("extracts vectors.extract[" .. i .. "] byte for byte", function()
        local res = assert(core.extract(v.body, v.method))
        assert.are.equal(v.signed_content, res.content)
        assert.are.equal("alipay_trade_create_response", res.node)
        assert.are.equal("…", res.sign)
        assert.is_nil(res.cert_sn)
      end)
    end

    it("marks only the string-valued node as encrypted", function()
      local flags = {}
      for i, v in ipairs(vectors.extract) do
        flags[i] = assert(core.extract(v.body, v.method)).encrypted
      end
      assert.are.same({ false, false, true }, flags)
    end)

    for _, v in ipairs(vectors.response_verify) do
      if v.signed_content then
        it("extracts the content of response_verify '" .. v.name .. "'", function()
          local res = assert(core.extract(v.body, v.method))
          assert.are.equal(v.signed_content, res.content)
          assert.is_false(res.encrypted)
          assert.are.equal(cjson.decode(v.body).sign, res.sign)
        end)
      end
    end
  end)

  describe("strings inside the node", function()
    it("ignores braces and brackets inside strings", function()
      local node = '{"a}":"}}]]","b{":"{{[[","c":["}",{"d":"]{"}]}'
      assert.are.equal(node, assert(core.extract(body_of(node), "alipay.trade.create")).content)
    end)

    it("does not end a string at an escaped quote", function()
      local node = [[{"a":"x\"}\"y","b":"\"{"}]]
      assert.are.equal(node, assert(core.extract(body_of(node), "alipay.trade.create")).content)
    end)

    -- A quote after an even run of backslashes closes the string, one after
    -- an odd run is part of it; cjson builds the text and reads it back.
    for run = 0, 6 do
      it("handles a run of " .. run .. " backslashes before a quote", function()
        local value = ("\\"):rep(run) .. '"}' .. ("\\"):rep(run)
        local node = cjson.encode({ v = value })
        local res = assert(core.extract(body_of(node), "alipay.trade.create"))
        assert.are.equal(node, res.content)
        assert.are.equal(value, cjson.decode(res.content).v)
      end)
    end

    it("keeps escapes and non-ASCII bytes of the content as sent", function()
      local node = '{"url":"https:\\/\\/x.cn\\/a","q":"&amp;","n":"\\u4e2d文"}'
      assert.are.equal(node, assert(core.extract(body_of(node), "alipay.trade.create")).content)
    end)
  end)

  describe("whitespace", function()
    it("allows whitespace around ':' and ','", function()
      local body = ' {\n\t"alipay_trade_create_response" \r\n:\t {"a" : 1 , "b":[ 1 , 2 ]} ,'
        .. '\n "sign"  :  "c2ln" \n} \n'
      local res = assert(core.extract(body, "alipay.trade.create"))
      assert.are.equal('{"a" : 1 , "b":[ 1 , 2 ]}', res.content)
      assert.are.equal("c2ln", res.sign)
    end)

    it("reports the missing node for an empty top-level object", function()
      assert_fails("{ }", nil, "no alipay_trade_create_response or error_response in the body")
    end)
  end)

  describe("node selection", function()
    it("maps a method name to its response node", function()
      local res = assert(core.extract(body_of("{}"), "alipay.trade.create"))
      assert.are.equal("alipay_trade_create_response", res.node)
    end)

    it("takes a node name as it is", function()
      local res = assert(core.extract(body_of('{"a":1}'), "alipay_trade_create_response"))
      assert.are.equal("alipay_trade_create_response", res.node)
      assert.are.equal('{"a":1}', res.content)
    end)

    it("falls back to error_response and says so in node", function()
      local body = '{"error_response":{"code":"40002","msg":"Invalid Arguments"},"sign":"c2ln"}'
      local res = assert(core.extract(body, "alipay.trade.create"))
      assert.are.equal("error_response", res.node)
      assert.are.equal('{"code":"40002","msg":"Invalid Arguments"}', res.content)
      assert.are.equal("c2ln", res.sign)
    end)

    it("prefers the requested node over error_response", function()
      local body = '{"error_response":{"code":"40002"},"alipay_trade_create_response":{"code":"10000"}}'
      local res = assert(core.extract(body, "alipay.trade.create"))
      assert.are.equal("alipay_trade_create_response", res.node)
      assert.are.equal('{"code":"10000"}', res.content)
    end)

    it("does not pick a node nested below the top level", function()
      local body = '{"x":{"alipay_trade_create_response":{"code":"10000"}},"sign":"c2ln"}'
      assert_fails(body, nil, "no alipay_trade_create_response or error_response in the body")
    end)

    it("fails when neither the node nor error_response is present", function()
      assert_fails('{"alipay_trade_pay_response":{}}', "alipay.trade.create",
        "^extract: no alipay_trade_create_response or error_response in the body$")
    end)

    it("rejects a repeated node", function()
      local body = '{"alipay_trade_create_response":{"code":"10000"},"sign":"c2ln",'
        .. '"alipay_trade_create_response":{"code":"10000","amount":"9999"}}'
      assert_fails(body, nil, "^extract: alipay_trade_create_response appears more than once$")
    end)

    it("rejects a repeated error_response", function()
      assert_fails('{"error_response":{},"error_response":{}}', nil,
        "error_response appears more than once")
    end)

    it("rejects a node whose value is a number", function()
      assert_fails('{"alipay_trade_create_response":10000,"sign":"c2ln"}', nil,
        "alipay_trade_create_response is not an object or a string at byte 33")
    end)

    it("rejects a node whose value is an array", function()
      assert_fails('{"alipay_trade_create_response":[{}]}', nil, "is not an object or a string")
    end)
  end)

  describe("sign and alipay_cert_sn", function()
    it("unescapes '\\/' in sign", function()
      local res = assert(core.extract(body_of("{}", ',"sign":"ab\\/cd+\\/=="'), "alipay.trade.create"))
      assert.are.equal("ab/cd+/==", res.sign)
    end)

    it("unescapes every JSON escape, surrogate pairs included", function()
      local siblings = [[,"sign":"\"\\\/\b\f\n\r\t\u0041\u00e9\u4e2d\ud83d\ude00"]]
      local res = assert(core.extract(body_of("{}", siblings), "alipay.trade.create"))
      assert.are.equal('"\\/\b\f\n\r\tA\195\169\228\184\173\240\159\152\128', res.sign)
    end)

    it("rejects an invalid escape in sign", function()
      assert_fails(body_of("{}", ',"sign":"ab\\x"'), nil, "invalid escape in sign at byte")
      assert_fails(body_of("{}", ',"sign":"\\u12G4"'), nil, "invalid escape in sign")
      assert_fails(body_of("{}", ',"sign":"\\ude00"'), nil, "invalid escape in sign")
      assert_fails(body_of("{}", ',"sign":"\\ud83d"'), nil, "invalid escape in sign")
    end)

    it("leaves sign nil when the body has none", function()
      local res = assert(core.extract('{"error_response":{"code":"20000"}}', "alipay.trade.create"))
      assert.is_nil(res.sign)
    end)

    it("returns an empty sign as an empty string", function()
      assert.are.equal("", assert(core.extract(body_of("{}", ',"sign":""'), "alipay.trade.create")).sign)
    end)

    it("rejects a repeated sign", function()
      assert_fails(body_of("{}", ',"sign":"c2ln","sign":"ZXZpbA=="'), nil,
        "^extract: sign appears more than once$")
    end)

    it("rejects a sign that is not a string", function()
      assert_fails(body_of("{}", ',"sign":123'), nil, "sign is not a string")
    end)

    it("returns alipay_cert_sn placed before the node and before sign, outside the content", function()
      local body = '{"alipay_cert_sn":"0a1b\\/2c","alipay_trade_create_response":{"code":"10000"},'
        .. '"sign":"c2ln"}'
      local res = assert(core.extract(body, "alipay.trade.create"))
      assert.are.equal("0a1b/2c", res.cert_sn)
      assert.are.equal('{"code":"10000"}', res.content)
      assert.are.equal("c2ln", res.sign)
    end)

    it("returns alipay_cert_sn placed between the node and sign", function()
      local res = assert(core.extract(body_of("{}", ',"alipay_cert_sn":"sn","sign":"c2ln"'),
        "alipay.trade.create"))
      assert.are.equal("sn", res.cert_sn)
      assert.are.equal("{}", res.content)
    end)

    it("rejects a repeated alipay_cert_sn", function()
      assert_fails(body_of("{}", ',"alipay_cert_sn":"a","alipay_cert_sn":"b"'), nil,
        "alipay_cert_sn appears more than once")
    end)
  end)

  describe("malformed bodies", function()
    it("rejects an empty string", function()
      assert_fails("", nil, "^extract: empty body$")
    end)

    it("rejects a body of whitespace", function()
      assert_fails(" \r\n", nil, "body ends unexpectedly after byte 3")
    end)

    it("rejects non-JSON", function()
      assert_fails("<html><body>502 Bad Gateway</body></html>", nil,
        "top level is not a JSON object at byte 1", "Bad Gateway")
    end)

    it("rejects a JSON array at the top level", function()
      assert_fails('[{"alipay_trade_create_response":{}}]', nil, "top level is not a JSON object")
    end)

    it("rejects trailing garbage after the object", function()
      local body = body_of("{}")
      assert_fails(body .. " SECRET", nil, "trailing data after the top%-level object at byte "
        .. (#body + 2) .. "$", "SECRET")
      assert_fails(body .. body, nil, "trailing data")
    end)

    it("accepts trailing whitespace after the object", function()
      assert.is_table(core.extract(body_of("{}") .. " \r\n\t", "alipay.trade.create"))
    end)

    it("rejects a key that is not a string", function()
      assert_fails('{alipay_trade_create_response:{}}', nil, "expected a key string at byte 2")
    end)

    it("rejects a missing ':'", function()
      assert_fails('{"alipay_trade_create_response" {}}', nil, "expected ':' after a key at byte 33")
    end)

    it("rejects a missing ','", function()
      assert_fails('{"alipay_trade_create_response":{} "sign":"x"}', nil, "expected ',' or '}'")
    end)

    it("rejects a trailing comma", function()
      assert_fails('{"alipay_trade_create_response":{},}', nil, "expected a key string")
    end)

    it("rejects a value that does not start like JSON", function()
      assert_fails('{"x":SECRET,"alipay_trade_create_response":{}}', nil,
        "unexpected character where a value should start at byte 6", "SECRET")
    end)

    it("rejects malformed numbers and literals", function()
      for _, bad in ipairs({ "01", "1.", "-", "1e", "+1", ".5", "tru", "nul", "falsy" }) do
        assert_fails('{"x":' .. bad .. ',"alipay_trade_create_response":{}}')
      end
    end)

    it("accepts scalar siblings of every kind", function()
      local body = body_of("{}", ',"a":-0.5e+3,"b":true,"c":false,"d":null,"e":0,"f":12E-2')
      assert.are.equal("{}", assert(core.extract(body, "alipay.trade.create")).content)
    end)

    it("rejects a node that closes with the wrong bracket", function()
      assert_fails('{"alipay_trade_create_response":{"a":1]}', nil, "mismatched bracket at byte 39")
    end)

    it("names an unterminated string and where it starts", function()
      assert_fails('{"alipay_trade_create_response":{"a":"SECRET}}', nil,
        "unterminated string starting at byte 38", "SECRET")
    end)

    it("names an unterminated object and where it starts", function()
      assert_fails('{"alipay_trade_create_response":{"a":{"b":"SECRET"}', nil,
        "unterminated object starting at byte 33", "SECRET")
    end)
  end)

  describe("truncated bodies", function()
    local bodies = {}
    for _, v in ipairs(vectors.extract) do bodies[#bodies + 1] = v end
    for _, v in ipairs(vectors.response_verify) do bodies[#bodies + 1] = v end
    bodies[#bodies + 1] = {
      method = "alipay.trade.create",
      body = '{"alipay_cert_sn":"sn","alipay_trade_create_response":{"a":[1,-2.5e3,true,null]},'
        .. '"sign":"ab\\/c\\u00e9"}',
    }

    for i, v in ipairs(bodies) do
      it("fails cleanly on every prefix of body " .. i, function()
        assert.is_table(core.extract(v.body, v.method))
        for len = 0, #v.body - 1 do
          local res, err = core.extract(v.body:sub(1, len), v.method)
          assert.is_nil(res, "prefix of " .. len .. " bytes was accepted")
          assert.are.equal("string", type(err))
          assert.is_true(#err < 120)
        end
      end)
    end
  end)

  describe("large and deep input", function()
    local MB = 1024 * 1024

    it("extracts a node holding a megabyte-long string", function()
      local node = '{"blob":"' .. ("ab\\\"{}"):rep(math.floor(MB / 6)) .. '"}'
      local res = assert(core.extract(body_of(node), "alipay.trade.create"))
      assert.are.equal(node, res.content)
    end)

    it("skips a megabyte-long sibling string", function()
      local res = assert(core.extract(body_of("{}", ',"junk":"' .. ("x"):rep(MB) .. '","sign":"c2ln"'),
        "alipay.trade.create"))
      assert.are.equal("{}", res.content)
      assert.are.equal("c2ln", res.sign)
    end)

    it("fails cleanly on an unterminated megabyte-long string", function()
      assert_fails(body_of('{"blob":"' .. ("SECRET"):rep(math.floor(MB / 6)), ""), nil,
        "unterminated string starting at byte 41", "SECRET")
    end)

    it("extracts a node with arrays nested 100000 levels deep", function()
      local node = '{"a":' .. ("["):rep(100000) .. ("]"):rep(100000) .. "}"
      assert.are.equal(node, assert(core.extract(body_of(node), "alipay.trade.create")).content)
    end)

    it("extracts a node with objects nested 100000 levels deep", function()
      local node = ('{"k":'):rep(100000) .. "0" .. ("}"):rep(100000)
      assert.are.equal(node, assert(core.extract(body_of(node), "alipay.trade.create")).content)
    end)

    it("fails cleanly on 100000 unclosed levels", function()
      assert_fails(body_of(('{"k":['):rep(100000)), nil, "unterminated object starting at byte 33")
    end)
  end)

  describe("arguments", function()
    it("raises on a body that is not a string", function()
      assert.has_error(function() core.extract(nil, "alipay.trade.create") end)
      assert.has_error(function() core.extract({}, "alipay.trade.create") end)
    end)

    it("raises on a missing or malformed node name", function()
      assert.has_error(function() core.extract("{}") end)
      assert.has_error(function() core.extract("{}", "") end)
      assert.has_error(function() core.extract("{}", 'a"b') end)
      assert.has_error(function() core.extract("{}", {}) end)
    end)
  end)
end)
