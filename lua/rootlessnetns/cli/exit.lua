--- The CLI's exit statuses, in one place, and the only code that turns
-- an error into stderr text:
--   125  an error of ours (usage included), one line `rootlessnetns: ...`
--   126  the command could not be executed
--   127  the command was not found
--   N    the command's own status; 128+N when it was killed by signal N
--   128+N  a signal N ended our wait (the lock, a backend's start): as a
--        shell's ^C, nothing is printed
local core = require "rootlessnetns"

local M = {}

M.OURS, M.CANNOT_EXEC, M.NOT_FOUND = 125, 126, 127

--- Say what went wrong (one line) and return our status.
function M.die(msg)
  io.stderr:write("rootlessnetns: ", msg, "\n")
  return M.OURS
end

--- The status of a command that ran: its own, or 128+N for signal N.
function M.of_command(how, code)
  if how == "signaled" then return 128 + code end
  return code
end

--- Why an operation failed, as an exit status: from the stage of a
-- library failure (nil, message, errno, stage, signal number).
function M.of_failure(msg, code, stage, signo)
  if stage == "signal" then return 128 + (math.tointeger(signo) or 0) end
  if stage == "exec" then
    io.stderr:write("rootlessnetns: ", msg, "\n")
    return code == core.errno.ENOENT and M.NOT_FOUND or M.CANNOT_EXEC
  end
  return M.die(msg)
end

--- Run @tail (default: $SHELL) with @runner(cmd); the exit status is the
-- command's.
function M.run(tail, getenv, runner)
  local cmd = tail
  if not cmd or #cmd == 0 then
    local shell = getenv("SHELL")
    if not shell or shell == "" then return M.die("no command given and $SHELL is not set") end
    cmd = { shell }
  end
  local how, code, ecode, stage, signo = runner(cmd)
  if not how then return M.of_failure(code, ecode, stage, signo) end
  return M.of_command(how, code)
end

return M
