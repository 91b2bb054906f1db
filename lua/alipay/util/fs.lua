-- Small file helpers shared by the sandbox, the CLI and the campaign tools.
local fs = {}

-- The whole file, or nil, err (a directory opens, then fails to read).
-- With max_bytes, a larger file is not read: nil, err, its size.
function fs.read(path, max_bytes)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  if max_bytes then
    local size = f:seek("end")
    if size and size > max_bytes then
      f:close()
      return nil, ("%s: %d bytes, more than %d"):format(path, size, max_bytes), size
    end
    f:seek("set")
  end
  local data, read_err = f:read("*a")
  f:close()
  if not data then return nil, read_err end
  return data
end

function fs.write(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  return true
end

-- Written next to its final place, then renamed: a reader never sees half.
function fs.write_atomic(path, data)
  local tmp = path .. ".tmp"
  local ok, err = fs.write(tmp, data)
  if not ok then return nil, err end
  local renamed, rename_err = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rename_err
  end
  return true
end

function fs.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Whether path is a directory (a symlink to one counts) -> true | false,
-- why ("does not exist", "is not a directory") | nil, err when it cannot be
-- told (permission denied). Plain Lua has no stat(2). os.rename(p, p), the
-- usual trick, answers EBUSY for "." and "..": opening "path/" instead only
-- succeeds for a directory, and the trailing slash makes the kernel refuse
-- anything else (ENOTDIR) before opening it, so a FIFO cannot block.
local ENOENT, ENOTDIR = 2, 20 -- Linux errno values, as io.open returns them
function fs.is_directory(path)
  local f, err, code = io.open(path .. "/", "rb")
  if f then
    f:close()
    return true
  end
  if code == ENOENT then return false, "does not exist" end
  if code == ENOTDIR then return false, "is not a directory" end
  return nil, tostring(err)
end

-- The last n lines of a text (for quoting a log in an error).
function fs.last_lines(text, n)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

return fs
