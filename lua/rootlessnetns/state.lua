--- State on disk: where it lives, who may own it, and the files in it.
--
-- $XDG_RUNTIME_DIR/rootlessnetns/            0700, ours, never a symlink
--   lock                     flock; outside the directory cleanup removes
--   holder.json              holder pid + start time
--   rootless-netns/          removed by cleanup
--     rootless-netns         the netns pin (an nsfs bind mount in the holder)
--     rootless-netns-conn.pid  backend pid (plain number, as podman writes it)
--     backend.json, info.json, ref-count, refs/, resolv.conf, run/, backend.log
--
-- Every file is written atomically (temporary file + rename) and read
-- without following symlinks; damaged content is reported naming the file.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"

-- (Lua has no octal literals)
local OTHERS_WRITE = tonumber("022", 8) -- group or others may write
local PRIVATE_DIR = tonumber("700", 8)
local OTHERS_ANY = tonumber("077", 8) -- group or others may do anything
local PRIVATE_FILE = tonumber("600", 8)
local M = {}

local errno = core.errno

--- A file of the host's (/etc/resolv.conf, /etc/subuid, /proc/...), read
-- following symlinks as any reader would.  nil when it cannot be read.
function M.read_host_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

--- Check that @path is a real directory owned by @uid and closed to others.
-- @tparam string path the directory (a symlink is refused)
-- @tparam int uid its owner
-- @tparam number forbidden permission bits that must be clear
-- @tparam string what names the directory in the message
function M.check_private_dir(path, uid, forbidden, what)
  local st, err = core.lstat(path)
  if not st then return nil, err end
  if st.type == "link" then
    return nil, ("%s `%s` is a symlink; refusing to use it"):format(what, path)
  end
  if st.type ~= "directory" then
    return nil, ("%s `%s` is not a directory"):format(what, path)
  end
  if st.uid ~= uid then
    return nil, ("%s `%s` is owned by uid %d, not by uid %d; refusing to use it"):format(what, path, st.uid, uid)
  end
  if st.mode & forbidden ~= 0 then
    return nil, ("%s `%s` has mode %04o, open to other users; it must be 0700 (chmod 0700 %s)")
      :format(what, path, st.mode, path)
  end
  return true
end

--- XDG_RUNTIME_DIR as podman resolves it: the variable, else /run/user/<uid>,
-- else $TMPDIR/rootlessnetns-run-<uid>; each checked for owner and mode.
function M.runtime_dir(getenv, uid)
  local x = getenv("XDG_RUNTIME_DIR")
  if x and x ~= "" then
    if x:sub(1, 1) ~= "/" then
      return nil, ("XDG_RUNTIME_DIR `%s` is not an absolute path"):format(x)
    end
    local ok, err = M.check_private_dir(x, uid, OTHERS_WRITE, "XDG_RUNTIME_DIR")
    if not ok then return nil, err end
    return x
  end
  local run = ("/run/user/%d"):format(uid)
  if M.check_private_dir(run, uid, OTHERS_WRITE, "runtime dir") then
    return run
  end
  local tmp = getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  local dir = ("%s/rootlessnetns-run-%d"):format(tmp, uid)
  local ok, err, code = core.mkdir(dir, PRIVATE_DIR)
  if not ok and code ~= errno.EEXIST then return nil, err end
  ok, err = M.check_private_dir(dir, uid, OTHERS_ANY, "runtime dir")
  if not ok then return nil, err end
  return dir
end

--- Every path of the layout, from the base directory.
function M.paths(base)
  local dir = base .. "/rootless-netns"
  return {
    base = base,
    lock = base .. "/lock",
    holder = base .. "/holder.json",
    dir = dir,
    pin = dir .. "/rootless-netns",
    pidfile = dir .. "/rootless-netns-conn.pid",
    backend = dir .. "/backend.json",
    info = dir .. "/info.json",
    refcount = dir .. "/ref-count",
    refs = dir .. "/refs",
    resolv = dir .. "/resolv.conf",
    run = dir .. "/run",
    log = dir .. "/backend.log",
    leases = dir .. "/leases.json",
    built = dir .. "/built-from.json",
    keeper = dir .. "/mnt-keeper",
    warm = dir .. "/warm-run",
    reaper = dir .. "/reaper",
    names = base .. "/netns",
    orphans = base .. "/orphans.json",
  }
end

--- Create (0700) or check the base directory.
function M.prepare_base(base, uid)
  local ok, err, code = core.mkdir(base, PRIVATE_DIR)
  if not ok and code ~= errno.EEXIST then return nil, err end
  return M.check_private_dir(base, uid, OTHERS_ANY, "state dir")
end

--- Create the removable directory and its skeleton (idempotent).
function M.prepare_dir(p)
  for _, d in ipairs { p.dir, p.refs, p.run } do
    local ok, err, code = core.mkdir(d, PRIVATE_DIR)
    if not ok and code ~= errno.EEXIST then return nil, err end
    local st = core.lstat(d)
    if not ok and st and st.type ~= "directory" then
      -- a symlink or a file where our directory goes: ours to replace
      ok, err = core.unlink(d)
      if ok then ok, err = core.mkdir(d, PRIVATE_DIR) end
      if not ok then return nil, err end
    end
  end
  return true
