--- The warm run: `rootlessnetns run -- CMD` as one exec.
--
-- When the namespace is up and held by `setup`, a run needs no fork, no
-- wait and no mounts of its own: every slow `run` leaves a record
-- (`rootless-netns/warm-run`) of what it found -- the holder, the backend,
-- the identity of the config file and of the host's resolv.conf -- next to
-- a prepared mount namespace (the mount plan applied once, `/` rslave,
-- kept by a process: rootlessnetns.prepared).  The CLI checks that record before it loads
-- anything else; when everything still holds it records its own process
-- as a run reference (marked "exec"), drops the lock, joins the holder's
-- user namespace and the prepared mount namespace (one setns into the
-- keeper), then the netns, unshares a private copy, and execs the command
-- in place.  Its pid and
-- start time are the command's, so the reference is the command's too;
-- the next command reaps it once it has ended, and a teardown that leaves
-- only exec'd runs starts a reaper (rootlessnetns.reaper) that cleans up
-- after the last of them.
--
-- Anything unexpected -- no record, a changed config or resolv.conf, a
-- dead holder or backend, no `setup` reference, an unknown command, a
-- nested run, debug logging -- returns to the slow path, which does
-- everything as before and writes the record again.  Only the C core is
-- loaded here: this module is the whole warm path.
local core = require "rootlessnetns"

local M = {}

M.RECORD = "warm-run"
M.EXEC_MARK = "exec\n"

-- (Lua has no octal literals)
local PRIVATE_FILE, OTHERS_WRITE, OTHERS_ANY = tonumber("600", 8), tonumber("22", 8), tonumber("77", 8)

