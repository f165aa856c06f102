--- Named network namespaces for unprivileged users (a rootless `ip netns`)
-- and the lab network that connects them through the rootless netns.
--
--   local lab = require "rootlessnetns.lab"
--   local l = assert(lab.new { backend = "slirp4netns" })
--   assert(l:add("web"))
--   local lease = assert(l:connect("web"))      -- lease.address: 10.89.0.2
--   local how, code = l:exec("web", { "ip", "route" })
--   assert(l:disconnect("web"))
--   assert(l:del("web"))
--
-- Pins live under `$XDG_RUNTIME_DIR/netns` (podman's directory for its
-- container namespaces), mounted inside the holder.  Which pins are ours
-- is recorded under `<state dir>/netns/`, so podman's files there are
-- never touched.
--
-- This file is the order in which each method does things; the pieces
-- live by concern: rootlessnetns.lab.names (names, processes inside),
-- rootlessnetns.lab.connections (how a namespace is connected, and the
-- repair of what an interrupted connect left), rootlessnetns.lab.text
-- (the ip and nft text, pure).
local core = require "rootlessnetns"
local connections = require "rootlessnetns.lab.connections"
local hosts = require "rootlessnetns.lab.hosts"
local networks = require "rootlessnetns.lab.networks"
local shaping = require "rootlessnetns.lab.shaping"
local inside = require "rootlessnetns.inside"
local instance = require "rootlessnetns.instance"
local log = require "rootlessnetns.log"
local mounts = require "rootlessnetns.mounts"
local names = require "rootlessnetns.lab.names"
local netns = require "rootlessnetns.netns"
local ports = require "rootlessnetns.ports"
local prepared = require "rootlessnetns.prepared"
local session = require "rootlessnetns.session"
local state = require "rootlessnetns.state"
local text = require "rootlessnetns.lab.text"

local PRIVATE_DIR = tonumber("700", 8)
local errno = core.errno

local M = {}

M.NAME_MAX = names.NAME_MAX
M.HOST_IF_PREFIX = connections.HOST_IF_PREFIX
M.NFT_TABLE = text.NFT_TABLE
M.check_name = names.check_name

local Lab = {}
Lab.__index = Lab
M.Lab = Lab

--- Create a handle.
-- @tparam[opt] table|Netns opts the options of rootlessnetns.netns.new, or
--   a Netns handle to share
-- @treturn[1] Lab
-- @return[2] nil, message
function M.new(opts)
  local ns = opts
  if getmetatable(opts) ~= netns.Netns then
    local err
    ns, err = netns.new(opts)
    if not ns then return nil, err end
  end
  return setmetatable({ ns = ns, cfg = ns.cfg }, Lab)
end

function Lab:_pin(name) return self.ns.named_dir .. "/" .. name end
function Lab:_record(name) return self.ns.paths.names .. "/" .. name end

--- Where a named namespace's pin lives: the mode of the holder it was
-- made in (records made before this was written: our own).
function Lab:_owner(name)
  local rec = state.read_json(self:_record(name))
  local owner = type(rec) == "table" and rec.holder
  return session.owner_text(owner) and owner or "own"
end

--- Is @name ours, and is its pin a live namespace?  (With no holder, @h
-- false, none is live.)  A name made in another holder's mount namespace
-- (userns = "podman" or not) is refused: from here its pin looks stale,
-- and deleting or recreating it would destroy a live namespace.
-- @treturn[1] boolean ours
-- @treturn[1] boolean live
-- @return[2] nil, message, EBUSY
function Lab:_lookup(name, h)
  if not core.lstat(self:_record(name)) then return false, false end
  local owner, mode = self:_owner(name), session.mode_of(self.ns, h)
  if mode and owner ~= mode then
    return nil, ("namespace `%s` lives in %s, not in %s, which this command uses; use the config it was "
      .. "made with"):format(name, session.owner_text(owner), session.owner_text(mode)), errno.EBUSY
  end
  return true, (h and core.nsfs(self:_pin(name))) == true