end

--- Read a JSON state file.
-- @treturn[1] table the content
-- @treturn[2] nil the file does not exist
-- @return[3] nil, "`file`: problem" for unreadable or damaged content
function M.read_json(path)
  local text, err, code = core.readfile(path, 1 << 20)
  if not text then
    if code == errno.ENOENT then return nil end
    return nil, err
  end
  local value, jerr = cjson.decode(text)
  if type(value) ~= "table" then
    return nil, ("`%s`: not a JSON object (%s)"):format(path, jerr or "wrong type")
  end
  return value
end

--- Write @value as JSON to @path atomically (0600).
-- @treturn[1] true
-- @return[2] nil, message, errno
function M.write_json(path, value)
  local text = assert(cjson.encode(value))
  return core.writefile(path, text .. "\n", PRIVATE_FILE)
end

--- A {pid, starttime} record is sane when both are positive integers.
-- JSON numbers arrive as floats; integral ones are made integers in place.
function M.valid_identity(rec)
  if type(rec) ~= "table" or type(rec.pid) ~= "number" or type(rec.starttime) ~= "number" then
    return false
  end
  local pid, st = math.tointeger(rec.pid), math.tointeger(rec.starttime)
  if not (pid and st and pid > 0 and pid < 0x7fffffff and st >= 0) then return false end
  rec.pid, rec.starttime = pid, st
  return true
end

--- The nets counter of setup/teardown.  Missing or empty means 0; garbage
-- (not a non-negative integer) is reported (the caller repairs it) and
-- counts as 0.
-- @treturn integer count
-- @treturn string|nil what was wrong with the file
function M.read_count(path)
  local text, err, code = core.readfile(path, 64)
  if not text then
    if code == errno.ENOENT then return 0 end
    return 0, err
  end
  text = text:match("^%s*(.-)%s*$")
  if text == "" then return 0 end
  local n = math.tointeger(tonumber(text))
  if not n or not text:match("^%-?%d+$") then
    return 0, ("`%s`: not a number (%q); counting 0"):format(path, text:sub(1, 32))
  end
  if n < 0 then
    return 0, ("`%s`: negative count %d; counting 0"):format(path, n)
  end
  -- (a large count is kept: refs.add_nets bounds what is added, and
  -- throwing a valid count away would tear down a namespace in use)
  return n
end

--- Write the count @n (ref-count) atomically.
function M.write_count(path, n)
  return core.writefile(path, tostring(n), PRIVATE_FILE)
end

