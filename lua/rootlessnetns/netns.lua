--- The rootless network namespace: setup, teardown, run, info, status,
-- cleanup.  This is the flow of podman's rootless netns, with references
-- that are records of live processes, backend identity by pid + start
-- time, and recovery from every crash point.
--
--   local netns = require "rootlessnetns.netns"
--   local ns = assert(netns.new { backend = "slirp4netns" })
--   local how, code = ns:run { "ip", "addr" }
--
-- Every method returns its result, or nil, message[, errno[, stage]].
-- Each runs in a forked worker (rootlessnetns.worker) that joins the
-- holder's user and mount namespaces: the calling process's namespaces,
-- fds, signal dispositions and cwd never change, so a long-lived program
-- survives anyone's `cleanup`.  The CLI, which exits when it is done,
-- joins in-process (`in_process = true`) and saves the fork.
--
-- Where things are decided: rootlessnetns.session (state directory, lock,
-- holder), rootlessnetns.instance (get-or-create, backend, cleanup),
-- rootlessnetns.refs (who keeps it up, the last one out), and
-- rootlessnetns.inside (how a command gets in).  This file is the order
-- in which each method does those.
local core = require "rootlessnetns"
local config = require "rootlessnetns.config"
local holder = require "rootlessnetns.holder"
local inside = require "rootlessnetns.inside"
local instance = require "rootlessnetns.instance"
local log = require "rootlessnetns.log"
local refs = require "rootlessnetns.refs"
local session = require "rootlessnetns.session"
local ports = require "rootlessnetns.ports"
local prepared = require "rootlessnetns.prepared"
local reaper = require "rootlessnetns.reaper"
local state = require "rootlessnetns.state"
local worker = require "rootlessnetns.worker"

local errno = core.errno

local M = {}

local Netns = {}
Netns.__index = Netns
M.Netns = Netns

M.LAB_VETH_PREFIX = instance.LAB_VETH_PREFIX

-- Options of the handle itself; every other key is a configuration key.
local HANDLE_OPTIONS = { config = true, getenv = true, signals = true, in_process = true, warm = true }

--- Create a handle.  Nothing is touched on disk until a method runs.
-- @tparam[opt] table opts configuration keys (see the README), plus
--   `config` (a path to load first), `getenv` (for tests), `signals`
--   (a Signals object of core.block_signals: each of them ends every wait
--   for the lock, and methods then fail with stage "signal") and
--   `in_process` (join the holder in this process: for a process that
--   exits once the method returns, such as the CLI) and `warm` (the CLI's
--   plain `run`: {config = the default config file or nil}; its runs
--   prepare what warm runs use, see rootlessnetns.warm)
-- @treturn[1] Netns
-- @return[2] nil, message
function M.new(opts)
  opts = opts or {}
  local overrides, cfg = {}, nil
  for k, v in pairs(opts) do
    if not HANDLE_OPTIONS[k] then overrides[k] = v end
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
    local ok, berr = require("rootlessnetns.backends").resolve(cfg)
    if not ok then return nil, berr end
  end
  return setmetatable({ cfg = cfg, getenv = opts.getenv or os.getenv, signals = opts.signals,
    in_process = opts.in_process == true, config_path = opts.config, warm = opts.warm }, Netns)
end

--- Run @argv inside the rootless netns with the lock released: a
-- reference record of its process keeps the namespace up meanwhile, so
-- the command may call rootlessnetns itself.  Session @s is locked on
-- entry and, unless it could not be taken again, on return.  Given a
-- mount keeper @keeper (rootlessnetns.prepared), the command joins its
-- mount namespace instead of applying @plan.
-- @return how, status (or nil, message, errno, stage)
local function run_counted(s, argv, env, plan, signals, keeper)
  local proc, report, go = inside.spawn(s.paths.pin, argv, env, plan, { held = true, keeper = keeper })
  if not proc then return nil, report, go end
  -- recorded before it runs: a command we cannot count does not run
  local rec, rerr = refs.add_run(s.paths, proc)
  go(rec ~= nil)
  if not rec then
    proc:wait()
    report:close()
    return nil, ("cannot record the command's reference, so it was not run: %s"):format(rerr)
  end
  core.fault_point("run-ref-added")
  s:unlock()
  local how, status, ecode, stage = inside.finish(proc, report, signals)
  core.fault_point("run-command-done")
  if s:relock() then refs.remove_run(s.paths, rec) end
  return how, status, ecode, stage
