--- Processes of ours found without records: one scan of /proc, shared by
-- the holder (holders of a state directory) and the flow (backends naming
-- a pin), for when a record was lost.  Never on a warm path.
local core = require "rootlessnetns"

local M = {}

--- Live (not zombie) processes of this user, other than this one, for
-- which @pred(pid, comm) is true.  With `opts.any_uid`, processes of any
-- uid (those of our subordinate ids too; @pred decides what it can read).
-- @treturn table list of {pid, starttime}
function M.ours(pred, opts)
  local any_uid = opts and opts.any_uid
  local found, me, self_pid = {}, core.getuid(), core.getpid()
  for _, name in ipairs(core.listdir("/proc") or {}) do
    local pid = math.tointeger(tonumber(name))
    local st = pid and pid ~= self_pid and (any_uid or core.lstat("/proc/" .. name))
    if st and (any_uid or st.uid == me) then
      local comm = (core.readfile("/proc/" .. name .. "/comm", 64) or ""):gsub("\n$", "")
      local starttime, state = core.starttime(pid)
      if starttime and state ~= "Z" and state ~= "X" and pred(pid, comm) then
        found[#found + 1] = { pid = pid, starttime = starttime }
      end
    end
  end
  return found
end

-- Our own machinery inside a namespace, which is no user of it: the
-- port forwarder's socket maker.  (Known by the title it shows as its
-- command line; its comm is the interpreter's.)
local MACHINERY = { "rootlessnetns-ports\0" }

--- Is process @pid ours, working for a namespace rather than in it?
function M.machinery(pid)
  local cmd = core.readfile(("/proc/%d/cmdline"):format(pid), 256) or ""
  for _, title in ipairs(MACHINERY) do
    if cmd:sub(1, #title) == title then return true end
  end
  return false
end

--- Processes of ours (any of our uids) in the network namespace whose
-- inode is @id, our machinery aside.
function M.in_netns(id)
  local link = ("net:[%d]"):format(id)
  return M.ours(function(pid)
    return core.readlink(("/proc/%d/ns/net"):format(pid)) == link and not M.machinery(pid)
  end, { any_uid = true })
end

--- Does @pid's command line have @arg as one of its arguments?
function M.has_arg(pid, arg)
  local cmd = core.readfile(("/proc/%d/cmdline"):format(pid), 65536)
  return cmd ~= nil and ("\0" .. cmd):find("\0" .. arg .. "\0", 1, true) ~= nil
end

--- The name of user @uid, from /etc/passwd (nil when it has none).
function M.user_name(uid, passwd_path)
  local passwd = io.open(passwd_path or "/etc/passwd", "r")
  if not passwd then return nil end
  for line in passwd:lines() do
    local name, id = line:match("^([^:]*):[^:]*:(%d+):")
    if id and tonumber(id) == uid then
      passwd:close()
      return name
    end
  end
  passwd:close()
  return nil
end

return M
