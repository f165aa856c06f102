--- slirp4netns backend: podman's argv and options, a ready pipe with a
-- timeout, the backend's own log in errors, and the accept_dad trick that
-- spares IPv6 the 1-2 s of duplicate address detection.
local core = require "rootlessnetns"
local child = require "rootlessnetns.child"
local inside = require "rootlessnetns.inside"
local log = require "rootlessnetns.log"
local probe = require "rootlessnetns.probe"

-- (Lua has no octal literals)
local PRIVATE_FILE = tonumber("600", 8)
local M = { name = "slirp4netns" }

M.DEFAULT_CIDR = "10.0.2.0/24"
M.DAD_SYSCTL = "/proc/sys/net/ipv6/conf/default/accept_dad"

--- The slirp4netns binary to run: `slirp4netns_path`, else
-- `slirp4netns` in PATH.
-- @tparam table cfg the configuration
-- @treturn string|nil its absolute path (nil: not installed)
function M.binary(cfg)
  return child.which(cfg.slirp4netns_path or "slirp4netns")
end

--- Flags this slirp4netns knows, from its --help (as podman probes).
function M.features(path)
  local how, code, out = child.capture({ path, "--help" }, 5000)
  if how ~= "exited" or code ~= 0 then
    return nil, ("`%s --help` failed: %s"):format(path, out or code or how)
  end
  local f = {}
  for _, flag in ipairs { "--disable-host-loopback", "--mtu", "--enable-sandbox", "--enable-seccomp",
                          "--cidr", "--outbound-addr", "--enable-ipv6" } do
    f[flag] = out:find(flag, 1, true) ~= nil
  end
  return f
end

