--- How a named namespace is connected to a network of the lab: the
-- network's bridge inside the rootless netns, a veth pair per connection
-- (`eth0`, `eth1`, ... inside), an IPv4 address from the network's subnet
-- and the IPv6 one with the same host number, the default route of the
-- first network with a way out (or the one asked for), forwarding and
-- masquerading (IPv4 and IPv6), shaping, and the names in /etc/hosts.
--
-- Each connection is a reference to the rootless netns, like a `run`'s: a
-- record (the lease), reserved before any interface exists and marked
-- `connected` last, so a connect killed at any point holds nothing, and
-- what it left is removed by the next repair (connect, disconnect, list,
-- del).  Every function here is called with the session's lock held.
local core = require "rootlessnetns"
local addrpool = require "rootlessnetns.addrpool"
local child = require "rootlessnetns.child"
local inside = require "rootlessnetns.inside"
local instance = require "rootlessnetns.instance"
local log = require "rootlessnetns.log"
local refs = require "rootlessnetns.refs"
local state = require "rootlessnetns.state"
local hosts = require "rootlessnetns.lab.hosts"
local networks = require "rootlessnetns.lab.networks"
local shaping = require "rootlessnetns.lab.shaping"
local text = require "rootlessnetns.lab.text"

local errno = core.errno

local M = {}

--- Host-side veths are this prefix and the lease's index.
M.HOST_IF_PREFIX = instance.LAB_VETH_PREFIX

