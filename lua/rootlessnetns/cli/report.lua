--- `rootlessnetns info|status [--json]`.
local exit = require "rootlessnetns.cli.exit"
local output = require "rootlessnetns.cli.output"

local function references(refs)
  return ("nets %d, runs %d, connections %d"):format(refs.nets, refs.runs, refs.connections)
end

-- Where the pins live, when it is not our own holder.
local HOLDER_KIND = { podman = " (podman's pause process)", current = " (the current namespaces)" }

local function holder(pid, alive, kind)
  return "pid " .. output.pid(pid, alive) .. (HOLDER_KIND[kind] or "")
end

-- The published ports, as their specs ("-" when none).
local function published(ports)
  local specs = {}
  for i, p in ipairs(ports or {}) do specs[i] = p.spec .. (p.forwarding and "" or " (not forwarding)") end
  return output.list(specs)
end

local print_report = {}

--- `info` as aligned rows.
function print_report.info(info)
  output.rows {
    { "backend", ("%s (pid %s)"):format(tostring(info.backend), output.pid(info.backend_pid)) },
    { "addresses", output.list(info.IPAddresses) },
    { "dns forwarders", output.list(info.DnsForwardIps) },
    { "map-guest addresses", output.list(info.MapGuestIps) },
    { "holder", holder(info.holder_pid, nil, info.holder_kind) },
    { "references", references(info.refs) },
    { "ports", published(info.ports) },
  }
end

--- `status` as aligned rows.
function print_report.status(st)
  local backend = st.backend.name or "-"
  output.rows {
    { "state", st.up and "up" or "down" },
    { "netns", st.netns and st.pin or "-" },
    { "backend", ("%s (pid %s)"):format(backend, output.pid(st.backend.pid, st.backend.alive)) },
    { "holder", holder(st.holder.pid, st.holder.alive, st.holder.kind) },
    { "references", references(st.refs) },
    { "ports", published(st.ports) },
    { "state dir", st.state_dir },
  }
end

-- Every key of the JSON reports, null when the Lua API has nothing.
local JSON_SHAPE = {
  info = { IPAddresses = true, DnsForwardIps = true, MapGuestIps = true, backend = true, backend_pid = true,
    holder_pid = true },
  status = { holder = { pid = true }, backend = { name = true, pid = true } },
}

return function(ns, opts)
  local report, err, code, stage, signo = ns[opts.command](ns)
  if not report then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    local out = output.with_nulls(report, JSON_SHAPE[opts.command])
    out.ports = output.json_list(report.ports or {})
    output.json_lists(out)
  else
    print_report[opts.command](report)
  end
  return 0
end
