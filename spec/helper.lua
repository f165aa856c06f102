--- Shared spec helpers: scratch directories, forked children, fd counts,
-- the CLI as a subprocess, and `userns_it` for specs that need
-- unprivileged user namespaces.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"

local M = {}

M.ROOT = os.getenv("PWD") or "."
M.CLI = M.ROOT .. "/bin/rootlessnetns"

local PRIVATE_DIR = tonumber("700", 8)
local counter = 0

--- A fresh private directory, removed by M.cleanup_dirs().
local made = {}
function M.tmpdir()
  counter = counter + 1
  local dir = ("/tmp/rlns-spec-%d-%d-%d"):format(core.getpid(), counter, math.random(1, 1e9))
  assert(core.mkdir(dir, PRIVATE_DIR))
  made[#made + 1] = dir
  return dir
end

function M.cleanup_dirs()
  for _, d in ipairs(made) do core.rmtree(d) end
  made = {}
end

function M.write(path, text, mode)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  if mode then assert(core.chmod(path, mode)) end
end

function M.read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Number of open descriptors of this process.
function M.fd_count()
  -- (what only the garbage collector still holds is closed first: a
  -- count must not depend on when a collection happens to run)
  collectgarbage()
  collectgarbage()
  return #assert(core.listdir("/proc/self/fd"))
end

--- Run @fn in a forked child; its return value (JSON-able) or its error
-- comes back.  Namespace changes made by @fn stay in the child.
function M.in_child(fn)
  io.stdout:flush()
  io.stderr:flush()
  local r, w = core.pipe()
  local pid = assert(core.fork())
  if pid == 0 then
    r:close()
    local ok, res = pcall(fn)
    -- holders made in here would outlive us: they are ours to stop
    for _, h in ipairs(M.child_holders) do h:kill(core.SIGKILL) h:wait() end
    w:write(cjson.encode { ok = ok, result = ok and res or tostring(res) } or '{"ok":false,"result":"encode"}')
    core._exit(0)
  end
  w:close()
  local text = r:readall(60000)
  r:close()
  local proc = assert(core.process(pid))
  proc:wait()
  local msg = cjson.decode(text or "")
  if type(msg) ~= "table" then return nil, "child died" end
  if not msg.ok then return nil, msg.result end
  return msg.result == nil and true or msg.result
end

local userns_ok
--- Can this user create user namespaces (and is it not real root)?
function M.userns_available()
  if userns_ok == nil then
    userns_ok = M.in_child(function()
      assert(core.unshare(core.CLONE_NEWUSER))
      return true
    end) == true
  end
  return userns_ok
end

--- `it` for specs that need user namespaces; pending where there are none.
-- busted's `it` and `pending` live in the spec file's environment, so the
-- spec hands them over: local userns_it = helper.userns_it(it, pending)
function M.userns_it(it, pending)
  return function(name, fn)
    if M.userns_available() then
      it(name, fn)
    else
      pending(name .. " (unprivileged user namespaces unavailable)")
    end
  end
end

--- Are we run by valgrind?  (It keeps descriptors of its own in every
-- process it runs, forked children included, and lays out their memory.)
function M.under_valgrind()
  return (os.getenv("LD_PRELOAD") or ""):find("vgpreload", 1, true) ~= nil
end

M.child_holders = {}

--- Set up a holder (single mapping) in a child and join it there; for
-- primitive specs that need to mount.  in_child() stops it afterwards.
function M.join_fresh_holder()
  local pid, ctl = assert(core.holder_start())
  local uid, gid = core.getuid()
  assert(core.write_idmap(pid, "setgroups", "deny"))
  assert(core.write_idmap(pid, "uid_map", ("0 %d 1\n"):format(uid)))
  assert(core.write_idmap(pid, "gid_map", ("0 %d 1\n"):format(gid)))
  assert(core.holder_release(ctl))
  local proc = assert(core.process(pid))
  M.child_holders[#M.child_holders + 1] = proc
  if proc:fileno() then
    assert(core.setns(proc:fileno(), core.CLONE_NEWUSER | core.CLONE_NEWNS))
  else -- no pidfds (valgrind)
    assert(core.setns("/proc/" .. pid .. "/ns/user", core.CLONE_NEWUSER))
    assert(core.setns("/proc/" .. pid .. "/ns/mnt", core.CLONE_NEWNS))
  end
  return proc
end

--- Run the CLI: returns exit status, stdout, stderr.
-- @tparam table args
-- @tparam table env map of variables (XDG_RUNTIME_DIR etc.); PATH and HOME inherited
-- @tparam[opt] table opts {wait = false (return the process and the output directory), timeout (ms),
--   cli (another copy of the CLI to run)}
function M.cli(args, env, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local out = assert(core.open(dir .. "/out", "w"))
  local err = assert(core.open(dir .. "/err", "w"))
  local vars = {}
  local base = { PATH = os.getenv("PATH"), HOME = os.getenv("HOME"), USER = os.getenv("USER"), SHELL = "/bin/sh" }
  for k, v in pairs(base) do if v then vars[k] = v end end
  for k, v in pairs(env or {}) do vars[k] = v ~= false and v or nil end
  local argv = { "lua5.4", opts.cli or M.CLI }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local proc = assert(core.spawn { argv = argv, env = vars, fds = { [0] = false, [1] = out, [2] = err } })
  out:close()
  err:close()
  if opts.wait == false then return proc, dir end
  local how, code = proc:wait(opts.timeout or 120000)
  if not how then
    proc:kill(core.SIGKILL)
    proc:wait()
    error("CLI timed out: " .. table.concat(args, " "))
  end
  local stdout, stderr = M.read(dir .. "/out"), M.read(dir .. "/err")
  core.rmtree(dir)
  return how == "signaled" and 128 + code or code, stdout, stderr
end

--- helper.cli with @prefix before the arguments, and the environment
-- @env_of() returns with @extra's variables over it.
-- @treturn function(args, extra) -> exit status, stdout, stderr
function M.cli_with(prefix, env_of)
  return function(args, extra)
    local e = {}
    for k, v in pairs(env_of()) do e[k] = v end
    for k, v in pairs(extra or {}) do e[k] = v end
    local full = table.move(prefix, 1, #prefix, 1, {})
    table.move(args, 1, #args, #full + 1, full)
    return M.cli(full, e)
  end
end

--- Live (non-zombie) processes of ours, other than this one, for which
-- @pred(pid, name) is true.
local function our_processes(pred)
  local found = {}
  local me, self_pid = core.getuid(), core.getpid()
  for _, name in ipairs(assert(core.listdir("/proc"))) do
    local pid = math.tointeger(tonumber(name))
    local st = pid and pid ~= self_pid and core.lstat("/proc/" .. name)
    if st and st.uid == me then
      local _, state = core.starttime(pid)
      if state and state ~= "Z" and state ~= "X" and pred(pid, name) then
        found[#found + 1] = pid
      end
    end
  end
  return found
end

--- Live processes of ours whose command line contains @needle.
function M.processes(needle)
  return our_processes(function(_, name)
    local cmd = core.readfile("/proc/" .. name .. "/cmdline", 65536)
    return cmd and cmd:find(needle, 1, true)
  end)
end

--- Live holder processes of ours (comm "rlns-holder"); with @base, only
-- those of that state directory (a holder keeps it open as fd 3).
function M.holders(base)
  return our_processes(function(_, name)
    return core.readfile("/proc/" .. name .. "/comm", 64) == "rlns-holder\n"
      and (not base or core.readlink("/proc/" .. name .. "/fd/3") == base)
  end)
end

--- A fresh XDG_RUNTIME_DIR for each spec of a describe block, cleaned up
-- after it: local fx = helper.state_fixture(before_each, after_each),
-- then fx.xdg and fx.env.
function M.state_fixture(before_each, after_each)
  local fx = {}
  before_each(function()
    fx.xdg = M.runtime_dir()
    fx.env = { XDG_RUNTIME_DIR = fx.xdg }
  end)
  after_each(function()
    M.cli({ "cleanup" }, fx.env)
    M.cleanup_dirs()
  end)
  return fx
end

--- How many mounts in @pid's mount namespace have @needle as mount point.
function M.mounts_in(pid, needle)
  local text = core.readfile(("/proc/%d/mountinfo"):format(pid), 1 << 22) or ""
  local n = 0
  for line in text:gmatch("[^\n]+") do
    local target = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if target == needle then n = n + 1 end
  end
  return n
end

--- A private XDG_RUNTIME_DIR for one spec: under /run/user/<uid> when this
-- user has one (as logind gives), so /run replacement is exercised for real.
function M.runtime_dir()
  local base = os.getenv("XDG_RUNTIME_DIR")
  if base and base:match("^/run/user/") and core.lstat(base) then
    local dir = ("%s/spec-%d-%d"):format(base, core.getpid(), math.random(1, 1e9))
    assert(core.mkdir(dir, PRIVATE_DIR))
    made[#made + 1] = dir
    return dir
  end
  return M.tmpdir()
end

--- @list() once it has settled to @n entries (a signalled process takes a
-- moment to go): waits up to 5 s, then returns what is there.
function M.settled(list, n)
  return M.eventually(function()
    local found = list()
    return #found == n and found or nil
  end, 5) or list()
end

--- The backend processes naming @pin, settled to @n.
function M.settled_processes(pin, n)
  return M.settled(function() return M.processes(pin) end, n)
end

--- SIGKILL process @pid (identity @starttime) and wait until it has
-- exited (a zombie or gone, at most 5 s).  Its fds close before it is
-- done: a process with none may still be in its namespaces.
function M.kill_and_wait(pid, starttime)
  assert(core.kill(pid, starttime, core.SIGKILL))
  return M.eventually(function() return not core.alive(pid, starttime) end, 5)
end

--- The holders of state directory @base, settled to @n.
function M.settled_holders(base, n)
  return M.settled(function() return M.holders(base) end, n)
end

--- Wait until @fn returns truthy (polling), at most @seconds.
function M.eventually(fn, seconds)
  local deadline = core.clock() + (seconds or 5)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(20)
  until core.clock() > deadline
  return fn()
end

return M