local function ip_to_int(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function int_to_ip(n)
  return ("%d.%d.%d.%d"):format(n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)
end

--- Guest, gateway and DNS addresses of a CIDR: base + 100, + 2, + 3.
function M.addresses(cidr)
  local addr, len = (cidr or M.DEFAULT_CIDR):match("^([%d%.]+)/(%d+)$")
  len = tonumber(len)
  local mask = (0xffffffff << (32 - len)) & 0xffffffff
  local base = ip_to_int(addr) & mask
  local size = 1 << (32 - len)
  local function at(off)
    if off >= size - 1 then return nil end
    return int_to_ip(base + off)
  end
  return { guest = at(100), gateway = at(2), dns = at(3) }
end

--- podman's argv, in podman's order.
function M.argv(path, opts, features, pin)
  local argv = { path }
  local function add(...) for _, a in ipairs { ... } do argv[#argv + 1] = a end end
  if not opts.allow_host_loopback and features["--disable-host-loopback"] then add "--disable-host-loopback" end
  if features["--mtu"] then add(("--mtu=%d"):format(opts.mtu)) end
  if opts.enable_sandbox and features["--enable-sandbox"] then add "--enable-sandbox" end
  if opts.enable_seccomp and features["--enable-seccomp"] then add "--enable-seccomp" end
  if opts.cidr then
    if not features["--cidr"] then return nil, "this slirp4netns does not support cidr" end
    add("--cidr=" .. opts.cidr)
  end
  if opts.enable_ipv6 then
    if not features["--enable-ipv6"] then return nil, "this slirp4netns does not support enable_ipv6" end
    add "--enable-ipv6"
  end
  if opts.outbound_addr then
    if not features["--outbound-addr"] then return nil, "this slirp4netns does not support outbound_addr" end
    add("--outbound-addr=" .. opts.outbound_addr)
  end
  if opts.outbound_addr6 then
    if not features["--outbound-addr"] then return nil, "this slirp4netns does not support outbound_addr6" end
    add("--outbound-addr6=" .. opts.outbound_addr6)
  end
  add("-c", "-r", "3", "--netns-type=path", pin, "tap0")
  return argv
end

--- The backend log's gist in one line; all of it in the debug log.
local function read_log(path)
  local text = core.readfile(path, 65536) or ""
  log.debug("slirp4netns log `%s`:\n%s", path, text)
  return require("rootlessnetns.backends").summary(text)
end

local function write_sysctl(path, value)
  local f = assert(io.open(path, "w"))
  assert(f:write(value))
  assert(f:close())
end

--- Turn IPv6 duplicate address detection off in the namespace pinned
-- at @pin until the returned function is called, as podman does around
-- the start (so tap0's address is usable at once).
-- @tparam string pin the netns pin
-- @treturn[1] function restore
-- @return[2] nil, message
local function dad_off(pin)
  local old, err = inside.call(pin, function()
    local f = io.open(M.DAD_SYSCTL, "r")
    if not f then return false end -- IPv6 disabled on the host: nothing to do
    local value = f:read("l")
    f:close()
    write_sysctl(M.DAD_SYSCTL, "0")
    return value
  end)
  if old == nil then return nil, err or "the helper in the namespace died" end
  return function()
    if old then inside.call(pin, function() write_sysctl(M.DAD_SYSCTL, old) end) end
  end
end

--- Start slirp4netns for the netns pinned at ctx.paths.pin.
-- @treturn[1] table {pid, starttime, argv, info, nameservers, ipv6}
-- @return[2] nil, message[, signal number when ctx.signals interrupted it]
function M.start(ctx)
  local cfg, p = ctx.cfg, ctx.paths
  local opts = cfg.slirp4netns
  local path = M.binary(cfg)
  if not path then
    return nil, "slirp4netns not found (apt-get install slirp4netns, or set slirp4netns_path)"
  end
  local features, ferr = probe.cached(p.base, "slirp4netns-features", path, M.features)
  if not features then return nil, ferr end
  local argv, aerr = M.argv(path, opts, features, p.pin)
  if not argv then return nil, aerr end

  local restore_dad = function() end
  if opts.enable_ipv6 then
    local restore, derr = dad_off(p.pin)
    if derr then log.warn("could not disable IPv6 DAD in the namespace: %s", derr) end
    restore_dad = restore or restore_dad
  end

  local logfd, lerr = core.open(p.log, "w", PRIVATE_FILE)
  if not logfd then
    restore_dad()
    return nil, lerr
  end
  local ready_r, ready_w = core.pipe()
  log.debug("exec %s", table.concat(argv, " "))
  local proc, serr = core.spawn {
    argv = argv,
    fds = { [0] = false, [1] = logfd, [2] = logfd, [3] = ready_w },
    setsid = true,
    -- slirp4netns' sandbox pivots its own root; give it a mount namespace
    -- of its own so that never touches ours (podman does the same).
    unshare = opts.enable_sandbox and core.CLONE_NEWNS or nil,
  }
  ready_w:close()
  logfd:close()
  if not proc then
    ready_r:close()
    restore_dad()
    return nil, "start slirp4netns: " .. serr
  end
  -- Recorded at once: if we die before it is ready, the next command
  -- finds it by this file (and its command line naming our pin).
  core.writefile(p.pidfile, tostring(proc:pid()), PRIVATE_FILE)
  core.fault_point("backend-spawned")

  local deadline = core.clock() + cfg.ready_timeout
  local failure, signo
  while true do
    -- short slices: a signal the caller watches ends the wait at once
    local data, rerr, code = ready_r:read(16, ctx.signals and 20 or 250)
    if data and #data > 0 then break end
    if data == "" then -- writer gone: slirp4netns exited before it was ready
      local how, status = proc:wait(2000)
      failure = ("slirp4netns failed (%s %s): %s"):format(how or "?", tostring(status), read_log(p.log))
      break
    end
    if code ~= core.errno.ETIMEDOUT then
      failure = "slirp4netns ready pipe: " .. tostring(rerr)
      break
    end
    signo = ctx.signals and ctx.signals:wait(0)
    if signo then
      proc:kill(core.SIGKILL)
      proc:wait(2000)
      failure = ("interrupted by signal %d while slirp4netns was starting"):format(signo)
      break
    end
    local how, status = proc:poll()
    if how ~= "running" then
      failure = ("slirp4netns failed (%s %s): %s"):format(how, tostring(status), read_log(p.log))
      break
    end
    if core.clock() > deadline then
      proc:kill(core.SIGKILL)
      proc:wait(2000)
      failure = ("slirp4netns was not ready within %g s: %s"):format(cfg.ready_timeout, read_log(p.log))
      break
    end
  end
  ready_r:close()
  restore_dad()
  if failure then
    proc:close()
    return nil, failure, signo or nil
  end

  local pid = proc:pid()
  local starttime = core.starttime(pid)
  proc:close()
  local a = M.addresses(opts.cidr)
  return {
    pid = pid,
    starttime = starttime,
    argv = argv,
    ipv6 = opts.enable_ipv6,
    nameservers = { a.dns },
    info = { IPAddresses = { a.guest }, DnsForwardIps = { a.dns }, MapGuestIps = nil },
    gateway = a.gateway,
  }
end

return M
