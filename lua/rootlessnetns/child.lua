--- Programs the library runs to completion (ip, nft, probes), and where
-- to find them.
local core = require "rootlessnetns"

local M = {}

--- Read @r to its end (at most @timeout_ms; forever when nil), ending
-- at once when one of @signals arrives.
-- @treturn[1] string what was read
-- @return[2] nil, message, errno (ETIMEDOUT, EINTR), signal number
local function read_to_end(r, timeout_ms, signals)
  local deadline = timeout_ms and core.clock() + timeout_ms / 1000
  local chunks = {}
  while true do
    local slice = signals and 20 or (timeout_ms or -1)
    if deadline then slice = math.min(slice, math.max(0, math.floor((deadline - core.clock()) * 1000))) end
    local data, err, code = r:read(65536, slice)
    if data == "" then return table.concat(chunks) end
    if data then
      chunks[#chunks + 1] = data
    elseif code ~= core.errno.ETIMEDOUT then
      return nil, err, code
    end
    local sig = signals and signals:wait(0)
    if sig then return nil, ("interrupted by signal %d"):format(sig), core.errno.EINTR, sig end
    if deadline and core.clock() >= deadline then return nil, err, code end
  end
end

--- Run a program to completion, capturing stdout and stderr together.
-- @tparam {string,...} argv the program and its arguments (argv[1] is
--   looked up in PATH)
-- @tparam[opt] int timeout_ms how long it may take before it is killed
--   (nil: no limit)
-- @tparam[opt] table opts {input = text for its stdin (default: none),
--   netns = Fd of a network namespace to run it in, signals = Signals
--   that end the wait (the program is killed), fds = {[3] = Fd, ...}
--   more descriptors to hand it)}
-- @treturn[1] string "exited"/"signaled"
-- @treturn[1] int code
-- @treturn[1] string output
-- @return[2] nil, message, errno (could not start it; EINTR: a signal
--   ended the wait), signal number
function M.capture(argv, timeout_ms, opts)
  opts = opts or {}
  local r, w = core.pipe()
  local inr, inw
  if opts.input then inr, inw = core.pipe() end
  local fds = { [0] = inr or false, [1] = w, [2] = w }
  for n, fd in pairs(opts.fds or {}) do fds[n] = fd end
  local proc, err, code = core.spawn { argv = argv, netns = opts.netns, fds = fds }
  w:close()
  if inr then inr:close() end
  if not proc then
    r:close()
    if inw then inw:close() end
    return nil, err, code
  end
  if inw then
    -- (small inputs: written whole before the output is read)
    inw:write(opts.input)
    inw:close()
  end
  local output, rerr, rcode, signo = read_to_end(r, timeout_ms, opts.signals)
  r:close()
  if signo then
    proc:kill(core.SIGKILL)
    proc:wait()
    return nil, ("%s: %s"):format(argv[1], rerr), rcode, signo
  end
  local how, status = proc:wait(timeout_ms)
  if not how then
    proc:kill(core.SIGKILL)
    how, status = proc:wait()
  end
  return how, status, output or ""
end

--- Names of the interfaces of this process's network namespace, from
-- /proc/net/dev (getifaddrs leaves out links without an address); for
-- functions run with rootlessnetns.inside.call.
function M.link_names()
  local names = {}
  local f = io.open("/proc/net/dev", "r")
  if not f then return names end
  for line in f:lines() do
    local name = line:match("^%s*([^:%s]+):")
    if name then names[#names + 1] = name end
  end
  f:close()
  return names
end

--- Absolute path of an executable found in PATH (or the path itself).
function M.which(name, getenv)
  if name:find("/", 1, true) then
    return core.access(name, "x") and name or nil
  end
  local path = (getenv or os.getenv)("PATH") or "/usr/local/bin:/usr/bin:/bin"
  for dir in path:gmatch("[^:]+") do
    local candidate = dir .. "/" .. name
    if core.access(candidate, "x") then return candidate end
  end
  -- Debian puts some helpers in sbin, which a user's PATH may lack.
  for _, dir in ipairs { "/usr/sbin", "/sbin" } do
    local candidate = dir .. "/" .. name
    if core.access(candidate, "x") then return candidate end
  end
  return nil
end

return M