end

--- Run @cmd inside while holding a reference; the lock is released while
-- it runs, so other commands go on.  The reference is a record of the
-- command's own process, so a SIGKILLed caller leaks nothing.
-- @tparam table|function cmd argv list, or a Lua function run in the child
-- @tparam[opt] table opts {env = {...}, signals = Signals (forwarded)}
-- @treturn[1] string "exited" or "signaled"
-- @treturn[1] int status or signal
-- @return[2] nil, message, errno, stage ("setup", "exec", "function", "signal")
function Netns:run(cmd, opts)
  opts = opts or {}
  local ok, err = inside.check_cmd(cmd)
  if not ok then return nil, err, errno.EINVAL, "usage" end
  -- What needs no lock is done before taking it: parallel runs wait less,
  -- and a command that is not found creates nothing.
  ok, err = session.open(self)
  if not ok then return nil, err end
  local argv, aerr, acode = inside.resolve_command(cmd)
  if not argv then return nil, aerr, acode, "exec" end
  local plan, perr = instance.plan(self)
  if not plan then return nil, perr end
  local s <close>, serr, scode, sstage, ssig = session.begin(self, true)
  if not s then return nil, serr, scode, sstage, ssig end
  local up, uerr, ucode, ustage, usig = instance.get_or_create(self, s.holder)
  if not up then return nil, uerr, ucode, ustage, usig end
  -- the mount plan applied once, in a kept namespace this run joins
  local pok, keeper, wcode, wstage, wsig = prepared.ensure(self, plan, s.holder, state.read_json(self.paths.backend))
  if not pok then
    refs.clean_up_if_unused(self)
    return nil, keeper, wcode, wstage, wsig
  end
  local how, status, ecode, stage = run_counted(s, argv, opts.env, plan, opts.signals, keeper)
  if s.lock then
    local cok, cerr = refs.clean_up_if_unused(self)
    if not cok then log.warn("%s", cerr) end
  end
  return how, status, ecode, stage
end

--- setup's and teardown's `-- CMD`: run it counted, and turn its failure
-- into one.
-- @treturn[1] true when the command exited 0
-- @return[2] nil, message, errno, stage, how, status
local function run_step(s, cmd)
  local plan, perr = instance.plan(s.ns)
  if not plan then return nil, perr end
  local argv, aerr, acode = inside.resolve_command(cmd)
  if not argv then return nil, aerr, acode, "exec" end
  local how, status, ecode, stage = run_counted(s, argv, nil, plan, s.ns.signals)
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

--- What setup and teardown check before they take the lock.
local function check_counted(nets, cmd)
  local n, nerr = check_nets(nets)
  if not n then return nil, nerr, errno.EINVAL, "usage" end
  if cmd ~= nil then
    local ok, err = inside.check_cmd(cmd)
    if not ok then return nil, err, errno.EINVAL, "usage" end
  end
  return n
end

--- Create if needed, run @cmd inside, publish `opts.publish` (a list of
-- port specs; one already published alike is kept), then count @nets
-- more users.  The count grows only when everything succeeded; a
-- namespace created by this call is removed again when a step fails.
-- @treturn[1] true
-- @return[2] nil, message
function Netns:setup(nets, cmd, opts)
  local n, nerr, ncode, nstage = check_counted(nets, cmd)
  if not n then return nil, nerr, ncode, nstage end
  local publish, perr, pcode = ports.parse_all(opts and opts.publish or {}, true)
  if not publish then return nil, perr, pcode, "usage" end
  local s <close>, serr, scode, sstage, ssig = session.begin(self, true)
  if not s then return nil, serr, scode, sstage, ssig end
  local up, uerr, ucode, ustage, usig = instance.get_or_create(self, s.holder)
  if not up then return nil, uerr, ucode, ustage, usig end
  if cmd ~= nil then
    local rok, rerr, code, stage, how, status = run_step(s, cmd)
    if not rok then
      -- last one out: a namespace nobody else took up meanwhile goes
      if s.lock then refs.clean_up_if_unused(self) end
      return nil, rerr, code, stage, how, status
    end
    if not s.lock then return nil, "setup: cannot take the lock again after the command" end
  end
  if #publish > 0 then
    local ok, err, code = ports.publish_all(self, ports.target(self), s.holder, publish)
    if not ok then
      refs.clean_up_if_unused(self)
      return nil, err, code
    end
  end
  core.fault_point("setup-before-count")
  return refs.add_nets(self.paths, n)
