--- The one way a command gets inside a network namespace.
--
-- A forked child enters the netns, unshares a mount namespace of its own,
-- makes `/` rslave (host unmounts still reach it; its own mounts reach
-- nobody), applies the mount plan, then execs the command or calls the
-- Lua function.  A failure before the command starts comes back as a
-- worker report (stage, errno, message) in a memfd, the same protocol as
-- rootlessnetns.worker's; the exit status is the command's own.
--
--   local proc, report = inside.spawn(pin, argv, env, plan)
--   local how, code = inside.finish(proc, report, signals)
--
-- `inside.call(pin, fn)` is the short form for the library's own work in a
-- netns (read its links, set a sysctl): fn runs in a worker that has
-- joined the netns, and its results come back.
local core = require "rootlessnetns"
local child = require "rootlessnetns.child"
local log = require "rootlessnetns.log"
local mounts = require "rootlessnetns.mounts"
local worker = require "rootlessnetns.worker"

local errno = core.errno

local M = {}

--- Is @cmd an argv list of strings or a function?
-- @treturn[1] true
-- @return[2] nil, message
function M.check_cmd(cmd)
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

--- Resolve argv[1] through PATH here, before anything is made, so that
-- "not found" (127) is told apart from "found but not executable" (126)
-- whatever PATH holds.
-- @return[2] nil, message, ENOENT
function M.resolve_command(cmd)
  if type(cmd) ~= "table" or cmd[1]:find("/", 1, true) then return cmd end
  local path = child.which(cmd[1])
  if not path then
    return nil, ("exec `%s`: command not found"):format(cmd[1]), errno.ENOENT
  end
  local resolved = table.move(cmd, 1, #cmd, 1, {})
  resolved[1] = path
  return resolved
end

--- The exit status a Lua function run inside means by returning @res:
-- nothing or true 0, false 1, an integer 0-255 itself; nil for anything
-- else (a mistake, not a success).
function M.status_of(res)
  if res == nil or res == true then return 0 end
  if res == false then return 1 end
  if math.type(res) == "integer" and res >= 0 and res <= 255 then return res end
  return nil
end

local EXIT_OF_STAGE = { exec = 126, setup = 125, ["function"] = 125 }

--- Child side: enter the netns, private mounts, wait for the word, then
-- exec or call.
local function child_main(netfd, plan, cmd, env, report, go, prepared)
  -- Short-lived and about to exec: collecting garbage would only copy
  -- the parent's heap pages (copy-on-write) for nothing.
  collectgarbage("stop")
  local function fail(stage, msg, code)
    report:write(worker.encode(table.pack(stage, code or 0, msg)))
    local status = EXIT_OF_STAGE[stage]
    if stage == "exec" and code == errno.ENOENT then status = 127 end
    core._exit(status)
  end
  -- The prepared mount namespace has the plan applied and `/` rslave
  -- already; joining it moves the working directory to its root, so it
  -- is taken back by descriptor.  (Should the keeper have gone, setns
  -- changed nothing and the plan is applied here.)
  local joined = prepared and core.setns(prepared.keeper, core.CLONE_NEWNS)
  if joined then
    core.chdir(prepared.cwd)
    log.debug("joined the prepared mount namespace (keeper %d)", prepared.pid)
  end
  local ok, err, code = core.setns(netfd, core.CLONE_NEWNET)
  if not ok then fail("setup", err, code) end
  netfd:close()
  ok, err, code = core.unshare(core.CLONE_NEWNS)
  if not ok then fail("setup", err, code) end
  if not joined then
    ok, err, code = core.mount(nil, "/", nil, "rslave")
    if not ok then fail("setup", err, code) end
    ok, err, code = mounts.apply(plan, log)
    if not ok then fail("setup", err, code) end
  end
  if go then
    -- the parent records us first; its end of file instead of the word
    -- means it could not (or died): the command must not run uncounted
    if go:read(1) ~= "g" then core._exit(125) end
    go:close()
  end
  if type(cmd) == "function" then
    local fok, res = pcall(cmd)
    if not fok then fail("function", tostring(res), 0) end
    local status = M.status_of(res)
    if not status then
      fail("function", ("the function returned %s; it must return an exit status (0 to 255), "
        .. "true, false or nothing"):format(math.type(res) or type(res)), errno.EINVAL)
    end
    io.stdout:flush()
    io.stderr:flush()
    core._exit(status)
  end
  log.debug("exec %s", table.concat(cmd, " "))
  local _, eerr, ecode = core.exec(cmd, env)
  fail("exec", eerr, ecode)
end

-- The prepared mount namespace of keeper @k (opened, then the keeper's
-- identity checked: never a reused pid's), and this process's working
-- directory; nil when either is gone (the child applies the plan itself
-- then).
local function open_prepared(k)
  local keeper = core.open(("/proc/%d/ns/mnt"):format(k.pid), "r", nil, true)
  if not (keeper and core.alive(k.pid, k.starttime)) then
    if keeper then keeper:close() end
    return nil
  end
  local cwd = core.open(".", "path")
  if not cwd then
    keeper:close()
    return nil
  end
  return { keeper = keeper, pid = k.pid, cwd = cwd }
end

--- Fork the child that runs @cmd (checked, resolved) inside the netns
-- pinned at @pin with the mount plan @plan.  With @opts.held, the child
-- waits before it runs the command until go(true) is called (the caller
-- records it first); go(false), or the caller's death, ends it unrun.
-- With @opts.keeper ({pid, starttime}, rootlessnetns.prepared) it joins
-- that prepared mount namespace instead of applying @plan.
-- @treturn[1] Process
-- @treturn[1] Fd its report
-- @treturn[1] function go (with @opts.held)
-- @return[2] nil, message, errno
function M.spawn(pin, cmd, env, plan, opts)
  local netfd, err, code = core.open(pin, "r")
  if not netfd then return nil, err, code end
  local report, merr, mcode = core.memfd()
  if not report then
    netfd:close()
    return nil, merr, mcode
  end
  local go_r, go_w
  if opts and opts.held then go_r, go_w = core.pipe() end
  local prepared = opts and opts.keeper and open_prepared(opts.keeper)
  io.stdout:flush()
  io.stderr:flush()
  local pid, ferr, fcode = core.fork()
  if not pid then
    netfd:close(); report:close()
    if go_r then go_r:close(); go_w:close() end
    if prepared then prepared.keeper:close(); prepared.cwd:close() end
    return nil, ferr, fcode
  end
  if pid == 0 then
    if go_w then go_w:close() end
    -- A Lua error here must end this child, never unwind into the code
    -- of the process it was forked from (a worker would report twice).
    local ok, why = pcall(child_main, netfd, plan, cmd, env, report, go_r, prepared)
    report:write(worker.encode(table.pack("setup", 0, "internal error: " .. tostring(ok and "returned" or why))))
    core._exit(125)
  end
  netfd:close()
  if prepared then prepared.keeper:close(); prepared.cwd:close() end
  local go
  if go_r then
    go_r:close()
    go = function(yes)
      if yes then go_w:write("g") end
      go_w:close()
    end
  end
  return assert(core.process(pid)), report, go
end

--- Wait for the child of spawn (passing @signals on to it) and collect
-- its result.
-- @treturn[1] string "exited" or "signaled"
-- @treturn[1] int status or signal
-- @return[2] nil, message, errno, stage ("setup", "exec", "function")
function M.finish(proc, report, signals)
  local how, code = proc:wait(nil, signals)
  local text = report:rewind() and report:readall() or ""
  report:close()
  if text ~= "" then
    local res = worker.decode(text)
    if res and res.n == 3 then return nil, res[3], res[2], res[1] end
    return nil, "unreadable report of a command's child", 0, "setup"
  end
  return how, code
end

--- Call @fn in a worker that has joined the netns pinned at @pin.
-- @return what @fn returned, or nil, message
function M.call(pin, fn)
  return worker.call(nil, function()
    assert(core.setns(pin, core.CLONE_NEWNET))
    return fn()
  end)
end

return M
