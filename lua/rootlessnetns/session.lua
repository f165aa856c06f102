--- One operation's session: the state directory, the lock, the holder.
--
--   local s <close>, err, code, stage, signo = session.begin(ns, may_create)
--   ...                  -- s.holder: the joined holder, or false (none)
--   s:unlock()           -- while a user's command runs
--   s:relock()           -- once it has ended
--
-- The state directory is checked before anything is joined, so its
-- ownership checks see real ids.  The lock is a `<close>` variable of the
-- operation: no path, an error included, can leave it to the GC.  A
-- signal the handle watches (`ns.signals`) ends the wait for the lock,
-- and the failure then carries stage "signal" and the signal number.
local core = require "rootlessnetns"
local holder = require "rootlessnetns.holder"
local log = require "rootlessnetns.log"
local state = require "rootlessnetns.state"

local errno = core.errno

local M = {}

--- Linux's PATH_MAX, and room for the names we put below the deepest
-- directory we make.
-- @field PATH_MAX
-- @field PATH_SLACK
M.PATH_MAX, M.PATH_SLACK = 4096, 128

-- The holder this process joined: in-process handles only (the CLI).
-- setns into the same user namespace twice fails, and once in, we stay.
local joined

--- Resolve and check the state directory of @ns (once per handle).
function M.open(ns)
  if ns.paths then return true end
  local uid, gid = core.getuid()
  ns.ids = { uid = uid, gid = gid }
  local runtime_dir, err = state.runtime_dir(ns.getenv, uid)
  if not runtime_dir then return nil, err end
  ns.runtime_dir = runtime_dir
  -- where named namespaces are pinned (podman's directory for its own)
  ns.named_dir = runtime_dir .. "/netns"
  local base = ns.cfg.state_dir or (runtime_dir .. "/rootlessnetns")
  -- The commands' /run keeps $XDG_RUNTIME_DIR at its own path, inside our
  -- directory: the longest path we make is both end to end.  Refused
  -- here, before anything is made, not at every run.
  local longest = #base + #"/rootless-netns/run" + #runtime_dir + M.PATH_SLACK
  if longest > M.PATH_MAX then
    return nil, ("XDG_RUNTIME_DIR `%s...` is %d characters long: the paths made inside it would pass "
      .. "PATH_MAX (%d); use a shorter one"):format(runtime_dir:sub(1, 40), #runtime_dir, M.PATH_MAX)
  end
  local ok, perr = state.prepare_base(base, uid)
  if not ok then return nil, perr end
  ns.paths = state.paths(base)
  return true
end

--- Take the state lock of @ns.  With signals to watch (unless
-- `uninterruptible`), the wait polls: a signal ends it at once (flock
-- itself cannot be woken by a blocked one).
-- @tparam Netns ns the handle whose state directory is locked
-- @tparam[opt="ex"] string mode "ex" or "sh"
-- @tparam[opt] boolean uninterruptible wait as flock(2) does, whatever the signals
-- @treturn[1] Lock
-- @return[2] nil, message, errno (EINTR), "signal", the signal number
function M.lock(ns, mode, uninterruptible)
  return M.lock_file(ns, ns.paths.lock, mode, uninterruptible)
end

--- Take the lock file @path as M.lock takes the state's; @waiting_for
-- says in the message what a signal ended the wait for (default: the
-- file).
function M.lock_file(ns, path, mode, uninterruptible, waiting_for)
  local t0 = core.clock()
  local lock, err, code
  if ns.signals and not uninterruptible then
    local pause = 1
    while true do
      lock, err, code = core.flock(path, mode or "ex", true)
      if lock or code ~= errno.EWOULDBLOCK then break end
      local sig = ns.signals:wait(pause)
      if sig then
        return nil, ("interrupted by signal %d while waiting for %s"):format(sig, waiting_for or ("`" .. path .. "`")),
          errno.EINTR, "signal", sig
      end
      pause = math.min(pause * 2, 20)
    end
  else
    lock, err, code = core.flock(path, mode or "ex")
  end
  if not lock then return nil, err, code end
  log.debug("locked `%s` (%s) after %.2f ms", path, mode or "ex", (core.clock() - t0) * 1000)
  return lock
end

--- Join (or, when @may_create, create) the holder.  Lock held.
-- @treturn[1] table the holder {mode, pid, starttime, created, replaced}
-- @treturn[2] false when there is none and none may be made
-- @return[3] nil, message[, errno, "signal", signal number]
function M.enter_holder(ns, may_create)
  if joined and joined.mode ~= "own" then return joined end
  if joined and joined.mode == "own" then
    if core.alive(joined.pid, joined.starttime) then return joined end
    return nil, "the holder this process joined has died; start a new process"
  end
  if not may_create and ns.cfg.userns == "auto" and not holder.in_child_userns() then
    -- none recorded, and none running that lost its record (a holder
    -- keeps the state dir as its fd 3): there is nothing to join
    if not holder.recorded(ns.paths) and #holder.find_running(ns.paths.base) == 0 then return false end
  end
  if not may_create and ns.cfg.userns == "podman" and not holder.podman_pause(ns.runtime_dir) then
    return false -- (whatever lived in a dead pause is gone: tend_dead_owner)
  end
  local t0 = core.clock()
  local h, err, code, signo = holder.ensure(ns.paths, ns.ids, ns.cfg,
    { runtime_dir = ns.runtime_dir, signals = ns.signals })
  if not h then
    if signo then return nil, err, code, "signal", signo end
    return nil, err
  end
  log.debug("%s holder %s (%s) in %.2f ms", h.created and "created and joined" or "joined",
    tostring(h.pid or "-"), h.mode, (core.clock() - t0) * 1000)
  joined = h
  return h
end

--- Which holder's mount namespace a command of @ns uses: "own", "podman"
-- or "current"; @h, once joined.  Before, nil when only joining can tell
-- (a command we run, already inside our namespaces).
function M.mode_of(ns, h)
  if h then return h.mode end
  if joined then return joined.mode end
  if ns.cfg.userns == "podman" then return "podman" end
  if ns.cfg.userns == "current" or holder.in_child_userns() then return nil end
  return "own"
end

local OWNERS = {
  own = "rootlessnetns' own holder",
  podman = "podman's pause process (userns = \"podman\")",
  current = "the namespaces of the command that made it (userns = \"current\")",
}
local OWNER_FIX = {
  own = "drop userns = \"%s\", or remove it first (`rootlessnetns cleanup`)",
  podman = "use a config with userns = \"podman\", or remove it with one first (`rootlessnetns --config FILE cleanup`)",
  current = "run it from where it was made, or remove it from there first",
}

--- Words for where pins live (a mode of mode_of).
function M.owner_text(mode) return OWNERS[mode] end

--- The pins live in one holder's mount namespace; a command that would
-- look for them in another sees no namespace and would rebuild over a
-- live one.  Refuse it, naming both and the fix.
function M.check_owner(ns, mode)
  if not mode then return true end
  local built = state.read_json(ns.paths.built)
  local have = type(built) == "table" and built.holder
  if not OWNERS[have] or have == mode then return true end
  return nil, ("the rootless netns lives in %s, not in %s, which this command uses; " .. OWNER_FIX[have])
    :format(OWNERS[have], OWNERS[mode], ns.cfg.userns), errno.EBUSY
end

--- The pause process the namespace was made in (userns = "podman") is
-- gone, and the namespace went with it: keep its backend while processes
-- of ours are still inside, else stop it, and remove what is left.
local function tend_dead_pause(ns, built)
  if not state.valid_identity { pid = built.holder_pid, starttime = built.holder_starttime }
    or core.alive(built.holder_pid, built.holder_starttime) then
    return
  end
  local instance = require "rootlessnetns.instance"
  local kept = instance.keep_orphaned_backend(ns)
  ns.orphaned = kept
  log.warn("podman's pause process %d died, and the rootless netns in it with it; %s", built.holder_pid,
    kept and instance.kept_text(kept) or "its backend is stopped")
  local ok, err = instance.cleanup(ns)
  if not ok then log.warn("%s", err) end
end

--- Before the holder is joined, while every process of ours can be seen
-- (from outside our user namespaces): when the holder the namespace
-- lives in died with processes still inside, keep their backend; stop
-- the kept backends whose namespace is empty now (whichever command
-- notices).  Whatever mode this command is in: these are facts.
function M.tend_orphans(ns)
  if joined or holder.in_child_userns() then return end
  local instance = require "rootlessnetns.instance"
  local built = state.read_json(ns.paths.built)
  local owner = type(built) == "table" and built.holder or "own"
  if owner == "podman" then
    tend_dead_pause(ns, built)
  elseif owner == "own" and not holder.recorded(ns.paths) and #holder.find_running(ns.paths.base) == 0 then
    ns.orphaned = instance.keep_orphaned_backend(ns)
  end
  instance.reap_orphans(ns)
end

--- What every operation does once it holds the lock: tend what a dead
-- holder left, then join the holder (creating it only when @may_create),
-- refusing a command whose mode would not find the pins: before joining
-- when its config tells, after when only joining can.
-- @treturn[1] table|false the holder, or false (none, and none may be made)
-- @return[2] nil, message, errno, stage, signal number; and true when it
--   was the owner check that refused
function M.enter(ns, may_create)
  M.tend_orphans(ns)
  local ok, err, code = M.check_owner(ns, M.mode_of(ns))
  if not ok then return nil, err, code, nil, nil, true end
  local h, herr, hcode, hstage, hsig = M.enter_holder(ns, may_create)
  if h == nil then return nil, herr, hcode, hstage, hsig end
  ok, err, code = M.check_owner(ns, M.mode_of(ns, h))
  if not ok then return nil, err, code, nil, nil, true end
  return h
end

local Session = {}
Session.__index = Session

--- Release the lock (idempotent): before a user's command runs, and by
-- `<close>` when the session ends.
function Session:unlock()
  if self.lock then self.lock:close() end
  self.lock = nil
end
Session.__close = Session.unlock

--- Take the lock again once a user's command has ended.  Not
-- interruptible: what the command's end leaves to do (its reference, the
-- cleanup at zero) is done whatever signal arrives now.
function Session:relock()
  local lock, err = M.lock(self.ns, nil, true)
  self.lock = lock
  return lock ~= nil, err
end

--- What every operation starts with: check the state directory, take
-- the lock, join the holder.
-- @tparam Netns ns the handle
-- @tparam boolean may_create create the holder when there is none
--   (teardown, cleanup and status never do)
-- @tparam[opt="ex"] string mode the lock's mode, "ex" or "sh"
-- @treturn[1] Session {ns, paths, lock, holder}
-- @return[2] nil, message, errno, stage, signal number
function M.begin(ns, may_create, mode)
  local ok, err = M.open(ns)
  if not ok then return nil, err end
  local lock, lerr, lcode, lstage, lsig = M.lock(ns, mode)
  if not lock then return nil, lerr, lcode, lstage, lsig end
  local h, herr, hcode, hstage, hsig = M.enter(ns, may_create)
  if h == nil then
    lock:close()
    return nil, herr, hcode, hstage, hsig
  end
  return setmetatable({ ns = ns, paths = ns.paths, lock = lock, holder = h }, Session)
end

return M