--- A process named by a one-line record "pid starttime" (the keeper's,
-- the reaper's).
-- @treturn integer|nil pid
-- @treturn integer|nil start time
function M.read_identity(path)
  local pid, st = (core.readfile(path, 64) or ""):match("^(%d+) (%d+)\n$")
  return math.tointeger(tonumber(pid)), math.tointeger(tonumber(st))
end

--- Write a one-line identity record "pid starttime" atomically (what
-- read_identity reads).
function M.write_identity(path, pid, starttime)
  return core.writefile(path, ("%d %d\n"):format(pid, starttime), PRIVATE_FILE)
end

--- Record a process using the namespace (a `run` command).
function M.add_ref(p, pid, starttime)
  return core.writefile(("%s/%d-%d"):format(p.refs, pid, starttime), "", PRIVATE_FILE)
end

--- Remove the record of a process using the namespace; one already gone
-- is success (the reaper or another command may have removed it).
function M.remove_ref(p, pid, starttime)
  local ok, err, code = core.unlink(("%s/%d-%d"):format(p.refs, pid, starttime))
  if not ok and code ~= errno.ENOENT then return nil, err end
  return true
end

--- Count the records of live processes, deleting those of dead ones (a
-- `run` that was SIGKILLed leaks no reference past the next command).
function M.live_refs(p)
  local names, _, code = core.listdir(p.refs)
  if not names then
    if code == errno.ENOENT then return 0 end
    return 0
  end
  local live = 0
  for _, name in ipairs(names) do
    local pid, st = name:match("^(%d+)%-(%d+)$")
    pid, st = math.tointeger(tonumber(pid)), math.tointeger(tonumber(st))
    if pid and st and pid > 0 and core.alive(pid, st) then
      live = live + 1
    else
      core.unlink(p.refs .. "/" .. name)
    end
  end
  return live
end

--- The keys of info.json (podman's names) and what each must hold.
M.INFO_KEYS = { "IPAddresses", "DnsForwardIps", "MapGuestIps" }

--- Is @v a list of strings (what info.json's keys hold)?
function M.list_of_strings(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or type(x) ~= "string" then return false end
    n = n + 1
  end
  return n == #v
end

--- info.json, validated: each key a list of strings (or absent).
-- @treturn table the addresses by key (a damaged key is left out)
-- @treturn string|nil what was wrong with the file
function M.read_info(p)
  local data, err = M.read_json(p.info)
  if not data then return {}, err or ("`%s` is missing"):format(p.info) end
  local out, bad = {}, {}
  for _, key in ipairs(M.INFO_KEYS) do
    local v = data[key]
    if v == nil or v == cjson.null then
      out[key] = nil
    elseif M.list_of_strings(v) then
      out[key] = v
    else
      bad[#bad + 1] = key
    end
  end
  if #bad > 0 then
    return out, ("`%s`: %s not a list of addresses; left out"):format(p.info, table.concat(bad, ", "))
  end
  return out
end

local function ipv4(v)
  if type(v) ~= "string" then return false end
  local a, b, c, d = v:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  for _, x in ipairs { a, b, c, d } do
    local n = tonumber(x)
    if not n or n > 255 then return false end
  end
  return a ~= nil
end

--- Check a lease read from leases.json (repairing what the subnet
-- tells); nil when it is beyond repair.
local function checked_lease(lease, subnet)
  if type(lease) ~= "table" or not ipv4(lease.address) then return nil end
  lease.index = math.tointeger(lease.index)
  lease.prefix = math.tointeger(lease.prefix)
  local prefix = type(subnet) == "string" and math.tointeger(tonumber(subnet:match("/(%d+)$") or ""))
  if not (lease.prefix and lease.prefix >= 8 and lease.prefix <= 30) then lease.prefix = prefix or nil end
  if not (lease.index and lease.index >= 0) or not lease.prefix or not ipv4(lease.gateway) then return nil end
  for _, key in ipairs { "interface", "host_interface", "bridge", "network", "address6", "gateway6" } do
    if lease[key] ~= nil and type(lease[key]) ~= "string" then return nil end
  end
  if lease.shape ~= nil and type(lease.shape) ~= "table" then lease.shape = nil end
  lease.connected = lease.connected == true
  return lease
end

-- Drop the damaged leases of one network's table @t (its `subnet` tells
-- what a lease's prefix is); their names go into @dropped.
local function check_net(t, dropped, label)
  for name, lease in pairs(t.leases) do
    if type(name) ~= "string" or not checked_lease(lease, t.subnet) then
      t.leases[name] = nil
      dropped[#dropped + 1] = label .. tostring(name)
    end
  end
  if t.subnet ~= nil and type(t.subnet) ~= "string" then t.subnet = nil end
  if t.bridge ~= nil and type(t.bridge) ~= "string" then t.bridge = nil end
  if t.last ~= nil and not ipv4(t.last) then t.last = nil end
end

--- The address leases of `netns connect` (they live in the rootless
-- netns's directory: its veths and bridges go when it goes).  A missing
-- file is no lease; a damaged one is reported and counts as none, and the
-- next connect or disconnect removes the interfaces it no longer names.
-- The network `default`'s table is the file's top level (as it always
-- was); each other network's is under `nets`, in the same shape.
-- @treturn table {last = address|nil, subnet = cidr|nil, bridge = name|nil,
--   leases = {name = lease}, nets = {network = {last, subnet, bridge, leases}}}
-- @treturn string|nil what was wrong with the file
function M.read_leases(p)
  local data, err = M.read_json(p.leases)
  if type(data) ~= "table" or type(data.leases) ~= "table" then
    return { leases = {}, nets = {} }, err or (data and ("`%s`: no `leases` table; counting none"):format(p.leases))
  end
  local dropped = {}
  check_net(data, dropped, "")
  if type(data.nets) ~= "table" then data.nets = {} end
  for net, t in pairs(data.nets) do
    if type(net) ~= "string" or net == "default" or type(t) ~= "table" or type(t.leases) ~= "table" then
      data.nets[net] = nil
      dropped[#dropped + 1] = "network " .. tostring(net)
    else
      check_net(t, dropped, net .. "/")
    end
  end
  if #dropped > 0 then
    table.sort(dropped)
    return data, ("`%s`: the lease of %s is damaged; dropped (its interfaces are removed)")
      :format(p.leases, table.concat(dropped, ", "))
  end
  return data
end

--- The leases table of network @net in @data (made when missing): the
-- top level for `default`.
function M.net_leases(data, net)
  if net == nil or net == "default" then return data end
  data.nets = data.nets or {}
  data.nets[net] = data.nets[net] or { leases = {} }
  return data.nets[net]
end

--- Every lease in @data, as a list of {net, name, lease}, sorted.
function M.each_lease(data)
  local out = {}
  local function add(net, t)
    for name, lease in pairs(t.leases or {}) do out[#out + 1] = { net = net, name = name, lease = lease } end
  end
  add("default", data)
  for net, t in pairs(data.nets or {}) do add(net, t) end
  table.sort(out, function(a, b) return a.net == b.net and a.name < b.name or a.net < b.net end)
  return out
end

--- Write the lab's address leases (leases.json) atomically.
function M.write_leases(p, data)
  return M.write_json(p.leases, data)
end

--- Connections that hold a reference: completed leases only (a connect
-- killed half way holds none; its lease is repaired away).
function M.connections(p)
  local n = 0
  for _, e in ipairs(M.each_lease(M.read_leases(p))) do
    if e.lease.connected == true then n = n + 1 end
  end
  return n
end

return M
