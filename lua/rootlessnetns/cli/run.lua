--- `rootlessnetns run [--] [CMD...]`: the command's exit status is ours.
local exit = require "rootlessnetns.cli.exit"

return function(ns, _, tail, getenv)
  return exit.run(tail, getenv, function(cmd) return ns:run(cmd, { signals = ns.signals }) end)
end