-- Signals that end the wait for the lock (as the slow path's).
local SIGNALS = { core.SIGINT, core.SIGTERM, core.SIGHUP }

--- What identifies a file's content without reading it: device, inode,
-- size and modification time, following symlinks; "-" when missing.
function M.identity(path)
  local st = path and core.stat(path)
  if not st then return "-" end
  return ("%d:%d:%d:%d"):format(st.dev, st.ino, st.size, st.mtime)
end

--- The config file a plain `rootlessnetns run` loads (config.locate).
function M.config_path(getenv)
  local xdg = getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then
    local home = getenv("HOME")
    xdg = home and home ~= "" and (home .. "/.config") or nil
  end
  for _, path in ipairs { xdg and (xdg .. "/rootlessnetns/config.lua") or nil, "/etc/rootlessnetns/config.lua" } do
    if core.access(path, "r") then return path end
  end
  return nil
end

--- The record as text: one `key value` per line.
function M.encode(rec)
  return ("rootlessnetns-warm 1\nholder %d %d\nkeeper %d %d\nbackend %d %d\nconfig %s\nresolv %s %s\nplan %s\n")
    :format(rec.holder_pid, rec.holder_starttime, rec.keeper_pid, rec.keeper_starttime, rec.backend_pid,
      rec.backend_starttime, rec.config, rec.resolv, rec.resolv_path, rec.plan)
end

--- The record from its text; nil for anything else.
function M.decode(text)
  if type(text) ~= "string" or text:sub(1, 20) ~= "rootlessnetns-warm 1" then return nil end
  local f = {}
  for key, value in text:gmatch("\n(%a+) ([^\n]*)") do f[key] = value end
  local hp, hs = (f.holder or ""):match("^(%d+) (%d+)$")
  local kp, ks = (f.keeper or ""):match("^(%d+) (%d+)$")
  local bp, bs = (f.backend or ""):match("^(%d+) (%d+)$")
  local resolv, resolv_path = (f.resolv or ""):match("^(%S+) (.+)$")
  if not (hp and kp and bp and resolv and f.config and f.plan) then return nil end
  return {
    holder_pid = math.tointeger(tonumber(hp)), holder_starttime = math.tointeger(tonumber(hs)),
    keeper_pid = math.tointeger(tonumber(kp)), keeper_starttime = math.tointeger(tonumber(ks)),
    backend_pid = math.tointeger(tonumber(bp)), backend_starttime = math.tointeger(tonumber(bs)),
    config = f.config, resolv = resolv, resolv_path = resolv_path, plan = f.plan,
  }
end

-- Is this the initial user namespace?  (A command we run that calls us is
-- not, and takes the slow path's nested join.)
local function initial_userns()
  local map = core.readfile("/proc/self/uid_map", 256) or ""
  return map:match("^%s*0%s+0%s+4294967295%s*\n$") ~= nil
end

-- A directory of ours that nobody else may write (as state.check_private_dir).
local function private_dir(path, uid, mask)
  local st = core.lstat(path)
  return st and st.type == "directory" and st.uid == uid and st.mode & mask == 0
end

-- argv[1] through PATH, as the slow path's resolve_command.
local function resolve(cmd)
  if cmd:find("/", 1, true) then return cmd end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local path = dir .. "/" .. cmd
    local st = core.stat(path)
    if st and st.type == "file" and core.access(path, "x") then return path end
  end
  return nil
end

-- Take the lock shared (warm runs do not wait for each other), polling so
-- that a signal ends the wait.  nil: fall back; false, signal: end.
local function lock_shared(path, signals)
  local pause = 1
  while true do
    local lock, _, code = core.flock(path, "sh", true)
    if lock then return lock end
    if code ~= core.errno.EWOULDBLOCK then return nil end
    local sig = signals:wait(pause)
    if sig then return false, sig end
    pause = math.min(pause * 2, 20)
  end
end

-- Past this point there is no way back: one line, and the status.
local function die(status, fmt, ...)
  io.stderr:write("rootlessnetns: ", fmt:format(...), "\n")
  os.exit(status, false)
end

--- Everything that must hold, under the lock; the argv to exec, or nil.
local function check(dir, rec, args)
  if not rec then return nil end
  if rec.config ~= M.identity(M.config_path(os.getenv)) then return nil end
  if rec.resolv ~= M.identity(rec.resolv_path) then return nil end
  -- (the keeper is checked once its pidfd is open, in attempt)
  if not (core.alive(rec.holder_pid, rec.holder_starttime) and core.alive(rec.backend_pid, rec.backend_starttime)) then
    return nil
  end
  -- held by `setup`: whoever drops that count sees this run's reference
  local nets = math.tointeger(tonumber((core.readfile(dir .. "/ref-count", 64) or ""):match("^%s*(%d+)%s*$")))
  if not nets or nets < 1 then return nil end
  local path = resolve(args[3])
  if not path then return nil end
  local argv = table.move(args, 3, #args, 1, {})
  argv[1] = path
  return argv
end

-- The warm run in @base with @signals blocked: execs, ends, or returns
-- (the lock dropped, no reference left) for the slow path.
local function attempt(base, args, signals)
  local dir = base .. "/rootless-netns"
  local lock, sig = lock_shared(base .. "/lock", signals)
  if lock == false then os.exit(128 + sig, false) end
  if not lock then return end
  local rec = M.decode(core.readfile(dir .. "/" .. M.RECORD, 65536))
  local argv = check(dir, rec, args)
  local me = core.getpid()
  local ref = argv and ("%s/refs/%d-%d"):format(dir, me, core.starttime(me))
  -- Created in place, not renamed into place.  Its content ("exec") is
  -- read by rootlessnetns.reaper only when no `setup` counts any more,
  -- and this run got here seeing one under its shared lock; whatever the
  -- reaper decides it checks again under the lock held exclusively.  A
  -- run killed before the write leaves an empty record of a dead process,
  -- reaped as any other.
  local file = ref and core.open(ref, "new", PRIVATE_FILE)
  local recorded = file and file:write(M.EXEC_MARK)
  if file then file:close() end
  if not recorded then
    if file then core.unlink(ref) end
    lock:close()
    return
  end
  -- The keeper is in the holder's user namespace and the prepared mount
  -- namespace: one setns for both (through its pidfd, so never a reused pid).
  local keeper = core.process(rec.keeper_pid)
  -- (by descriptor: its path may show something else in there)
  local cwd = core.open(".", "path")
  local pidfd = keeper and keeper:fileno()
  local joined = pidfd and core.alive(rec.keeper_pid, rec.keeper_starttime)
    and core.setns(pidfd, core.CLONE_NEWUSER | core.CLONE_NEWNS)
  if keeper then keeper:close() end
  if not joined then
    -- (a failed setns changed nothing: the slow path takes over)
    if cwd then cwd:close() end
    core.unlink(ref)
    lock:close()
    return
  end
  local net, err = core.open(dir .. "/rootless-netns", "r")
  local ok = net ~= nil
  if ok then ok, err = core.setns(net, core.CLONE_NEWNET) end
  if ok then ok, err = core.unshare(core.CLONE_NEWNS) end
  if net then net:close() end
  if not ok then
    core.unlink(ref)
    die(125, "warm run: %s", tostring(err))
  end
  if cwd then
    core.chdir(cwd)
    cwd:close()
  end
  lock:close()
  -- (a signal still pending is the command's: core.exec unblocks it with
  -- its default action, so it ends this process as it would the command)
  local _, eerr, ecode = core.exec(argv)
  core.unlink(ref)
  die(ecode == core.errno.ENOENT and 127 or 126, "%s", tostring(eerr))
end

--- Exec `run -- CMD...` (@args: the CLI's arg) in place when the warm
-- path holds; return (having changed nothing) when the slow path must
-- do it.
function M.try(args)
  if os.getenv("ROOTLESSNETNS_LOG_LEVEL") or os.getenv("ROOTLESSNETNS_FAULT") then return end
  local xdg = os.getenv("XDG_RUNTIME_DIR")
  if not xdg or xdg:sub(1, 1) ~= "/" or not initial_userns() then return end
  local uid = core.getuid()
  local base = xdg .. "/rootlessnetns"
  if not (private_dir(xdg, uid, OTHERS_WRITE) and private_dir(base, uid, OTHERS_ANY)) then return end
  -- The signals that end a run stay blocked from here to the exec, or to
  -- the slow path: one that comes meanwhile is never an error half way
  -- (lua5.4 turns SIGINT into one), it ends the run with its status.
  local signals <close> = core.block_signals(SIGNALS)
  attempt(base, args, signals)
  -- (back to the slow path: closing the set would swallow a signal)
  local sig = signals:wait(0)
  if sig then os.exit(128 + sig, false) end
end

return M
