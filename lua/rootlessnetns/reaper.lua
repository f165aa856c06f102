--- The last one out, when the last ones are warm runs.
--
-- A warm run (rootlessnetns.warm) is the command itself: no CLI waits for
-- it to end, drops its reference and cleans up at zero.  When the count
-- reaches zero while warm runs are still alive (a `teardown` under them),
-- a detached reaper waits for them to end, then cleans up under the lock
-- if nobody uses the namespace by then.  One at a time (its record,
-- `rootless-netns/reaper`); it keeps nothing of the process that started
-- it, shows a fixed title, and a SIGKILL of it is a crash like any other:
-- whichever command next finds only warm runs left starts another.
local core = require "rootlessnetns"
local log = require "rootlessnetns.log"
local state = require "rootlessnetns.state"
local warm = require "rootlessnetns.warm"

local M = {}

M.TITLE = "rootlessnetns-reaper"

-- What the detached process runs, in a fresh Lua state.
local MAIN = [[
local path, cpath, base, runtime_dir, config = ...
package.path, package.cpath = path, cpath
require("rootlessnetns.reaper").main(base, runtime_dir, config ~= "" and config or nil)
]]

--- The live run references that are warm runs.
-- @treturn table list of {pid, starttime}
function M.warm_runs(p)
  local out = {}
  for _, name in ipairs(core.listdir(p.refs) or {}) do
    local pid, st = name:match("^(%d+)%-(%d+)$")
    pid, st = math.tointeger(tonumber(pid)), math.tointeger(tonumber(st))
    if pid and st and core.alive(pid, st) and core.readfile(p.refs .. "/" .. name, 16) == warm.EXEC_MARK then
      out[#out + 1] = { pid = pid, starttime = st }
    end
  end
  return out
end

--- Start the reaper when warm runs are left and none runs.  Lock held.
function M.ensure(ns)
  local p = ns.paths
  local pid, st = state.read_identity(p.reaper)
  if (pid and core.alive(pid, st)) or #M.warm_runs(p) == 0 then return end
  local err
  pid, err = core.detached(M.TITLE, MAIN, package.path, package.cpath, p.base, ns.runtime_dir,
    ns.config_path or "")
  if not pid then
    log.warn("cannot start the reaper of warm runs (the next command cleans up): %s", err)
    return
  end
  st = core.starttime(pid)
  if st then state.write_identity(p.reaper, pid, st) end
  log.debug("reaper %d waits for the warm runs left", pid)
end

--- The reaper's body (a detached process in the holder's namespaces).
function M.main(base, runtime_dir, config)
  local instance = require "rootlessnetns.instance"
  local netns = require "rootlessnetns.netns"
  local refs = require "rootlessnetns.refs"
  local session = require "rootlessnetns.session"
  local ns = assert(netns.new { config = config, state_dir = base, in_process = true,
    getenv = function(k) if k == "XDG_RUNTIME_DIR" then return runtime_dir end return os.getenv(k) end })
  assert(session.open(ns))
  local p = ns.paths
  local pause = 5
  while true do
    if #M.warm_runs(p) > 0 then
      core.sleep(pause)
      pause = math.min(pause * 2, 100)
    else
      local s <close> = assert(session.begin(ns, false))
      -- (refs.users reaps the dead references: zero means nobody)
      local users, nets, connections = refs.users(s.ns)
      if users == 0 then instance.cleanup(ns) end
      if users == 0 or nets > 0 or connections > 0 or #M.warm_runs(p) == 0 then
        -- nobody left, or someone who will clean up after themselves
        core.unlink(p.reaper)
        return
      end
      pause = 5 -- a warm run came meanwhile: wait for it too
    end
  end
end

return M