end

--- Run @cmd inside, then count @nets fewer users; clean up at zero.  A
-- failed command leaves the count alone (the caller retries).  Never
-- starts a backend: tearing down a namespace whose backend died works.
function Netns:teardown(nets, cmd)
  local n, nerr, ncode, nstage = check_counted(nets, cmd)
  if not n then return nil, nerr, ncode, nstage end
  local s <close>, serr, scode, sstage, ssig = session.begin(self, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local live = s.holder and core.nsfs(self.paths.pin)
  if live and cmd ~= nil then
    local rok, rerr, code, stage, how, status = run_step(s, cmd)
    if not s.lock then return nil, "teardown: cannot take the lock again after the command" end
    if not rok then return nil, rerr, code, stage, how, status end
    -- the command may have torn it down itself (a nested cleanup)
    live = core.nsfs(self.paths.pin)
  end
  core.fault_point("teardown-before-count")
  if not live then
    -- Nothing live: whatever is left is stale, an orphaned backend of a
    -- dead holder included.
    return instance.cleanup(self)
  end
  local ok, err = refs.drop_nets(self.paths, n)
  if not ok then return nil, err end
  return refs.clean_up_if_unused(self)
end

--- Remove the namespace whatever the count says; with `holder = true`
-- also stop the holder.  Idempotent.
function Netns:cleanup(opts)
  opts = opts or {}
  local s <close>, serr, scode, sstage, ssig = session.begin(self, false)
  if not s then return nil, serr, scode, sstage, ssig end
  local ok, err = instance.cleanup(self)
  instance.reap_orphans(self, true)
  if opts.holder and (not s.holder or s.holder.mode == "own") then
    -- named namespaces live in the holder's mounts and go with it
    ports.forget_all(self)
    instance.forget_named(self)
    holder.stop(self.paths)
  end
  return ok, err
end

local NOT_SET_UP = "the rootless netns is not set up (`rootlessnetns setup --publish SPEC` publishes as it sets up)"

-- The rootless netns, for a port command: the session, its holder, the
-- target; or why not.
local function port_target(self)
  local s, serr, scode, sstage, ssig = session.begin(self, false)
  if not s then return nil, serr, scode, sstage, ssig end
  if not (s.holder and core.nsfs(self.paths.pin)) then
    s:unlock()
    return nil, NOT_SET_UP, errno.ENOENT
  end
  ports.tend(self, s.holder, function(t) return core.nsfs(t.pin) == true end)
  return s, ports.target(self)
end

--- Publish ports of the rootless netns on the host, while everything
-- runs: each `[HOSTIP:]HOSTPORT[:PORT][/tcp|/udp]` (HOSTIP 127.0.0.1
-- unless given), all or none.  A forward lives as long as the namespace;
-- it holds no reference of its own.
-- @tparam string|table spec a spec, or a list of them
-- @treturn[1] table the port {id, spec, proto, host_ip, host_port, inside_port} (a list of them for a list)
-- @return[2] nil, message, errno (EEXIST, EADDRINUSE, EACCES, EINVAL, ENOENT)
function Netns:publish(spec)
  local list, perr, pcode = ports.parse_all(spec)
  if not list then return nil, perr, pcode end
  local s <close>, t, code, stage, sig = port_target(self)
  if not s then return nil, t, code, stage, sig end
  local ok, err, ecode, estage, esig = ports.publish_all(self, t, s.holder, list, true)
  if not ok then return nil, err, ecode, estage, esig end
  if type(spec) == "table" then return list end
  return list[1]
end

--- Stop publishing ports (their host side: `8080`, `[::1]:8080/udp`),
-- all or none.  Other forwards and their connections go on.
-- @tparam string|table spec a spec, or a list of them
-- @treturn[1] true
-- @return[2] nil, message, errno (ENOENT: not published)
function Netns:unpublish(spec)
  local list, perr, pcode = ports.parse_all(spec)
  if not list then return nil, perr, pcode end
  local s <close>, t, code, stage, sig = port_target(self)
  if not s then return nil, t, code, stage, sig end
  return ports.unpublish_all(self, t, s.holder, list)
end

--- The published ports of the rootless netns (none when it is down); a
-- forward its forwarder has that no record names is removed.
-- @treturn[1] table list of {spec, proto, host_ip, host_port, inside_port, forwarding, connections}
-- @return[2] nil, message, errno[, stage, signal number] (the lock's wait ended by a signal, say)
function Netns:ports()
  local s <close>, t, code, stage, sig = port_target(self)
  if not s then
    if t == NOT_SET_UP then return {} end
    return nil, t, code, stage, sig
  end
  return ports.list(t, true)
end

--- What a status report says, as a table (stable keys, see the README).
function Netns:status()
  local ok, err = session.open(self)
  if not ok then return nil, err end
  local p = self.paths
  local lock <close>, lerr, lcode, lstage, lsig = session.lock(self, "sh")
  if not lock then return nil, lerr, lcode, lstage, lsig end
  -- first: a holder that lost its record is found and adopted (a holder
  -- that cannot be joined is reported as such, not as a failure)
  local entered, oerr, ocode, _, _, refused = session.enter(self, false)
  if refused then return nil, oerr, ocode end
  local kind = session.mode_of(self, entered) or "current"
  local h
  if kind == "own" then
    local rec = state.read_json(p.holder)
    h = rec and state.valid_identity(rec) and core.alive(rec.pid, rec.starttime) and rec or nil
  else
    -- podman's pause process, when that is where we are
    h = entered and entered.pid and entered or nil
  end
  local out = {
    up = false,
    state_dir = p.base,
    pin = p.pin,
    holder = { pid = h and h.pid or nil, alive = h ~= nil, kind = kind },
    backend = { alive = false },
    refs = { nets = 0, runs = 0 },
  }
  local live = entered and core.nsfs(p.pin) or false
  local brec = state.read_json(p.backend)
  if brec and (brec.noprocess or state.valid_identity(brec)) then
    out.backend = { name = brec.name, pid = brec.pid,
      alive = instance.backend_alive(self, brec) }
  end
  local nets = state.read_count(p.refcount)
  out.refs = { nets = nets, runs = state.live_refs(p), connections = live and state.connections(p) or 0 }
  if live and nets == 0 and out.refs.connections == 0 and out.refs.runs > 0 then
    -- warm runs left with nobody to clean up after them (a killed reaper)
    reaper.ensure(self)
  end
  out.up = live == true and out.backend.alive
  out.netns = live == true
  out.ports = live and ports.list(ports.target(self)) or {}
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
  local info, ierr = state.read_info(self.paths)
  if ierr then log.warn("%s", ierr) end
  local brec = state.read_json(self.paths.backend)
  local custom = brec and instance.custom_backend(self, brec)
  if custom and custom.info then
    -- a custom backend may report fresher addresses than info.json
    local ok, fresh = pcall(custom.info, brec, instance.hook_ctx(self))
    if ok and type(fresh) == "table" then
      for _, key in ipairs(state.INFO_KEYS) do
        if state.list_of_strings(fresh[key]) then info[key] = fresh[key] end
      end
    end
  end
  return {
    IPAddresses = info.IPAddresses,
    DnsForwardIps = info.DnsForwardIps,
    MapGuestIps = info.MapGuestIps,
    backend = st.backend.name,
    backend_pid = st.backend.pid,
    holder_pid = st.holder.pid,
    holder_kind = st.holder.kind,
    refs = st.refs,
    ports = st.ports,
  }
end

worker.wrap(Netns, { "setup", "teardown", "run", "status", "info", "cleanup", "publish", "unpublish", "ports" })

return M