end

local function not_found(name)
  return nil, ("no namespace `%s` (see `rootlessnetns netns list`)"):format(name), errno.ENOENT
end

local function stale(name)
  return nil, ("namespace `%s` is stale (its holder is gone); `rootlessnetns netns del %s` removes it")
    :format(name, name), errno.ENOENT
end

-- ------------------------------------------------------------ namespaces

--- Create a named namespace (a random `netns-<uuid>` when @name is nil),
-- with its loopback up.  A stale namespace of that name is replaced.
-- @treturn[1] string name
-- @treturn[1] string path of the pin
-- @return[2] nil, message, errno (EEXIST when the name is taken)
function Lab:add(name)
  if name ~= nil then
    local ok, err = M.check_name(name)
    if not ok then return nil, err, errno.EINVAL end
  end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, true)
  if not s then return nil, serr, scode, sstage, ssig end
  local h = s.holder
  name = name or names.random_name()
  local ours, live, lcode = self:_lookup(name, h)
  if ours == nil then return nil, live, lcode end
  local pin = self:_pin(name)
  if live then
    return nil, ("namespace `%s` already exists"):format(name), errno.EEXIST
  elseif ours then
    log.warn("namespace `%s` was stale (its holder died or its creation was interrupted); recreating it", name)
    core.unlink(pin)
  elseif core.lstat(pin) then
    return nil, ("`%s` exists and is not one of ours (podman's?); choose another name"):format(pin),
      errno.EEXIST
  end
  -- The record comes first: a create killed after it leaves a stale name
  -- that list shows and del (or add) repairs, never a hidden pin.
  local ok, err, code = core.mkdir(self.ns.paths.names, PRIVATE_DIR)
  if not ok and code ~= errno.EEXIST then return nil, err end
  ok, err = state.write_json(self:_record(name), { name = name, created = os.time(),
    holder = session.mode_of(self.ns, h) or "current" })
  if not ok then return nil, err end
  core.fault_point("netns-add-recorded")
  local path, cerr
  path, cerr, code = core.netns_create_in(self.ns.named_dir, name)
  if path then
    ok, cerr = inside.call(path, function()
      -- the interfaces it gets are usable over IPv6 at once: a tentative
      -- link-local address cannot resolve a neighbour (a command started
      -- right after connect, a router forwarding for it)
      local f = io.open("/proc/sys/net/ipv6/conf/default/accept_dad", "w")
      if f then f:write("0") f:close() end
      return assert(core.link_up("lo"))
    end)
    if not ok then core.netns_unmount(path, 5000) end
  end
  if not path or not ok then
    core.unlink(self:_record(name))
    return nil, cerr, code
  end
  -- (warm runs' prepared mount namespace predates this pin: made again)
  prepared.drop(self.ns)
  log.debug("created namespace `%s` at `%s`", name, path)
  return name, path
end

--- The named namespaces, sorted by name.
-- @treturn[1] table list of {name, path, live, address (nil when not connected), pids}
function Lab:list()
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local h = s.holder
  local data = h and connections.repair(self.ns, { clean_up = true }) or { leases = {}, nets = {} }
  local out, live_pins = {}, {}
  local recorded = core.listdir(self.ns.paths.names) or {}
  table.sort(recorded)
  for _, name in ipairs(recorded) do
    -- (a write killed half way leaves a temporary file, which is no name)
    if M.check_name(name) then
      local ours, live = self:_lookup(name, h)
      local mine = ours and live and connections.leases_of(data, name) or {}
      local lease = mine[networks.DEFAULT]
      local on = {}
      for net, l in pairs(mine) do on[net] = { address = l.address .. "/" .. l.prefix, interface = l.interface,
        address6 = l.address6 and (l.address6 .. "/64") or nil } end
      out[#out + 1] = {
        name = name,
        path = self:_pin(name),
        live = ours and live or false,
        address = lease and (lease.address .. "/" .. lease.prefix) or nil,
        -- made in another holder (userns): not stale, just not seen from here
        elsewhere = ours == nil and self:_owner(name) or nil,
        networks = on,
        ports = {},
      }
      for i, p in ipairs(ports.recorded(ports.target(self.ns, name))) do out[#out].ports[i] = p.spec end
      if live then live_pins[#live_pins + 1] = self:_pin(name) end
    end
  end
  local running = names.processes_in_each(live_pins)
  for _, e in ipairs(out) do e.pids = names.pid_list(running[e.path] or {}) end
  return out
end

--- The mount plan of a command in a named namespace: a sysfs of its own
-- (so /sys/class/net shows its interfaces, as `ip netns exec` does) and,
-- when connected, the rootless netns's resolv.conf.
function Lab:_exec_plan(connected, name)
  local plan = {
    { name = "sysfs", source = "sysfs", target = "/sys", fstype = "sysfs",
      options = "nosuid,nodev,noexec", optional = true },
  }
  -- the names of the namespaces it shares a network with (rewritten in
  -- place: what runs sees the lab change)
  local etc_hosts = name and mounts.resolve_target("/etc/hosts")
  local st = etc_hosts and core.lstat(hosts.path(self.ns, name))
  if st and st.type == "file" then
    plan[#plan + 1] = { name = "hosts", source = hosts.path(self.ns, name), target = etc_hosts,
      options = "bind", optional = true }
  end
  local target = connected and mounts.resolve_target("/etc/resolv.conf")
  if target then
    plan[#plan + 1] = { name = "resolv.conf", source = self.ns.paths.resolv, target = target,
      options = "bind", optional = true }
  end
  return plan
end

--- Run @cmd in the named namespace.  The lock is released while it runs.
-- @tparam string name the namespace
-- @tparam table|function cmd argv list or a Lua function
-- @tparam[opt] table opts {env, signals} as for Netns:run
-- @return as Netns:run
function Lab:exec(name, cmd, opts)
  opts = opts or {}
  local ok, err = M.check_name(name)
  if not ok then return nil, err, errno.EINVAL, "usage" end
  ok, err = inside.check_cmd(cmd)
  if not ok then return nil, err, errno.EINVAL, "usage" end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local ours, live, lcode = self:_lookup(name, s.holder)
  if ours == nil then return nil, live, lcode end
  if not live then
    if ours then return stale(name) end
    return not_found(name)
  end
  local mine = core.nsfs(self.ns.paths.pin) == true and connections.leases_of(state.read_leases(self.ns.paths), name)
    or {}
  local lease
  for _, l in pairs(mine) do
    if l.connected then lease = l end
  end
  -- (what a cleanup, or damage, left of its names is made right)
  hosts.refresh(self.ns, { name }, connections.members(core.nsfs(self.ns.paths.pin) == true
    and state.read_leases(self.ns.paths) or { leases = {}, nets = {} }))
  if lease and lease.connected then
    -- its way out is the rootless netns's backend: restart it if it died
    local up, uerr = instance.get_or_create(self.ns, s.holder)
    if not up then log.warn("`%s` is connected, but: %s", name, uerr) end
  end
  local argv, aerr, acode = inside.resolve_command(cmd)
  if not argv then return nil, aerr, acode, "exec" end
  local connected = lease ~= nil and lease.connected == true
  local proc, report, code = inside.spawn(self:_pin(name), argv, opts.env, self:_exec_plan(connected, name))
  -- (the namespace lives until `netns del`, which refuses while it runs)
  s:unlock()
  if not proc then return nil, report, code end
  return inside.finish(proc, report, opts.signals)
end

--- Delete a named namespace: disconnected first, then unpinned.
-- Refuses while processes run inside unless `opts.force` (they are
-- killed).
-- @treturn[1] true
-- @return[2] nil, message, errno (EBUSY: processes inside)
function Lab:del(name, opts)
  opts = opts or {}
  local ok, err = M.check_name(name)
  if not ok then return nil, err, errno.EINVAL end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local h = s.holder
  local ours, live, lcode = self:_lookup(name, h)
  if ours == nil then return nil, live, lcode end
  if not ours then return not_found(name) end
  local pin = self:_pin(name)
  if live then
    local running = names.processes_in(pin)
    if #running > 0 and not opts.force then
      return nil, ("namespace `%s` still has %d process%s inside (pid %s); stop them or use --force")
        :format(name, #running, #running == 1 and "" or "es", table.concat(names.pid_list(running), ", ")), errno.EBUSY
    end
    if #running > 0 and not names.kill_inside(pin) then
      return nil, ("namespace `%s`: processes inside survived SIGKILL"):format(name), errno.EBUSY
    end
    local data = connections.repair(self.ns, { clean_up = true })
    if next(connections.leases_of(data, name)) then
      ok, err = connections.disconnect(self.ns, name, nil, pin, { namespace_goes = true })
      if not ok then return nil, err end
    end
  end
  core.fault_point("netns-del-disconnected")
  -- (warm runs' prepared mount namespace holds a copy of the pin, and the
  -- port forwarder's maker is inside)
  prepared.drop(self.ns)
  ports.forget(self.ns, name)
  if live then
    ok, err = core.netns_unmount(pin, 5000)
  else
    -- a plain file (unmounting outside the holder would be refused)
    local code
    ok, err, code = core.unlink(pin)
    if code == errno.ENOENT then ok = true end
  end
  if not ok then return nil, err end
  core.unlink(self:_record(name))
  hosts.forget(self.ns, name)
  log.debug("deleted namespace `%s`", name)
  return true
end

--- Connect a named namespace to the bridge in the rootless netns (set up
-- when needed).  The connection is a reference to the rootless netns.
-- With `opts.publish` (port specs), those ports of it are published too,
-- all or none (they need no connection: see Lab:publish).
-- @tparam string name the namespace
-- @tparam[opt] table opts {network = NET (default "default"), ip = "A.B.C.D[/P]", ip6 = ADDR,
--   default_route = bool, rate = "10mbit", delay = "20ms", jitter = "5ms", loss = "1%", publish = {SPEC...}}
-- @treturn[1] table lease {name, network, address, prefix, gateway, address6, gateway6, interface,
--   host_interface, bridge, default_route, shape}
-- @return[2] nil, message, errno
function Lab:connect(name, opts)
  opts = opts or {}
  local ok, err = names.check_name(name)
  if not ok then return nil, err, errno.EINVAL end
  local shape, sherr, shcode = shaping.check(opts)
  if sherr then return nil, sherr, shcode end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local net, nerr, ncode = networks.get(self.ns, opts.network)
  if not net then return nil, nerr, ncode end
  if not s then return nil, serr, scode, sstage, ssig end
  local ours, live, lcode = self:_lookup(name, s.holder)
  if ours == nil then return nil, live, lcode end
  if not live then
    if ours then return stale(name) end
    return not_found(name)
  end
  local publish, perr, pcode = ports.parse_all(opts.publish or {}, true)
  if not publish then return nil, perr, pcode end
  local up, uerr, ucode, ustage, usig = instance.get_or_create(self.ns, s.holder)
  if not up then return nil, uerr, ucode, ustage, usig end
  local t = ports.target(self.ns, name)
  local before = {}
  for _, p in ipairs(ports.recorded(t)) do before[p.id] = true end
  if #publish > 0 then
    local pok, puberr, pubcode = ports.publish_all(self.ns, t, s.holder, publish)
    if not pok then return nil, puberr, pubcode end
  end
  local lease, lerr2, lcode2 = connections.connect(self.ns, name, self:_pin(name), net, up,
    { ip = opts.ip, ip6 = opts.ip6, default_route = opts.default_route, shape = shape })
  if not lease then
    for _, p in ipairs(publish) do
      if not before[p.id] then ports.unpublish(self.ns, t, s.holder, p.id) end
    end
  end
  return lease, lerr2, lcode2
end

--- Disconnect a named namespace from network `opts.network` (every
-- network when nil).
-- @tparam string name the namespace
-- @tparam[opt] table opts {network = NET}
-- @treturn[1] true
-- @return[2] nil, message, errno (ENOENT: not connected)
function Lab:disconnect(name, opts)
  opts = opts or {}
  local ok, err = M.check_name(name)
  if not ok then return nil, err, errno.EINVAL end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local h = s.holder
  local ours, lerr, lcode = self:_lookup(name, h)
  if ours == nil then return nil, lerr, lcode end
  if not ours then return not_found(name) end
  if opts.network ~= nil then
    local net, nerr, ncode = networks.get(self.ns, opts.network)
    if not net then return nil, nerr, ncode end
  end
  local data = h and connections.repair(self.ns, { clean_up = true }) or { leases = {}, nets = {} }
  if not next(connections.leases_of(data, name)) then
    return nil, ("namespace `%s` is not connected"):format(name), errno.ENOENT
  end
  return connections.disconnect(self.ns, name, opts.network, self:_pin(name))
end

-- ------------------------------------------------------------- networks

--- Create a network: a bridge in the rootless netns (made at the first
-- connect), an IPv4 subnet (the next free 10.89.N.0/24 unless given) and
-- an IPv6 /64 (a ULA stable per name unless given).
-- @tparam string name
-- @tparam[opt] table opts {subnet = CIDR, subnet6 = CIDR, internal = bool (no way out)}
-- @treturn[1] table the network {name, subnet, subnet6, internal, bridge}
-- @return[2] nil, message, errno (EEXIST, EINVAL)
function Lab:network_create(name, opts)
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  return networks.create(self.ns, name, opts)
end

--- The networks, `default` first, each with the namespaces on it.
-- @treturn table list of {name, subnet, subnet6, internal, bridge, members = {NAME...}}
function Lab:networks()
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local members = connections.members(s.holder and core.nsfs(self.ns.paths.pin) and state.read_leases(self.ns.paths)
    or { leases = {}, nets = {} })
  local out = {}
  for name, n in pairs(networks.all(self.ns)) do
    local m = {}
    for member in pairs(members[name] or {}) do m[#m + 1] = member end
    table.sort(m)
    out[#out + 1] = { name = name, subnet = n.subnet, subnet6 = n.subnet6, internal = n.internal, bridge = n.bridge,
      members = m }
  end
  local function key(n) return (n.name == networks.DEFAULT and "0" or "1") .. n.name end
  table.sort(out, function(a, b) return key(a) < key(b) end)
  return out
end

--- Remove a network: refused while namespaces are on it, unless
-- `opts.force` (they are disconnected from it first).
-- @treturn[1] true
-- @return[2] nil, message, errno (EBUSY, ENOENT, EINVAL)
function Lab:network_rm(name, opts)
  opts = opts or {}
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  if name == networks.DEFAULT then
    return nil, "the network `default` is the config's `connect`; it cannot be removed", errno.EINVAL
  end
  local n, nerr, ncode = networks.get(self.ns, name)
  if not n then return nil, nerr, ncode end
  local live = s.holder and core.nsfs(self.ns.paths.pin)
  if live then
    local data = connections.repair(self.ns)
    local on = {}
    for member in pairs(connections.members(data)[name] or {}) do on[#on + 1] = member end
    table.sort(on)
    if #on > 0 and not opts.force then
      return nil, ("network `%s` has %d namespace%s on it (%s); disconnect them or use --force"):format(name, #on,
        #on == 1 and "" or "s", table.concat(on, ", ")), errno.EBUSY
    end
    for _, member in ipairs(on) do
      local ok, err = connections.disconnect(self.ns, member, name, self:_pin(member))
      if not ok then return nil, err end
    end
    if core.nsfs(self.ns.paths.pin) then
      connections.run_in(self.ns.paths.pin, { "ip", "link", "del", n.bridge })
      data = state.read_leases(self.ns.paths)
      if data.nets then data.nets[name] = nil end
      state.write_leases(self.ns.paths, data)
    end
  end
  return networks.forget(self.ns, name)
end

-- Rewrite every named namespace's /etc/hosts (after a batch that held
-- them back: rootlessnetns.lab.apply).
function Lab:_refresh_names()
  local s <close> = session.begin(self.ns, false)
  if not s then return end
  local live = s.holder and core.nsfs(self.ns.paths.pin)
  connections.refresh_hosts(self.ns, live and state.read_leases(self.ns.paths) or { leases = {}, nets = {} })
end

-- The live named namespace @name, for a port command: the session and
-- the target; or why not.
function Lab:_port_target(name)
  local ok, err = M.check_name(name)
  if not ok then return nil, err, errno.EINVAL end
  local s, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local ours, live, lcode = self:_lookup(name, s.holder)
  if ours == nil or not live then
    s:unlock()
    if ours == nil then return nil, live, lcode end
    if ours then return stale(name) end
    return not_found(name)
  end
  ports.tend(self.ns, s.holder, function(t) return core.nsfs(t.pin) == true end)
  return s, ports.target(self.ns, name)
end

--- Publish ports of named namespace @name on the host (as
-- Netns:publish: a spec or a list, all or none).  It needs no
-- connection: the forward's sockets are made inside the namespace
-- itself; it lives until `del`.
-- @treturn[1] table the port (a list of them for a list)
-- @return[2] nil, message, errno
function Lab:publish(name, spec)
  local list, perr, pcode = ports.parse_all(spec)
  if not list then return nil, perr, pcode end
  local s <close>, t, code, stage, sig = self:_port_target(name)
  if not s then return nil, t, code, stage, sig end
  local ok, err, ecode, estage, esig = ports.publish_all(self.ns, t, s.holder, list, true)
  if not ok then return nil, err, ecode, estage, esig end
  if type(spec) == "table" then return list end
  return list[1]
end

--- Stop publishing ports of named namespace @name (all or none).
-- @treturn[1] true
-- @return[2] nil, message, errno (ENOENT: not published)
function Lab:unpublish(name, spec)
  local list, perr, pcode = ports.parse_all(spec)
  if not list then return nil, perr, pcode end
  local s <close>, t, code, stage, sig = self:_port_target(name)
  if not s then return nil, t, code, stage, sig end
  return ports.unpublish_all(self.ns, t, s.holder, list)
end

--- The published ports of named namespace @name; without @name, of
-- every named namespace, each entry with its `netns`.
-- @treturn[1] table list of ports, as Netns:ports
-- @return[2] nil, message, errno
function Lab:ports(name)
  if name ~= nil then
    local s <close>, t, code, stage, sig = self:_port_target(name)
    if not s then return nil, t, code, stage, sig end
    return ports.list(t, true)
  end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local out = {}
  for _, n in ipairs(ports.named_targets(self.ns)) do
    for _, e in ipairs(ports.list(ports.target(self.ns, n), true)) do
      e.netns = n
      out[#out + 1] = e
    end
  end
  return out
end

--- Make the lab a topology describes (a file, or the table it returns),
-- changing only what differs: see rootlessnetns.lab.apply.up.
function M.up(l, topology, opts) return require("rootlessnetns.lab.apply").up(l, topology, opts) end

--- Remove what `up` of a topology made, and nothing else: see
-- rootlessnetns.lab.apply.down.
function M.down(l, topology, opts) return require("rootlessnetns.lab.apply").down(l, topology, opts) end

--- Each node and network of a topology, wanted against live: see
-- rootlessnetns.lab.apply.status.
function M.status(l, topology, opts) return require("rootlessnetns.lab.apply").status(l, topology, opts) end

-- (a Lab shares its Netns handle's way in: a worker, or in-process)
require("rootlessnetns.worker").wrap(Lab, { "add", "list", "exec", "del", "connect", "disconnect",
  "publish", "unpublish", "ports", "network_create", "networks", "network_rm" },
  function(self) return self.ns end)

return M
