--- `rootlessnetns netns add|list|exec|del|connect|disconnect`.
local exit = require "rootlessnetns.cli.exit"
local output = require "rootlessnetns.cli.output"

local handlers = {}

--- `netns add [NAME] [--json]`: prints the name (random without NAME).
function handlers.add(l, opts)
  local name, path, code, stage, signo = l:add(opts.name)
  if not name then return exit.of_failure(path, code, stage, signo) end
  if opts.json then output.json { name = name, path = path } else io.stdout:write(name, "\n") end
  return 0
end

--- `netns list [--json]`: a table, or a JSON list sorted by name in
-- which what is missing is null.
function handlers.list(l, opts)
  local entries, err, code, stage, signo = l:list()
  if not entries then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    for i, e in ipairs(entries) do
      e.pids = output.json_list(e.pids)
      e.ports = output.json_list(e.ports)
      entries[i] = output.with_nulls(e, { address = true, elsewhere = true })
    end
    output.json_lists(output.json_list(entries))
    return 0
  end
  local rows = {}
  for _, e in ipairs(entries) do
    local where = e.elsewhere and ("elsewhere (userns = %s)"):format(e.elsewhere == "own" and "auto" or e.elsewhere)
    rows[#rows + 1] = { e.name, e.live and "live" or where or "stale",
      e.address or "-", #e.pids > 0 and table.concat(e.pids, ",") or "-" }
  end
  output.table({ "NAME", "STATE", "ADDRESS", "PROCESSES" }, rows)
  return 0
end

--- `netns exec NAME [--] CMD...`: the command's exit status is ours.
function handlers.exec(l, opts, tail, getenv)
  return exit.run(tail, getenv, function(cmd) return l:exec(opts.name, cmd, { signals = l.ns.signals }) end)
end

--- `netns del NAME [--force] [--json]`: silent unless --json.
function handlers.del(l, opts)
  local ok, err, code, stage, signo = l:del(opts.name, { force = opts.force })
  if not ok then return exit.of_failure(err, code, stage, signo) end
  if opts.json then output.json { name = opts.name, deleted = true } end
  return 0
end

--- `netns connect NAME [--ip A[/P]] [--json]`: prints the lease.
function handlers.connect(l, opts)
  local publish = opts.publish
  if type(publish) == "string" then publish = { publish } end
  if opts.default_route and opts.no_default_route then
    return exit.die("netns connect: --default-route and --no-default-route contradict each other")
  end
  local default_route
  if opts.default_route then default_route = true elseif opts.no_default_route then default_route = false end
  local lease, err, code, stage, signo = l:connect(opts.name, { network = opts.network, ip = opts.ip,
    ip6 = opts.ip6, default_route = default_route, rate = opts.rate, delay = opts.delay, jitter = opts.jitter,
    loss = opts.loss, publish = publish })
  if not lease then return exit.of_failure(err, code, stage, signo) end
  if opts.json then
    output.json(output.with_nulls(lease, { address6 = true, gateway6 = true, shape = true }))
  else
    io.stdout:write(("%s: %s/%d%s on %s (gateway %s)\n"):format(lease.name, lease.address, lease.prefix,
      lease.address6 and (" " .. lease.address6 .. "/64") or "", lease.bridge, lease.gateway))
  end
  return 0
end

--- `netns disconnect NAME [--json]`: silent unless --json.
function handlers.disconnect(l, opts)
  local ok, err, code, stage, signo = l:disconnect(opts.name, { network = opts.network })
  if not ok then return exit.of_failure(err, code, stage, signo) end
  if opts.json then output.json { name = opts.name, connected = false } end
  return 0
end

return function(ns, opts, tail, getenv)
  local l = require("rootlessnetns.lab").new(ns)
  return handlers[opts.netns_command](l, opts, tail, getenv)
end
