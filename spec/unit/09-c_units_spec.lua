-- The C units of alipay.core form a tree: core.c (luaopen_alipay_core) sits
-- on top and uses the units; the units use only the shared ones below them
-- (error.c, codec.c), never core.c and never each other in a circle. Each
-- src/*.c is compiled alone, as the Makefile compiles it for Lua 5.4, and
-- the graph comes from the objects' symbols (nm), not from #include lines:
-- a declaration in a header does not show which unit a function lives in.
local helpers = require "helpers"

-- The Makefile's flags for the Lua 5.4 build (BASE_CFLAGS, WARN,
-- LUA54_CFLAGS), with -c: one object per unit.
local CFLAGS = "-std=gnu99 -fPIC -fvisibility=hidden -Wall -Wextra -Wshadow -Wpointer-arith -Wformat=2 -O2 " ..
               "-I/usr/include/lua5.4 -Isrc"

local function lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The units of a directory: {name = "core", path = "src/core.c"}, sorted.
local function units_of(dir)
  local ok, out = helpers.run("ls " .. sh_quote(dir) .. "/*.c")
  assert(ok, out)
  local list = {}
  for _, path in ipairs(lines(out)) do
    list[#list + 1] = { name = path:match("([^/]+)%.c$"), path = path }
  end
  return list
end

-- Compiles every unit to tmp/<name>.o; returns the compiler's output (its
-- warnings) by unit.
local function compile(units, tmp, include)
  local warnings = {}
  for _, unit in ipairs(units) do
    local ok, out = helpers.run(("cc -c %s %s -o %s %s"):format(CFLAGS, include or "",
      sh_quote(tmp .. "/" .. unit.name .. ".o"), sh_quote(unit.path)))
    assert(ok, "cc -c " .. unit.path .. " failed:\n" .. out)
    if out:find("%S") then warnings[unit.name] = out end
  end
  return warnings
end

-- nm's symbol lists of an object: the global symbols it defines, and the
-- ones it uses without defining.
local function symbols(object)
  local ok, out = helpers.run("nm --defined-only " .. sh_quote(object))
  assert(ok, out)
  local defined = {}
  for _, line in ipairs(lines(out)) do
    local kind, name = line:match("^%x*%s+(%u)%s+(%S+)$")   -- upper case: global
    if kind then defined[name] = true end
  end
  ok, out = helpers.run("nm -u " .. sh_quote(object))
  assert(ok, out)
  local used = {}
  for _, line in ipairs(lines(out)) do
    local name = line:match("^%s*U%s+(%S+)$")
    if name then used[name] = true end
  end
  return defined, used
end

-- unit -> {unit it uses = the first symbol that says so}. Symbols no unit
-- defines (Lua, OpenSSL, libcurl, libc) are not edges.
local function graph_of(units, tmp)
  local defined_by, uses = {}, {}
  for _, unit in ipairs(units) do
    local defined, used = symbols(tmp .. "/" .. unit.name .. ".o")
    uses[unit.name] = used
    for name in pairs(defined) do
      assert(not defined_by[name], name .. " is defined by both " .. tostring(defined_by[name]) .. ".c and " ..
        unit.name .. ".c")
      defined_by[name] = unit.name
    end
  end
  local graph = {}
  for _, unit in ipairs(units) do
    local edges = {}
    for name in pairs(uses[unit.name]) do
      local owner = defined_by[name]
      if owner and owner ~= unit.name and (not edges[owner] or name < edges[owner]) then edges[owner] = name end
    end
    graph[unit.name] = edges
  end
  return graph
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- The first cycle of a graph, as "a.c -(sym)-> b.c -(sym)-> a.c", or nil.
local function find_cycle(graph)
  local state, trail = {}, {}   -- state: nil not seen, 1 on the path, 2 done
  local function visit(node)
    if state[node] == 2 then return nil end
    if state[node] == 1 then
      local start
      for i, step in ipairs(trail) do
        if step.node == node then start = i break end
      end
      local parts = {}
      for i = start, #trail do
        parts[#parts + 1] = trail[i].node .. ".c -(" .. trail[i].via .. ")->"
      end
      parts[#parts + 1] = node .. ".c"
      return table.concat(parts, " ")
    end
    state[node] = 1
    for _, dep in ipairs(sorted_keys(graph[node] or {})) do
      trail[#trail + 1] = { node = node, via = graph[node][dep] }
      local cycle = visit(dep)
      trail[#trail] = nil
      if cycle then return cycle end
    end
    state[node] = 2
    return nil
  end
  for _, node in ipairs(sorted_keys(graph)) do
    local cycle = visit(node)
    if cycle then return cycle end
  end
  return nil
end

-- The units that use core.c, as "http.c (ap_push_error)".
local function users_of_core(graph)
  local found = {}
  for _, node in ipairs(sorted_keys(graph)) do
    if node ~= "core" and graph[node].core then found[#found + 1] = node .. ".c (" .. graph[node].core .. ")" end
  end
  return found
end

describe("the C units of alipay.core", function()
  local units, graph, warnings

  setup(function()
    local tmp = helpers.tmpdir()
    units = units_of("src")
    warnings = compile(units, tmp)
    graph = graph_of(units, tmp)
  end)

  teardown(function() helpers.cleanup() end)

  it("compile one by one without warnings under the Makefile's flags", function()
    assert.is_true(#units >= 10, #units .. " units")
    for _, name in ipairs(sorted_keys(warnings)) do
      error(name .. ".c:\n" .. warnings[name])
    end
  end)

  it("use each other without a cycle", function()
    local cycle = find_cycle(graph)
    assert(cycle == nil, "the C units use each other in a circle: " .. tostring(cycle))
  end)

  it("never use core.c: it only assembles the module, on top", function()
    local users = users_of_core(graph)
    assert(#users == 0, "core.c is used by " .. table.concat(users, ", "))
    assert.is_true(next(graph.core) ~= nil, "core.c registers the units")
  end)

  it("the checks can fail: a circle of two units and a unit that uses core.c", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/core.c", "int ap_core_helper(void) { return 1; }\n")
    helpers.write(dir .. "/a.c", "int ap_b(void);\nint ap_a(void) { return ap_b(); }\n")
    helpers.write(dir .. "/b.c", "int ap_a(void);\nint ap_core_helper(void);\n" ..
      "int ap_b(void) { return ap_a() + ap_core_helper(); }\n")
    local toy = units_of(dir)
    compile(toy, dir)
    local g = graph_of(toy, dir)
    assert.are.same({ b = "ap_b" }, g.a)
    assert.are.equal("a.c -(ap_b)-> b.c -(ap_a)-> a.c", find_cycle(g))
    assert.are.same({ "b.c (ap_core_helper)" }, users_of_core(g))
    g.b.a = nil
    assert.is_nil(find_cycle(g))
  end)
end)
