--- The rootless netns itself: get-or-create, the backend's start, restart
-- and stop, cleanup, and the mount plan of the commands run in it.
--
-- What happens when the backend died, or the pin is not a live namespace,
-- is decided in get_or_create, top to bottom.  Every function here is
-- called with the session's lock held and the holder joined.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local inside = require "rootlessnetns.inside"
local child = require "rootlessnetns.child"
local config = require "rootlessnetns.config"
local log = require "rootlessnetns.log"
local mounts = require "rootlessnetns.mounts"
local procs = require "rootlessnetns.procs"
local state = require "rootlessnetns.state"

-- Needed only when a backend starts (or a backend name is checked): not
-- loaded on the warm path.
local function lazy(name)
  return setmetatable({}, { __index = function(t, k)
    local mod = require(name)
    setmetatable(t, { __index = mod })
    return mod[k]
  end })
end
local backends = lazy "rootlessnetns.backends"
local resolvconf = lazy "rootlessnetns.resolvconf"

-- (Lua has no octal literals)
local PRIVATE_FILE = tonumber("600", 8)
local PUBLIC_FILE = tonumber("644", 8)

local errno = core.errno

local M = {}

--- What to suggest when a backend's failure says this.
M.START_HINTS = {
  { when = "/dev/net/tun", hint = "/dev/net/tun must be readable and writable by you; 0666 is the usual mode" },
  { when = "tun socket", hint = "/dev/net/tun must be readable and writable by you; 0666 is the usual mode" },
  { when = "[Aa]pp[Aa]rmor", hint = "AppArmor confines this backend; try backend = \"slirp4netns\"" },
}

