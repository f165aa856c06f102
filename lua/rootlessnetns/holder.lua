--- The holder: the user + mount namespace the netns pin lives in.
--
-- Every command joins it (setns user, then mount: Lua is single threaded,
-- which setns(CLONE_NEWUSER) requires) or creates it.  Joining changes the
-- calling process's user and mount namespaces, as podman's commands do;
-- its network namespace never changes.
local core = require "rootlessnetns"
local log = require "rootlessnetns.log"
local procs = require "rootlessnetns.procs"
local state = require "rootlessnetns.state"

local M = {}

local errno = core.errno

--- Parse /etc/subuid-style text: ranges for @user (name or numeric id).
function M.parse_subids(text, user, id)
  local ranges = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local name, start, count = line:match("^%s*([^:#%s][^:]*):(%d+):(%d+)%s*$")
    if name and (name == user or name == tostring(id)) then
      ranges[#ranges + 1] = { start = math.tointeger(tonumber(start)), count = math.tointeger(tonumber(count)) }
    end
  end
  table.sort(ranges, function(a, b) return a.start < b.start end)
  return ranges
end

--- newuidmap/newgidmap arguments: 0 -> own id, then the ranges from 1 on.
function M.map_args(pid, own, ranges)
  local args = { tostring(pid), "0", tostring(own), "1" }
  local next_id = 1
  for _, r in ipairs(ranges) do
    if own >= r.start and own < r.start + r.count then
      return nil, ("subordinate range %d:%d includes the user's own id %d"):format(r.start, r.count, own)
    end
    args[#args + 1] = tostring(next_id)
    args[#args + 1] = tostring(r.start)
    args[#args + 1] = tostring(r.count)
    next_id = next_id + r.count
  end
  return args
end

local read_text = state.read_host_file

--- Run the setuid helpers side by side (they write independent maps):
-- a cold start waits for the slower one, not for both in turn.  Each may
-- take 10 s; a signal of @signals ends the wait (and the helpers).
-- @return[2] nil, message[, EINTR, signal number]
local function run_helpers(argvs, signals)
  local running = {}
  local function stop_all()
    for _, h in ipairs(running) do
      if not h.done then
        h.proc:kill(core.SIGKILL)
        h.proc:wait()
        h.out:close()
      end
    end
  end
  for i, argv in ipairs(argvs) do
    local r, w = core.pipe()
    local proc, err = core.spawn { argv = argv, fds = { [0] = false, [1] = w, [2] = w } }
    w:close()
    if not proc then
      r:close()
      stop_all()
      return nil, err
    end
    running[i] = { proc = proc, out = r, name = argv[1] }
  end
  local failure
  for _, h in ipairs(running) do
    local how, code, wcode, signo = h.proc:wait(10000, signals, "interrupt")
    if not how then
      stop_all()
      if signo then return nil, ("interrupted by signal %d while %s ran"):format(signo, h.name), wcode, signo end
      return nil, ("%s: %s"):format(h.name, code)
    end
    -- (their messages are short: they are in the pipe by now)
    local output = h.out:read(65536, 0) or ""
    h.out:close()
    h.done = true
    if not failure and (how ~= "exited" or code ~= 0) then
      output = output:gsub("%s+$", "")
      failure = ("%s failed: %s"):format(h.name, output ~= "" and output or (how .. " " .. tostring(code)))
    end
  end
  if failure then return nil, failure end
  return true
end

--- Write the id maps of a fresh holder.
local function write_maps(pid, ids, ctx)
  -- /etc/subuid names users by name or by uid
  ids.name = ids.name or procs.user_name(ids.uid)
  local uid_ranges = M.parse_subids(read_text(ctx.subuid or "/etc/subuid"), ids.name, ids.uid)
  local gid_ranges = M.parse_subids(read_text(ctx.subgid or "/etc/subgid"), ids.name, ids.uid)
  if #uid_ranges > 0 and #gid_ranges > 0 then
    local uargs, uerr = M.map_args(pid, ids.uid, uid_ranges)
    if not uargs then return nil, uerr end
    local gargs, gerr = M.map_args(pid, ids.gid, gid_ranges)
    if not gargs then return nil, gerr end
    table.insert(uargs, 1, "newuidmap")
    table.insert(gargs, 1, "newgidmap")
    local ok, err, code, signo = run_helpers({ uargs, gargs }, ctx.signals)
    if signo then return nil, err, code, signo end
    if not ok then
      return nil, err .. " (is the uidmap package installed, with newuidmap setuid root?)"
    end
    return true
  end
  log.warn("no subordinate id ranges for user %s in /etc/subuid and /etc/subgid;"
    .. " using a single mapping (only uid/gid 0 exist inside)", ids.name or ids.uid)
  local ok, err = core.write_idmap(pid, "setgroups", "deny")
  if ok then ok, err = core.write_idmap(pid, "uid_map", ("0 %d 1\n"):format(ids.uid)) end
  if ok then ok, err = core.write_idmap(pid, "gid_map", ("0 %d 1\n"):format(ids.gid)) end
  return ok, err
end

local function userns_hint(err, code)
  if code == errno.EPERM or code == errno.ENOSPC or code == errno.EUSERS or code == errno.EINVAL then
    return err .. " (are unprivileged user namespaces enabled? check sysctl user.max_user_namespaces"
      .. " and kernel.unprivileged_userns_clone; on Ubuntu, kernel.apparmor_restrict_unprivileged_userns)"
  end
  return err
end

--- Join the user and mount namespaces of @pid (verified by start time);
-- with @mount_only, only its mount namespace (we are in its user
-- namespace already).
function M.join(pid, starttime, mount_only)
  local proc, err, perr = core.process(pid)
  if not proc then return nil, err, perr end
  if starttime then
    local st = core.starttime(pid)
    if st ~= starttime then
      proc:close()
      return nil, ("holder %d is gone"):format(pid), errno.ESRCH
    end
  end
  local cwd = core.getcwd()
  local ok, serr, code
  local pidfd = proc:fileno()
  if pidfd then
    -- one atomic setns through the pidfd: both namespaces of that very process
    ok, serr, code = core.setns(pidfd, mount_only and core.CLONE_NEWNS or (core.CLONE_NEWUSER | core.CLONE_NEWNS))
  elseif mount_only then
    local mnt = core.ns_open(pid, "mnt")
    if starttime and core.starttime(pid) ~= starttime then mnt = nil end
    ok, serr, code = mnt and core.setns(mnt, core.CLONE_NEWNS), "holder vanished", errno.ESRCH
    if mnt then mnt:close() end
  else
    -- no pidfds here (valgrind, old kernels): the namespace files, user first
    local user, mnt = core.ns_open(pid, "user"), core.ns_open(pid, "mnt")
    if starttime and core.starttime(pid) ~= starttime then user, mnt = nil, nil end
    ok, serr, code = user and mnt and core.setns(user, core.CLONE_NEWUSER), "holder vanished", errno.ESRCH
    if ok then ok, serr, code = core.setns(mnt, core.CLONE_NEWNS) end
    if user then user:close() end
    if mnt then mnt:close() end
  end
  proc:close()
  if not ok then return nil, ("join holder %d: %s"):format(pid, serr), code end
  -- setns(CLONE_NEWNS) moved us to the namespace's root; go back by path.
  if cwd then core.chdir(cwd) end
  return true
end

M.COMM = "rlns-holder"

--- Running holders of the state directory @base, found without records:
-- a holder keeps @base open as its fd 3.
-- @treturn table list of {pid, starttime}
function M.find_running(base)
  return procs.ours(function(pid, comm)
    return comm == M.COMM and core.readlink(("/proc/%d/fd/3"):format(pid)) == base
  end)
end

--- Create a holder and record it.  Called with the state lock held.
function M.create(p, ids, ctx)
  local pid, ctl, code
  local basefd = core.open(p.base, "path")
  pid, ctl, code = core.holder_start(M.COMM, basefd)
  if basefd then basefd:close() end
  if not pid then return nil, userns_hint("create the holder: " .. ctl, code) end
  core.fault_point("holder-created")
  local ok, err, ecode, signo = write_maps(pid, ids, ctx)
  if ok then ok, err = core.holder_release(ctl) end
  ctl:close()
  local starttime = ok and core.starttime(pid)
  if not starttime then
    core.kill(pid, core.starttime(pid) or 0, core.SIGKILL)
    local proc = core.process(pid)
    if proc then proc:wait(1000) end
    if signo then return nil, err, ecode, signo end
    return nil, "create the holder: " .. tostring(err or "holder exited")
  end
  ok, err = state.write_json(p.holder, { pid = pid, starttime = starttime })
  if not ok then
    core.kill(pid, starttime, core.SIGKILL)
    return nil, err
  end
  core.fault_point("holder-recorded")
  return { pid = pid, starttime = starttime }
end

--- The recorded holder, if it is still alive.
-- @treturn table|nil {pid, starttime}
-- @treturn string|nil a warning about a damaged holder.json
function M.recorded(p)
  local rec, err = state.read_json(p.holder)
  if rec and state.valid_identity(rec) and core.alive(rec.pid, rec.starttime) then
    return rec
  end
  if rec and not state.valid_identity(rec) then
    err = ("`%s`: not a holder record; replacing it"):format(p.holder)
  end
  return nil, err
end

--- Is this process root of a user namespace other than the initial one?
function M.in_child_userns()
  local text = read_text("/proc/self/uid_map") or ""
  local inside, outside, count = text:match("^%s*(%d+)%s+(%d+)%s+(%d+)")
  if not inside then return false end
  local initial = inside == "0" and outside == "0" and count == "4294967295"
  return not initial and core.getuid() == 0
end

--- Is this process in the user namespace of process @pid?
function M.in_userns_of(pid)
  local mine = core.readlink("/proc/self/ns/user")
  return mine ~= nil and mine == core.readlink(("/proc/%d/ns/user"):format(pid))
end

-- What podman's pause process is called: catatonit when installed,
-- podman itself otherwise.
local PAUSE_COMMS = { ["catatonit\n"] = true, ["podman\n"] = true, ["podman pause\n"] = true }

--- podman's pause process (userns = "podman"): named by its pid file,
-- alive, ours, and podman's (a stale file's pid may be anyone's now).
-- @treturn[1] table {pid, starttime}
-- @return[2] nil, message naming it and the fix
function M.podman_pause(runtime_dir)
  local file = runtime_dir .. "/libpod/tmp/pause.pid"
  local text = read_text(file)
  local pid = text and math.tointeger(tonumber(text:match("^%s*(%d+)%s*$") or ""))
  if not pid or pid < 1 then
    return nil, ("podman's pause process is not running (no `%s`); start it with `podman unshare true`")
      :format(file)
  end
  local st, pstate = core.starttime(pid)
  local proc = core.lstat("/proc/" .. pid)
  if not st or pstate == "Z" or not proc or proc.uid ~= core.getuid()
    or not PAUSE_COMMS[core.readfile(("/proc/%d/comm"):format(pid), 64) or ""] then
    return nil, ("podman's pause process (pid %d, from `%s`) is gone; start a new one with `podman unshare true`")
      :format(pid, file)
  end
  return { pid = pid, starttime = st }
end

--- Make this process live in the holder's namespaces, per config `userns`.
-- Called with the state lock held.  @ctx: runtime_dir, signals (end the
-- wait for the id-map helpers).
-- @treturn[1] table {mode, pid, starttime, created}
-- @return[2] nil, message[, EINTR, signal number]
function M.ensure(p, ids, cfg, ctx)
  local mode = cfg.userns
  if mode == "auto" and M.in_child_userns() then
    -- A command we run that calls us: it is in our holder's user
    -- namespace already, and joins only its mount namespace, where the
    -- pins are (its own mounts are a private copy).
    local rec = M.recorded(p)
    if rec and M.in_userns_of(rec.pid) then
      local ok, err = M.join(rec.pid, rec.starttime, true)
      if not ok then return nil, err end
      return { mode = "own", pid = rec.pid, starttime = rec.starttime, nested = true }
    end
    -- (run by a command in podman's namespaces: the same, with its pause)
    local pause = M.podman_pause(ctx.runtime_dir)
    if pause and M.in_userns_of(pause.pid) then
      local ok, err = M.join(pause.pid, pause.starttime, true)
      if not ok then return nil, err end
      return { mode = "podman", pid = pause.pid, starttime = pause.starttime, nested = true }
    end
    mode = "current"
  end
  if mode == "current" then
    return { mode = "current" }
  end
  if mode == "podman" then
    local pause, err = M.podman_pause(ctx.runtime_dir)
    if not pause then return nil, err end
    local ok, jerr, code = M.join(pause.pid, pause.starttime)
    if not ok and code == errno.ESRCH then
      return nil, ("podman's pause process (pid %d) ended while we joined it; start a new one with "
        .. "`podman unshare true`"):format(pause.pid)
    end
    if not ok then return nil, jerr end
    return { mode = "podman", pid = pause.pid, starttime = pause.starttime }
  end
  local rec, warning = M.recorded(p)
  if warning then log.warn("%s", warning) end
  local created, replaced = false, false
  if not rec then
    -- holder.json lost or damaged while its holder lives on: adopt it,
    -- so the namespace inside is not orphaned.  Extra ones are stopped.
    local running = M.find_running(p.base)
    for i, h in ipairs(running) do
      if i == 1 then
        if state.write_json(p.holder, h) then
          rec = h
          log.warn("adopted the running holder %d (its record `%s` was lost)", h.pid, p.holder)
        end
      else
        core.kill(h.pid, h.starttime, core.SIGKILL)
      end
    end
  end
  local ok, err, code
  if rec then
    ok, err, code = M.join(rec.pid, rec.starttime)
    -- (killed while we looked: it was still exiting, not yet gone)
    if not ok and code == errno.ESRCH then rec = nil end
  end
  if not rec then
    replaced = core.lstat(p.holder) ~= nil
    local signo
    rec, err, code, signo = M.create(p, ids, ctx)
    if not rec then return nil, err, code, signo end
    created = true
    ok, err = M.join(rec.pid, rec.starttime)
  end
  if not ok then return nil, err end
  return { mode = "own", pid = rec.pid, starttime = rec.starttime, created = created, replaced = replaced }
end

--- Stop our holder (identity checked) and forget it.
function M.stop(p)
  local rec = state.read_json(p.holder)
  if rec and state.valid_identity(rec) then
    core.kill(rec.pid, rec.starttime, core.SIGKILL)
  end
  for _, h in ipairs(M.find_running(p.base)) do
    core.kill(h.pid, h.starttime, core.SIGKILL)
  end
  local ok, err, code = core.unlink(p.holder)
  if not ok and code ~= errno.ENOENT then return nil, err end
  return true
end

return M
