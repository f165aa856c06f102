--- Published ports: a host address forwarded to a port inside the
-- rootless netns or a named namespace.  The policy is here; the
-- mechanism (one event loop, splice, sockets made inside) is C.
--
-- One forwarder process per target (`rootlessnetns-ports`, detached, in
-- the host's network namespace and the holder's user namespace) owns the
-- host sockets.  Its child, the maker, lives in the target's netns and
-- makes each connection's socket there, bound to the client's address,
-- so the server inside sees who connected.  Commands talk to the
-- forwarder over a unix socket in the state directory (one JSON request,
-- one JSON reply), so ports come and go while everything runs.
--
-- State, under `<state dir>/ports/` (outside what the rootless netns's
-- cleanup removes, since named namespaces outlive it), for target KEY
-- (`rootless-netns`, or `netns-NAME`):
--   KEY.json        the ports, as published (the truth: a restarted
--                   forwarder binds them again)
--   KEY.forwarder   "pid starttime" of its forwarder; it ends when this
--                   names another (or nothing), or when the holder dies
--   KEY.sock        where it listens for requests
--
-- A forward holds no reference: it lives as long as its target.  The
-- last teardown of the rootless netns, `cleanup` and `netns del` remove
-- its forwards; a forwarder that died is started again by the next
-- command that looks (port commands, status, setup, netns connect).
-- Every function here is called with the state lock held, in the holder.
local core = require "rootlessnetns"
local addrpool = require "rootlessnetns.addrpool"
local daemon = require "rootlessnetns.daemon"
local log = require "rootlessnetns.log"
local state = require "rootlessnetns.state"

local errno = core.errno
local PRIVATE_DIR = tonumber("700", 8)

local M = {}

-- (rootlessnetns.procs knows it by this title: no user of a namespace)
M.TITLE = "rootlessnetns-ports"
M.MAIN = "rootless-netns"
M.REPLY_TIMEOUT_MS = 5000
M.UDP_IDLE_MS = 60000

-- ------------------------------------------------------------ port specs

local PROTOS = { tcp = true, udp = true }

local function parse_port(text, what, spec)
  local n = text and text:match("^%d+$") and math.tointeger(tonumber(text))
  if not n or n < 1 or n > 65535 then
    return nil, ("port spec `%s`: %s `%s` is not a port (1-65535)"):format(spec, what, tostring(text))
  end
  return n
end

local function ipv4(text) return addrpool.parse_ipv4(text) ~= nil end

local function ipv6(text) return addrpool.parse_ipv6(text) ~= nil end

