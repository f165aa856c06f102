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
-- `connect` plugs a namespace into a bridge inside the rootless netns: a
-- veth pair, an address from the bridge's subnet, a default route via the
-- bridge, forwarding and masquerading inside the rootless netns.  Each
-- connection is a reference to the rootless netns, like a `run`'s: a
-- record (the lease), written last, so a connect killed at any point
-- holds nothing, and what it left is removed by the next connect,
-- disconnect, list or del.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local addrpool = require "rootlessnetns.addrpool"
local child = require "rootlessnetns.child"
local log = require "rootlessnetns.log"
local mounts = require "rootlessnetns.mounts"
local inside = require "rootlessnetns.inside"
local instance = require "rootlessnetns.instance"
local netns = require "rootlessnetns.netns"
local refs = require "rootlessnetns.refs"
local session = require "rootlessnetns.session"
local procs = require "rootlessnetns.procs"
local state = require "rootlessnetns.state"

local PRIVATE_DIR = tonumber("700", 8)
local errno = core.errno

local M = {}

--- Longest name accepted: long enough for a `netns-<uuid>`, short enough
-- for any file system.
M.NAME_MAX = 64
--- Host-side veths are this prefix and the lease's index.
M.HOST_IF_PREFIX = instance.LAB_VETH_PREFIX
--- The nftables table that masquerades the bridge's subnet.
M.NFT_TABLE = "rootlessnetns"

local Lab = {}
Lab.__index = Lab
M.Lab = Lab

--- Is @name usable as a namespace name?
-- @treturn[1] string name
-- @return[2] nil, message
function M.check_name(name)
  if type(name) ~= "string" or name == "" then
    return nil, "a namespace name must be a non-empty string"
  end
  if #name > M.NAME_MAX then
    return nil, ("namespace name `%s...` is longer than %d characters"):format(name:sub(1, 24), M.NAME_MAX)
  end
  if not name:match("^[%w][%w_.-]*$") then
    return nil, ("invalid namespace name `%s`: letters, digits, `_`, `.` and `-` only, "
      .. "starting with a letter or digit"):format(name)
  end
  return name
end

--- A `netns-<uuid>` name, as podman gives its container namespaces.
local function random_name()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = assert(f:read(16))
  f:close()
  local hex = bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  return ("netns-%s-%s-%s-%s-%s"):format(hex:sub(1, 8), hex:sub(9, 12), hex:sub(13, 16),
    hex:sub(17, 20), hex:sub(21, 32))
end

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

--- Is @name ours, and is its pin a live namespace?  (With no holder, @h
-- false, none is live.)
-- @treturn boolean ours
-- @treturn boolean live
function Lab:_lookup(name, h)
  if not core.lstat(self:_record(name)) then return false, false end
  return true, (h and core.nsfs(self:_pin(name))) == true
end

local function not_found(name)
  return nil, ("no namespace `%s` (see `rootlessnetns netns list`)"):format(name), errno.ENOENT
end

local function stale(name)
  return nil, ("namespace `%s` is stale (its holder is gone); `rootlessnetns netns del %s` removes it")
    :format(name, name), errno.ENOENT
end

