-- References to the project's documents: a comment that says "see
-- docs/protocol.md §2.1" is only useful if that file exists and has a
-- heading numbered 2.1. This spec reads every text file of the repository
-- that may cite docs/ (code, specs, examples, the READMEs, docs/ itself) and
-- fails on
--   * a docs/x.md that does not exist;
--   * a docs/x.md §N whose file has no heading numbered N ("## 2." or "### 2.1");
--   * a bare design.md, protocol.md, messaging.md (or the name of any docs/
--     file) without the docs/ prefix: the notes they once meant are not in
--     the repository, and a reader cannot tell which file is meant;
--   * a line that starts with a section number (its file is on the line
--     before, where this spec cannot pair them: keep "docs/x.md §N" together).
-- Inside docs/, "§N" alone means a section of the same file, and relative
-- Markdown links ("[errors](errors.md)") name a sibling file.
local helpers = require "helpers"

-- Where references may live, relative to the repository root.
local ROOTS = { "lua", "src", "bin", "spec", "examples", "bench", "fuzz", "docs" }
local TOP_FILES = { "README.md", "SECURITY.md", "Makefile" }
-- This file is left out: its own examples of broken references are data.
local SELF = "spec/unit/16-doc_references_spec.lua"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Every text file under the roots (a file holding a NUL byte is data, such
-- as a fuzzer's regression input, and is left out).
local function files(root_dir)
  local dirs = {}
  for _, d in ipairs(ROOTS) do
    if exists(root_dir .. "/" .. d) then dirs[#dirs + 1] = "'" .. d .. "'" end
  end
  local list = {}
  if #dirs > 0 then
    local ok, out = helpers.run("cd '" .. root_dir .. "' && find " .. table.concat(dirs, " ") ..
      " -type f ! -path '*/.git/*' | sort")
    assert(ok, out)
    for path in out:gmatch("[^\n]+") do list[#list + 1] = path end
  end
  for _, name in ipairs(TOP_FILES) do
    if exists(root_dir .. "/" .. name) then list[#list + 1] = name end
  end
  local ok, out = helpers.run("cd '" .. root_dir .. "' && ls *.rockspec 2>/dev/null || true")
  assert(ok, out)
  for path in out:gmatch("[^\n]+") do list[#list + 1] = path end
  local text_files = {}
  for _, path in ipairs(list) do
    local text = helpers.read(root_dir .. "/" .. path)
    if not text:find("%z") and path ~= SELF then text_files[#text_files + 1] = { path = path, text = text } end
  end
  return text_files
end

-- The section numbers of a Markdown file: "## 2. Responses" gives "2",
-- "### 2.1 The signed content" gives "2.1" (a "§" before the number is allowed).
local function sections_of(text)
  local found = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local number = line:match("^#+%s+(%d+[%.%d]*)") or line:match("^#+%s+§(%d+[%.%d]*)")
    if number then found[(number:gsub("%.$", ""))] = true end
  end
  return found
end

-- The section numbers written right after position `pos` of `line`:
-- "§2", "§2.1", "§1, §2 and §5", "§4-6" (a range: both ends are checked).
local function section_list(line, pos)
  local list = {}
  local rest = line:sub(pos)
  local first = rest:match("^%s*§(%d+[%.%d]*)")
  if not first then return list end
  list[#list + 1] = first
  rest = rest:sub(#rest:match("^%s*§%d+[%.%d]*") + 1)
  while true do
    local sep, number = rest:match("^(%s*,?%s*and%s+§)(%d+[%.%d]*)")
    if not sep then sep, number = rest:match("^(%s*[,/]%s*§)(%d+[%.%d]*)") end
    if not sep then sep, number = rest:match("^(%s*%-%s*§)(%d+[%.%d]*)") end
    if not sep then sep, number = rest:match("^(%s*%-%s*)(%d+[%.%d]*)") end
    if not sep then sep, number = rest:match("^(%s*–%s*§)(%d+[%.%d]*)") end
    if not sep then sep, number = rest:match("^(%s*–%s*)(%d+[%.%d]*)") end
    if not sep then break end
    list[#list + 1] = number
    rest = rest:sub(#sep + #number + 1)
  end
  for i, number in ipairs(list) do list[i] = number:gsub("%.$", "") end
  return list
end

-- Every problem of the references in the tree at root_dir, as
-- "path:line: what is wrong" strings, sorted.
local function problems(root_dir)
  local docs = {}        -- "errors" -> its section numbers
  local all = files(root_dir)
  for _, file in ipairs(all) do
    local name = file.path:match("^docs/([%w_%-]+)%.md$")
    if name then docs[name] = sections_of(file.text) end
  end
  -- Names that mean a docs/ file when written bare: the files there, and
  -- the notes the code cited before docs/ existed.
  local doc_names = { design = true, protocol = true, messaging = true }
  for name in pairs(docs) do doc_names[name] = true end

  local out = {}
  local function report(file, n, fmt, ...)
    out[#out + 1] = ("%s:%d: " .. fmt):format(file.path, n, ...)
  end
  local function check_sections(file, n, target, target_sections, line, pos)
    for _, number in ipairs(section_list(line, pos)) do
      if not target_sections[number] then
        report(file, n, "%s has no section §%s", target, number)
      end
    end
  end

  for _, file in ipairs(all) do
    local own = file.path:match("^docs/([%w_%-]+)%.md$")
    local n = 0
    for line in (file.text .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      -- Markdown code spans do not change what a reference says.
      line = line:gsub("`", "")
      -- docs/x.md, with or without sections
      local init = 1
      while true do
        local s, e, name = line:find("docs/([%w_%-]+)%.md", init)
        if not s then break end
        local before = s > 1 and line:sub(s - 1, s - 1) or ""
        if not before:find("[%w_%-]") then
          local target = "docs/" .. name .. ".md"
          if not docs[name] then
            report(file, n, "%s does not exist", target)
          else
            check_sections(file, n, target, docs[name], line, e + 1)
          end
        end
        init = e + 1
      end
      -- bare names
      init = 1
      while true do
        local s, e, name = line:find("([%w_%-]+)%.md%f[^%w_]", init)
        if not s then break end
        local before = s > 1 and line:sub(s - 1, s - 1) or ""
        local link = own and line:sub(s - 2, s - 1) == "]("
        if doc_names[name] and not link and not before:find("[%w_%-/.]") then
          report(file, n, "%s.md without docs/: write docs/%s.md", name, name)
        end
        init = e + 1
      end
      -- inside docs/, relative links to sibling files
      if own then
        for target in line:gmatch("%]%(([%w_%-]+)%.md[)#]") do
          if not docs[target] then report(file, n, "the link to %s.md names no file in docs/", target) end
        end
      end
      -- inside docs/, a bare section number is one of the same file's
      if own then
        init = 1
        while true do
          local s = line:find("§", init, true)
          if not s then break end
          local lead = line:sub(1, s - 1)
          if not lead:find("docs/[%w_%-]+%.md%s*$") and not lead:find("§[%d.]+%s*[,/%-]%s*$")
             and not lead:find("§[%d.]+%s*,?%s*and%s*$") and not lead:find("^#+%s+$") then
            check_sections(file, n, "docs/" .. own .. ".md", docs[own], line, s)
          end
          init = s + 1
        end
      elseif line:find("^%s*[%-/*#;]*%s*§%d") then
        report(file, n, "a section number at the start of a line: keep docs/x.md §N on one line")
      end
    end
  end
  table.sort(out)
  return out
end

describe("references to docs/", function()
  it("name files that exist and sections they have", function()
    local found = problems(".")
    assert(#found == 0, #found .. " broken references to docs/:\n  " .. table.concat(found, "\n  "))
  end)

  it("are found in the code, the specs and the docs (the scan sees them)", function()
    local count = 0
    for _, file in ipairs(files(".")) do
      for _ in file.text:gmatch("docs/[%w_%-]+%.md") do count = count + 1 end
    end
    assert.is_true(count > 40, count .. " references")
  end)

  it("reads section lists and headings", function()
    assert.same({ "1", "2", "5", "6" }, section_list("x §1, §2, §5 and §6.", 2))
    assert.same({ "4", "6" }, section_list(" §4-6), more", 1))
    assert.same({ "2.1" }, section_list(" §2.1.", 1))
    assert.same({ "1", "6" }, section_list(" §1–§6", 1))
    assert.same({}, section_list(" (see there)", 1))
    local s = sections_of("# Title\n## 1. One\n### 1.2 Two\n## §3 Three\ntext 4.\n")
    assert.same({ ["1"] = true, ["1.2"] = true, ["3"] = true }, s)
  end)

  it("catches a missing file, a missing section and a bare name (the check itself can fail)", function()
    local dir = helpers.tmpdir()
    helpers.run("mkdir -p '" .. dir .. "/docs' '" .. dir .. "/lua'")
    helpers.write(dir .. "/docs/protocol.md", "# P\n## 1. One\n### 1.1 Sub\nsee §1.1 and §7\n[e](errors.md)\n")
    helpers.write(dir .. "/lua/x.lua", table.concat({
      "-- fine: docs/protocol.md §1, §1.1",
      "-- missing section: docs/protocol.md §2",
      "-- missing file: docs/design.md §6",
      "-- bare: protocol.md §1 and messaging.md",
      "-- a range: docs/protocol.md §1-3",
      "-- (docs/protocol.md",
      "-- §1): split over two lines",
    }, "\n") .. "\n")
    local found = problems(dir)
    helpers.cleanup()
    assert.same({
      "docs/protocol.md:4: docs/protocol.md has no section §7",
      "docs/protocol.md:5: the link to errors.md names no file in docs/",
      "lua/x.lua:2: docs/protocol.md has no section §2",
      "lua/x.lua:3: docs/design.md does not exist",
      "lua/x.lua:4: messaging.md without docs/: write docs/messaging.md",
      "lua/x.lua:4: protocol.md without docs/: write docs/protocol.md",
      "lua/x.lua:5: docs/protocol.md has no section §3",
      "lua/x.lua:7: a section number at the start of a line: keep docs/x.md §N on one line",
    }, found)
  end)
end)