--- The host-side veths of `netns connect` are this prefix and a number
-- (rootlessnetns.lab names them; they are no backend's).
M.LAB_VETH_PREFIX = "rlnsv"

--- A backend either runs a process (pid + start time), or has none at all
-- (start returned pid = false: a loopback-only namespace, say).  A custom
-- backend may judge for itself with alive(rec, ctx).
function M.backend_alive(ns, rec)
  if type(rec) ~= "table" then return false end
  local custom = M.custom_backend(ns, rec)
  if custom and custom.alive then
    local ok, alive = pcall(custom.alive, rec, M.hook_ctx(ns))
    return ok and alive == true
  end
  if rec.noprocess == true and type(rec.name) == "string" then return true end
  return state.valid_identity(rec) and core.alive(rec.pid, rec.starttime)
end

--- What a custom backend's hooks receive.
function M.hook_ctx(ns)
  return { cfg = ns.cfg, paths = ns.paths, core = core, log = log, in_netns = inside.call,
    signals = ns.signals }
end

--- The configured backend when it is a custom one and made @rec, for its
-- optional alive(rec, ctx), stop(rec, ctx) and info(rec, ctx) hooks.
function M.custom_backend(ns, rec)
  local b = ns.cfg.backend
  if b == "auto" or backends.BUILTIN[b] then return nil end
  local backend = backends.resolve(ns.cfg)
  return backend and backend.name == rec.name and backend or nil
end

-- Process names (comm) a backend process may have.
local BACKEND_COMMS = { ["slirp4netns"] = true, ["pasta"] = true, ["passt"] = true,
  ["pasta.avx2"] = true, ["passt.avx2"] = true }

--- Backend processes of ours whose command line has @pin as an argument.
local function processes_naming(pin, extra_comm)
  return procs.ours(function(pid, comm)
    return (BACKEND_COMMS[comm] or comm == extra_comm) and procs.has_arg(pid, pin)
  end)
end

--- Where a kept backend's dead pin is moved.
local function orphan_pin(p, pid)
  return ("%s/orphan-%d.netns"):format(p.base, pid)
end

--- The kept backends of dead holders' namespaces (orphans.json), the
-- well-formed entries only.
local function read_orphans(p)
  local orphans = state.read_json(p.orphans)
  local out = {}
  for _, o in ipairs(type(orphans) == "table" and type(orphans.backends) == "table" and orphans.backends or {}) do
    if type(o) == "table" and math.tointeger(o.netns_id) and state.valid_identity(o) then
      out[#out + 1] = { pid = o.pid, starttime = o.starttime, netns_id = math.tointeger(o.netns_id), name = o.name }
    end
  end
  return out
end

--- Stop the backend: the recorded one (identity checked) and a stray that
-- a crash left unrecorded (its pid file names it and its command line
-- names our pin).  When the record itself is lost or damaged, every
-- process of ours whose command line names our pin is one.  Never waits.
function M.stop_backend(ns)
  local p = ns.paths
  local rec = state.read_json(p.backend)
  local custom = rec and M.custom_backend(ns, rec)
  if custom and custom.stop then
    local ok, err = pcall(custom.stop, rec, M.hook_ctx(ns))
    if not ok then log.warn("backend %s stop: %s", tostring(custom.name), tostring(err)) end
  end
  if rec and state.valid_identity(rec) then
    core.kill(rec.pid, rec.starttime, core.SIGTERM)
  elseif not (rec and rec.noprocess) and core.lstat(p.dir) then
    local module_name = type(ns.cfg.backend) == "string" and ns.cfg.backend or nil
    -- (a kept orphan names our pin too, but serves a namespace still in use)
    local kept = {}
    for _, o in ipairs(read_orphans(p)) do kept[o.pid] = o.starttime end
    for _, proc in ipairs(processes_naming(p.pin, module_name)) do
      if kept[proc.pid] ~= proc.starttime then core.kill(proc.pid, proc.starttime, core.SIGTERM) end
    end
  end
  local text = core.readfile(p.pidfile, 64)
  local pid = text and math.tointeger(tonumber(text:match("^%s*(%d+)%s*$") or ""))
  if pid and pid > 0 and not (rec and rec.pid == pid) and procs.has_arg(pid, p.pin) then
    local st = core.starttime(pid)
    if st then core.kill(pid, st, core.SIGTERM) end
  end
end

--- How many processes of ours other than the backend @backend_pid are
-- in the network namespace @id.
function M.users_in(id, backend_pid)
  local n = 0
  for _, proc in ipairs(procs.in_netns(id)) do
    if proc.pid ~= backend_pid then n = n + 1 end
  end
  return n
end

--- The holder died with processes of ours still in the namespace it
-- pinned: the old backend goes on serving them.  Its record moves to the
-- orphans (outside what cleanup removes), and whichever command finds
-- the namespace empty later stops it (reap_orphans).  Called before the
-- holder is joined: only from outside every user namespace of ours can
-- we see which namespace each of our processes is in.
-- @treturn table|nil {pid, name, users} when it was kept
function M.keep_orphaned_backend(ns)
  local p = ns.paths
  local rec = state.read_json(p.backend)
  local id = rec and math.tointeger(rec.netns_id)
  if not (id and state.valid_identity(rec) and core.alive(rec.pid, rec.starttime)) then
    return nil
  end
  local users = M.users_in(id, rec.pid)
  if users == 0 then return nil end
  local kept = read_orphans(p)
  kept[#kept + 1] = { pid = rec.pid, starttime = rec.starttime, netns_id = id, name = rec.name }
  if not state.write_json(p.orphans, { backends = kept }) then return nil end
  -- pasta quits when the file it was given is deleted (inotify IN_DELETE
  -- on its directory), which the rebuild is about to do: move it aside
  -- instead, out of the directory cleanup removes.
  core.rename(p.pin, orphan_pin(p, rec.pid))
  -- (no longer ours to stop at cleanup)
  core.unlink(p.backend)
  core.unlink(p.pidfile)
  return { pid = rec.pid, name = rec.name, users = users }
end

--- What a kept backend (keep_orphaned_backend's result) means to the user.
function M.kept_text(kept)
  return ("%d process%s still inside the old namespace keep%s the old network (%s, pid %d) until they end")
    :format(kept.users, kept.users == 1 and "" or "es", kept.users == 1 and "s" or "", tostring(kept.name), kept.pid)
end

--- Stop the orphaned backends whose namespace nobody of ours is in any
-- more (and forget those that are gone); with @all, every one.  Called
-- before the holder is joined, as keep_orphaned_backend.
function M.reap_orphans(ns, all)
  local p = ns.paths
  if not core.lstat(p.orphans) then return end
  local left = {}
  for _, o in ipairs(read_orphans(p)) do
    local alive = core.alive(o.pid, o.starttime)
    if alive and not all and M.users_in(o.netns_id, o.pid) > 0 then
      left[#left + 1] = o
    else
      if alive then
        log.debug("stopping the orphaned backend %d: its namespace is empty", o.pid)
        core.kill(o.pid, o.starttime, core.SIGTERM)
      end
      core.unlink(orphan_pin(p, o.pid))
    end
  end
  if #left == 0 then
    core.unlink(p.orphans)
  else
    state.write_json(p.orphans, { backends = left })
  end
end

--- Remove everything but the lock and the holder: unmount the pin, stop
-- the backend, remove the directory.  Idempotent; errors are collected.
function M.cleanup(ns)
  local p = ns.paths
  local problems = {}
  core.fault_point("cleanup-start")
  -- (the prepared mount namespace holds a copy of the pin; the port
  -- forwarder's maker is inside)
  require("rootlessnetns.prepared").drop(ns)
  require("rootlessnetns.ports").forget(ns, nil)
  -- (the lab's connections go with it, and so do the names they gave)
  require("rootlessnetns.lab.hosts").forget_all(ns)
  -- Only a live pin is a mount here; a plain file (a dead holder's) is just
  -- removed with the directory, and unmounting it outside a holder is EPERM.
  if core.nsfs(p.pin) then
    local ok, err = core.netns_unmount(p.pin, 5000)
    if not ok then problems[#problems + 1] = err end
  end
  core.fault_point("cleanup-unmounted")
  M.stop_backend(ns)
  core.fault_point("cleanup-backend-stopped")
  local ok, err = core.rmtree(p.dir)
  if not ok then problems[#problems + 1] = err end
  if #problems > 0 then return nil, "cleanup: " .. table.concat(problems, "; ") end
  log.debug("cleaned up `%s`", p.dir)
  return true
end

local function info_for_json(info)
  local out = {}
  for _, key in ipairs { "IPAddresses", "DnsForwardIps", "MapGuestIps" } do
    local v = info and info[key]
    out[key] = (type(v) == "table" and #v > 0) and v or cjson.null
  end
  return out
end


--- Interfaces of the netns other than lo and the lab's (the bridge of
-- `netns connect` and its veths).
local function foreign_links(bridge)
  local n = 0
  for _, name in ipairs(child.link_names()) do
    if name ~= "lo" and name ~= bridge and not name:match("^" .. M.LAB_VETH_PREFIX .. "%d+$") then
      n = n + 1
    end
  end
  return n
end

--- A killed backend's tap device is torn down by the kernel after the
-- process is gone; a new backend that starts before that attaches to the
-- dying device and loses its address and routes with it.  Wait (bounded)
-- until only lo (and the lab's interfaces) are left.
function M.wait_links_gone(ns)
  local bridge = ns.cfg.connect.bridge
  local ok, err = inside.call(ns.paths.pin, function()
    local deadline = core.clock() + 2
    while foreign_links(bridge) > 0 and core.clock() < deadline do core.sleep(10) end
    return foreign_links(bridge)
  end)
  if ok and ok > 0 then log.warn("the old backend's interface is still there after 2 s") end
  if not ok then log.debug("check interfaces: %s", tostring(err)) end
end

--- Start the backend into the pinned netns and record it, and what it
-- was built from (@h: the holder whose mount namespace has the pin).
-- Lock held.
function M.start_backend(ns, created, h)
  local p, cfg = ns.paths, ns.cfg
  if not created then M.wait_links_gone(ns) end
  local backend, berr = backends.resolve(cfg, p.base)
  local res, err, signo
  if backend then
    local t0 = core.clock()
    -- a backend may be the operator's own code: its errors are failures
    -- to start like any other, not crashes that leave a pin behind
    local ok, r, e, sig = pcall(backend.start, M.hook_ctx(ns))
    if ok then res, err = r, e else err = tostring(r) end
    if ok and not r and math.type(sig) == "integer" then signo = sig end
    log.debug("%s started in %.1f ms", backend.name, (core.clock() - t0) * 1000)
  else
    err = berr
  end
  if res then
    local checked, cerr = backends.check_started(backend.name, res)
    if not checked then
      -- (a process it did start is still found by its pid file and pin)
      if state.valid_identity(res) then core.kill(res.pid, res.starttime, core.SIGTERM) end
      res, err = nil, cerr
    end
  end
  local noprocess = res and res.pid == false
  if not res then
    -- Leave nothing that looks usable: no pin, no records, and no
    -- process a half-done start left (pasta's daemon, say).
    M.stop_backend(ns)
    core.netns_unmount(p.pin, 5000)
    for _, f in ipairs { p.backend, p.info, p.pidfile, p.built } do core.unlink(f) end
    if created then core.rmtree(p.dir) end
    if signo then return nil, tostring(err), errno.EINTR, "signal", signo end
    err = tostring(err)
    for _, hint in ipairs(M.START_HINTS) do
      if err:find(hint.when) then
        err = err .. " (hint: " .. hint.hint .. ")"
        break
      end
    end
    return nil, ("rootless netns: start %s: %s"):format(backend and backend.name or "backend", err)
  end
  if noprocess then
    core.unlink(p.pidfile)
  else
    core.writefile(p.pidfile, tostring(res.pid), PRIVATE_FILE)
  end
  local resolv_source = cfg.host_resolv_conf or "/etc/resolv.conf"
  local text, terr = M.resolv_text(ns, res.nameservers, res.ipv6, resolv_source)
  if not text then
    if not noprocess then core.kill(res.pid, res.starttime, core.SIGTERM) end
    core.netns_unmount(p.pin, 5000)
    return nil, terr
  end
  local ok, werr = core.writefile(p.resolv, text, PUBLIC_FILE)
  if ok then ok, werr = state.write_json(p.info, info_for_json(res.info)) end
  if ok then
    -- (with what resolv.conf is made of, so it can be made again)
    local rec = noprocess and { name = backend.name, noprocess = true } or {
      name = backend.name, pid = res.pid, starttime = res.starttime, argv = res.argv,
    }
    rec.nameservers, rec.ipv6, rec.resolv_source = res.nameservers or {}, res.ipv6 == true, resolv_source
    -- which network namespace it serves, for when its pin is gone
    rec.netns_id = core.ns_id(p.pin)
    ok, werr = state.write_json(p.backend, rec)
  end
  if not ok then
    if not noprocess then core.kill(res.pid, res.starttime, core.SIGTERM) end
    core.netns_unmount(p.pin, 5000)
    return nil, werr
  end
  -- what it is built from, for the commands that come later (the
  -- backend by the name it has: "auto" resolved)
  local built = config.build_record(cfg)
  built.backend = type(cfg.backend) == "table" and built.backend or backend.name
  -- whose mount namespace the pin is in: a command of another mode would
  -- not find it (session.check_owner), and a dead pause takes it along
  built.holder = h and h.mode or "current"
  built.holder_pid, built.holder_starttime = h and h.pid, h and h.starttime
  state.write_json(p.built, built)
  core.fault_point("backend-recorded")
  return { created = created, backend = backend.name, pid = res.pid }
end

--- The namespace's resolv.conf: the host's (@source) made fit for it,
-- then the config's resolv_conf hook.
-- @treturn[1] string
-- @return[2] nil, message (the hook failed)
function M.resolv_text(ns, nameservers, ipv6, source)
  local cfg = ns.cfg
  local text = resolvconf.generate {
    host = state.read_host_file(source) or "",
    read = state.read_host_file,
    nameservers = nameservers,
    ipv6 = ipv6,
  }
  if cfg.resolv_conf then
    local ok, out = pcall(cfg.resolv_conf, text, { nameservers = nameservers, ipv6 = ipv6 })
    if not ok or type(out) ~= "string" then
      return nil, "config resolv_conf hook: " .. (ok and "must return a string" or tostring(out))
    end
    text = out
  end
  return text
end

--- Make resolv.conf again from what it is made of now (the host's may
-- have changed: a VPN, DHCP; the hook is the command's own), and when it
-- differs, write it in place: the running commands have it bound, so
-- they see the change too.
function M.refresh_resolv(ns, brec)
  local p = ns.paths
  local nameservers = type(brec.nameservers) == "table" and brec.nameservers or {}
  for _, n in ipairs(nameservers) do
    if type(n) ~= "string" then nameservers = {} break end
  end
  -- (from the source it was made from, whatever this command's config says)
  local source = type(brec.resolv_source) == "string" and brec.resolv_source
    or ns.cfg.host_resolv_conf or "/etc/resolv.conf"
  local text, err = M.resolv_text(ns, nameservers, brec.ipv6 == true, source)
  if not text then return nil, err end
  if core.readfile(p.resolv, 1 << 20) == text then return true end
  local fd, oerr = core.open(p.resolv, "w", PUBLIC_FILE)
  if not fd then return nil, oerr end
  local ok, werr = fd:write(text)
  fd:close()
  if not ok then return nil, werr end
  log.debug("resolv.conf made again (its inputs changed)")
  return true
end

--- Does the command's config ask for something the running namespace
-- was not built with?  One line naming each difference and the fix.
local function check_built(ns)
  local built = state.read_json(ns.paths.built)
  if type(built) ~= "table" then return true end -- (made before we recorded it)
  local cfg = ns.cfg
  local conflicts = config.build_conflicts(cfg, built)
  -- a backend named by the command is compared by the name it runs as
  if cfg.backend ~= "auto" and type(cfg.backend) == "string" and type(built.backend) == "string" then
    for i = #conflicts, 1, -1 do
      if conflicts[i].key == "backend" then table.remove(conflicts, i) end
    end
    if built.backend ~= cfg.backend then
      table.insert(conflicts, 1, { key = "backend", want = cfg.backend, have = built.backend })
    end
  end
  if #conflicts == 0 then return true end
  local parts = {}
  for _, c in ipairs(conflicts) do
    parts[#parts + 1] = ("%s is %s, this command asks for %s"):format(c.key, c.have, c.want)
  end
  return nil, ("the running rootless netns was built otherwise: %s; `rootlessnetns teardown` (or `cleanup`) "
    .. "it first, or drop the option"):format(table.concat(parts, "; ")), errno.EBUSY
end

-- Reuse a live namespace, repair a broken one, or create it.
local function get_or_create(ns, h)
  local p = ns.paths
  local is_ns, nerr, code = core.nsfs(p.pin)
  if is_ns then
    local ok, cerr, ccode = check_built(ns)
    if not ok then return nil, cerr, ccode end
    local rec, rerr = state.read_json(p.backend)
    if M.backend_alive(ns, rec) then
      log.debug("reusing netns `%s` with %s (pid %s)", p.pin, tostring(rec.name), tostring(rec.pid or "-"))
      local rok, rerr2 = M.refresh_resolv(ns, rec)
      if not rok then return nil, rerr2 end
      return { created = false, backend = rec.name, pid = rec.pid }
    end
    if rerr then log.warn("%s", rerr) end
    log.warn("the %s backend%s is gone; restarting it in the same namespace",
      rec and tostring(rec.name) or "network", rec and rec.pid and (" (pid " .. tostring(rec.pid) .. ")") or "")
    M.stop_backend(ns)
    return M.start_backend(ns, false, h)
  end
  local kept = h and h.created and h.replaced and ns.orphaned
  if kept then
    -- (its pin was moved aside with the backend it keeps)
    log.warn("the previous holder died; %s", M.kept_text(kept))
  end
  if is_ns == false then
    -- A plain file: a create killed before its bind mount, or a holder
    -- that died and took the mount with it.
    if h and h.created and h.replaced then
      log.warn("the previous holder died; nothing was left inside the old namespace")
    else
      log.warn("`%s` is not a live namespace (left by an interrupted command); recreating it", p.pin)
    end
    local ok, err = M.cleanup(ns)
    if not ok then return nil, err end
  elseif code ~= errno.ENOENT then
    return nil, ("check `%s`: %s"):format(p.pin, tostring(nerr))
  elseif core.lstat(p.dir) then
    -- No pin but a directory: a cleanup that was interrupted.  Finish it
    -- (its backend may still run) before building anew.
    local ok, err = M.cleanup(ns)
    if not ok then return nil, err end
  end
  local ok, err = state.prepare_dir(p)
  if not ok then return nil, err end
  core.fault_point("netns-before-create")
  ok, err = core.netns_create(p.pin)
  if not ok then return nil, "rootless netns: " .. err end
  core.fault_point("netns-created")
  log.debug("created netns `%s`", p.pin)
  return M.start_backend(ns, true, h)
end

--- Reuse a live namespace, repair a broken one, or create it; and start
-- the port forwarders that died (of every target: whichever command
-- notices).  Lock held.
function M.get_or_create(ns, h)
  local up, err, code, stage, sig = get_or_create(ns, h)
  if up and h then
    require("rootlessnetns.ports").tend(ns, h, function(t) return core.nsfs(t.pin) == true end)
  end
  return up, err, code, stage, sig
end

--- The mount plan for commands, after the config's hook.
function M.plan(ns)
  local p = ns.paths
  local target, terr = mounts.resolve_target("/etc/resolv.conf")
  if not target then log.debug("no resolv.conf bind: %s", terr) end
  local ctx = {
    dir = p.dir,
    runtime_dir = ns.runtime_dir,
    resolv_source = p.resolv,
    resolv_target = target,
    systemd_run = core.lstat("/run/systemd") ~= nil,
    cni = ns.cfg.cni,
    cni_target = ns.cfg.cni and (function()
      for _, d in ipairs { "/var/lib/cni", "/var/lib", "/var" } do
        if core.lstat(d) then return d end
      end
    end)(),
    selinux = core.lstat("/sys/fs/selinux/enforce") ~= nil,
  }
  local plan = mounts.default_plan(ctx)
  if not target then
    for i = #plan, 1, -1 do
      if plan[i].name == "resolv.conf" or plan[i].name == "resolv-shield" then table.remove(plan, i) end
    end
  end
  if ns.cfg.mounts then
    local ok, out = pcall(ns.cfg.mounts, plan, ctx)
    if not ok then return nil, "config mounts hook: " .. tostring(out) end
    local checked, err = mounts.validate(out)
    if not checked then return nil, "config mounts hook: " .. err end
    plan = checked
  end
  return plan
end

--- Unpin every named namespace and drop its record.  Lock held.
function M.forget_named(ns)
  for _, name in ipairs(core.listdir(ns.paths.names) or {}) do
    local pin = ns.named_dir .. "/" .. name
    if core.nsfs(pin) then core.netns_unmount(pin, 5000) else core.unlink(pin) end
    core.unlink(ns.paths.names .. "/" .. name)
  end
end


return M
