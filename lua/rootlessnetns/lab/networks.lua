--- The lab's networks: each a bridge inside the rootless netns with an
-- IPv4 subnet and an IPv6 /64, NATed out through the backend unless
-- `internal`.  The network `default` is the config's `connect` table
-- (what `netns connect NAME` has always used); the others are made by
-- `network create` and recorded in `<state dir>/networks.json`, which
-- outlives the rootless netns (its bridges are made again on the next
-- connect).  Subnets never overlap each other or the backend's network.
-- Every function here that changes the record is called with the lock held.
local core = require "rootlessnetns"
local addrpool = require "rootlessnetns.addrpool"
local state = require "rootlessnetns.state"

local errno = core.errno

local M = {}

M.DEFAULT = "default"
--- Bridges of created networks: this prefix and a number (the default
-- network's is the config's `connect.bridge`).
M.BRIDGE_PREFIX = "rlnsbr"
M.NAME_MAX = 32
--- Where subnets are picked from when none is given: 10.89.N.0/24.
M.AUTO_SUBNETS = { first = "10.89.1.0/24", count = 254 }

--- Is @name usable as a network name?  (It is also a host name's last
-- label in /etc/hosts: NAME.NETWORK.)
-- @treturn[1] string name
-- @return[2] nil, message
function M.check_name(name)
  if type(name) ~= "string" or not name:match("^%a[%w-]*$") or #name > M.NAME_MAX then
    return nil, ("invalid network name `%s`: a letter, then letters, digits or `-`, at most %d"):format(
      tostring(name), M.NAME_MAX)
  end
  return name
end

local function record_path(ns) return ns.paths.base .. "/networks.json" end

-- The created networks as recorded (a damaged record is none, said once).
local function read_record(ns)
  local rec, err = state.read_json(record_path(ns))
  if rec == nil and err then require("rootlessnetns.log").warn("%s", err) end
  local out = {}
  if type(rec) == "table" and type(rec.networks) == "table" then
    for name, n in pairs(rec.networks) do
      if M.check_name(name) and name ~= M.DEFAULT and type(n) == "table" and addrpool.subnet(n.subnet)
        and addrpool.subnet6(n.subnet6) and type(n.bridge) == "string" then
        out[name] = { name = name, subnet = n.subnet, subnet6 = n.subnet6, internal = n.internal == true,
          bridge = n.bridge, created = math.tointeger(n.created) }
      end
    end
  end
  return out
end

local function write_record(ns, nets)
  local rec = {}
  for name, n in pairs(nets) do
    if name ~= M.DEFAULT then
      rec[name] = { subnet = n.subnet, subnet6 = n.subnet6, internal = n.internal, bridge = n.bridge,
        created = n.created }
    end
  end
  return state.write_json(record_path(ns), { networks = rec })
end

--- The default network, from the config.
function M.default(cfg)
  local c = cfg.connect
  return { name = M.DEFAULT, subnet = c.subnet, subnet6 = c.subnet6 or addrpool.ula(M.DEFAULT).cidr,
    internal = false, bridge = c.bridge, default = true }
end

--- Every network by name, `default` included.
function M.all(ns)
  local nets = read_record(ns)
  nets[M.DEFAULT] = M.default(ns.cfg)
  return nets
end

--- The network @name, with its parsed subnets (`net`, `net6`).
-- @return[2] nil, message, ENOENT
function M.get(ns, name)
  local n = M.all(ns)[name or M.DEFAULT]
  if not n then
    return nil, ("no network `%s` (see `rootlessnetns network list`)"):format(tostring(name)), errno.ENOENT
  end
  n.net, n.net6 = addrpool.subnet(n.subnet), addrpool.subnet6(n.subnet6)
  if not n.net then return nil, ("network `%s`: subnet %s: unusable"):format(n.name, tostring(n.subnet)) end
  return n
end

-- The networks @sub may not overlap: the others, and the backend's own
-- (slirp4netns' cidr; pasta's addresses are the host's, checked at
-- connect, where they are known).
local function overlap(ns, nets, sub, except)
  for name, n in pairs(nets) do
    local other = name ~= except and addrpool.network(n.subnet)
    if other and addrpool.overlaps(sub, other) then return ("network `%s` (%s)"):format(name, n.subnet) end
  end
  local slirp_cidr = ns.cfg.slirp4netns and ns.cfg.slirp4netns.cidr or "10.0.2.0/24"
  local slirp = addrpool.network(slirp_cidr)
  if slirp and addrpool.overlaps(sub, slirp) then return "slirp4netns's network " .. slirp_cidr end
  return nil
end

local function free_bridge(nets)
  local used = {}
  for _, n in pairs(nets) do used[n.bridge] = true end
  local i = 1
  while used[M.BRIDGE_PREFIX .. i] do i = i + 1 end
  return M.BRIDGE_PREFIX .. i
end

--- Create network @name.  @opts: subnet (IPv4 CIDR; default the next
-- free 10.89.N.0/24), subnet6 (a /64; default a ULA stable per name),
-- internal (no route out).
-- @treturn[1] table the network
-- @return[2] nil, message, errno (EEXIST, EINVAL)
function M.create(ns, name, opts)
  opts = opts or {}
  local ok, err = M.check_name(name)
  if not ok then return nil, err, errno.EINVAL end
  local nets = M.all(ns)
  if nets[name] then return nil, ("network `%s` already exists"):format(name), errno.EEXIST end
  local subnet = opts.subnet
  if subnet then
    local sub, serr = addrpool.subnet(subnet)
    if not sub then return nil, "--subnet: " .. serr, errno.EINVAL end
    local clash = overlap(ns, nets, sub)
    if clash then return nil, ("--subnet %s overlaps %s"):format(subnet, clash), errno.EINVAL end
  else
    local first = assert(addrpool.subnet(M.AUTO_SUBNETS.first))
    for i = 0, M.AUTO_SUBNETS.count - 1 do
      local cand = addrpool.format_ipv4(first.network + (i << 8)) .. "/24"
      if not overlap(ns, nets, assert(addrpool.network(cand))) then subnet = cand break end
    end
    if not subnet then return nil, "no free /24 left in 10.89.0.0/16; give --subnet", errno.ENOSPC end
  end
  local net6, e6
  if opts.subnet6 then
    net6, e6 = addrpool.subnet6(opts.subnet6)
    if not net6 then return nil, "--subnet6: " .. e6, errno.EINVAL end
  else
    net6 = addrpool.ula(name)
  end
  for other, n in pairs(nets) do
    if n.subnet6 == net6.cidr then
      return nil, ("--subnet6 %s is network `%s`'s"):format(net6.cidr, other), errno.EINVAL
    end
  end
  local n = { name = name, subnet = subnet, subnet6 = net6.cidr, internal = opts.internal == true,
    bridge = free_bridge(nets), created = os.time() }
  nets[name] = n
  ok, err = write_record(ns, nets)
  if not ok then return nil, err end
  return n
end

--- Forget network @name (its bridge is the caller's to remove).
function M.forget(ns, name)
  local nets = read_record(ns)
  nets[name] = nil
  return write_record(ns, nets)
end

return M