--- A port spec as a table, from `[HOSTIP:]HOSTPORT[:PORT][/tcp|/udp]`
-- (an IPv6 HOSTIP in brackets: `[::1]:8080:80`).  HOSTIP defaults to
-- 127.0.0.1: reaching it from the network is an explicit 0.0.0.0 or
-- [::]; PORT to HOSTPORT; the protocol to tcp.
-- @treturn[1] table {id, spec, proto, host_ip, host_port, inside_port}
-- @return[2] nil, message (EINVAL)
function M.parse(spec)
  if type(spec) ~= "string" or spec == "" then
    return nil, "a port spec is [HOSTIP:]HOSTPORT[:PORT][/tcp|/udp], e.g. 8080:80", errno.EINVAL
  end
  local body, proto = spec:match("^(.-)/(%w+)$")
  if not body then body, proto = spec, "tcp" end
  if not PROTOS[proto] then
    return nil, ("port spec `%s`: protocol `%s` is not tcp or udp"):format(spec, proto), errno.EINVAL
  end
  local host_ip, rest = body:match("^%[([^%]]*)%]:(.+)$")
  if not host_ip and body:sub(1, 1) == "[" then
    return nil, ("port spec `%s`: an IPv6 address in brackets is followed by `:HOSTPORT`, e.g. [::1]:8080:80")
      :format(spec), errno.EINVAL
  end
  if host_ip then
    if not ipv6(host_ip) then
      return nil, ("port spec `%s`: `%s` is not an IPv6 address"):format(spec, host_ip), errno.EINVAL
    end
  else
    local fields = {}
    for f in (body .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = f end
    if #fields == 3 or (#fields == 2 and fields[1]:find(".", 1, true)) then
      host_ip, rest = fields[1], table.concat(fields, ":", 2)
      if not ipv4(host_ip) then
        return nil, ("port spec `%s`: `%s` is not an IPv4 address (an IPv6 one goes in brackets)")
          :format(spec, host_ip), errno.EINVAL
      end
    elseif #fields <= 2 then
      host_ip, rest = "127.0.0.1", body
    else
      return nil, ("port spec `%s`: an IPv6 address goes in brackets, e.g. [::1]:8080:80"):format(spec),
        errno.EINVAL
    end
  end
  local hp, ip = rest:match("^([^:]*):([^:]*)$")
  if not hp then hp, ip = rest, rest end
  local host_port, err = parse_port(hp, "host port", spec)
  if not host_port then return nil, err, errno.EINVAL end
  local inside_port, ierr = parse_port(ip, "port", spec)
  if not inside_port then return nil, ierr, errno.EINVAL end
  local shown = host_ip:find(":", 1, true) and ("[" .. host_ip .. "]") or host_ip
  return {
    id = ("%s:%d/%s"):format(shown, host_port, proto),
    spec = ("%s:%d:%d/%s"):format(shown, host_port, inside_port, proto),
    proto = proto, host_ip = host_ip, host_port = host_port, inside_port = inside_port,
  }
end

--- The lowest port an unprivileged process may bind (the host's sysctl).
function M.unprivileged_start(path)
  local text = core.readfile(path or "/proc/sys/net/ipv4/ip_unprivileged_port_start", 64)
  return math.tointeger(tonumber(text and text:match("^%s*(%d+)") or "")) or 1024
end

-- ---------------------------------------------------------------- state

--- The target of a forward: the rootless netns (@name nil) or a named
-- namespace, with where its files and its pin are.
function M.target(ns, name)
  local key = name and ("netns-" .. name) or M.MAIN
  local dir = ns.paths.base .. "/ports"
  return {
    key = key, name = name, dir = dir,
    pin = name and (ns.named_dir .. "/" .. name) or ns.paths.pin,
    record = dir .. "/" .. key .. ".json",
    forwarder = dir .. "/" .. key .. ".forwarder",
    sock = key .. ".sock",
    status = dir .. "/" .. key .. ".status",
  }
end

-- The targets that have files under `ports/`: records, and forwarder
-- identities too when @also_forwarders; the rootless netns first.
local function targets(ns, also_forwarders)
  local seen, out = {}, {}
  for _, file in ipairs(core.listdir(ns.paths.base .. "/ports") or {}) do
    local key = file:match("^(.+)%.json$") or (also_forwarders and file:match("^(.+)%.forwarder$"))
    local name = key and key ~= M.MAIN and key:match("^netns%-(.+)$") or nil
    if key and (key == M.MAIN or name) and not seen[key] then
      seen[key] = true
      out[#out + 1] = M.target(ns, name)
    end
  end
  table.sort(out, function(a, b) return (a.name or "") < (b.name or "") end)
  return out
end

-- Is @p a port's fields (as JSON gives them back: numbers may be floats)?
-- Its ports become integers.
local function fields_ok(p)
  if not (type(p) == "table" and PROTOS[p.proto] and type(p.host_ip) == "string") then return false end
  p.host_port, p.inside_port = math.tointeger(p.host_port), math.tointeger(p.inside_port)
  return p.host_port ~= nil and p.inside_port ~= nil
end

--- The published ports of target @t (a damaged record is no ports, said once).
function M.recorded(t)
  local rec, err = state.read_json(t.record)
  if rec == nil then
    if err and core.lstat(t.record) then log.warn("%s; its ports are forgotten", err) end
    return {}
  end
  local out, seen = {}, {}
  if type(rec) == "table" and type(rec.ports) == "table" then
    for _, p in ipairs(rec.ports) do
      local parsed = fields_ok(p) and M.parse(("%s:%d:%d/%s"):format(
        p.host_ip:find(":", 1, true) and ("[" .. p.host_ip .. "]") or p.host_ip, p.host_port, p.inside_port, p.proto))
      -- (one host port, one forward: a repeated one is the first)
      if parsed and not seen[parsed.id] then
        out[#out + 1] = parsed
        seen[parsed.id] = true
      end
    end
    return out
  end
  log.warn("`%s`: not a ports record; its ports are forgotten", t.record)
  return out
end

local function save(t, list)
  local ok, err, code = core.mkdir(t.dir, PRIVATE_DIR)
  if not ok and code ~= errno.EEXIST then return nil, err end
  local ports = {}
  for i, p in ipairs(list) do
    ports[i] = { proto = p.proto, host_ip = p.host_ip, host_port = p.host_port, inside_port = p.inside_port }
  end
  if #ports == 0 then
    core.unlink(t.record)
    return true
  end
  return state.write_json(t.record, { ports = ports })
end

-- ------------------------------------------------------------ forwarder

--- The routes that bring a server's answer back to a socket bound to a
-- client's foreign address (IP_TRANSPARENT): the server answers from
-- loopback (it was reached at 127.0.0.1 or ::1), and whatever leaves
-- loopback for elsewhere is delivered here instead of being routed out
-- (where a loopback source is invalid anyway).  Set in the target by the
-- maker, once per forwarder start; a client of this host (127/8, ::1)
-- needs none of it.
M.RETURN_ROUTES = {
  { "ip", "-4", "rule", "del", "pref", "32700" },
  { "ip", "-4", "rule", "add", "pref", "32700", "from", "127.0.0.0/8", "lookup", "32700" },
  { "ip", "-4", "route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", "32700" },
  { "ip", "-6", "rule", "del", "pref", "32700" },
  { "ip", "-6", "rule", "add", "pref", "32700", "from", "::1", "lookup", "32700" },
  { "ip", "-6", "route", "replace", "local", "::/0", "dev", "lo", "table", "32700" },
}

-- Set RETURN_ROUTES (in the target's netns); a failure costs only
-- foreign clients' addresses.
local function set_return_routes()
  local ip = require("rootlessnetns.child").which("ip")
  if not ip then return end
  for _, argv in ipairs(M.RETURN_ROUTES) do
    local cmd = table.move(argv, 1, #argv, 1, {})
    cmd[1] = ip
    local proc = core.spawn { argv = cmd, fds = { [0] = false, [1] = false, [2] = false } }
    if proc then proc:wait(5000) end
  end
end

-- What the forwarder runs, in a fresh Lua state.
local FORWARDER = [[
local path, cpath, pin, dir, key, holder_pid, holder_starttime = ...
package.path, package.cpath = path, cpath
require("rootlessnetns.ports").forwarder_main(pin, dir, key, holder_pid, holder_starttime)
]]

-- The request @req of the forwarder's control socket, answered.
local function serve(fw, req)
  if type(req) ~= "table" then return { error = "unreadable request", errno = errno.EINVAL } end
  if req.op == "add" and fields_ok(req.port) then
    local p = req.port
    local ok, err, code = fw:add { id = ("%s:%d/%s"):format(p.host_ip, p.host_port, p.proto), proto = p.proto,
      host_ip = p.host_ip, host_port = p.host_port, inside_port = p.inside_port, udp_idle_ms = M.UDP_IDLE_MS }
    if not ok then return { error = err, errno = code } end
    return { ok = true }
  elseif req.op == "rm" and fields_ok(req.port) then
    local p = req.port
    local ok, err, code = fw:remove(("%s:%d/%s"):format(p.host_ip, p.host_port, p.proto))
    if not ok then return { error = err, errno = code } end
    return { ok = true }
  elseif req.op == "list" then
    return { ok = true, ports = fw:list() }
  end
  return { error = "unknown request", errno = errno.EINVAL }
end

--- The forwarder's body: start the maker in the target, bind what is
-- recorded, say so (`KEY.status`), then serve until the record names
-- another, the holder dies, or the maker is gone.
function M.forwarder_main(pin, dir, key, holder_pid, holder_starttime)
  local cjson = require "cjson.safe"
  local t = { dir = dir, record = dir .. "/" .. key .. ".json", forwarder = dir .. "/" .. key .. ".forwarder",
    sock = key .. ".sock", status = dir .. "/" .. key .. ".status" }
  local me = daemon.me()
  local hpid, hst = math.tointeger(tonumber(holder_pid)), math.tointeger(tonumber(holder_starttime))
  local function fail(err) daemon.say(t.status, false, err) end
  local ours, theirs = core.socketpair()
  if not ours then return fail(theirs) end
  local net, nerr = core.open(pin, "r")
  if not net then return fail(nerr) end
  local maker = core.fork()
  if maker == 0 then
    ours:close()
    local ok = core.setns(net, core.CLONE_NEWNET)
    net:close()
    if ok then
      set_return_routes()
      core.socket_maker(theirs)
    end
    core._exit(0)
  end
  net:close()
  theirs:close()
  if not maker then return fail("cannot start the socket maker") end
  local fw <close>, ferr = core.forwarder(ours)
  if not fw then return fail(ferr) end
  local dirfd <close>, derr = core.open(dir, "path")
  if not dirfd then return fail(derr) end
  core.unlink(dir .. "/" .. t.sock)
  local ctl <close>, cerr = core.unix_listen(dirfd, t.sock)
  if not ctl then return fail(cerr) end
  local failed = {}
  for _, p in ipairs(M.recorded(t)) do
    local res = serve(fw, { op = "add", port = p })
    if not res.ok then failed[#failed + 1] = ("%s: %s"):format(p.spec, tostring(res.error)) end
  end
  daemon.say(t.status, true, nil, failed)
  daemon.await_record(t.forwarder, me)
  local signals <close> = core.block_signals { core.SIGTERM, core.SIGINT, core.SIGHUP }
  while daemon.named(t.forwarder, me) and (not hpid or core.alive(hpid, hst)) do
    local why = fw:run(ctl, 1000, signals)
    if why == "wake" then
      local conn = core.accept(ctl, 0)
      if conn then
        local text = conn:recv(1000)
        local reply = serve(fw, text and cjson.decode(text))
        conn:write(cjson.encode(reply))
        conn:close()
      end
    elseif why ~= "timeout" then
      break
    end
  end
  -- (the socket is ours to remove only while nobody replaced us)
  if daemon.named(t.forwarder, me) then core.unlink(dir .. "/" .. t.sock) end
end

--- The live forwarder of target @t, if any.
local function alive(t)
  local pid, st = state.read_identity(t.forwarder)
  if pid and core.alive(pid, st) then return { pid = pid, starttime = st } end
  return nil
end

--- Stop the forwarder of @t (identity checked); its ports stay recorded.
local function stop_forwarder(t)
  local pid, st = state.read_identity(t.forwarder)
  core.unlink(t.forwarder)
  if pid then core.kill(pid, st, core.SIGKILL) end
  core.unlink(t.dir .. "/" .. t.sock)
end

-- Start the forwarder of @t, which binds every recorded port.  Lock held,
-- in the holder @h.
-- @treturn[1] table {pid, starttime}
-- @treturn[1] table the ports it could not bind, as "SPEC: why" lines
-- @return[2] nil, message
local function start(ns, t, h)
  stop_forwarder(t)
  local ok, err, code = core.mkdir(t.dir, PRIVATE_DIR)
  if not ok and code ~= errno.EEXIST then return nil, err end
  local fwd, failed = daemon.start(ns, {
    title = M.TITLE, code = FORWARDER,
    args = { package.path, package.cpath, t.pin, t.dir, t.key, tostring(h.pid), tostring(h.starttime) },
    record = t.forwarder, status = t.status, doing = "starting the port forwarder",
    failed = "start the port forwarder", silent = "it did not answer", gone = "the port forwarder ended at once",
  })
  if not fwd then
    stop_forwarder(t)
    return nil, failed
  end
  log.debug("started the port forwarder of %s (pid %d)", t.key, fwd.pid)
  return fwd, failed
end

--- Is this process in the host's network namespace (the holder's)?  A
-- forwarder started from anywhere else (a command run inside the
-- rootless netns that calls us) would listen there, not on the host.
function M.in_host_netns(h)
  if not (h and h.pid) then return true end
  local mine = core.readlink("/proc/self/ns/net")
  return mine ~= nil and mine == core.readlink(("/proc/%d/ns/net"):format(h.pid))
end

M.NOT_HOST = "ports are published from the host's network namespace, and this command runs inside the "
  .. "rootless netns (or another namespace); run `rootlessnetns port ...` from outside"

-- The forwarder of @t, started when there is none.
local function ensure(ns, t, h)
  local fwd = alive(t)
  if fwd then return fwd end
  if not M.in_host_netns(h) then return nil, M.NOT_HOST end
  local had = #M.recorded(t)
  local failed
  fwd, failed = start(ns, t, h)
  if not fwd then return nil, failed end
  if had > 0 then
    log.warn("the port forwarder of %s had stopped; started it again with %d port%s", t.name or "the rootless netns",
      had, had == 1 and "" or "s")
  end
  for _, line in ipairs(failed) do log.warn("port %s (not forwarded now; `port rm` it, or free it)", line) end
  return fwd
end

-- One request to the forwarder of @t, and its reply.
-- (the reply is waited for in slices, so that a signal ends the wait)
local REPLY_SLICE_MS = 20

-- One request to the forwarder of @t, and its reply.  A signal of
-- @signals ends the wait: nil, message, EINTR, "signal", signo.  With
-- @no_wait, the request is only handed over (a forwarder that is stopped
-- still takes it from its socket's queue when it goes on).
local function request(t, req, signals, no_wait)
  local cjson = require "cjson.safe"
  local dirfd <close>, err = core.open(t.dir, "path")
  if not dirfd then return nil, err end
  local conn <close>, cerr = core.unix_connect(dirfd, t.sock)
  if not conn then return nil, "the port forwarder does not answer: " .. tostring(cerr) end
  local ok, werr = conn:write(cjson.encode(req))
  if not ok then return nil, "the port forwarder does not answer: " .. tostring(werr) end
  if no_wait then return true end
  local deadline = core.clock() + M.REPLY_TIMEOUT_MS / 1000
  local text, rerr, rcode
  repeat
    text, rerr, rcode = conn:recv(REPLY_SLICE_MS)
    if text or rcode ~= errno.ETIMEDOUT then break end
    local sig = signals and signals:wait(0)
    if sig then
      return nil, ("interrupted by signal %d while waiting for the port forwarder"):format(sig), errno.EINTR,
        "signal", sig
    end
  until core.clock() > deadline
  local reply = text and cjson.decode(text)
  if type(reply) ~= "table" then
    return nil, "the port forwarder does not answer: " .. tostring(rerr or "no reply"), rcode or errno.EPIPE
  end
  return reply
end

-- ------------------------------------------------------------ the policy

-- Words for the target, in errors.
local function target_text(t)
  return t.name and ("namespace `" .. t.name .. "`") or "the rootless netns"
end

--- Publish @spec (a string or a parsed port) on target @t.  Lock held, in
-- the holder @h, the target live.
-- @treturn[1] table the port
-- @return[2] nil, message, errno
function M.publish(ns, t, h, spec)
  local port, perr, pcode = spec, nil, nil
  if type(spec) ~= "table" then port, perr, pcode = M.parse(spec) end
  if not port then return nil, perr, pcode end
  local start_port = M.unprivileged_start()
  if port.host_port < start_port then
    return nil, ("host port %d is below net.ipv4.ip_unprivileged_port_start (%d) on this host: publish a port "
      .. "from %d up, or lower the sysctl as root (`sysctl net.ipv4.ip_unprivileged_port_start=%d`)")
      :format(port.host_port, start_port, start_port, port.host_port), errno.EACCES
  end
  local list = M.recorded(t)
  -- (on any target: one host port, one forward)
  for _, other in ipairs(targets(ns)) do
    for _, p in ipairs(other.key == t.key and list or M.recorded(other)) do
      if p.id == port.id then
        return nil, ("%s is already published (to port %d of %s); `rootlessnetns port rm%s %s` first")
          :format(p.id, p.inside_port, target_text(other), other.name and (" --netns " .. other.name) or "", p.id),
          errno.EEXIST
      end
    end
  end
  local fwd, ferr = ensure(ns, t, h)
  if not fwd then return nil, ferr end
  -- Recorded before it is asked for, and taken back (record and request)
  -- on any failure: an add that was interrupted, or that timed out with
  -- the forwarder stopped, never leaves a port listening that no record
  -- names.  (A forwarder that took it after all takes the `rm` next.)
  list[#list + 1] = port
  local ok, err = save(t, list)
  if not ok then return nil, err end
  local function undo()
    list[#list] = nil
    save(t, list)
    request(t, { op = "rm", port = port }, nil, true)
  end
  local reply, rerr, rcode, rstage, rsig = request(t, { op = "add", port = port }, ns.signals)
  if reply and not reply.ok and math.tointeger(reply.errno) == errno.EEXIST then
    -- (a forward left by an earlier interrupted add: replaced)
    request(t, { op = "rm", port = port }, ns.signals)
    reply, rerr, rcode, rstage, rsig = request(t, { op = "add", port = port }, ns.signals)
  end
  if not reply then
    undo()
    return nil, rerr, rcode, rstage, rsig
  end
  if not reply.ok then
    list[#list] = nil
    save(t, list)
    local code = math.tointeger(reply.errno)
    if code == errno.EADDRINUSE then
      local ours = M.published_on(ns, port)
      if ours then
        return nil, ("host port %s is taken by the forward %s (of %s); the wildcard addresses `0.0.0.0` and "
          .. "`[::]` take every address of their family (`[::]` IPv4 too)"):format(port.id, ours.port.spec,
          target_text(ours.target)), code
      end
      return nil, ("host port %s is in use by another program; choose another HOSTPORT"):format(port.id), code
    elseif code == errno.EADDRNOTAVAIL then
      return nil, ("%s: no interface of this host has the address %s"):format(port.spec, port.host_ip), code
    elseif code == errno.EACCES then
      return nil, ("host port %s: permission denied (net.ipv4.ip_unprivileged_port_start is %d)")
        :format(port.id, start_port), code
    end
    return nil, ("publish %s: %s"):format(port.spec, tostring(reply.error)), code
  end
  log.debug("published %s on %s", port.spec, t.key)
  return port
end

--- A forward of any target on the same host port and protocol as @port
-- (another address of it), as {port, target}.
function M.published_on(ns, port)
  for _, t in ipairs(targets(ns)) do
    for _, p in ipairs(M.recorded(t)) do
      if p.host_port == port.host_port and p.proto == port.proto and p.id ~= port.id then
        return { port = p, target = t }
      end
    end
  end
  return nil
end

--- Publish each of @list (parsed ports) on target @t, all or none: what
-- this call published is removed again when a later one fails.  One
-- published alike already is kept as it is (`setup --publish` may be
-- repeated), unless @strict (`port add`: an error, as any port whose host
-- port is published).
-- @treturn[1] true
-- @return[2] nil, message, errno[, stage, signal number]
function M.publish_all(ns, t, h, list, strict)
  local have, done = {}, {}
  for _, p in ipairs(M.recorded(t)) do have[p.id] = p end
  for _, port in ipairs(list) do
    if strict or not (have[port.id] and have[port.id].spec == port.spec) then
      local ok, err, code, stage, sig = M.publish(ns, t, h, port)
      if not ok then
        for _, d in ipairs(done) do M.unpublish(ns, t, h, d.id) end
        return nil, err, code, stage, sig
      end
      done[#done + 1] = port
      have[port.id] = port
    end
  end
  return true
end

--- Stop publishing @spec (the host side is enough: `8080`, `[::1]:8080/udp`)
-- on target @t.  Its host port closes at once; other forwards and their
-- connections go on.
-- @treturn[1] table the port that was published
-- @return[2] nil, message, errno (ENOENT: not published)
function M.unpublish(ns, t, h, spec)
  local port, perr, pcode = spec, nil, nil
  if type(spec) ~= "table" then port, perr, pcode = M.parse(spec) end
  if not port then return nil, perr, pcode end
  local list = M.recorded(t)
  local found
  for i, p in ipairs(list) do
    if p.id == port.id then found = table.remove(list, i) break end
  end
  if not found then
    return nil, ("%s is not published on %s (see `rootlessnetns port list`)"):format(port.id, target_text(t)),
      errno.ENOENT
  end
  local ok, err = save(t, list)
  if not ok then return nil, err end
  if alive(t) then
    local reply, rerr = request(t, { op = "rm", port = found })
    if not reply then log.warn("%s", rerr) end
    if #list == 0 then stop_forwarder(t) end
  elseif #list > 0 then
    ensure(ns, t, h)
  end
  return found
end

--- Stop publishing each of @list (parsed ports) on target @t, all or
-- none: every one must be published, or nothing is removed.
-- @treturn[1] true
-- @return[2] nil, message, errno (ENOENT)
function M.unpublish_all(ns, t, h, list)
  local have = {}
  for _, p in ipairs(M.recorded(t)) do have[p.id] = true end
  for _, port in ipairs(list) do
    if not have[port.id] then
      return nil, ("%s is not published on %s (see `rootlessnetns port list`)"):format(port.id, target_text(t)),
        errno.ENOENT
    end
  end
  for _, port in ipairs(list) do
    local ok, err, code = M.unpublish(ns, t, h, port)
    if not ok then return nil, err, code end
  end
  return true
end

--- Parse a spec or a list of specs (an empty list only when the caller
-- says it may be: `setup` without --publish).
-- @treturn[1] table list of ports
-- @return[2] nil, message, EINVAL
function M.parse_all(specs, may_be_empty)
  if type(specs) ~= "table" then specs = { specs } end
  if #specs == 0 and not may_be_empty then return nil, "no port spec given", errno.EINVAL end
  local out = {}
  for i, spec in ipairs(specs) do
    local port, err, code = M.parse(spec)
    if not port then return nil, err, code end
    out[i] = port
  end
  return out
end

--- The ports of target @t, each with its live counters when its
-- forwarder runs ({forwarding, connections}).  With @reconcile (the lock
-- held exclusively), a forward the forwarder has and no record names
-- (left by a command killed mid-way, or a damaged record) is removed.
function M.list(t, reconcile)
  local list = M.recorded(t)
  local live = {}
  if alive(t) then
    local reply = request(t, { op = "list" })
    for _, e in ipairs(reply and reply.ports or {}) do live[e.id] = e end
  end
  local out, named = {}, {}
  for i, p in ipairs(list) do
    local id = ("%s:%d/%s"):format(p.host_ip, p.host_port, p.proto)
    named[id] = true
    local e = live[id]
    out[i] = { spec = p.spec, proto = p.proto, host_ip = p.host_ip, host_port = p.host_port,
      inside_port = p.inside_port, forwarding = e ~= nil,
      connections = e and math.tointeger(e.connections) or 0 }
  end
  if reconcile then
    for id, e in pairs(live) do
      if not named[id] and type(e.host_ip) == "string" then
        log.warn("the port forwarder of %s had %s, which no record names; removed it", target_text(t), id)
        request(t, { op = "rm", port = { proto = e.proto, host_ip = e.host_ip, host_port = e.host_port,
          inside_port = e.inside_port } })
      end
    end
  end
  return out
end

--- Start the forwarders of targets that have ports and none (a SIGKILLed
-- forwarder is repaired by the next command).  @live(t): is the target's
-- namespace there?  Those gone lose their ports.
function M.tend(ns, h, live)
  -- (from inside a namespace, a forwarder would listen there: the next
  -- command from the host starts it)
  if not M.in_host_netns(h) then return end
  for _, t in ipairs(targets(ns)) do
    if not live(t) then
      M.forget(ns, t.name)
    elseif not alive(t) then
      local ok, err = ensure(ns, t, h)
      if not ok then log.warn("ports of %s: %s", target_text(t), err) end
    end
  end
end

--- The named namespaces that have published ports, sorted.
function M.named_targets(ns)
  local out = {}
  for _, t in ipairs(targets(ns)) do
    if t.name then out[#out + 1] = t.name end
  end
  return out
end

--- Remove every forward of target @name (nil: the rootless netns).
function M.forget(ns, name)
  local t = M.target(ns, name)
  stop_forwarder(t)
  core.unlink(t.record)
  core.unlink(t.status)
end

--- Remove every forward of every target.
function M.forget_all(ns)
  for _, t in ipairs(targets(ns, true)) do M.forget(ns, t.name) end
end

return M
