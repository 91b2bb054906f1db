-- Running commands from plain Lua and LuaJIT alike: quoting, exit status
-- and output. Used by the sandbox (nginx, openssl) and the CLI.
local shell = {}

-- A single-quoted shell word.
function shell.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- os.execute returns true/nil on Lua 5.2+ and a status number on LuaJIT.
function shell.execute(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

-- Runs cmd; returns ok, combined output. The shell echoes the status:
-- LuaJIT's close() of a popen file does not report it.
function shell.capture(cmd)
  local p = assert(io.popen("{ " .. cmd .. "\n} 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local text, status = out:match("^(.-)exit=(%d+)%s*$")
  return status == "0", text or out
end

function shell.sleep(seconds)
  shell.execute("sleep " .. seconds)
end

return shell
