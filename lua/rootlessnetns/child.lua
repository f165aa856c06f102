--- Short-lived children: run a Lua function in another namespace and get
-- its result back, leaving the caller's namespaces untouched.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"

local M = {}

--- Run @fn in a forked child that first joins the network namespace pinned
-- at @pin.  @fn's return value travels back as JSON.
-- @treturn[1] any what @fn returned
-- @return[2] nil, message
function M.in_netns(pin, fn)
  io.stdout:flush()
  io.stderr:flush()
  local r, w = core.pipe()
  local pid, err = core.fork()
  if not pid then
    r:close()
    w:close()
    return nil, err
  end
  if pid == 0 then
    r:close()
    local ok, res = pcall(function()
      assert(core.setns(pin, core.CLONE_NEWNET))
      return fn()
    end)
    -- (not `ok and res or ...`: a result of false must stay false)
    local result = res
    if not ok then result = tostring(res) end
    local msg = cjson.encode { ok = ok, result = result }
    w:write(msg or '{"ok":false,"result":"unencodable result"}')
    core._exit(0)
  end
  w:close()
  local text = r:readall(30000) or ""
  r:close()
  local proc = core.process(pid)
  if proc then proc:wait() end
  local msg = cjson.decode(text)
  if type(msg) ~= "table" then
    return nil, "helper in the namespace died"
  end
  if not msg.ok then
    return nil, tostring(msg.result)
  end
  return msg.result
end

--- Run a program to completion, capturing stdout and stderr together.
-- @tparam[opt] table opts {input = text for its stdin (default: none),
--   netns = Fd of a network namespace to run it in}
-- @treturn[1] string "exited"/"signaled"
-- @treturn[1] int code
-- @treturn[1] string output
-- @return[2] nil, message, errno (could not start it)
function M.capture(argv, timeout_ms, opts)
  opts = opts or {}
  local r, w = core.pipe()
  local inr, inw
  if opts.input then inr, inw = core.pipe() end
  local proc, err, code = core.spawn { argv = argv, netns = opts.netns,
    fds = { [0] = inr or false, [1] = w, [2] = w } }
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
  local output = r:readall(timeout_ms) or ""
  r:close()
  local how, status = proc:wait(timeout_ms)
  if not how then
    proc:kill(core.SIGKILL)
    how, status = proc:wait()
  end
  return how, status, output
end

--- Names of the interfaces of this process's network namespace, from
-- /proc/net/dev (getifaddrs leaves out links without an address); for
-- functions run with in_netns.
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
