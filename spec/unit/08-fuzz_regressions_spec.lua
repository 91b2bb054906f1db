-- The fuzz targets' calls (fuzz/harness.lua) replayed through the Lua API:
-- the seed corpora built from the fixtures (fuzz/seeds.lua), every saved
-- input in fuzz/regressions/<target>/ (crashes found by fuzz/run.sh, kept
-- once fixed), hand-made edge cases, and, when a local fuzzing run left
-- them, build/fuzz/corpus/<target>/ and build/fuzz/crashes/<target>/.
-- Each call must return a value or nil, err for any string: never raise.
-- ALIPAY_FUZZ_REPLAY: how many local corpus files per target (default
-- 200, smallest first; "all" for every one).
require "helpers"
local core = require "alipay.core"

local H = dofile("fuzz/harness.lua")
local seeds = dofile("fuzz/seeds.lua").build(".")

local TARGETS = { "extract", "keys", "form", "codec", "ngx" }

local function list(dir)
  local names = {}
  local p = io.popen("ls -1 '" .. dir .. "' 2>/dev/null")
  if p then
    for name in p:lines() do names[#names + 1] = name end
    p:close()
  end
  table.sort(names)
  return names
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function replay(target, input)
  local ok, err = pcall(H.targets[target], core, input)
  assert(ok, err)
end

-- Inputs a fuzzer reaches slowly: empty, NULs, very deep nesting, long
-- runs, truncations of valid inputs at every length of their first bytes.
local function edge_cases(target)
  local cases = {
    empty = "", nul = "\0", nuls = ("\0"):rep(4096), high = ("\255"):rep(300),
    deep_objects = ("{\"a\":"):rep(100000), deep_arrays = ("["):rep(200000),
    long_string = "{\"" .. ("x"):rep(1000000), escapes = "\"" .. ("\\"):rep(100001),
    percent_end = "a=%", percent_4 = "a=%4", pem_open = "-----BEGIN " .. "PRIVATE KEY-----\n",
    pem_label = "-----BEGIN " .. ("A"):rep(10000) .. "-----\nAAAA\n-----END A-----\n",
    b64_pad = "====", b64_ws = " \t\r\n", b64_tail = "QUJDRA=",
  }
  local seed_names = {}
  for name in pairs(seeds[target]) do seed_names[#seed_names + 1] = name end
  table.sort(seed_names)
  local first = seeds[target][seed_names[1]]
  if first then
    for n = 0, math.min(#first, 200) do cases["truncated_" .. n] = first:sub(1, n) end
  end
  if target == "ngx" then
    for ctl = 0, 255, 5 do
      cases["status_only_" .. ctl] = string.char(ctl) .. "HTTP/1.1 200 OK\r\n"
      cases["huge_chunk_" .. ctl] = string.char(ctl) .. "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "ffffffffffff\r\nabc"
      cases["huge_length_" .. ctl] = string.char(ctl) .. "HTTP/1.1 200 OK\r\nContent-Length: "
        .. ("9"):rep(40) .. "\r\n\r\n"
    end
  end
  return cases
end

-- Found by fuzz_ngx: a Content-Length with no digits at all (empty, or
-- only commas) made framing() return "length", nil and read_response
-- compare nil with the cap: the transport raised instead of failing.
describe("fuzz regression: ngx transport", function()
  for _, value in ipairs({ "", " ", ",", " , ," }) do
    it("Content-Length '" .. value .. "' is a recv error, not a raise", function()
      local input = "\248HTTP/1.1 200 OK\r\nContent-Length:" .. value .. "\r\n\r\nabc"
      local ok, res, err = pcall(H.ngx_request, input)
      assert(ok, res) -- the transport raised
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      assert.equal("recv", err.reason)
    end)
  end
end)

for _, target in ipairs(TARGETS) do
  describe("fuzz target " .. target, function()
    local names = {}
    for name in pairs(seeds[target]) do names[#names + 1] = name end
    table.sort(names)
    it("has seeds", function() assert.is_true(#names > 0) end)
    for _, name in ipairs(names) do
      it("seed " .. name, function() replay(target, seeds[target][name]) end)
    end

    local cases = edge_cases(target)
    local case_names = {}
    for name in pairs(cases) do case_names[#case_names + 1] = name end
    table.sort(case_names)
    it("edge cases (" .. #case_names .. ")", function()
      for _, name in ipairs(case_names) do
        local ok, err = pcall(replay, target, cases[name])
        assert(ok, name .. ": " .. tostring(err))
      end
    end)

    local dir = "fuzz/regressions/" .. target
    for _, name in ipairs(list(dir)) do
      it("regression " .. name, function()
        replay(target, assert(slurp(dir .. "/" .. name)))
      end)
    end

    -- A local fuzzing run's corpus and crashes (absent in a fresh checkout).
    local cap = os.getenv("ALIPAY_FUZZ_REPLAY") or "200"
    cap = cap == "all" and math.huge or tonumber(cap) or 200
    for _, sub in ipairs({ "corpus", "crashes" }) do
      local local_dir = "build/fuzz/" .. sub .. "/" .. target
      local files = list(local_dir)
      if #files > 0 then
        it("local " .. sub .. " (" .. math.min(#files, cap) .. " of " .. #files .. " files)", function()
          local inputs = {}
          for _, name in ipairs(files) do
            local s = slurp(local_dir .. "/" .. name)
            if s then inputs[#inputs + 1] = { name = name, bytes = s } end
          end
          table.sort(inputs, function(a, b)
            if #a.bytes ~= #b.bytes then return #a.bytes < #b.bytes end
            return a.name < b.name
          end)
          for i = 1, math.min(#inputs, cap) do
            local ok, err = pcall(replay, target, inputs[i].bytes)
            assert(ok, local_dir .. "/" .. inputs[i].name .. ": " .. tostring(err))
          end
        end)
      end
    end
  end)
end