--- Live processes in each of the namespaces pinned at @pins, in one scan
-- of /proc: every process whose namespace we may read, so those running
-- under a subordinate uid count too.
-- @treturn table pin -> list of {pid, starttime}
local function processes_in_each(pins)
  local by_link, found = {}, {}
  for _, pin in ipairs(pins) do
    found[pin] = {}
    local id = core.ns_id(pin)
    if id then by_link[("net:[%d]"):format(id)] = pin end
  end
  if next(by_link) then
    local pin_of = {}
    for _, p in ipairs(procs.ours(function(pid)
      local link = core.readlink(("/proc/%d/ns/net"):format(pid))
      pin_of[pid] = link and by_link[link]
      return pin_of[pid] ~= nil
    end, { any_uid = true })) do
      local list = found[pin_of[p.pid]]
      list[#list + 1] = p
    end
  end
  return found
end

local function processes_in(pin)
  return processes_in_each({ pin })[pin]
end

local function pid_list(found)
  local pids = {}
  for i, p in ipairs(found) do pids[i] = p.pid end
  return pids
end

-- ---------------------------------------------------------------- ip, nft

--- Run a program with @input on its stdin inside the netns pinned at @pin.
-- @treturn[1] true
-- @return[2] nil, "prog: its output"
local function run_in(pin, argv, input)
  local netfd, err = core.open(pin, "r")
  if not netfd then return nil, err end
  local path = child.which(argv[1])
  if not path then
    netfd:close()
    return nil, ("`%s` not found; install %s"):format(argv[1], argv[1] == "nft" and "nftables" or "iproute2")
  end
  local cmd = table.move(argv, 1, #argv, 1, {})
  cmd[1] = path
  local how, status, output = child.capture(cmd, 30000, { netns = netfd, input = input })
  netfd:close()
  if not how then return nil, status end
  if how == "exited" and status == 0 then return true end
  output = output:gsub("%s+$", ""):gsub("\n", "; ")
  log.debug("%s failed on:\n%s", argv[1], input or "")
  return nil, ("%s: %s"):format(argv[1], output ~= "" and output or (how .. " " .. tostring(status)))
end

local function ip_batch(pin, lines)
  return run_in(pin, { "ip", "-batch", "-" }, table.concat(lines, "\n") .. "\n")
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
  name = name or random_name()
  local ours, live = self:_lookup(name, h)
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
  ok, err = state.write_json(self:_record(name), { name = name, created = os.time() })
  if not ok then return nil, err end
  core.fault_point("netns-add-recorded")
  local path, cerr
  path, cerr, code = core.netns_create_in(self.ns.named_dir, name)
  if path then
    ok, cerr = inside.call(path, function() return assert(core.link_up("lo")) end)
    if not ok then core.netns_unmount(path, 5000) end
  end
  if not path or not ok then
    core.unlink(self:_record(name))
    return nil, cerr, code
  end
  log.debug("created namespace `%s` at `%s`", name, path)
  return name, path
end

--- The named namespaces, sorted by name.
-- @treturn[1] table list of {name, path, live, address (or cjson.null), pids}
function Lab:list()
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local h = s.holder
  local leases = h and self:_repair { clean_up = true } or {}
  local out, live_pins = {}, {}
  local names = core.listdir(self.ns.paths.names) or {}
  table.sort(names)
  for _, name in ipairs(names) do
    -- (a write killed half way leaves a temporary file, which is no name)
    if M.check_name(name) then
      local _, live = self:_lookup(name, h)
      local lease = live and leases[name]
      out[#out + 1] = {
        name = name,
        path = self:_pin(name),
        live = live,
        address = lease and (lease.address .. "/" .. lease.prefix) or cjson.null,
      }
      if live then live_pins[#live_pins + 1] = self:_pin(name) end
    end
  end
  local running = processes_in_each(live_pins)
  for _, e in ipairs(out) do e.pids = pid_list(running[e.path] or {}) end
  return out
end

--- The mount plan of a command in a named namespace: a sysfs of its own
-- (so /sys/class/net shows its interfaces, as `ip netns exec` does) and,
-- when connected, the rootless netns's resolv.conf.
function Lab:_exec_plan(connected)
  local plan = {
    { name = "sysfs", source = "sysfs", target = "/sys", fstype = "sysfs",
      options = "nosuid,nodev,noexec", optional = true },
  }
  local target = connected and mounts.resolve_target("/etc/resolv.conf")
  if target then
    plan[#plan + 1] = { name = "resolv.conf", source = self.ns.paths.resolv, target = target,
      options = "bind", optional = true }
  end
  return plan
end

--- Run @cmd in the named namespace.  The lock is released while it runs.
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
  local ours, live = self:_lookup(name, s.holder)
  if not live then
    if ours then return stale(name) end
    return not_found(name)
  end
  local lease = core.nsfs(self.ns.paths.pin) == true and state.read_leases(self.ns.paths).leases[name] or nil
  if lease and lease.connected then
    -- its way out is the rootless netns's backend: restart it if it died
    local up, uerr = instance.get_or_create(self.ns, s.holder)
    if not up then log.warn("`%s` is connected, but: %s", name, uerr) end
  end
  local argv, aerr, acode = inside.resolve_command(cmd)
  if not argv then return nil, aerr, acode, "exec" end
  local connected = lease ~= nil and lease.connected == true
  local proc, report, code = inside.spawn(self:_pin(name), argv, opts.env, self:_exec_plan(connected))
  -- (the namespace lives until `netns del`, which refuses while it runs)
  s:unlock()
  if not proc then return nil, report, code end
  return inside.finish(proc, report, opts.signals)
end

--- Kill the processes inside the namespace pinned at @pin and wait (5 s
-- at most) for them to go.
local function kill_inside(pin)
  local found = processes_in(pin)
  for _, p in ipairs(found) do core.kill(p.pid, p.starttime, core.SIGKILL) end
  local deadline = core.clock() + 5
  while #found > 0 and core.clock() < deadline do
    core.sleep(10)
    local left = {}
    for _, p in ipairs(found) do
      if core.alive(p.pid, p.starttime) then left[#left + 1] = p end
    end
    found = left
  end
  return #found == 0
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
  local ours, live = self:_lookup(name, h)
  if not ours then return not_found(name) end
  local pin = self:_pin(name)
  if live then
    local running = processes_in(pin)
    if #running > 0 and not opts.force then
      return nil, ("namespace `%s` still has %d process%s inside (pid %s); stop them or use --force")
        :format(name, #running, #running == 1 and "" or "es", table.concat(pid_list(running), ", ")), errno.EBUSY
    end
    if #running > 0 and not kill_inside(pin) then
      return nil, ("namespace `%s`: processes inside survived SIGKILL"):format(name), errno.EBUSY
    end
    local leases = self:_repair { clean_up = true }
    if leases[name] then
      ok, err = self:_disconnect_locked(name)
      if not ok then return nil, err end
    end
  end
  core.fault_point("netns-del-disconnected")
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
  log.debug("deleted namespace `%s`", name)
  return true
end

-- ------------------------------------------------------------ connections

--- Remove what interrupted connects left: leases that never completed,
-- and host-side veths that no completed lease names (a damaged leases
-- file included).  Lock held.
-- @tparam[opt] table opts {quiet = true (our own failed connect),
--   clean_up = true (take the rootless netns down when what was removed
--   was all that kept it: an interrupted first connect)}
-- @treturn table the completed leases by name
function Lab:_repair(opts)
  opts = opts or {}
  local p = self.ns.paths
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
  local links = inside.call(p.pin, child.link_names) or {}
  local orphans = {}
  for _, link in ipairs(links) do
    if link:match("^" .. M.HOST_IF_PREFIX .. "%d+$") and not keep[link] then
      orphans[#orphans + 1] = "link del " .. link
    end
  end
  if #orphans > 0 then
    log.debug("removing %d orphaned veth(s)", #orphans)
    local ok, err = ip_batch(p.pin, orphans)
    if not ok then log.warn("remove orphaned veths: %s", err) end
  end
  if changed then
    state.write_leases(p, data)
    if opts.clean_up and refs.users(self.ns) == 0 then
      local ok, err = instance.cleanup(self.ns)
      if not ok then log.warn("%s", err) end
      return {}
    end
  end
  return data.leases
end

--- The bridge, forwarding and masquerading inside the rootless netns
-- (idempotent: run on every connect, so a half-made bridge is completed).
function Lab:_ensure_bridge(net)
  local pin, c = self.ns.paths.pin, self.cfg.connect
  local exists, err = inside.call(pin, function()
    local f = assert(io.open("/proc/sys/net/ipv4/ip_forward", "w"))
    assert(f:write("1"))
    assert(f:close())
    return core.if_index(c.bridge) ~= nil
  end)
  if exists == nil then return nil, "enable forwarding in the rootless netns: " .. tostring(err) end
  if not exists then
    local mtu = c.mtu and (" mtu " .. c.mtu) or ""
    local ok, berr = ip_batch(pin, {
      ("link add %s%s type bridge"):format(c.bridge, mtu),
      ("addr add %s/%d dev %s"):format(addrpool.format_ipv4(net.gateway), net.prefix, c.bridge),
      ("link set %s up"):format(c.bridge),
    })
    if not ok then return nil, "create the bridge: " .. berr end
  end
  -- one transaction that replaces the table whole
  local ok, nerr = run_in(pin, { "nft", "-f", "-" }, table.concat({
    ("add table ip %s"):format(M.NFT_TABLE),
    ("delete table ip %s"):format(M.NFT_TABLE),
    ("table ip %s {"):format(M.NFT_TABLE),
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    ("    ip saddr %s ip daddr != %s masquerade"):format(net.cidr, net.cidr),
    "  }",
    "}",
  }, "\n") .. "\n")
  if not ok then return nil, "masquerade: " .. nerr end
  return true
end

--- Check that the backend's own addresses stay out of the bridge subnet.
function Lab:_check_subnet(net)
  local info = state.read_json(self.ns.paths.info) or {}
  for _, addr in ipairs(type(info.IPAddresses) == "table" and info.IPAddresses or {}) do
    local a = addrpool.parse_ipv4(type(addr) == "string" and addr:match("^[^/]+") or nil)
    if a and a >= net.network and a <= net.last + 1 then
      return nil, ("the bridge subnet %s holds the rootless netns's own address %s; "
        .. "set connect.subnet in the config to another one"):format(net.cidr, addr)
    end
  end
  return true
end

--- Connect a named namespace to the bridge in the rootless netns (set up
-- when needed).  The connection is a reference to the rootless netns.
-- @tparam[opt] table opts {ip = "A.B.C.D[/P]"}
-- @treturn[1] table lease {name, address, prefix, gateway, interface, host_interface, bridge}
-- @return[2] nil, message, errno
function Lab:connect(name, opts)
  opts = opts or {}
  local ok, err = M.check_name(name)
  if not ok then return nil, err, errno.EINVAL end
  local c = self.cfg.connect
  local net, nerr = addrpool.subnet(c.subnet)
  if not net then return nil, "connect.subnet: " .. nerr, errno.EINVAL end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local h = s.holder
  local ours, live = self:_lookup(name, h)
  if not live then
    if ours then return stale(name) end
    return not_found(name)
  end
  local ns, p = self.ns, self.ns.paths
  local up, uerr, ucode, ustage, usig = instance.get_or_create(ns, h)
  if not up then return nil, uerr, ucode, ustage, usig end
  local leases = self:_repair()
  local function give_up(msg, code)
    if up.created then refs.clean_up_if_unused(ns) end
    return nil, msg, code
  end
  if leases[name] then
    return give_up(("namespace `%s` is already connected (%s)"):format(name, leases[name].address), errno.EEXIST)
  end
  ok, err = self:_check_subnet(net)
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
  local address
  if opts.ip then
    address, err = addrpool.check_requested(net, data.leases, opts.ip)
  else
    address, err = addrpool.next_free(net, data.leases, data.last)
  end
  if not address then return give_up(err, errno.EINVAL) end
  local index = addrpool.free_index(data.leases)
  local lease = {
    address = address, prefix = net.prefix, gateway = addrpool.format_ipv4(net.gateway),
    index = index, interface = c.interface, host_interface = M.HOST_IF_PREFIX .. index,
    bridge = c.bridge, connected = false,
  }
  -- Reserved before any interface exists, so that nothing is made that
  -- no record names; it holds no reference until `connected`.
  data.leases[name] = lease
  data.last = address
  ok, err = state.write_leases(p, data)
  if not ok then return give_up(err) end
  core.fault_point("connect-reserved")

  ok, err = self:_ensure_bridge(net)
  local mtu = c.mtu and (" mtu " .. c.mtu) or ""
  if ok then
    ok, err = ip_batch(p.pin, {
      ("link add %s%s type veth peer name %s%s netns %s"):format(lease.host_interface, mtu, c.interface, mtu,
        self:_pin(name)),
      ("link set %s master %s"):format(lease.host_interface, c.bridge),
      ("link set %s up"):format(lease.host_interface),
    })
  end
  core.fault_point("connect-veth")
  if ok then
    ok, err = ip_batch(self:_pin(name), {
      ("addr add %s/%d dev %s"):format(address, net.prefix, c.interface),
      ("link set %s up"):format(c.interface),
      ("route add default via %s dev %s"):format(lease.gateway, c.interface),
    })
  end
  core.fault_point("connect-configured")
  if ok then
    lease.connected = true
    ok, err = state.write_leases(p, data)
  end
  if not ok then
    self:_repair { quiet = true }
    return give_up(("connect `%s`: %s"):format(name, err))
  end
  log.debug("connected `%s` as %s/%d via %s", name, address, net.prefix, lease.host_interface)
  local out = { name = name }
  for k, v in pairs(lease) do out[k] = v end
  out.connected = nil
  return out
end

--- Remove @name's veth and lease; clean up the rootless netns when that
-- was its last user.  Lock held.
function Lab:_disconnect_locked(name)
  local ns, p = self.ns, self.ns.paths
  local data = state.read_leases(p)
  local lease = data.leases[name]
  data.leases[name] = nil
  -- the record goes first: a disconnect killed after it leaves a veth
  -- that no lease names, which the next _repair removes
  local ok, err = state.write_leases(p, data)
  if not ok then return nil, err end
  core.fault_point("disconnect-unleased")
  if lease and math.type(lease.index) == "integer" then
    local dok, derr = ip_batch(p.pin, { "link del " .. M.HOST_IF_PREFIX .. lease.index })
    if not dok then log.warn("disconnect `%s`: %s", name, derr) end
  end
  return refs.clean_up_if_unused(ns)
end

--- Disconnect a named namespace from the bridge.
-- @treturn[1] true
-- @return[2] nil, message, errno (ENOENT: not connected)
function Lab:disconnect(name)
  local ok, err = M.check_name(name)
  if not ok then return nil, err, errno.EINVAL end
  local s <close>, serr, scode, sstage, ssig = session.begin(self.ns, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local h = s.holder
  if not self:_lookup(name, h) then return not_found(name) end
  local leases = h and self:_repair { clean_up = true } or {}
  if not leases[name] then
    return nil, ("namespace `%s` is not connected"):format(name), errno.ENOENT
  end
  return self:_disconnect_locked(name)
end

-- (a Lab shares its Netns handle's way in: a worker, or in-process)
require("rootlessnetns.worker").wrap(Lab, { "add", "list", "exec", "del", "connect", "disconnect" },
  function(self) return self.ns end)

return M
