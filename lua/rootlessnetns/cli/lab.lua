--- `rootlessnetns lab up|down|status FILE`: a topology file, converged
-- and removed (rootlessnetns.lab.apply does the work, in this process).
local exit = require "rootlessnetns.cli.exit"
local output = require "rootlessnetns.cli.output"

local handlers = {}

-- The report as JSON data: every key there, null when missing; lists
-- stay lists.
local function json_report(report)
  local nets, nodes = {}, {}
  for i, n in ipairs(report.networks or {}) do
    nets[i] = output.with_nulls(n, { why = true, subnet = true, subnet6 = true })
  end
  for i, n in ipairs(report.nodes or {}) do
    local links = {}
    for j, c in ipairs(n.networks) do
      links[j] = output.with_nulls(c, { address = true, address6 = true, interface = true })
    end
    local e = output.with_nulls(n, { why = true })
    e.networks = output.json_list(links)
    nodes[i] = e
  end
  local out = { file = report.file, networks = output.json_list(nets), nodes = output.json_list(nodes) }
  if report.left_over then out.left_over = output.json_list(report.left_over) end
  if report.changes then out.changes = output.json_list(report.changes) end
  return out
end

local function addresses(n)
  local parts = {}
  for _, c in ipairs(n.networks) do
    local a = { c.network }
    if c.address then a[#a + 1] = c.address end
    if c.address6 then a[#a + 1] = c.address6 end
    parts[#parts + 1] = table.concat(a, " ")
  end
  return #parts > 0 and table.concat(parts, ", ") or "-"
end

local function print_report(report)
  local rows = {}
  for _, n in ipairs(report.networks) do
    rows[#rows + 1] = { "network " .. n.name .. (n.internal and " (internal)" or ""),
      n.state .. (n.why and (" (" .. n.why .. ")") or ""), table.concat({ n.subnet or "-", n.subnet6 }, " ") }
  end
  for _, n in ipairs(report.nodes) do
    rows[#rows + 1] = { n.name .. (n.forward and " (forwards)" or ""), n.state .. (n.why and (" (" .. n.why .. ")")
      or ""), addresses(n) }
  end
  if #rows > 0 then output.table({ "NAME", "STATE", "ADDRESSES" }, rows) end
  for _, name in ipairs(report.left_over or {}) do
    io.stdout:write(("left over from an earlier `lab up`: %s (`lab up` removes it)\n"):format(name))
  end
end

--- `lab up FILE [--json]`: what was changed, one line each.
function handlers.up(lab, l, opts)
  local report, err, code, stage, signo = lab.up(l, opts.file)
  if not report then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    output.json_lists(json_report(report))
  elseif #report.changes == 0 then
    io.stdout:write("lab `", opts.file, "`: up to date, nothing changed\n")
  else
    for _, line in ipairs(report.changes) do io.stdout:write(line, "\n") end
  end
  return 0
end

--- `lab down FILE [--json]`: what was removed, one line each.
function handlers.down(lab, l, opts)
  local report, err, code, stage, signo = lab.down(l, opts.file)
  if not report then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    output.json_lists { file = report.file, changes = output.json_list(report.changes) }
  else
    for _, line in ipairs(report.changes) do io.stdout:write(line, "\n") end
  end
  return 0
end

--- `lab status FILE [--json|--dot]`: each node and network, wanted
-- against live; --dot: the topology as Graphviz DOT.
function handlers.status(lab, l, opts)
  if opts.json and opts.dot then return exit.die("`lab status`: --json or --dot, not both") end
  local report, err, code, stage, signo = lab.status(l, opts.file)
  if not report then return exit.of_failure(err, code, stage, signo) end
  if opts.dot then
    io.stdout:write(require("rootlessnetns.lab.topology").dot(report.topology, report))
  elseif opts.json then
    output.json_lists(json_report(report))
  else
    print_report(report)
  end
  return 0
end

return function(ns, opts)
  local lab = require "rootlessnetns.lab"
  return handlers[opts.lab_command](lab, lab.new(ns), opts)
end
