--- How a named namespace is connected to the rootless netns: a bridge
-- inside the rootless netns, a veth pair per connection, an address from
-- the bridge's subnet, a default route via the bridge, forwarding and
-- masquerading.
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
-- file included).
-- @tparam Netns ns
-- @tparam[opt] table opts {quiet = true (our own failed connect),
--   clean_up = true (take the rootless netns down when what was removed
--   was all that kept it: an interrupted first connect)}
-- @treturn table the completed leases by name
function M.repair(ns, opts)
  opts = opts or {}
  local p = ns.paths
  if not core.nsfs(p.pin) then return {} end
  local data, warning = state.read_leases(p)
  if warning then log.warn("%s", warning) end
  local keep, changed = {}, warning ~= nil
  for name, lease in pairs(data.leases) do
    if lease.connected == true and lease.index then
      keep[M.HOST_IF_PREFIX .. lease.index] = true
    else
      if not opts.quiet then
        log.warn("removing the unfinished connection of `%s` (an interrupted connect)", name)
      end
      data.leases[name] = nil
      changed = true
    end
  end
  local orphans = text.orphans(inside.call(p.pin, child.link_names) or {}, keep, M.HOST_IF_PREFIX)
  if #orphans > 0 then
    log.debug("removing %d orphaned veth(s)", #orphans)
    local ok, err = ip_batch(p.pin, orphans)
    if not ok then log.warn("remove orphaned veths: %s", err) end
  end
  if changed then
    state.write_leases(p, data)
    if opts.clean_up and refs.users(ns) == 0 then
      local ok, err = instance.cleanup(ns)
      if not ok then log.warn("%s", err) end
      return {}
    end
  end
  return data.leases
end

--- The bridge, forwarding and masquerading inside the rootless netns
-- (idempotent: run on every connect, so a half-made bridge is completed).
local function ensure_bridge(ns, net)
  local pin, c = ns.paths.pin, ns.cfg.connect
  local exists, err = inside.call(pin, function()
    local f = assert(io.open("/proc/sys/net/ipv4/ip_forward", "w"))
    assert(f:write("1"))
    assert(f:close())
    return core.if_index(c.bridge) ~= nil
  end)
  if exists == nil then return nil, "enable forwarding in the rootless netns: " .. tostring(err) end
  if not exists then
    local ok, berr = ip_batch(pin, text.bridge(c, net))
    if not ok then return nil, "create the bridge: " .. berr end
  end
  local ok, nerr = M.run_in(pin, { "nft", "-f", "-" }, text.masquerade(net.cidr))
  if not ok then return nil, "masquerade: " .. nerr end
  return true
end

--- Check that the backend's own network stays out of the bridge subnet:
-- its addresses with their networks, its DNS forwarders and map-guest
-- addresses (pasta's come from the host, so this is known only now).
local function check_subnet(ns, net)
  local info = state.read_info(ns.paths)
  local lab = { network = net.network, prefix = net.prefix }
  for _, key in ipairs(state.INFO_KEYS) do
    for _, addr in ipairs(info[key] or {}) do
      local other = addrpool.network(addr)
      if other and addrpool.overlaps(lab, other) then
        return nil, ("the bridge subnet %s overlaps the rootless netns's own %s (%s); "
          .. "set connect.subnet in the config to another one"):format(net.cidr, addr,
          key == "IPAddresses" and "address" or key == "DnsForwardIps" and "DNS forwarder" or "map-guest address")
      end
    end
  end
  return true
end

--- Reserve a lease for @name in @data (not yet written).
local function reserve(data, name, net, c, requested)
  local address, err
  if requested then
    address, err = addrpool.check_requested(net, data.leases, requested)
  else
    address, err = addrpool.next_free(net, data.leases, data.last)
  end
  if not address then return nil, err end
  local index = addrpool.free_index(data.leases)
  local lease = {
    address = address, prefix = net.prefix, gateway = addrpool.format_ipv4(net.gateway),
    index = index, interface = c.interface, host_interface = M.HOST_IF_PREFIX .. index,
    bridge = c.bridge, connected = false,
  }
  data.leases[name] = lease
  data.last = address
  return lease
end

--- Connect the live namespace @name (pinned at @pin) to the bridge; the
-- rootless netns is set up when needed (@up: what get-or-create said).
-- @treturn[1] table the lease
-- @return[2] nil, message, errno
function M.connect(ns, name, pin, net, up, requested_ip)
  local c, p = ns.cfg.connect, ns.paths
  local leases = M.repair(ns)
  local function give_up(msg, code)
    if up.created then refs.clean_up_if_unused(ns) end
    return nil, msg, code
  end
  if leases[name] then
    return give_up(("namespace `%s` is already connected (%s)"):format(name, leases[name].address), errno.EEXIST)
  end
  local ok, err = check_subnet(ns, net)
  if not ok then return give_up(err, errno.EINVAL) end
  local data = state.read_leases(p)
  if data.subnet ~= nil and (data.subnet ~= net.cidr or data.bridge ~= c.bridge) then
    -- the config changed since the bridge was made
    if next(data.leases) then
      return give_up(("the bridge %s serves %s for connected namespaces; disconnect them before "
        .. "changing it to %s %s"):format(tostring(data.bridge), tostring(data.subnet), c.bridge, net.cidr),
        errno.EBUSY)
    end
    ip_batch(p.pin, { "link del " .. tostring(data.bridge) }) -- (made anew below)
    data.last = nil
  end
  data.subnet, data.bridge = net.cidr, c.bridge
  local lease, rerr = reserve(data, name, net, c, requested_ip)
  if not lease then return give_up(rerr, errno.EINVAL) end
  -- Written before any interface exists, so that nothing is made that no
  -- record names; it holds no reference until `connected`.
  ok, err = state.write_leases(p, data)
  if not ok then return give_up(err) end
  core.fault_point("connect-reserved")

  ok, err = ensure_bridge(ns, net)
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
  if ok then ok, err = ip_batch(pin, text.address(lease, c)) end
  core.fault_point("connect-configured")
  if ok then
    lease.connected = true
    ok, err = state.write_leases(p, data)
  end
  if not ok then
    M.repair(ns, { quiet = true })
    return give_up(("connect `%s`: %s"):format(name, err))
  end
  log.debug("connected `%s` as %s/%d via %s", name, lease.address, net.prefix, lease.host_interface)
  local out = { name = name }
  for k, v in pairs(lease) do out[k] = v end
  out.connected = nil
  return out
end

--- Remove @name's veth and lease; the last one out cleans up the
-- rootless netns.
function M.disconnect(ns, name)
  local p = ns.paths
  local data = state.read_leases(p)
  local lease = data.leases[name]
  data.leases[name] = nil
  -- the record goes first: a disconnect killed after it leaves a veth
  -- that no lease names, which the next repair removes
  local ok, err = state.write_leases(p, data)
  if not ok then return nil, err end
  core.fault_point("disconnect-unleased")
  if lease and math.type(lease.index) == "integer" then
    local dok, derr = ip_batch(p.pin, { "link del " .. M.HOST_IF_PREFIX .. lease.index })
    if not dok then log.warn("disconnect `%s`: %s", name, derr) end
  end
  return refs.clean_up_if_unused(ns)
end

return M
