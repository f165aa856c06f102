--- `rootlessnetns network create|list|rm`: the lab's networks.
local exit = require "rootlessnetns.cli.exit"
local output = require "rootlessnetns.cli.output"

local handlers = {}

--- `network create NAME [--subnet CIDR] [--subnet6 CIDR] [--internal]`.
function handlers.create(l, opts)
  local n, err, code, stage, signo = l:network_create(opts.name, { subnet = opts.subnet, subnet6 = opts.subnet6,
    internal = opts.internal == true })
  if not n then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    output.json { name = n.name, subnet = n.subnet, subnet6 = n.subnet6, internal = n.internal, bridge = n.bridge }
  else
    io.stdout:write(("%s: %s %s%s\n"):format(n.name, n.subnet, n.subnet6, n.internal and " (internal)" or ""))
  end
  return 0
end

--- `network list [--json]`.
function handlers.list(l, opts)
  local nets, err, code, stage, signo = l:networks()
  if not nets then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    for i, n in ipairs(nets) do
      nets[i] = { name = n.name, subnet = n.subnet, subnet6 = n.subnet6, internal = n.internal, bridge = n.bridge,
        members = output.json_list(n.members) }
    end
    output.json_lists(output.json_list(nets))
    return 0
  end
  local rows = {}
  for _, n in ipairs(nets) do
    rows[#rows + 1] = { n.name, n.subnet, n.subnet6, n.internal and "internal" or "nat", n.bridge,
      #n.members > 0 and table.concat(n.members, ",") or "-" }
  end
  output.table({ "NAME", "SUBNET", "SUBNET6", "OUT", "BRIDGE", "NAMESPACES" }, rows)
  return 0
end

--- `network rm NAME [--force]`.
function handlers.rm(l, opts)
  local ok, err, code, stage, signo = l:network_rm(opts.name, { force = opts.force })
  if not ok then return exit.of_failure(err, code, stage, signo) end
  if opts.json then output.json { name = opts.name, removed = true } end
  return 0
end

return function(ns, opts)
  local l = require("rootlessnetns.lab").new(ns)
  return handlers[opts.network_command](l, opts)
end
