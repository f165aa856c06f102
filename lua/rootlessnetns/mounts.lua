--- The mount plan: what the namespace's private mount view looks like.
--
-- The plan is data, an ordered list of entries, built here with podman's
-- order and handed to the config's `mounts(plan, ctx)` hook, which may add,
-- drop or reorder entries.  Each entry is
--   { name = "...", source = path|nil, target = path, fstype = string|nil,
--     options = "rbind"|..., create = "dir"|"file"|nil,
--     relabel = "selinux label"|nil, optional = true|nil }
-- `create` makes the target first; `relabel` sets the SELinux label of the
-- target instead of mounting; `optional` entries may fail (logged only).
local core = require "rootlessnetns"

-- (Lua has no octal literals)
local PRIVATE_DIR = tonumber("700", 8)
local PRIVATE_FILE = tonumber("600", 8)
local M = {}

local errno = core.errno

M.MAX_SYMLINKS = 255
M.SELINUX_RUN_LABEL = "system_u:object_r:iptables_var_run_t:s0"

local function split(path)
  local parts = {}
  for comp in path:gmatch("[^/]+") do parts[#parts + 1] = comp end
  return parts
end

--- Lexically clean an absolute path ("." and ".." removed).
function M.clean(path)
  local out = {}
  for _, comp in ipairs(split(path)) do
    if comp == ".." then
      out[#out] = nil
    elseif comp ~= "." then
      out[#out + 1] = comp
    end
  end
  return "/" .. table.concat(out, "/")
end

local function under_run(path)
  return path:sub(1, 5) == "/run/"
end

--- Where a bind onto @path must go: follow symlinks one component at a time
-- (relative links re-based on the link's directory) and stop at the first
-- resolved path under /run/, because /run is replaced inside.  A plain
-- file comes back as is.
-- @tparam string path usually "/etc/resolv.conf"
-- @tparam[opt] table fs {lstat, readlink} (default: the core's), for specs
-- @treturn[1] string target
-- @return[2] nil, message, errno
function M.resolve_target(path, fs)
  fs = fs or core
  local links = 0
  path = M.clean(path)
  ::restart::
  if under_run(path) then return path end
  local parts = split(path)
  local cur = ""
  for i, comp in ipairs(parts) do
    cur = cur .. "/" .. comp
    local st, err, code = fs.lstat(cur)
    if not st then
      return nil, ("resolve `%s`: %s"):format(path, err), code
    end
    if st.type == "link" then
      links = links + 1
      if links > M.MAX_SYMLINKS then
        return nil, ("resolve `%s`: too many levels of symbolic links"):format(path), errno.ELOOP
      end
      local target, rerr, rcode = fs.readlink(cur)
      if not target then return nil, rerr, rcode end
      if target:sub(1, 1) ~= "/" then
        target = cur:match("^(.*)/[^/]*$") .. "/" .. target
      end
      local rest = table.concat(parts, "/", i + 1)
      path = M.clean(rest ~= "" and (target .. "/" .. rest) or target)
      goto restart
    end
  end
  return path
end

local function exists(path)
  return core.lstat(path) ~= nil
end

--- podman's plan, in podman's order.
-- @tparam table ctx {dir, runtime_dir, resolv_source, resolv_target,
--   systemd_run, cni, cni_target (deepest existing of /var/lib/cni, /var/lib, /var), selinux}
function M.default_plan(ctx)
  local dir = ctx.dir
  local plan = {}
  local function add(e) plan[#plan + 1] = e end
  -- 1. keep $XDG_RUNTIME_DIR (and so our own state) reachable once /run is replaced
  if ctx.runtime_dir then
    add { name = "runtime-dir", source = ctx.runtime_dir, target = dir .. ctx.runtime_dir,
          options = "rbind", create = "dir" }
  end
  -- 2. sockets such as /dev/log point into /run/systemd
  if ctx.systemd_run then
    add { name = "systemd", source = "/run/systemd", target = dir .. "/run/systemd",
          options = "rbind", create = "dir" }
  end
  -- 3. resolv.conf, onto its first target under /run when it is a symlink there
  local target = ctx.resolv_target or "/etc/resolv.conf"
  if under_run(target) then
    if target:sub(1, #"/run/systemd/resolve/") == "/run/systemd/resolve/" then
      -- systemd-resolved replaces its stub file; a bind onto a dentry that
      -- is unlinked on the host disappears, a tmpfs shield keeps ours.
      add { name = "resolv-shield", source = "tmpfs", target = dir .. "/run/systemd/resolve",
            fstype = "tmpfs", options = "nosuid,nodev,noexec,mode=0755", create = "dir" }
    end
    target = dir .. target
  end
  add { name = "resolv.conf", source = ctx.resolv_source, target = target,
        options = "bind", create = under_run(ctx.resolv_target or "") and "file" or nil }
  -- 4. CNI keeps its state under /var/lib/cni: a private copy of its
  -- deepest existing ancestor is bound over it (nobody may create it there)
  if ctx.cni and ctx.cni_target then
    add { name = "cni", source = dir .. ctx.cni_target, target = ctx.cni_target,
          options = "bind", source_create = "dir" }
  end
  -- 5. iptables inside wants its lock file under a /run labelled for it
  if ctx.selinux then
    add { name = "selinux-relabel", target = dir .. "/run", relabel = M.SELINUX_RUN_LABEL, optional = true }
  end
  -- 6. the new /run
  add { name = "run", source = dir .. "/run", target = "/run", options = "rbind", create = "dir" }
  -- what is made under our directory is never made through a symlink
  for _, e in ipairs(plan) do e.confine = dir end
  return plan
end

--- Check a plan returned by a config hook.
function M.validate(plan)
  if type(plan) ~= "table" then
    return nil, ("the mounts hook must return a list of entries, not a %s"):format(type(plan))
  end
  for i, e in ipairs(plan) do
    if type(e) ~= "table" then
      return nil, ("mount plan entry %d is a %s, not a table"):format(i, type(e))
    end
    if type(e.target) ~= "string" or e.target:sub(1, 1) ~= "/" then
      return nil, ("mount plan entry %d (%s): `target` must be an absolute path"):format(i, tostring(e.name))
    end
    for _, k in ipairs { "source", "fstype", "options", "create", "relabel", "name", "confine" } do
      if e[k] ~= nil and type(e[k]) ~= "string" then
        return nil, ("mount plan entry %d (%s): `%s` must be a string"):format(i, tostring(e.name), k)
      end
    end
  end
  return plan
end

--- mkdir -p.  Below @confine (our state directory), a component that
-- exists must be a real directory: a symlink planted there would move
-- what we create (and bind) somewhere else.
local function mkdir_p(path, confine)
  local cur = ""
  for _, comp in ipairs(split(path)) do
    cur = cur .. "/" .. comp
    local ok, err, code = core.mkdir(cur, PRIVATE_DIR)
    if not ok and code ~= errno.EEXIST then return nil, err, code end
    if not ok and confine and cur:sub(1, #confine + 1) == confine .. "/" then
      local st = core.lstat(cur)
      if not st or st.type ~= "directory" then
        return nil, ("`%s` is %s, not a directory; refusing to follow it (`rootlessnetns cleanup` rebuilds it)")
          :format(cur, st and st.type == "link" and "a symlink" or "something else"), errno.ENOTDIR
      end
    end
  end
  return true
end
M.mkdir_p = mkdir_p

local function create_target(e)
  if e.create == "dir" then
    return mkdir_p(e.target, e.confine)
  elseif e.create == "file" then
    local ok, err, code = mkdir_p(e.target:match("^(.*)/[^/]*$"), e.confine)
    if not ok then return nil, err, code end
    if not exists(e.target) then
      local fd
      fd, err, code = core.open(e.target, "rw", PRIVATE_FILE)
      if not fd then return nil, err, code end
      fd:close()
    end
  end
  if e.source_create == "dir" and e.source then
    local ok, err, code = mkdir_p(e.source, e.confine)
    if not ok then return nil, err, code end
  end
  -- (mount(2) follows a symlink given as the source of a bind)
  if e.confine and e.source and e.source:sub(1, #e.confine + 1) == e.confine .. "/" then
    local st = core.lstat(e.source)
    if st and st.type == "link" then
      return nil, ("`%s` is a symlink; refusing to follow it (`rootlessnetns cleanup` rebuilds it)")
        :format(e.source), errno.ELOOP
    end
  end
  return true
end

--- Apply a plan in the current (private) mount namespace.
-- @treturn[1] true
-- @return[2] nil, "mount step `name`: ...", errno
function M.apply(plan, log)
  local debug = log and log.enabled("debug")
  for _, e in ipairs(plan) do
    local t0 = debug and core.clock()
    local ok, err, code = create_target(e)
    if ok then
      if e.relabel then
        ok, err, code = core.lsetxattr(e.target, "security.selinux", e.relabel)
        if not ok and code == errno.ENOTSUP then ok = true end
      else
        ok, err, code = core.mount(e.source, e.target, e.fstype, e.options)
      end
    end
    if not ok then
      if not e.optional then
        return nil, ("mount step `%s`: %s"):format(e.name or "?", err), code
      end
      if log then log.debug("optional mount step `%s` failed: %s", e.name or "?", err) end
    elseif debug then
      log.debug("mounted %s: %s on %s (%s) in %.2f ms", e.name or "?", e.source or e.fstype or "-", e.target,
        e.relabel and ("label " .. e.relabel) or e.options or "", (core.clock() - t0) * 1000)
    end
  end
  return true
end

return M
