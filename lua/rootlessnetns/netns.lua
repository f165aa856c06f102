--- The rootless network namespace: setup, teardown, run, info, status,
-- cleanup.  This is the flow of podman's rootless netns, with references
-- that are records of live processes, backend identity by pid + start
-- time, and recovery from every crash point.
--
--   local netns = require "rootlessnetns.netns"
--   local ns = assert(netns.new { backend = "slirp4netns" })
--   local how, code = ns:run { "ip", "addr" }
--
-- Every method returns its result, or nil, message[, errno].  Each runs in
-- a forked worker (rootlessnetns.worker) that joins the holder's user and
-- mount namespaces: the calling process's namespaces, fds, signal
-- dispositions and cwd never change, so a long-lived program survives
-- anyone's `cleanup`.  The CLI, which exits (or execs) when it is done,
-- joins in-process (`in_process = true`) and saves the fork.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local child = require "rootlessnetns.child"
local config = require "rootlessnetns.config"
local holder = require "rootlessnetns.holder"
local log = require "rootlessnetns.log"
local mounts = require "rootlessnetns.mounts"
local procs = require "rootlessnetns.procs"
local state = require "rootlessnetns.state"
local worker = require "rootlessnetns.worker"

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
local M = {}

local Netns = {}
Netns.__index = Netns
M.Netns = Netns

local errno = core.errno

-- Which holder this process has joined (setns into the same user
-- namespace twice fails, and once in, we stay in).
local joined

--- Create a handle.  Nothing is touched on disk until a method runs.
-- @tparam[opt] table opts configuration keys (see the README), plus
--   `config` (a path to load first), `getenv` (for tests) and `signals`
--   (a Signals object of core.block_signals: each of them ends every wait
--   for the lock, and methods then fail with stage "signal") and
--   `in_process` (join the holder in this process: for a process that
--   exits or execs once the method returns, such as the CLI)
-- @treturn[1] Netns
-- @return[2] nil, message
function M.new(opts)
  opts = opts or {}
  local overrides, cfg = {}, nil
  for k, v in pairs(opts) do
    if k ~= "config" and k ~= "getenv" and k ~= "signals" and k ~= "in_process" then overrides[k] = v end
  end
  if opts.config then
    local err
    cfg, err = config.load(opts.config)
    if not cfg then return nil, err end
  end
  local err
  cfg, err = config.validate(overrides, cfg)
  if not cfg then return nil, "options: " .. err end
  if cfg.backend ~= "auto" then
    -- an unknown backend is reported before anything is created
    local ok, berr = backends.resolve(cfg)
    if not ok then return nil, berr end
  end
  return setmetatable({ cfg = cfg, getenv = opts.getenv or os.getenv, signals = opts.signals,
    in_process = opts.in_process == true }, Netns)
end

