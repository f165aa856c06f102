--- Every reference to the rootless netns, and the one "clean up at zero".
--
-- Three kinds keep it up:
--   nets         counted by `setup` and `teardown` (ref-count)
--   run records  one file per live command (refs/<pid>-<starttime>): the
--                command's own identity, so a SIGKILLed caller leaks
--                nothing past the next command, which reaps dead records
--                (a warm run's holds "exec": see rootlessnetns.reaper)
--   connections  completed leases of `netns connect` (a connect killed half
--                way holds none; its lease is repaired away)
-- Every function here is called with the session's lock held.
local core = require "rootlessnetns"
local instance = require "rootlessnetns.instance"
local log = require "rootlessnetns.log"
local reaper = require "rootlessnetns.reaper"
local state = require "rootlessnetns.state"

local M = {}

--- How many users the namespace of @ns has.
-- @treturn integer all of them
-- @treturn integer the nets among them
-- @treturn integer the connections among them
function M.users(ns)
  local nets, warning = state.read_count(ns.paths.refcount)
  if warning then
    log.warn("%s", warning)
    state.write_count(ns.paths.refcount, nets)
  end
  local connections = state.connections(ns.paths)
  return nets + state.live_refs(ns.paths) + connections, nets, connections
end

--- Record the process @proc (a command we started) as a user.
-- @treturn[1] table the record, for remove_run
-- @return[2] nil, message
function M.add_run(paths, proc)
  local pid = proc:pid()
  local starttime, err = core.starttime(pid)
  if not starttime then return nil, err end
  local ok, werr = state.add_ref(paths, pid, starttime)
  if not ok then
    -- refs/ replaced by something else is ours to rebuild (its records
    -- are lost with it: those commands run on uncounted until they end)
    local st = core.lstat(paths.refs)
    if not st or st.type ~= "directory" then
      log.warn("`%s` is %s; rebuilding it", paths.refs, st and "not a directory" or "missing")
      if (not st or core.unlink(paths.refs)) and core.mkdir(paths.refs, tonumber("700", 8)) then
        ok, werr = state.add_ref(paths, pid, starttime)
      end
    end
  end
  if not ok then return nil, werr end
  return { pid = pid, starttime = starttime }
end

--- Drop the reference record @rec of add_run (nil: nothing was recorded).
-- A record already gone is success.
function M.remove_run(paths, rec)
  if rec then return state.remove_ref(paths, rec.pid, rec.starttime) end
  return true
end

--- The most nets that may be counted: far above any real use, and far
-- below where the count stops being exact.
M.MAX_NETS = 1000000

--- Count @n more nets.
-- @return[2] nil, message (past MAX_NETS: nothing is counted)
function M.add_nets(paths, n)
  local count = state.read_count(paths.refcount)
  if count + n > M.MAX_NETS then
    return nil, ("setup: %d more would make %d users, past the bound of %d; `rootlessnetns teardown --nets N` first")
      :format(n, count + n, M.MAX_NETS)
  end
  return state.write_count(paths.refcount, count + n)
end

--- Count @n fewer nets (never below zero).
function M.drop_nets(paths, n)
  return state.write_count(paths.refcount, math.max(0, state.read_count(paths.refcount) - n))
end

--- The last one out cleans up: remove the namespace when nobody uses it.
-- When only warm runs are left (no CLI waits for them), the reaper does
-- it after the last of them.
-- @treturn[1] true (removed, or still in use)
-- @return[2] nil, message
function M.clean_up_if_unused(ns)
  local users, nets, connections = M.users(ns)
  if users == 0 then return instance.cleanup(ns) end
  if nets == 0 and connections == 0 then reaper.ensure(ns) end
  return true
end

return M
