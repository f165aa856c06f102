--- doctor: is this host able to give an unprivileged user a rootless netns?
-- Each check answers ok, warn or fail, with the exact fix.
local core = require "rootlessnetns"
local child = require "rootlessnetns.child"
local holder = require "rootlessnetns.holder"
local procs = require "rootlessnetns.procs"
local state = require "rootlessnetns.state"

-- (Lua has no octal literals)
local SETUID_BIT = tonumber("4000", 8)
local M = {}

local read = state.read_host_file

local function num(path)
  local s = read(path)
  return s and tonumber(s:match("%-?%d+"))
end

--- The first range of @size ids from 100000 on, in steps of @size, that
-- no line of @texts (subuid and subgid files) uses, for any user.
function M.free_range(texts, size)
  local used = {}
  for _, text in ipairs(texts) do
    for line in (text or ""):gmatch("[^\n]+") do
      local start, count = line:match("^%s*[^:#%s][^:]*:(%d+):(%d+)%s*$")
      if start then used[#used + 1] = { tonumber(start), tonumber(start) + tonumber(count) } end
    end
  end
  local start = 100000
  while true do
    local clash
    for _, r in ipairs(used) do
      if start < r[2] and r[1] < start + size then clash = r break end
    end
    if not clash then return start, start + size - 1 end
    start = start + size
  end
end

--- Run every check.
-- @tparam table env {getenv, uid, gid, user (default: the name of uid in
--   /etc/passwd, never $USER), root (path prefix for specs)}
-- @treturn table list of {name, status = "ok"|"warn"|"fail", detail, fix}
function M.run(env)
  local getenv = env.getenv or os.getenv
  local root = env.root or ""
  local uid = env.uid or core.getuid()
  local results = {}
  local function add(name, status, detail, fix)
    results[#results + 1] = { name = name, status = status, detail = detail, fix = fix }
  end

  -- user namespaces
  local max = num(root .. "/proc/sys/user/max_user_namespaces")
  local clone = num(root .. "/proc/sys/kernel/unprivileged_userns_clone")
  local apparmor = num(root .. "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
  if max == 0 then
    add("user namespaces", "fail", "user.max_user_namespaces is 0",
      "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)")
  elseif clone == 0 then
    add("user namespaces", "fail", "kernel.unprivileged_userns_clone is 0",
      "sysctl -w kernel.unprivileged_userns_clone=1 (and persist it in /etc/sysctl.d/)")
  else
    add("user namespaces", "ok", ("enabled (max_user_namespaces %s)"):format(tostring(max or "unknown")))
  end
  if apparmor == 1 then
    add("apparmor userns restriction", "warn",
      "kernel.apparmor_restrict_unprivileged_userns is 1: unconfined programs may not mount in user namespaces",
      "install an AppArmor profile with `userns,` for lua5.4,"
        .. " or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
  end

  -- subordinate ids
  -- the name of the real uid, as the holder maps it ($USER may be unset or lie)
  local user = env.user or procs.user_name(uid, root .. "/etc/passwd") or tostring(uid)
  local subuid_text, subgid_text = read(root .. "/etc/subuid"), read(root .. "/etc/subgid")
  local subuid = holder.parse_subids(subuid_text, user, uid)
  local subgid = holder.parse_subids(subgid_text, user, uid)
  if #subuid > 0 and #subgid > 0 then
    local n = 0
    for _, r in ipairs(subuid) do n = n + r.count end
    add("subordinate ids", "ok", ("%d uids from /etc/subuid, %d gid ranges from /etc/subgid"):format(n, #subgid))
  else
    local first, last = M.free_range({ subuid_text, subgid_text }, 65536)
    add("subordinate ids", "warn",
      ("no ranges for %s in /etc/subuid and /etc/subgid: only uid 0 will exist inside"):format(user),
      ("usermod --add-subuids %d-%d --add-subgids %d-%d %s"):format(first, last, first, last, user))
  end

  -- newuidmap / newgidmap
  for _, tool in ipairs { "newuidmap", "newgidmap" } do
    local path = child.which(tool, getenv)
    if not path then
      add(tool, #subuid > 0 and "fail" or "warn", tool .. " not found", "apt-get install uidmap")
    else
      local st = core.lstat(path)
      local real = st and st.type == "link" and core.readlink(path) or nil
      st = real and core.lstat(real:sub(1, 1) == "/" and real or (path:match("^(.*)/") .. "/" .. real)) or st
      local setuid = st and st.uid == 0 and (st.mode & SETUID_BIT) ~= 0
      if setuid then
        add(tool, "ok", path .. " (setuid root)")
      else
        add(tool, "warn", path .. " is not setuid root (file capabilities may still work)",
          ("chmod u+s %s, or setcap cap_setuid+ep %s"):format(path, path))
      end
    end
  end

  -- /dev/net/tun
  local tun = root .. "/dev/net/tun"
  if not core.lstat(tun) then
    add("/dev/net/tun", "fail", "missing", "modprobe tun (in a container: pass the device through)")
  elseif not core.access(tun, "rw") then
    add("/dev/net/tun", "fail", "not readable and writable by this user",
      "chmod 0666 /dev/net/tun (the usual mode), or setfacl -m u:" .. user .. ":rw /dev/net/tun")
  else
    add("/dev/net/tun", "ok", "read/write")
  end

  -- Debian's passt AppArmor profile confines pasta to a few paths
  local aa = read(root .. "/sys/module/apparmor/parameters/enabled")
  if aa and aa:match("^Y") and core.lstat(root .. "/etc/apparmor.d/usr.bin.passt") then
    add("apparmor passt profile", "warn",
      "/etc/apparmor.d/usr.bin.passt confines pasta: it may be denied the netns pin and pid file"
        .. " under $XDG_RUNTIME_DIR/rootlessnetns",
      "use backend = \"slirp4netns\" (the default with this pasta), or aa-complain /usr/bin/passt")
  end

  -- backends
  local pasta = require "rootlessnetns.backend.pasta"
  local slirp = require "rootlessnetns.backend.slirp4netns"
  local cfg = require("rootlessnetns.config").defaults()
  local ppath, spath = pasta.binary(cfg), slirp.binary(cfg)
  if ppath then
    if pasta.modern(ppath) then
      add("pasta", "ok", ppath .. " (with --map-guest-addr)")
    else
      add("pasta", "warn", ppath .. " is a release before 2024-08-21: no --map-guest-addr (nothing"
        .. " reaches the host under --no-map-gw) and repeated options are fatal",
        "backend = auto picks slirp4netns when it is installed; or install a newer passt")
    end
  else
    add("pasta", spath and "warn" or "fail", "not found", "apt-get install passt")
  end
  if spath then
    local f = slirp.features(spath)
    if f and f["--enable-sandbox"] and f["--disable-host-loopback"] and f["--enable-ipv6"] then
      add("slirp4netns", "ok", spath)
    else
      add("slirp4netns", "warn", spath .. " lacks some flags podman uses", "install slirp4netns 1.1 or later")
    end
  else
    add("slirp4netns", ppath and "warn" or "fail", "not found", "apt-get install slirp4netns")
  end

  -- `netns connect` drives iproute2 and nftables inside the rootless netns
  for _, tool in ipairs { { "ip", "iproute2" }, { "nft", "nftables" } } do
    local path = child.which(tool[1], getenv)
    if path then
      add(tool[1], "ok", path)
    else
      add(tool[1], "warn", tool[1] .. " not found: `netns connect` cannot work", "apt-get install " .. tool[2])
    end
  end

  -- shaped links: which qdiscs this kernel has, tried in a namespace of
  -- our own
  local have = M.shaping(getenv)
  if not have then
    add("link shaping", "warn", "cannot tell (tc not found, or no user namespace to try it in)",
      "apt-get install iproute2")
  elseif have.netem then
    add("link shaping", "ok", "--rate (tbf), --delay, --jitter and --loss (netem)")
  elseif have.tbf then
    add("link shaping", "warn", "--rate only: this kernel has no netem qdisc (sch_netem), so --delay, --jitter "
      .. "and --loss are refused", "modprobe sch_netem as root, or a kernel built with CONFIG_NET_SCH_NETEM")
  else
    add("link shaping", "warn", "none: this kernel has neither tbf (sch_tbf) nor netem (sch_netem)",
      "modprobe sch_tbf sch_netem as root")
  end

  -- runtime dir
  local dir, err = state.runtime_dir(getenv, uid)
  if dir then
    add("XDG_RUNTIME_DIR", "ok", dir)
  else
    add("XDG_RUNTIME_DIR", "fail", err, "export XDG_RUNTIME_DIR to a directory you own with mode 0700")
  end
  return results
end

--- Which qdiscs this kernel has ({tbf, htb, netem}), tried on the
-- loopback of a network namespace of a user namespace of our own; nil
-- when that cannot be tried.
function M.shaping(getenv)
  local tc = child.which("tc", getenv)
  if not tc then return nil end
  local uid, gid = core.getuid()
  local have = require("rootlessnetns.worker").call(nil, function()
    assert(core.unshare(core.CLONE_NEWUSER | core.CLONE_NEWNET))
    -- root in there, so that tc keeps its capabilities across exec
    local function put(path, text)
      local f = assert(io.open(path, "w"))
      assert(f:write(text))
      assert(f:close())
    end
    put("/proc/self/setgroups", "deny")
    put("/proc/self/uid_map", ("0 %d 1"):format(uid))
    put("/proc/self/gid_map", ("0 %d 1"):format(gid))
    return require("rootlessnetns.lab.shaping").supported(function(args)
      local how, status = child.capture({ tc, table.unpack(args) }, 5000)
      return how == "exited" and status == 0 or nil
    end)
  end)
  return type(have) == "table" and have or nil
end

--- Did any check fail?
function M.failed(results)
  for _, r in ipairs(results) do
    if r.status == "fail" then return true end
  end
  return false
end

return M
