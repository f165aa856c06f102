--- `rootlessnetns doctor [--json]`: exit status 1 when a check failed.
local output = require "rootlessnetns.cli.output"

return function(_, opts, _, getenv)
  local doctor = require "rootlessnetns.doctor"
  local results = doctor.run { getenv = getenv }
  if opts.json then
    output.json { checks = results, ok = not doctor.failed(results) }
  else
    for _, r in ipairs(results) do
      io.stdout:write(("%-4s  %-28s %s\n"):format(r.status, r.name, r.detail or ""))
      if r.fix and r.status ~= "ok" then io.stdout:write(("      %-28s fix: %s\n"):format("", r.fix)) end
    end
  end
  return doctor.failed(results) and 1 or 0
end