--- Resolve and check the state directory (before joining anything, so the
-- ownership checks see real ids).
function Netns:_open()
  if self.paths then return true end
  local uid, gid = core.getuid()
  self.ids = { uid = uid, gid = gid }
  local runtime_dir, err = state.runtime_dir(self.getenv, uid)
  if not runtime_dir then return nil, err end
  self.runtime_dir = runtime_dir
  -- where named namespaces are pinned (podman's directory for its own)
  self.named_dir = runtime_dir .. "/netns"
  local base = self.cfg.state_dir or (runtime_dir .. "/rootlessnetns")
  local ok, perr = state.prepare_base(base, uid)
  if not ok then return nil, perr end
  self.paths = state.paths(base)
  return true
end

--- Take the state lock.  With signals to watch, the wait polls: a
-- signal ends it at once (flock itself cannot be woken by a blocked one).
-- @return[2] nil, message, errno (EINTR), "signal", the signal number
function Netns:_lock(mode, uninterruptible)
  local t0 = core.clock()
  local lock, err, code
  if self.signals and not uninterruptible then
    local pause = 1
    while true do
      lock, err, code = core.flock(self.paths.lock, mode or "ex", true)
      if lock or code ~= errno.EWOULDBLOCK then break end
      local sig = self.signals:wait(pause)
      if sig then
        return nil, ("interrupted by signal %d while waiting for `%s`"):format(sig, self.paths.lock),
          errno.EINTR, "signal", sig
      end
      pause = math.min(pause * 2, 20)
    end
  else
    lock, err, code = core.flock(self.paths.lock, mode or "ex")
  end
  if not lock then return nil, err, code end
  log.debug("locked `%s` (%s) after %.2f ms", self.paths.lock, mode or "ex", (core.clock() - t0) * 1000)
  return lock
end

--- Join (or create) the holder.  Lock held.
function Netns:_enter_holder(may_create)
  if joined and joined.mode ~= "own" then return joined end
  if joined and joined.mode == "own" then
    if core.alive(joined.pid, joined.starttime) then return joined end
    return nil, "the holder this process joined has died; start a new process"
  end
  if not may_create and self.cfg.userns == "auto" and not holder.in_child_userns() then
    if not holder.recorded(self.paths) then return false end
  end
  local t0 = core.clock()
  local h, err = holder.ensure(self.paths, self.ids, self.cfg, { runtime_dir = self.runtime_dir })
  if not h then return nil, err end
  log.debug("%s holder %s (%s) in %.2f ms", h.created and "created and joined" or "joined",
    tostring(h.pid or "-"), h.mode, (core.clock() - t0) * 1000)
  joined = h
  return h
end

--- What every operation starts with: check the state directory, take the
-- lock, join the holder (creating it only when @may_create).
-- @treturn[1] Lock
-- @treturn[1] table|false the holder; false when there is none to join
-- @return[2] nil, message
function Netns:_begin(may_create)
  local ok, err = self:_open()
  if not ok then return nil, err end
  local lock, lerr, lcode, lstage, lsig = self:_lock()
  if not lock then return nil, lerr, lcode, lstage, lsig end
  local h, herr = self:_enter_holder(may_create)
  if h == nil then
    lock:close()
    return nil, herr
  end
  return lock, h
end

-- A backend either runs a process (pid + start time), or has none at all
-- (start returned pid = false: a loopback-only namespace, say).  A custom
-- backend may judge for itself with alive(rec, ctx).
function Netns:_backend_alive(rec)
  if type(rec) ~= "table" then return false end
  local custom = self:_custom_backend(rec)
  if custom and custom.alive then
    local ok, alive = pcall(custom.alive, rec, self:_hook_ctx())
    return ok and alive == true
  end
  if rec.noprocess == true and type(rec.name) == "string" then return true end
  return state.valid_identity(rec) and core.alive(rec.pid, rec.starttime)
end

--- What a custom backend's hooks receive.
function Netns:_hook_ctx()
  return { cfg = self.cfg, paths = self.paths, core = core, log = log, in_netns = child.in_netns,
    signals = self.signals }
end

--- The configured backend when it is a custom one and made @rec, for its
-- optional alive(rec, ctx), stop(rec, ctx) and info(rec, ctx) hooks.
function Netns:_custom_backend(rec)
  local b = self.cfg.backend
  if b == "auto" or backends.BUILTIN[b] then return nil end
  local backend = backends.resolve(self.cfg)
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

--- Stop the backend: the recorded one (identity checked) and a stray that
-- a crash left unrecorded (its pid file names it and its command line
-- names our pin).  When the record itself is lost or damaged, every
-- process of ours whose command line names our pin is one.  Never waits.
function Netns:_stop_backend()
  local p = self.paths
  local rec = state.read_json(p.backend)
  local custom = rec and self:_custom_backend(rec)
  if custom and custom.stop then
    local ok, err = pcall(custom.stop, rec, self:_hook_ctx())
    if not ok then log.warn("backend %s stop: %s", tostring(custom.name), tostring(err)) end
  end
  if rec and state.valid_identity(rec) then
    core.kill(rec.pid, rec.starttime, core.SIGTERM)
  elseif not (rec and rec.noprocess) and core.lstat(p.dir) then
    local module_name = type(self.cfg.backend) == "string" and self.cfg.backend or nil
    for _, proc in ipairs(processes_naming(p.pin, module_name)) do
      core.kill(proc.pid, proc.starttime, core.SIGTERM)
    end
  end
  local text = core.readfile(p.pidfile, 64)
  local pid = text and math.tointeger(tonumber(text:match("^%s*(%d+)%s*$") or ""))
  if pid and pid > 0 and not (rec and rec.pid == pid) and procs.has_arg(pid, p.pin) then
    local st = core.starttime(pid)
    if st then core.kill(pid, st, core.SIGTERM) end
  end
end

--- Remove everything but the lock and the holder: unmount the pin, stop
-- the backend, remove the directory.  Idempotent; errors are collected.
function Netns:_cleanup()
  local p = self.paths
  local problems = {}
  core.fault_point("cleanup-start")
  -- Only a live pin is a mount here; a plain file (a dead holder's) is just
  -- removed with the directory, and unmounting it outside a holder is EPERM.
  if core.nsfs(p.pin) then
    local ok, err = core.netns_unmount(p.pin, 5000)
    if not ok then problems[#problems + 1] = err end
  end
  core.fault_point("cleanup-unmounted")
  self:_stop_backend()
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

--- The host-side veths of `netns connect` are this prefix and a number
-- (rootlessnetns.lab names them; they are no backend's).
M.LAB_VETH_PREFIX = "rlnsv"

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
function Netns:_wait_links_gone()
  local bridge = self.cfg.connect.bridge
  local ok, err = child.in_netns(self.paths.pin, function()
    local deadline = core.clock() + 2
    while foreign_links(bridge) > 0 and core.clock() < deadline do core.sleep(10) end
    return foreign_links(bridge)
  end)
  if ok and ok > 0 then log.warn("the old backend's interface is still there after 2 s") end
  if not ok then log.debug("check interfaces: %s", tostring(err)) end
end

--- Start the backend into the pinned netns and record it.  Lock held.
function Netns:_start_backend(created)
  local p, cfg = self.paths, self.cfg
  if not created then self:_wait_links_gone() end
  local backend, berr = backends.resolve(cfg, p.base)
  local res, err, signo
  if backend then
    local t0 = core.clock()
    -- a backend may be the operator's own code: its errors are failures
    -- to start like any other, not crashes that leave a pin behind
    local ok, r, e, sig = pcall(backend.start, self:_hook_ctx())
    if ok then res, err = r, e else err = tostring(r) end
    if ok and not r and math.type(sig) == "integer" then signo = sig end
    log.debug("%s started in %.1f ms", backend.name, (core.clock() - t0) * 1000)
  else
    err = berr
  end
  local noprocess = res and res.pid == false
  if res and not noprocess and not state.valid_identity(res) then
    err = ("backend %s returned no pid/starttime (pid = false: no process)"):format(backend.name)
    res = nil
  end
  if not res then
    -- Leave nothing that looks usable: no pin, no records.
    core.netns_unmount(p.pin, 5000)
    for _, f in ipairs { p.backend, p.info, p.pidfile } do core.unlink(f) end
    if created then core.rmtree(p.dir) end
    if signo then return nil, tostring(err), errno.EINTR, "signal", signo end
    err = tostring(err)
    if err:find("/dev/net/tun", 1, true) then
      err = err .. " (hint: /dev/net/tun must be readable and writable by you; 0666 is the usual mode)"
    end
    return nil, ("rootless netns: start %s: %s"):format(backend and backend.name or "backend", err)
  end
  if noprocess then
    core.unlink(p.pidfile)
  else
    core.writefile(p.pidfile, tostring(res.pid), PRIVATE_FILE)
  end
  local text = resolvconf.generate {
    host = state.read_host_file("/etc/resolv.conf") or "",
    read = state.read_host_file,
    nameservers = res.nameservers,
    ipv6 = res.ipv6,
  }
  if cfg.resolv_conf then
    local ok, out = pcall(cfg.resolv_conf, text, { nameservers = res.nameservers, ipv6 = res.ipv6 })
    if not ok or type(out) ~= "string" then
      if not noprocess then core.kill(res.pid, res.starttime, core.SIGTERM) end
      core.netns_unmount(p.pin, 5000)
      return nil, "config resolv_conf hook: " .. (ok and "must return a string" or tostring(out))
    end
    text = out
  end
  local ok, werr = core.writefile(p.resolv, text, PUBLIC_FILE)
  if ok then ok, werr = state.write_json(p.info, info_for_json(res.info)) end
  if ok then
    ok, werr = state.write_json(p.backend, noprocess and { name = backend.name, noprocess = true } or {
      name = backend.name, pid = res.pid, starttime = res.starttime, argv = res.argv,
    })
  end
  if not ok then
    if not noprocess then core.kill(res.pid, res.starttime, core.SIGTERM) end
    core.netns_unmount(p.pin, 5000)
    return nil, werr
  end
  core.fault_point("backend-recorded")
  return { created = created, backend = backend.name, pid = res.pid }
end

--- Reuse a live namespace, repair a broken one, or create it.  Lock held.
function Netns:_get_or_create(h)
  local p = self.paths
  local is_ns, nerr, code = core.nsfs(p.pin)
  if is_ns then
    local rec, rerr = state.read_json(p.backend)
    if self:_backend_alive(rec) then
      log.debug("reusing netns `%s` with %s (pid %s)", p.pin, tostring(rec.name), tostring(rec.pid or "-"))
      return { created = false, backend = rec.name, pid = rec.pid }
    end
    if rerr then log.warn("%s", rerr) end
    log.warn("the %s backend%s is gone; restarting it in the same namespace",
      rec and tostring(rec.name) or "network", rec and rec.pid and (" (pid " .. tostring(rec.pid) .. ")") or "")
    self:_stop_backend()
    return self:_start_backend(false)
  end
  if is_ns == false then
    -- A plain file: a create killed before its bind mount, or a holder
    -- that died and took the mount with it.
    if h and h.created and h.replaced then
      log.warn("the previous holder died; processes still inside the old namespace keep the old network")
    else
      log.warn("`%s` is not a live namespace (left by an interrupted command); recreating it", p.pin)
    end
    local ok, err = self:_cleanup()
    if not ok then return nil, err end
  elseif code ~= errno.ENOENT then
    return nil, ("check `%s`: %s"):format(p.pin, tostring(nerr))
  elseif core.lstat(p.dir) then
    -- No pin but a directory: a cleanup that was interrupted.  Finish it
    -- (its backend may still run) before building anew.
    local ok, err = self:_cleanup()
    if not ok then return nil, err end
  end
  local ok, err = state.prepare_dir(p)
  if not ok then return nil, err end
  core.fault_point("netns-before-create")
  ok, err = core.netns_create(p.pin)
  if not ok then return nil, "rootless netns: " .. err end
  core.fault_point("netns-created")
  log.debug("created netns `%s`", p.pin)
  return self:_start_backend(true)
end

--- Count of users: nets from setup/teardown, live `run` processes and
-- namespaces connected with `netns connect`.
function Netns:_users()
  local n, warning = state.read_count(self.paths.refcount)
  if warning then
    log.warn("%s", warning)
    state.write_count(self.paths.refcount, n)
  end
  return n + state.live_refs(self.paths) + state.connections(self.paths), n
end

--- The mount plan for commands, after the config's hook.
function Netns:_plan()
  local p = self.paths
  local target, terr = mounts.resolve_target("/etc/resolv.conf")
  if not target then log.debug("no resolv.conf bind: %s", terr) end
  local ctx = {
    dir = p.dir,
    runtime_dir = self.runtime_dir,
    resolv_source = p.resolv,
    resolv_target = target,
    systemd_run = core.lstat("/run/systemd") ~= nil,
    cni = self.cfg.cni,
    cni_target = self.cfg.cni and (function()
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
  if self.cfg.mounts then
    local ok, out = pcall(self.cfg.mounts, plan, ctx)
    if not ok then return nil, "config mounts hook: " .. tostring(out) end
    local checked, err = mounts.validate(out)
    if not checked then return nil, "config mounts hook: " .. err end
    plan = checked
  end
  return plan
end

--- Child side: enter the netns, private mounts, then exec or call.
local function child_main(netfd, plan, cmd, env, errw)
  -- Short-lived and about to exec: collecting garbage would only copy
  -- the parent's heap pages (copy-on-write) for nothing.
  collectgarbage("stop")
  local function fail(stage, msg, code)
    errw:write(("%s\n%d\n%s"):format(stage, code or 0, msg))
    core._exit(stage == "exec" and ((code == errno.ENOENT) and 127 or 126) or 125)
  end
  local ok, err, code = core.setns(netfd, core.CLONE_NEWNET)
  if not ok then fail("setup", err, code) end
  netfd:close()
  ok, err, code = core.unshare(core.CLONE_NEWNS)
  if not ok then fail("setup", err, code) end
  -- slave, not private: host unmounts must still reach us
  ok, err, code = core.mount(nil, "/", nil, "rslave")
  if not ok then fail("setup", err, code) end
  ok, err, code = mounts.apply(plan, log)
  if not ok then fail("setup", err, code) end
  if type(cmd) == "table" then log.debug("exec %s", table.concat(cmd, " ")) end
  if type(cmd) == "function" then
    local fok, res = pcall(cmd)
    if not fok then fail("function", tostring(res), 0) end
    io.stdout:flush()
    io.stderr:flush()
    core._exit(math.type(res) == "integer" and res or (res == false and 1 or 0))
  end
  local _, eerr, ecode = core.exec(cmd, env)
  fail("exec", eerr, ecode)
end

--- Resolve argv[1] through PATH here, so that "not found" (127) is told
-- apart from "found but not executable" (126) whatever PATH holds.
local function resolve_command(cmd)
  if type(cmd) ~= "table" or cmd[1]:find("/", 1, true) then return cmd end
  local path = child.which(cmd[1])
  if not path then
    return nil, ("exec `%s`: command not found"):format(cmd[1]), errno.ENOENT
  end
  local resolved = table.move(cmd, 1, #cmd, 1, {})
  resolved[1] = path
  return resolved
end

--- Fork the child that runs @cmd inside the netns pinned at @pin (default:
-- the rootless netns).  Lock held.
-- @treturn Process, Fd (error pipe read end)
function Netns:_spawn_inside(cmd, env, plan, pin)
  local netfd, err, code = core.open(pin or self.paths.pin, "r")
  if not netfd then return nil, err, code end
  local errr, errw = core.pipe()
  io.stdout:flush()
  io.stderr:flush()
  local pid, ferr, fcode = core.fork()
  if not pid then
    netfd:close(); errr:close(); errw:close()
    return nil, ferr, fcode
  end
  if pid == 0 then
    errr:close()
    child_main(netfd, plan, cmd, env, errw)
  end
  netfd:close()
  errw:close()
  local proc = assert(core.process(pid))
  return proc, errr
end

--- Collect the child's result: an error from its setup or exec, or its status.
local function finish_child(proc, errr, signals, is_function)
  local report
  if is_function then
    local how, code = proc:wait(nil, signals)
    report = errr:read(65536, 0)
    errr:close()
    if report and report ~= "" then
      local stage, num, msg = report:match("^(%w+)\n(%d+)\n(.*)$")
      return nil, msg or report, math.tointeger(tonumber(num)) or 0, stage
    end
    return how, code
  end
  report = errr:readall() or ""
  errr:close()
  local how, code = proc:wait(nil, signals)
  if report ~= "" then
    local stage, num, msg = report:match("^(%w+)\n(%d+)\n(.*)$")
    return nil, msg or report, math.tointeger(tonumber(num)) or 0, stage
  end
  return how, code
end

local function check_cmd(cmd)
  if type(cmd) == "function" then return true end
  if type(cmd) ~= "table" or type(cmd[1]) ~= "string" then
    return nil, "the command must be a non-empty list of strings or a function"
  end
  for i, a in ipairs(cmd) do
    if type(a) ~= "string" then
      return nil, ("command argument %d must be a string"):format(i)
    end
  end
  return true
end

--- Run @cmd inside while holding a reference; the lock is released while
-- it runs, so other commands go on.  The reference is a record of the
-- command's own process, so a SIGKILLed caller leaks nothing.
-- @tparam table|function cmd argv list, or a Lua function run in the child
-- @tparam[opt] table opts {env = {...}, signals = Signals (forwarded)}
-- @treturn[1] string "exited" or "signaled"
-- @treturn[1] int status or signal
-- @return[2] nil, message, errno, stage ("setup", "exec", "function")
function Netns:run(cmd, opts)
  opts = opts or {}
  local ok, err = check_cmd(cmd)
  if not ok then return nil, err, errno.EINVAL, "usage" end
  -- What needs no lock is done before taking it: parallel runs wait less,
  -- and a command that is not found creates nothing.
  ok, err = self:_open()
  if not ok then return nil, err end
  local argv, aerr, acode = resolve_command(cmd)
  if not argv then return nil, aerr, acode, "exec" end
  local plan, perr = self:_plan()
  if not plan then return nil, perr end
  local lock, h, bcode, bstage, bsig = self:_begin(true)
  if not lock then return nil, h, bcode, bstage, bsig end
  local ns, nerr, ncode, nstage, nsig = self:_get_or_create(h)
  if not ns then lock:close() return nil, nerr, ncode, nstage, nsig end
  local proc, errr, code = self:_spawn_inside(argv, opts.env, plan)
  if not proc then
    if self:_users() == 0 then self:_cleanup() end
    lock:close()
    return nil, errr, code
  end
  local starttime = core.starttime(proc:pid())
  if starttime then state.add_ref(self.paths, proc:pid(), starttime) end
  core.fault_point("run-ref-added")
  lock:close()

  local how, status, ecode, stage = finish_child(proc, errr, opts.signals, type(cmd) == "function")
  core.fault_point("run-command-done")

  -- (what the command's end leaves to do is done whatever arrives now)
  lock = self:_lock(nil, true)
  if lock then
    if starttime then state.remove_ref(self.paths, proc:pid(), starttime) end
    if self:_users() == 0 then
      local cok, cerr = self:_cleanup()
      if not cok then log.warn("%s", cerr) end
    end
    lock:close()
  end
  return how, status, ecode, stage
end

--- Run @cmd inside for setup and teardown, without holding the lock
-- while it runs (the command may call rootlessnetns itself): a reference
-- record of its process keeps the namespace up meanwhile.  Lock held on
-- entry and again on return; @begun.lock is replaced.
-- @treturn[1] true when the command exited 0
-- @return[2] nil, message, errno, stage, how, status
function Netns:_run_unlocked(begun, cmd)
  local plan, perr = self:_plan()
  if not plan then return nil, perr end
  local argv, aerr, acode = resolve_command(cmd)
  if not argv then return nil, aerr, acode, "exec" end
  local proc, errr, code = self:_spawn_inside(argv, nil, plan)
  if not proc then return nil, errr, code end
  local pid = proc:pid()
  local starttime = core.starttime(pid)
  if starttime then state.add_ref(self.paths, pid, starttime) end
  begun.lock:close()
  local how, status, ecode, stage = finish_child(proc, errr, self.signals, type(cmd) == "function")
  begun.lock = self:_lock(nil, true)
  if starttime then state.remove_ref(self.paths, pid, starttime) end
  if not how then return nil, status, ecode, stage end
  if how ~= "exited" or status ~= 0 then
    return nil, ("command %s %d"):format(how == "exited" and "exited with status" or "killed by signal", status),
      nil, "command", how, status
  end
  return true
end

local function check_nets(nets)
  nets = nets or 1
  if math.type(nets) ~= "integer" or nets < 1 or nets > 65535 then
    return nil, ("nets must be an integer from 1 to 65535, not %s"):format(tostring(nets))
  end
  return nets
end

--- What setup and teardown start with: check the arguments, take the
-- lock, join (or, when @may_create, create) the holder.
-- @treturn[1] table {nets, lock, holder}
-- @return[2] nil, message, errno, stage
function Netns:_begin_counted(nets, cmd, may_create)
  local n, nerr = check_nets(nets)
  if not n then return nil, nerr, errno.EINVAL, "usage" end
  if cmd ~= nil then
    local ok, err = check_cmd(cmd)
    if not ok then return nil, err, errno.EINVAL, "usage" end
  end
  local lock, h, code, stage, sig = self:_begin(may_create)
  if not lock then return nil, h, code, stage, sig end
  return { nets = n, lock = lock, holder = h }
end

--- Create if needed, run @cmd inside, then count @nets more users.
-- The count grows only when everything succeeded; a namespace created by
-- this call is removed again when the command fails.
-- @treturn[1] true
-- @return[2] nil, message
function Netns:setup(nets, cmd)
  local begun, berr, bcode, bstage, bsig = self:_begin_counted(nets, cmd, true)
  if not begun then return nil, berr, bcode, bstage, bsig end
  local lock, n = begun.lock, begun.nets
  local ns, gerr, gcode, gstage, gsig = self:_get_or_create(begun.holder)
  if not ns then lock:close() return nil, gerr, gcode, gstage, gsig end
  if cmd ~= nil then
    local rok, rerr, code, stage, how, status = self:_run_unlocked(begun, cmd)
    lock = begun.lock
    if not rok then
      -- last one out: a namespace nobody else took up meanwhile goes
      if lock and self:_users() == 0 then self:_cleanup() end
      if lock then lock:close() end
      return nil, rerr, code, stage, how, status
    end
    if not lock then return nil, "setup: cannot take the lock again after the command" end
  end
  local count = state.read_count(self.paths.refcount)
  core.fault_point("setup-before-count")
  local ok, err = state.write_count(self.paths.refcount, count + n)
  lock:close()
  if not ok then return nil, err end
  return true
end

--- Run @cmd inside, then count @nets fewer users; clean up at zero.  A
-- failed command leaves the count alone (the caller retries).  Never
-- starts a backend: tearing down a namespace whose backend died works.
function Netns:teardown(nets, cmd)
  local begun, berr, bcode, bstage, bsig = self:_begin_counted(nets, cmd, false)
  if not begun then return nil, berr, bcode, bstage, bsig end
  local lock, n, h = begun.lock, begun.nets, begun.holder
  local live = h and core.nsfs(self.paths.pin)
  if live and cmd ~= nil then
    local rok, rerr, code, stage, how, status = self:_run_unlocked(begun, cmd)
    lock = begun.lock
    if not lock then return nil, "teardown: cannot take the lock again after the command" end
    if not rok then lock:close() return nil, rerr, code, stage, how, status end
    -- the command may have torn it down itself (a nested cleanup)
    live = core.nsfs(self.paths.pin)
  end
  local count = state.read_count(self.paths.refcount)
  count = math.max(0, count - n)
  core.fault_point("teardown-before-count")
  local ok, err
  if live then
    ok, err = state.write_count(self.paths.refcount, count)
    if ok and self:_users() == 0 then ok, err = self:_cleanup() end
  else
    -- Nothing live: whatever is left is stale, an orphaned backend of a
    -- dead holder included.
    ok, err = self:_cleanup()
  end
  lock:close()
  return ok, err
end

--- Remove the namespace whatever the count says; with `holder = true`
-- also stop the holder.  Idempotent.
function Netns:cleanup(opts)
  opts = opts or {}
  local lock, h, code, stage, sig = self:_begin(false)
  if not lock then return nil, h, code, stage, sig end
  local ok, err = self:_cleanup()
  if opts.holder and (not h or h.mode == "own") then
    -- named namespaces live in the holder's mounts and go with it
    self:_forget_named()
    holder.stop(self.paths)
  end
  lock:close()
  return ok, err
end

--- Unpin every named namespace and drop its record.  Lock held.
function Netns:_forget_named()
  for _, name in ipairs(core.listdir(self.paths.names) or {}) do
    local pin = self.named_dir .. "/" .. name
    if core.nsfs(pin) then core.netns_unmount(pin, 5000) else core.unlink(pin) end
    core.unlink(self.paths.names .. "/" .. name)
  end
end

--- What a status report says, as a table (stable keys, see the README).
function Netns:status()
  local ok, err = self:_open()
  if not ok then return nil, err end
  local p = self.paths
  local lock, lerr, lcode, lstage, lsig = self:_lock("sh")
  if not lock then return nil, lerr, lcode, lstage, lsig end
  local rec = state.read_json(p.holder)
  local h = rec and state.valid_identity(rec) and core.alive(rec.pid, rec.starttime) and rec or nil
  local out = {
    up = false,
    state_dir = p.base,
    pin = p.pin,
    holder = { pid = h and h.pid or cjson.null, alive = h ~= nil },
    backend = { name = cjson.null, pid = cjson.null, alive = false },
    refs = { nets = 0, runs = 0 },
  }
  local entered = self:_enter_holder(false)
  local live = entered and core.nsfs(p.pin) or false
  local brec = state.read_json(p.backend)
  if brec and (brec.noprocess or state.valid_identity(brec)) then
    out.backend = { name = brec.name, pid = brec.pid or cjson.null,
      alive = self:_backend_alive(brec) }
  end
  local nets = state.read_count(p.refcount)
  out.refs = { nets = nets, runs = state.live_refs(p), connections = live and state.connections(p) or 0 }
  out.up = live == true and out.backend.alive
  out.netns = live == true
  lock:close()
  return out
end

--- Addresses, DNS forwarders and map-guest addresses (podman's keys), with
-- the backend's name and pid.
function Netns:info()
  local st, err, code, stage, sig = self:status()
  if not st then return nil, err, code, stage, sig end
  if not st.up then
    return nil, "the rootless netns is not set up (run `rootlessnetns setup` first)", errno.ENOENT
  end
  local info, ierr = state.read_json(self.paths.info)
  if not info then
    log.warn("%s", ierr or ("`" .. self.paths.info .. "` is missing"))
    info = {}
  end
  local brec = state.read_json(self.paths.backend)
  local custom = brec and self:_custom_backend(brec)
  if custom and custom.info then
    -- a custom backend may report fresher addresses than info.json
    local ok, fresh = pcall(custom.info, brec, self:_hook_ctx())
    if ok and type(fresh) == "table" then
      for k, v in pairs(fresh) do info[k] = v end
    end
  end
  return {
    IPAddresses = info.IPAddresses or cjson.null,
    DnsForwardIps = info.DnsForwardIps or cjson.null,
    MapGuestIps = info.MapGuestIps or cjson.null,
    backend = st.backend.name,
    backend_pid = st.backend.pid,
    holder_pid = st.holder.pid,
    refs = st.refs,
  }
end

worker.wrap(Netns, { "setup", "teardown", "run", "status", "info", "cleanup" })

-- for the named namespaces of rootlessnetns.lab, which run commands the same way
M._check_cmd, M._resolve_command, M._finish_child = check_cmd, resolve_command, finish_child

return M
