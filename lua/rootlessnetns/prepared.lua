--- The prepared mount namespace of runs: warm runs (rootlessnetns.warm)
-- and the slow path's, the library's `ns:run` included, join it.
--
-- The mount plan is applied once per namespace lifetime, not once per
-- run: a keeper process (`rootlessnetns-mounts`, detached, in the
-- holder's namespaces) unshares a mount namespace from the holder's,
-- makes `/` rslave, applies the plan and stays, so that a warm run joins
-- its user and mount namespaces in one setns and unshares a private copy
-- (a forked run, in the holder's user namespace already, joins just the
-- mount namespace).
-- (Pinning the namespace with a bind mount instead is refused by the
-- kernel's loop check, EINVAL, whenever the binder's mount namespace does
-- not sort before the new one, which on Linux 6.18 is often.)
--
-- What it was built from (holder and plan) is recorded beside it
-- (`mnt-keeper.plan`); a run whose plan differs applies its own or, for
-- the CLI, rebuilds it, so a run never gets a stale plan.  It holds copies of the
-- pins that existed when it was made, so it goes whenever one of them
-- goes (cleanup, `netns add`/`del`) and the next slow run makes it again.
-- The keeper lives while its record (`rootless-netns/mnt-keeper`) names
-- it: a command killed half way, or a cleanup from anywhere, ends it
-- within a second.
local core = require "rootlessnetns"
local daemon = require "rootlessnetns.daemon"
local log = require "rootlessnetns.log"
local state = require "rootlessnetns.state"
local warm = require "rootlessnetns.warm"

local M = {}

M.TITLE = "rootlessnetns-mounts"

-- An entry's fields (every plain value, in a stable order) as Lua text.
local function entry_text(e)
  local keys = {}
  for k, v in pairs(e) do
    local t = type(v)
    if type(k) == "string" and (t == "string" or t == "number" or t == "boolean") then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local fields = {}
  for _, k in ipairs(keys) do
    local v = e[k]
    fields[#fields + 1] = ("%s = %s"):format(k, type(v) == "string" and ("%q"):format(v) or tostring(v))
  end
  return "{ " .. table.concat(fields, ", ") .. " }"
end

--- The plan as one line of text, to tell plans apart.
function M.fingerprint(plan)
  local out = {}
  for _, e in ipairs(plan) do out[#out + 1] = entry_text(e) end
  return (table.concat(out, "; "):gsub("[\r\n]", "\\n"))
end

-- The plan as a Lua chunk, for the keeper's fresh state.
local function plan_chunk(plan)
  local out = {}
  for _, e in ipairs(plan) do out[#out + 1] = entry_text(e) end
  return "return { " .. table.concat(out, ",\n") .. " }"
end

-- What the keeper runs, in a fresh Lua state.
local KEEPER = [[
local path, cpath, plan, status, record = ...
package.path, package.cpath = path, cpath
require("rootlessnetns.prepared").keeper_main(plan, status, record)
]]

--- The keeper's body: make the namespace, say so, then stay while the
-- record names us.
function M.keeper_main(plan_text, status, record)
  local mounts = require "rootlessnetns.mounts"
  local me = daemon.me()
  local plan = load(plan_text, "=plan", "t", {})
  -- its steps, for the builder to log (our stderr is /dev/null)
  local steps = {}
  local collect = {
    enabled = function() return true end,
    debug = function(fmt, ...) steps[#steps + 1] = fmt:format(...):gsub("\n", " ") end,
  }
  local ok, err = plan ~= nil, "unreadable plan"
  if ok then ok, err = core.unshare(core.CLONE_NEWNS) end
  if ok then ok, err = core.mount(nil, "/", nil, "rslave") end
  if ok then ok, err = mounts.apply(plan(), collect) end
  daemon.say(status, ok, err, steps)
  if not ok then return end
  daemon.await_record(record, me)
  while daemon.named(record, me) do core.sleep(1000) end
end

--- Forget the prepared mount namespace (idempotent, from anywhere).
function M.drop(ns)
  local p = ns.paths
  core.unlink(p.warm)
  local pid, st = state.read_identity(p.keeper)
  if pid then core.kill(pid, st, core.SIGKILL) end
  core.unlink(p.keeper)
  core.unlink(p.keeper .. ".plan")
end

-- What a keeper was built from: its holder and the plan's fingerprint.
local function built_from(h, fingerprint)
  return ("holder %d %d\n%s"):format(h.pid, h.starttime, fingerprint)
end

--- The live keeper of holder @h, if it was built from @fingerprint.
-- @treturn table|nil {pid, starttime}
-- @treturn boolean a live keeper with another plan (or holder) exists
local function current(p, h, fingerprint)
  local pid, st = state.read_identity(p.keeper)
  if not (pid and core.alive(pid, st)) then return nil, false end
  local want = built_from(h, fingerprint)
  if core.readfile(p.keeper .. ".plan", #want + 1) ~= want then return nil, true end
  return { pid = pid, starttime = st }
end

-- Start a keeper with @plan and wait until it is ready.  Lock held, in
-- the holder.
-- @treturn[1] table {pid, starttime}
-- @return[2] nil, message[, the signal that ended the wait]
local function build(ns, plan, h, fingerprint)
  local p = ns.paths
  M.drop(ns)
  local status = p.keeper .. ".status"
  local wok, werr0 = core.writefile(p.keeper .. ".plan", built_from(h, fingerprint), tonumber("600", 8))
  if not wok then return nil, werr0 end
  local keeper, steps, sig = daemon.start(ns, {
    title = M.TITLE, code = KEEPER, args = { package.path, package.cpath, plan_chunk(plan), status, p.keeper },
    record = p.keeper, status = status, doing = "preparing the mount namespace",
    failed = "prepare the mount namespace", silent = "the keeper did not answer", gone = "the keeper ended at once",
  })
  if not keeper then
    M.drop(ns)
    return nil, steps, sig
  end
  for _, step in ipairs(steps) do log.debug("%s (in the prepared mount namespace)", step) end
  log.debug("prepared the mount namespace of warm runs (keeper %d)", keeper.pid)
  return keeper
end

--- After a slow run has made sure of everything (lock held, in our own
-- holder @h, the backend @brec live): the keeper of the prepared mount
-- namespace with @plan, for this run to join; for the CLI (`ns.warm`),
-- also the record warm runs must find to use it.  A library handle
-- builds a keeper when there is none, but never replaces one built from
-- another plan (another handle's, or the CLI's): it applies its own plan
-- then.  A failure only costs speed (logged); a signal while it waits
-- ends the run.
-- @treturn[1] true
-- @treturn[1] table|nil the keeper {pid, starttime} to join, if any
-- @return[2] nil, message, EINTR, "signal", the signal number
function M.ensure(ns, plan, h, brec)
  local p = ns.paths
  if not (h and h.mode == "own" and not h.nested and state.valid_identity(brec)) then return true end
  local fingerprint = M.fingerprint(plan)
  local keeper, other = current(p, h, fingerprint)
  if not keeper and (ns.warm or not other) then
    local err, sig
    keeper, err, sig = build(ns, plan, h, fingerprint)
    if sig then return nil, err, core.errno.EINTR, "signal", sig end
    if not keeper then
      log.debug("%s (runs apply their plan themselves)", err)
      return true
    end
  end
  if not (keeper and ns.warm) then return true, keeper end
  local old = core.readfile(p.warm, 65536)
  local resolv_path = brec.resolv_source or ns.cfg.host_resolv_conf or "/etc/resolv.conf"
  local text = warm.encode {
    holder_pid = h.pid, holder_starttime = h.starttime,
    keeper_pid = keeper.pid, keeper_starttime = keeper.starttime,
    backend_pid = brec.pid, backend_starttime = brec.starttime,
    config = warm.identity(ns.warm.config), resolv = warm.identity(resolv_path), resolv_path = resolv_path,
    plan = fingerprint,
  }
  if old ~= text then
    local ok, err = core.writefile(p.warm, text, tonumber("600", 8))
    if not ok then log.warn("%s", err) end
  end
  return true, keeper
end

return M
