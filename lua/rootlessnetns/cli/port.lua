--- `rootlessnetns port add|list|rm [--netns NAME] ...`: published ports
-- of the rootless netns, or of a named namespace with --netns.
local exit = require "rootlessnetns.cli.exit"
local output = require "rootlessnetns.cli.output"

-- (argparse gives a list; the fast path, one word)
local function specs(v)
  if type(v) == "table" then return v end
  return { v }
end

local handlers = {}

--- `port add SPEC...`: publish them all (or none), printing each full spec.
function handlers.add(ns, opts)
  local l = opts.netns and require("rootlessnetns.lab").new(ns)
  local list, err, code, stage, signo
  if l then list, err, code, stage, signo = l:publish(opts.netns, specs(opts.spec))
  else list, err, code, stage, signo = ns:publish(specs(opts.spec)) end
  if not list then return exit.of_failure(err, code, stage, signo) end
  for _, port in ipairs(list) do
    if opts.json then
      output.json(output.with_nulls({ spec = port.spec, netns = opts.netns }, { netns = true }))
    else
      io.stdout:write(port.spec, "\n")
    end
  end
  return 0
end

--- `port rm SPEC...`: stop publishing them all (or none).
function handlers.rm(ns, opts)
  local l = opts.netns and require("rootlessnetns.lab").new(ns)
  local ok, err, code, stage, signo
  if l then ok, err, code, stage, signo = l:unpublish(opts.netns, specs(opts.spec))
  else ok, err, code, stage, signo = ns:unpublish(specs(opts.spec)) end
  if not ok then return exit.of_failure(err, code, stage, signo) end
  return 0
end

--- `port list`: the rootless netns's ports and every named namespace's
-- (with --netns, that one's).
function handlers.list(ns, opts)
  local l = require("rootlessnetns.lab").new(ns)
  local entries, err, code, stage, signo
  if opts.netns then
    entries, err, code, stage, signo = l:ports(opts.netns)
    for _, e in ipairs(entries or {}) do e.netns = opts.netns end
  else
    entries, err, code, stage, signo = ns:ports()
    if entries then
      local named
      named, err, code, stage, signo = l:ports()
      if named then table.move(named, 1, #named, #entries + 1, entries) else entries = nil end
    end
  end
  if not entries then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    for i, e in ipairs(entries) do entries[i] = output.with_nulls(e, { netns = true }) end
    output.json_lists(output.json_list(entries))
    return 0
  end
  local rows = {}
  for _, e in ipairs(entries) do
    rows[#rows + 1] = { e.spec, e.netns or "(rootless netns)", e.forwarding and "forwarding" or "not forwarding",
      tostring(e.connections) }
  end
  if #rows > 0 then output.table({ "PORT", "TARGET", "STATE", "CONNECTIONS" }, rows) end
  return 0
end

return function(ns, opts)
  return handlers[opts.port_command](ns, opts)
end
