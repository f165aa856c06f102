--- `rootlessnetns cleanup`: everything goes, the holder too.
local exit = require "rootlessnetns.cli.exit"

return function(ns)
  local ok, err, code, stage, signo = ns:cleanup { holder = true }
  if not ok then return exit.of_failure(err, code, stage, signo) end
  return 0
end
