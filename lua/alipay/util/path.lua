-- Lexical path arithmetic (POSIX paths): enough to store a key file's path
-- relative to the channel file that names it. Symbolic links are not
-- resolved: the working directory is the physical one (pwd -P) and the rest
-- is lexical, which is how the shell's paths are read too.
local shell = require "alipay.util.shell"

local path = {}

function path.is_absolute(p)
  return p:sub(1, 1) == "/"
end

-- "a/./b//c/../d" -> "a/b/d"; ".." above a relative start is kept, above
-- "/" dropped; "" and "." -> ".".
function path.normalize(p)
  local absolute = path.is_absolute(p)
  local parts = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." then
      if #parts > 0 and parts[#parts] ~= ".." then
        parts[#parts] = nil
      elseif not absolute then
        parts[#parts + 1] = ".."
      end
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  local text = table.concat(parts, "/")
  if absolute then return "/" .. text end
  return text == "" and "." or text
end

function path.dirname(p)
  local dir = p:match("^(.*)/[^/]*$")
  if dir == nil then return "." end
  return dir == "" and "/" or dir
end

function path.join(a, b)
  if path.is_absolute(b) then return path.normalize(b) end
  return path.normalize(a .. "/" .. b)
end

local cwd_cache
-- The working directory, physical. -> path | nil, err
function path.cwd()
  if cwd_cache then return cwd_cache end
  local ok, out = shell.capture("pwd -P")
  local dir = ok and out:match("^(/[^\n]*)\n?$")
  if not dir then return nil, "cannot find the working directory: " .. tostring(out) end
  cwd_cache = dir
  return dir
end

function path.absolute(p, cwd)
  if path.is_absolute(p) then return path.normalize(p) end
  cwd = cwd or assert(path.cwd())
  return path.join(cwd, p)
end

-- The path of `to` as seen from the directory `from`; both absolute.
function path.relative(from, to)
  from, to = path.normalize(from), path.normalize(to)
  local a, b = {}, {}
  for part in from:gmatch("[^/]+") do a[#a + 1] = part end
  for part in to:gmatch("[^/]+") do b[#b + 1] = part end
  local common = 0
  while common < #a and common < #b and a[common + 1] == b[common + 1] do common = common + 1 end
  local parts = {}
  for _ = common + 1, #a do parts[#parts + 1] = ".." end
  for i = common + 1, #b do parts[#parts + 1] = b[i] end
  return #parts == 0 and "." or table.concat(parts, "/")
end

return path