--- Run a program with @input on its stdin inside the netns pinned at @pin
-- (@fds: more descriptors to hand it, as child.capture's).
-- @treturn[1] true
-- @return[2] nil, "prog: its output"
function M.run_in(pin, argv, input, fds)
  local netfd, err = core.open(pin, "r")
  if not netfd then return nil, err end
  local path = child.which(argv[1])
  if not path then
    netfd:close()
    return nil, ("`%s` not found; install %s"):format(argv[1], argv[1] == "nft" and "nftables" or "iproute2")
  end
  local cmd = table.move(argv, 1, #argv, 1, {})
  cmd[1] = path
  local how, status, output = child.capture(cmd, 30000, { netns = netfd, input = input, fds = fds })
  netfd:close()
  if not how then return nil, status end
  if how == "exited" and status == 0 then return true end
  output = output:gsub("%s+$", ""):gsub("\n", "; ")
  log.debug("%s failed on:\n%s", argv[1], input or "")
  return nil, ("%s: %s"):format(argv[1], output ~= "" and output or (how .. " " .. tostring(status)))
end

local function ip_batch(pin, lines, fds)
  return M.run_in(pin, { "ip", "-batch", "-" }, table.concat(lines, "\n") .. "\n", fds)
end

-- Where ip finds a namespace handed to it as fd 3: a path with no space
-- or quote in it, whatever $XDG_RUNTIME_DIR holds (ip -batch splits its
-- lines into words).
local PEER_FD, PEER_PATH = 3, "/proc/self/fd/3"

--- Remove what interrupted connects left: leases that never completed,
-- and host-side veths that no completed lease names (a damaged leases
-- file included), on every network.
-- @tparam Netns ns
-- @tparam[opt] table opts {quiet = true (our own failed connect),
--   clean_up = true (take the rootless netns down when what was removed
--   was all that kept it: an interrupted first connect)}
-- @treturn table the leases data (state.read_leases), completed leases only
-- @treturn table the links of the rootless netns, as they were
function M.repair(ns, opts)
  opts = opts or {}
  local p = ns.paths
  if not core.nsfs(p.pin) then return { leases = {}, nets = {} } end
  local data, warning = state.read_leases(p)
  if warning then log.warn("%s", warning) end
  local keep, changed = {}, warning ~= nil
  for _, e in ipairs(state.each_lease(data)) do
    local lease = e.lease
    if lease.connected == true and lease.index then
      keep[M.HOST_IF_PREFIX .. lease.index] = true
    else
      if not opts.quiet then
        log.warn("removing the unfinished connection of `%s` (an interrupted connect)", e.name)
      end
      state.net_leases(data, e.net).leases[e.name] = nil
      changed = true
    end
  end
  -- veths of a namespace just deleted are the kernel's to remove (in the
  -- background); those still there are left alone, the others forgotten
  local links = inside.call(p.pin, child.link_names) or {}
  if type(data.going) == "table" then
    local present, still = {}, {}
    for _, l in ipairs(links) do present[l] = true end
    for _, g in ipairs(data.going) do
      -- (its namespace still pinned: a del killed before it unpinned,
      -- and the veth is an orphan like any other)
      if type(g) == "table" and present[g.link] and type(g.pin) == "string" and not core.nsfs(g.pin) then
        keep[g.link] = true
        still[#still + 1] = g
      end
    end
    changed = changed or #still ~= #data.going
    data.going = #still > 0 and still or nil
  end
  local orphans = text.orphans(links, keep, M.HOST_IF_PREFIX)
  if #orphans > 0 then
    log.debug("removing %d orphaned veth(s)", #orphans)
    -- (-force: on past one that went meanwhile, as those of a namespace
    -- just deleted do, in the background)
    local ok, err = M.run_in(p.pin, { "ip", "-force", "-batch", "-" }, table.concat(orphans, "\n") .. "\n")
    if not ok and not err:find("Cannot find device", 1, true) then log.warn("remove orphaned veths: %s", err) end
  end
  if changed then
    state.write_leases(p, data)
    if opts.clean_up and refs.users(ns) == 0 then
      local ok, err = instance.cleanup(ns)
      if not ok then log.warn("%s", err) end
      return { leases = {}, nets = {} }, {}
    end
  end
  return data, links
end

--- The leases of namespace @name in @data, by network.
function M.leases_of(data, name)
  local out = {}
  for _, e in ipairs(state.each_lease(data)) do
    if e.name == name then out[e.net] = e.lease end
  end
  return out
end

--- Who is on each network: network -> {namespace -> lease} (connected only).
function M.members(data)
  local out = {}
  for _, e in ipairs(state.each_lease(data)) do
    if e.lease.connected then
      out[e.net] = out[e.net] or {}
      out[e.net][e.name] = e.lease
    end
  end
  return out
end

--- Rewrite /etc/hosts of every named namespace from @data (once at the
-- end instead, while `ns.hosts_deferred`: a `lab up` of many nodes).
function M.refresh_hosts(ns, data)
  if ns.hosts_deferred then
    ns.hosts_pending = true
    return
  end
  local names = {}
  for _, name in ipairs(core.listdir(ns.paths.names) or {}) do
    if require("rootlessnetns.lab.names").check_name(name) then names[#names + 1] = name end
  end
  hosts.refresh(ns, names, M.members(data))
end

-- Does the rootless netns have a way out over IPv6 (a default route)?
local function has_route6()
  local f = io.open("/proc/net/ipv6_route", "r")
  if not f then return false end
  local routes = f:read("a")
  f:close()
  return routes:find("^00000000000000000000000000000000 00 ") ~= nil
    or routes:find("\n00000000000000000000000000000000 00 ") ~= nil
end

-- Forwarding on in the rootless netns (IPv6 too: its backend interfaces
-- keep taking router advertisements, accept_ra 2, or their IPv6 route
-- out would lapse); the way out over IPv6, if any.
local function enable_forwarding(bridges)
  local function put(path, value)
    local f = io.open(path, "w")
    if not f then return false end
    local ok = f:write(value)
    return f:close() and ok ~= nil
  end
  assert(put("/proc/sys/net/ipv4/ip_forward", "1"), "cannot enable IPv4 forwarding")
  -- the bridges and veths made from here on are usable over IPv6 at once
  -- (a tentative link-local address cannot resolve a neighbour)
  put("/proc/sys/net/ipv6/conf/default/accept_dad", "0")
  for _, link in ipairs(child.link_names()) do
    if link ~= "lo" and not bridges[link] and not link:match("^" .. M.HOST_IF_PREFIX .. "%d+$") then
      put(("/proc/sys/net/ipv6/conf/%s/accept_ra"):format(link), "2")
    end
  end
  put("/proc/sys/net/ipv6/conf/all/forwarding", "1")
  return has_route6()
end

--- The bridge of network @n, forwarding, and the rules of every network
-- (idempotent: run on every connect, so a half-made bridge is completed).
-- @treturn[1] boolean the rootless netns has a way out over IPv6
-- @treturn[1] boolean the bridge was made here
-- @return[2] nil, message
local function ensure_bridge(ns, n, data)
  local pin = ns.paths.pin
  local all, bridges = {}, {}
  for _, other in pairs(networks.all(ns)) do
    all[#all + 1] = other
    bridges[other.bridge] = true
  end
  table.sort(all, function(a, b) return a.name < b.name end)
  -- A bridge with namespaces on it, and rules as they were last set:
  -- nothing to do (a connect of many namespaces pays for this once).
  local rules = text.rules(all)
  local rules_file = ns.paths.dir .. "/lab-rules.nft"
  local on_it = false
  for _, lease in pairs(state.net_leases(data, n.name).leases) do on_it = on_it or lease.connected == true end
  if on_it and data.route6 ~= nil and core.readfile(rules_file, 1 << 20) == rules then
    return data.route6, false
  end
  local res, err = inside.call(pin, function()
    return { route6 = enable_forwarding(bridges), exists = core.if_index(n.bridge) ~= nil }
  end)
  if not res then return nil, "enable forwarding in the rootless netns: " .. tostring(err) end
  if not res.exists then
    local ok, berr = ip_batch(pin, text.bridge(ns.cfg.connect, n))
    if not ok then
      ip_batch(pin, { "link del " .. n.bridge })
      return nil, "create the bridge: " .. berr
    end
  end
  local ok, nerr = M.run_in(pin, { "nft", "-f", "-" }, rules)
  if not ok then return nil, "masquerade: " .. nerr end
  core.writefile(rules_file, rules, tonumber("600", 8))
  data.route6 = res.route6 == true
  return res.route6, not res.exists
end

--- Check that the backend's own network stays out of network @n's
-- subnet: its addresses with their networks, its DNS forwarders and
-- map-guest addresses (pasta's come from the host, so this is known only
-- now).
local function check_subnet(ns, n)
  local info = state.read_info(ns.paths)
  local lab = { network = n.net.network, prefix = n.net.prefix }
  for _, key in ipairs(state.INFO_KEYS) do
    for _, addr in ipairs(info[key] or {}) do
      local other = addrpool.network(addr)
      if other and addrpool.overlaps(lab, other) then
        local fix = n.default and "set connect.subnet in the config to another one"
          or "make the network again with another --subnet"
        return nil, ("the subnet %s of network `%s` overlaps the rootless netns's own %s (%s); %s"):format(
          n.subnet, n.name, addr,
          key == "IPAddresses" and "address" or key == "DnsForwardIps" and "DNS forwarder" or "map-guest address", fix)
      end
    end
  end
  return true
end

-- The interface name for a new connection of a namespace whose leases
-- are @mine: the config's (eth0) when free, else the next ethN.
local function free_interface(c, mine)
  local used = {}
  for _, lease in pairs(mine) do used[lease.interface or c.interface] = true end
  if not used[c.interface] then return c.interface end
  local stem = c.interface:gsub("%d+$", "")
  local i = 0
  while used[stem .. i] do i = i + 1 end
  return stem .. i
end

--- Reserve a lease for @name on network @n in @data (not yet written);
-- its veth's index is one no lease uses and no link of @links (the
-- rootless netns's) has: a veth of a namespace just deleted may still be
-- going away in the background.
local function reserve(data, name, n, c, opts, links)
  local t = state.net_leases(data, n.name)
  local address, err
  if opts.ip then
    address, err = addrpool.check_requested(n.net, t.leases, opts.ip)
  else
    address, err = addrpool.next_free(n.net, t.leases, t.last)
  end
  if not address then return nil, err end
  local address6
  if n.net6 then
    if opts.ip6 then
      address6, err = addrpool.check_requested6(n.net6, t.leases, opts.ip6)
      if not address6 then return nil, err end
    else
      address6 = addrpool.ipv6_of(n.net, n.net6, address)
    end
  elseif opts.ip6 then
    return nil, ("network `%s` has no IPv6 subnet"):format(n.name)
  end
  local all = {}
  for _, e in ipairs(state.each_lease(data)) do all[#all + 1] = e.lease end
  for _, link in ipairs(links or {}) do
    local i = math.tointeger(tonumber(link:match("^" .. M.HOST_IF_PREFIX .. "(%d+)$") or ""))
    if i then all[#all + 1] = { index = i } end
  end
  -- (round from the last one, so a name is not reused at once)
  local index = addrpool.free_index(all, data.last_index)
  data.last_index = index
  local mine = M.leases_of(data, name)
  local lease = {
    network = n.name, address = address, prefix = n.net.prefix, gateway = addrpool.format_ipv4(n.net.gateway),
    address6 = address6, gateway6 = n.net6 and n.net6.gateway or nil,
    index = index, interface = free_interface(c, mine), host_interface = M.HOST_IF_PREFIX .. index,
    bridge = n.bridge, connected = false, internal = n.internal or nil, shape = opts.shape,
  }
  t.leases[name] = lease
  t.last = address
  return lease
end

-- Which connection of @name carries its default route: @lease when asked
-- (opts.default_route true), or when it has a way out and none of the
-- others carries one (and it is not refused: default_route false).
local function takes_default(lease, others, opts)
  if lease.internal or opts.default_route == false then return false end
  if opts.default_route == true then return true end
  for _, o in pairs(others) do
    if o ~= lease and o.default_route then return false end
  end
  return true
end

-- Shape both ends of @lease's veth pair (its host end egresses into the
-- namespace, its inner end out of it).
local function shape(ns, pin, lease)
  local ok, err = M.run_in(ns.paths.pin, { "tc", table.unpack(shaping.tc_args(lease.host_interface, lease.shape)) })
  if ok then ok, err = M.run_in(pin, { "tc", table.unpack(shaping.tc_args(lease.interface, lease.shape)) }) end
  return ok, err
end

-- Refuse shaping this kernel cannot do, before anything is made: the
-- qdiscs are tried on the namespace's loopback.
local function check_shaping(pin, shape_opts)
  if not shaping.needs_netem(shape_opts) then return true end
  local have = shaping.supported(function(args) return M.run_in(pin, { "tc", table.unpack(args) }) end)
  if have.netem then return true end
  for _, o in ipairs { "delay", "jitter", "loss" } do
    if shape_opts[o] then return nil, shaping.missing(o), errno.EOPNOTSUPP end
  end
  return true
end

--- Connect the live namespace @name (pinned at @pin) to network @n
-- (rootlessnetns.lab.networks.get); the rootless netns is set up when
-- needed (@up: what get-or-create said).  @opts: ip, ip6,
-- default_route (true: this connection carries the default route; false:
-- it never does), shape (shaping.check's).
-- @treturn[1] table the lease
-- @return[2] nil, message, errno
function M.connect(ns, name, pin, n, up, opts)
  opts = opts or {}
  local c, p = ns.cfg.connect, ns.paths
  local data, links = M.repair(ns)
  local function give_up(msg, code)
    if up.created then refs.clean_up_if_unused(ns) end
    return nil, msg, code
  end
  local t = state.net_leases(data, n.name)
  if t.leases[name] then
    return give_up(("namespace `%s` is already connected to network `%s` (%s)"):format(name, n.name,
      t.leases[name].address), errno.EEXIST)
  end
  if n.internal and opts.default_route == true then
    return give_up(("network `%s` is internal: it has no way out to carry a default route"):format(n.name),
      errno.EINVAL)
  end
  local ok, err = check_subnet(ns, n)
  if not ok then return give_up(err, errno.EINVAL) end
  local code
  ok, err, code = check_shaping(pin, opts.shape)
  if not ok then return give_up(err, code) end
  if t.subnet ~= nil and (t.subnet ~= n.subnet or t.bridge ~= n.bridge) then
    -- the network changed since its bridge was made (the config's connect)
    if next(t.leases) then
      return give_up(("the bridge %s serves %s for connected namespaces; disconnect them before "
        .. "changing it to %s %s"):format(tostring(t.bridge), tostring(t.subnet), n.bridge, n.subnet),
        errno.EBUSY)
    end
    ip_batch(p.pin, { "link del " .. tostring(t.bridge) }) -- (made anew below)
    t.last = nil
  end
  t.subnet, t.bridge = n.subnet, n.bridge
  local lease, rerr = reserve(data, name, n, c, opts, links)
  if not lease then return give_up(rerr, errno.EINVAL) end
  -- Written before any interface exists, so that nothing is made that no
  -- record names; it holds no reference until `connected`.
  ok, err = state.write_leases(p, data)
  if not ok then return give_up(err) end
  core.fault_point("connect-reserved")

  local route6, made
  route6, made = ensure_bridge(ns, n, data)
  ok = route6 ~= nil
  if not ok then err = made end
  if ok then
    local peer
    peer, err = core.open(pin, "r")
    if peer then
      ok, err = ip_batch(p.pin, text.veth(lease, c, PEER_PATH), { [PEER_FD] = peer })
      peer:close()
    else
      ok = nil
    end
  end
  core.fault_point("connect-veth")
  local mine = M.leases_of(data, name)
  if ok then
    lease.default_route = takes_default(lease, mine, opts)
    lease.default_route6 = lease.default_route and route6 and lease.address6 ~= nil or nil
    ok, err = ip_batch(pin, text.address(lease))
  end
  if ok and lease.shape then ok, err = shape(ns, pin, lease) end
  core.fault_point("connect-configured")
  if ok then
    if lease.default_route then
      for _, o in pairs(mine) do
        if o ~= lease then o.default_route, o.default_route6 = nil, nil end
      end
    end
    lease.connected = true
    ok, err = state.write_leases(p, data)
  end
  if not ok then
    local left = M.repair(ns, { quiet = true })
    -- a bridge made for this connection alone goes with it
    if made == true and not next(state.net_leases(left, n.name).leases) then
      ip_batch(p.pin, { "link del " .. n.bridge })
    end
    return give_up(("connect `%s` to `%s`: %s"):format(name, n.name, err))
  end
  M.refresh_hosts(ns, data)
  log.debug("connected `%s` to `%s` as %s/%d via %s", name, n.name, lease.address, n.net.prefix,
    lease.host_interface)
  return { name = name, network = n.name, address = lease.address, prefix = lease.prefix, gateway = lease.gateway,
    address6 = lease.address6, gateway6 = lease.gateway6, interface = lease.interface,
    host_interface = lease.host_interface, bridge = lease.bridge, index = lease.index,
    default_route = lease.default_route == true, shape = lease.shape }
end

--- Remove @name's connection to network @net (nil: to every network):
-- veths and leases; another connection with a way out takes over the
-- default route; the last one out cleans up the rootless netns.
-- @treturn[1] true
-- @return[2] nil, message, errno (ENOENT: not connected there)
function M.disconnect(ns, name, net, pin, opts)
  local p = ns.paths
  local data = state.read_leases(p)
  local gone = {}
  for n, lease in pairs(M.leases_of(data, name)) do
    if net == nil or n == net then
      gone[#gone + 1] = lease
      state.net_leases(data, n).leases[name] = nil
    end
  end
  if #gone == 0 then
    return nil, ("namespace `%s` is not connected%s"):format(name, net and (" to network `" .. net .. "`") or ""),
      errno.ENOENT
  end
  -- the route out moves to what is left, when it was on what goes
  local had_default, had_default6 = false, false
  for _, lease in ipairs(gone) do
    had_default = had_default or lease.default_route == true
    had_default6 = had_default6 or lease.default_route6 == true
  end
  local heir
  if had_default then
    local left = M.leases_of(data, name)
    local names = {}
    for n in pairs(left) do names[#names + 1] = n end
    table.sort(names)
    for _, n in ipairs(names) do
      if not left[n].internal and left[n].connected then heir = left[n] break end
    end
    if heir then
      heir.default_route = true
      heir.default_route6 = had_default6 and heir.address6 ~= nil and heir.gateway6 ~= nil or nil
    end
  end
  if opts and opts.namespace_goes then
    -- its veths go with it, in the background: the next repairs leave
    -- them alone while they are there
    data.going = type(data.going) == "table" and data.going or {}
    for _, lease in ipairs(gone) do
      if math.type(lease.index) == "integer" then
        data.going[#data.going + 1] = { link = M.HOST_IF_PREFIX .. lease.index, pin = pin }
      end
    end
  end
  -- the record goes first: a disconnect killed after it leaves a veth
  -- that no lease names, which the next repair removes
  local ok, err = state.write_leases(p, data)
  if not ok then return nil, err end
  core.fault_point("disconnect-unleased")
  -- (a namespace about to go takes its veths with it, the kernel's way:
  -- in the background, far faster than one deletion at a time)
  if not (opts and opts.namespace_goes) then
    local lines = {}
    for _, lease in ipairs(gone) do
      if math.type(lease.index) == "integer" then lines[#lines + 1] = "link del " .. M.HOST_IF_PREFIX .. lease.index end
    end
    local dok, derr = ip_batch(p.pin, lines)
    if not dok then log.warn("disconnect `%s`: %s", name, derr) end
  end
  if heir and pin then
    local routes = { ("route replace default via %s dev %s"):format(heir.gateway, heir.interface) }
    if heir.default_route6 then
      routes[#routes + 1] = ("route replace default via %s dev %s"):format(heir.gateway6, heir.interface)
    end
    local rok, rerr = ip_batch(pin, routes)
    if not rok then log.warn("default route of `%s` via `%s`: %s", name, heir.network, rerr) end
  end
  M.refresh_hosts(ns, data)
  return refs.clean_up_if_unused(ns)
end

return M
