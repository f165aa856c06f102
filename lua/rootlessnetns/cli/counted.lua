--- `rootlessnetns setup|teardown [--nets N] [-- CMD...]`.
local exit = require "rootlessnetns.cli.exit"

local function parse_nets(text)
  local n = math.tointeger(tonumber(text))
  if not n or not tostring(text):match("^%d+$") or n < 1 or n > 65535 then
    return nil, ("--nets: expected an integer from 1 to 65535, got %q"):format(tostring(text))
  end
  return n
end

return function(ns, opts, tail)
  local method = opts.command
  local n, err = parse_nets(opts.nets)
  if not n then return exit.die(err) end
  local publish = opts.publish
  if type(publish) == "string" then publish = { publish } end
  local ok, msg, code, stage, how, status = ns[method](ns, n, tail, { publish = publish })
  if ok then return 0 end
  if stage == "command" then
    io.stderr:write("rootlessnetns: ", method, ": ", msg, "\n")
    return how and exit.of_command(how, status) or exit.OURS
  end
  -- (for stage "signal", the fifth value is the signal number)
  return exit.of_failure(msg, code, stage, how)
end
