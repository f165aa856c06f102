--- Naming and finding the lab's namespaces: which names are valid, a
-- random one, and the processes inside a namespace (found in one scan of
-- /proc by the namespace's inode).
local core = require "rootlessnetns"
local procs = require "rootlessnetns.procs"

local M = {}

--- Longest name accepted: long enough for a `netns-<uuid>`, short enough
-- for any file system.
M.NAME_MAX = 64

--- Is @name usable as a namespace name?
-- @treturn[1] string name
-- @return[2] nil, message
function M.check_name(name)
  if type(name) ~= "string" or name == "" then
    return nil, "a namespace name must be a non-empty string"
  end
  if #name > M.NAME_MAX then
    return nil, ("namespace name `%s...` is longer than %d characters"):format(name:sub(1, 24), M.NAME_MAX)
  end
  if not name:match("^[%w][%w_.-]*$") then
    return nil, ("invalid namespace name `%s`: letters, digits, `_`, `.` and `-` only, "
      .. "starting with a letter or digit"):format(name)
  end
  return name
end

--- A `netns-<uuid>` name, as podman gives its container namespaces.
function M.random_name()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = assert(f:read(16))
  f:close()
  local hex = bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  return ("netns-%s-%s-%s-%s-%s"):format(hex:sub(1, 8), hex:sub(9, 12), hex:sub(13, 16),
    hex:sub(17, 20), hex:sub(21, 32))
end

--- Live processes in each of the namespaces pinned at @pins, in one scan
-- of /proc: every process whose namespace we may read, so those running
-- under a subordinate uid count too.
-- @treturn table pin -> list of {pid, starttime}
function M.processes_in_each(pins)
  local by_link, found = {}, {}
  for _, pin in ipairs(pins) do
    found[pin] = {}
    local id = core.ns_id(pin)
    if id then by_link[("net:[%d]"):format(id)] = pin end
  end
  if next(by_link) then
    local pin_of = {}
    for _, p in ipairs(procs.ours(function(pid)
      local link = core.readlink(("/proc/%d/ns/net"):format(pid))
      pin_of[pid] = link and by_link[link] and not procs.machinery(pid) and by_link[link] or nil
      return pin_of[pid] ~= nil
    end, { any_uid = true })) do
      local list = found[pin_of[p.pid]]
      list[#list + 1] = p
    end
  end
  return found
end

--- The processes inside the one namespace pinned at @pin.
-- @treturn table list of {pid, ...} as rootlessnetns.procs reports them
function M.processes_in(pin)
  return M.processes_in_each({ pin })[pin]
end

--- The pids of a processes_in list, for messages and `netns list`.
function M.pid_list(found)
  local pids = {}
  for i, p in ipairs(found) do pids[i] = p.pid end
  return pids
end

--- Kill the processes inside the namespace pinned at @pin and wait (5 s
-- at most) for them to go.
function M.kill_inside(pin)
  local found = M.processes_in(pin)
  for _, p in ipairs(found) do core.kill(p.pid, p.starttime, core.SIGKILL) end
  local deadline = core.clock() + 5
  while #found > 0 and core.clock() < deadline do
    core.sleep(10)
    local left = {}
    for _, p in ipairs(found) do
      if core.alive(p.pid, p.starttime) then left[#left + 1] = p end
    end
    found = left
  end
  return #found == 0
end

return M
