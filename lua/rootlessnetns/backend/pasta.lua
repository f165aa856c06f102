--- pasta backend: podman's argv with `pasta_options` merged as podman
-- merges them, the retry without --map-guest-addr for pastas older than
-- 2024-08-21 (Debian 12's), and addresses discovered in the namespace.
local core = require "rootlessnetns"
local child = require "rootlessnetns.child"
local log = require "rootlessnetns.log"
local probe = require "rootlessnetns.probe"

local M = { name = "pasta" }

M.DNS_FORWARD = "169.254.1.1"
M.MAP_GUEST = "169.254.1.2"

--- The pasta binary to run: `pasta_path`, else `pasta` in PATH.
-- @tparam table cfg the configuration
-- @treturn string|nil its absolute path (nil: not installed)
function M.binary(cfg)
  return child.which(cfg.pasta_path or "pasta")
end

--- Does this pasta know --map-guest-addr (a 2024-08 or later release)?
-- Remembered per binary (in @base/probes.json when a state dir is given).
function M.modern(path, base)
  return probe.cached(base, "pasta-modern", path, function(p)
    local _, _, out = child.capture({ p, "--help" }, 5000)
    return (out or ""):find("--map-guest-addr", 1, true) ~= nil
  end)
end

--- podman's argv (createPastaArgs), for the namespace pinned at @pin.
-- @treturn table argv
-- @treturn table what podman's scan found: dns_forward, map_guest, added_map_guest
function M.argv(path, options, pidfile, pin)
  local argv = { path, "--config-net" }
  local seen = { map_gw = false }
  local user = {}
  for _, o in ipairs(options or {}) do user[#user + 1] = o end
  user[#user + 1] = "--pid"
  user[#user + 1] = pidfile
  local dns, map_guest = {}, {}
  local i = 1
  while i <= #user do
    local tok = user[i]
    if tok == "--map-gw" then
      seen.map_gw = true -- podman's pseudo option: consumed, not passed on
    else
      argv[#argv + 1] = tok
      if tok == "-t" or tok == "--tcp-ports" then seen.t = true
      elseif tok == "-u" or tok == "--udp-ports" then seen.u = true
      elseif tok == "-T" or tok == "--tcp-ns" then seen.T = true
      elseif tok == "-U" or tok == "--udp-ns" then seen.U = true
      elseif tok == "-d" or tok == "--debug" or tok == "--trace" then seen.debug = true
      elseif tok == "--dns-forward" and user[i + 1] then dns[#dns + 1] = user[i + 1]
      elseif tok == "--map-guest-addr" and user[i + 1] then map_guest[#map_guest + 1] = user[i + 1]
      end
    end
    i = i + 1
  end
  local function add(...) for _, a in ipairs { ... } do argv[#argv + 1] = a end end
  if #dns == 0 then
    add("--dns-forward", M.DNS_FORWARD)
    dns[1] = M.DNS_FORWARD
  end
  if not seen.t then add("-t", "none") end
  if not seen.u then add("-u", "none") end
  if not seen.T then add("-T", "none") end
  if not seen.U then add("-U", "none") end
  if not seen.map_gw then add "--no-map-gw" end
  if not seen.debug then add "--quiet" end
  add("--netns", pin)
  local added_map_guest = false
  if #map_guest == 0 then
    -- last, so the old-pasta fallback can drop exactly these two
    add("--map-guest-addr", M.MAP_GUEST)
    map_guest[1] = M.MAP_GUEST
    added_map_guest = true
  end
  return argv, { dns_forward = dns, map_guest = map_guest, added_map_guest = added_map_guest }
end

local function is_v4(s) return s:match("^%d+%.%d+%.%d+%.%d+$") ~= nil end

--- podman's address discovery: every non-loopback address, IPv6 only when
-- not link-local; forwarders and map-guest addresses kept only for a
-- family the namespace has.
function M.discover(ifaddrs, scan)
  local ips, has4, has6 = {}, false, false
  for _, a in ipairs(ifaddrs) do
    if not a.loopback then
      if a.family == "inet" then
        ips[#ips + 1] = a.address
        has4 = true
      elseif a.family == "inet6" and not a.linklocal then
        ips[#ips + 1] = a.address
        has6 = true
      end
    end
  end
  local function by_family(list)
    local out = {}
    for _, s in ipairs(list) do
      if (is_v4(s) and has4) or (not is_v4(s) and has6) then out[#out + 1] = s end
    end
    return out
  end
  return ips, by_family(scan.dns_forward), by_family(scan.map_guest), has6
end

--- Run pasta until it has set the namespace up and gone to the
-- background; a signal the caller watches ends the wait (and pasta).
-- @return how, code, output; or nil, nil, message, signal number
local function run(argv, signals)
  log.debug("exec %s", table.concat(argv, " "))
  local how, code, out, signo = child.capture(argv, 60000, { signals = signals })
  if not how then return nil, nil, code, signo end -- code holds the message here
  return how, code, (out or ""):gsub("%s+$", "")
end

--- Start pasta for the netns pinned at `ctx.paths.pin`, as podman does
-- (see the backend contract in rootlessnetns.backends).  pasta sets the
-- namespace up and then daemonizes, so its exit status is the answer.
-- A pasta that refuses --map-guest-addr is started again without it, as
-- podman does; one known (from its probe) to lack it is started without
-- it at once.
-- @tparam table ctx the backend context
-- @treturn[1] table {pid, starttime, argv, nameservers, ipv6, info}
-- @return[2] nil, message[, signal number]
function M.start(ctx)
  local cfg, p = ctx.cfg, ctx.paths
  local path = M.binary(cfg)
  if not path then
    return nil, "pasta not found (apt-get install passt, or set pasta_path)"
  end
  core.unlink(p.pidfile)
  local argv, scan = M.argv(path, cfg.pasta_options, p.pidfile, p.pin)
  if scan.added_map_guest and M.modern(path, p.base) == false then
    -- known to lack it: spare the doomed first attempt
    argv[#argv] = nil
    argv[#argv] = nil
    scan.map_guest, scan.added_map_guest = {}, false
  end
  local how, code, out, signo = run(argv, ctx.signals)
  if how == "exited" and code == 1 and scan.added_map_guest
      and out:find("unrecognized option '--map-guest-addr", 1, true) then
    -- pasta before 2024_08_21: no --map-guest-addr; podman drops it and retries
    argv[#argv] = nil
    argv[#argv] = nil
    scan.map_guest = {}
    how, code, out, signo = run(argv, ctx.signals)
  end
  if not how then return nil, "start pasta: " .. tostring(out), signo end
  if how ~= "exited" or code ~= 0 then
    log.debug("pasta's output:\n%s", out)
    return nil, ("pasta failed with %s %d: %s"):format(how == "exited" and "exit code" or "signal", code,
      require("rootlessnetns.backends").summary(out))
  end
  if out ~= "" then log.info("pasta logged warnings: %s", out) end
  core.fault_point("backend-spawned")

  local text, rerr = core.readfile(p.pidfile, 64)
  local pid = text and math.tointeger(tonumber(text:match("^%s*(%d+)%s*$")))
  if not pid then
    return nil, ("unable to read pasta's pid from `%s`: %s"):format(p.pidfile, rerr or "not a number")
  end
  local starttime = core.starttime(pid)
  if not starttime then
    return nil, ("pasta (pid %d) exited right after setting up the namespace"):format(pid)
  end
  local ifaddrs, ierr = require("rootlessnetns.inside").call(p.pin, function() return assert(core.getifaddrs()) end)
  if not ifaddrs then
    core.kill(pid, starttime, core.SIGTERM)
    return nil, "list addresses in the namespace: " .. ierr
  end
  local ips, dns, map_guest, has6 = M.discover(ifaddrs, scan)
  return {
    pid = pid,
    starttime = starttime,
    argv = argv,
    ipv6 = has6,
    nameservers = dns,
    info = { IPAddresses = ips, DnsForwardIps = dns, MapGuestIps = map_guest },
  }
end

return M
