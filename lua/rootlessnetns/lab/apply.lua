--- `lab up`, `lab down` and `lab status`: a topology made real through a
-- Lab handle, in one process.
--
-- What `up` makes is recorded under `<state dir>/labs/`, one record per
-- topology file, written before each thing is made and marked done after
-- it: whatever the record names is this lab's, so an `up` killed at any
-- point leaves only things the record names, which the next `up` finishes
-- or replaces and `down` removes.  What the record does not name (a
-- namespace of `netns add`, a network of `network create`, the network
-- `default`) is never removed.  The decisions are the pure functions of
-- rootlessnetns.lab.topology; this file is the order they are carried out
-- in.
local core = require "rootlessnetns"
local log = require "rootlessnetns.log"
local session = require "rootlessnetns.session"
local state = require "rootlessnetns.state"
local topology = require "rootlessnetns.lab.topology"

local errno = core.errno
local PRIVATE_DIR = tonumber("700", 8)

local M = {}

-- ------------------------------------------------------------ the record

local function labs_dir(l) return l.ns.paths.base .. "/labs" end

--- Which lab @topology is: the absolute path of its file (a path given
-- as @topology, or opts.file), else opts.id, else "default".
local function identity(topo, opts)
  local file = type(topo) == "string" and topo or opts.file
  if file then
    local cwd = core.getcwd() or os.getenv("PWD") or "/"
    return topology.absolute(file, cwd), file
  end
  return "lua:" .. tostring(opts.id or "default"), nil
end

-- A failure of the Lab: the error, named by what was being done.
local Failure = {}

local function fail(what, err, code, stage, sig)
  local msg = what and ("%s: %s"):format(what, tostring(err)) or tostring(err)
  error(setmetatable({ msg = msg, code = code, stage = stage, sig = sig }, Failure), 0)
end

local Record = {}
Record.__index = Record

local function open_record(l, id)
  local dir = labs_dir(l)
  local ok, err, code = core.mkdir(dir, PRIVATE_DIR)
  if not ok and code ~= errno.EEXIST then return nil, err, code end
  local path = dir .. "/" .. topology.record_name(id)
  local data, rerr = state.read_json(path)
  local rec, warning = topology.checked_record(data, id)
  if rerr then warning = rerr .. "; starting from what is live" end
  if warning then log.warn("%s", warning) end
  rec.file = id
  return setmetatable({ path = path, data = rec, log = path:gsub("%.json$", ".log") }, Record)
end

--- Write the record now (before the next thing is made, or after it).
function Record:save()
  local ok, err, code = state.write_json(self.path, self.data)
  if not ok then fail(("write the lab record `%s`"):format(self.path), err, code) end
end

--- Remove the record and the log of the start commands (`down` is done).
function Record:remove()
  core.unlink(self.path)
  core.unlink(self.log)
end

-- One `lab up` or `lab down` at a time (the Lab's own methods take the
-- state's lock each, so this is a lock of its own).
local function lab_lock(l)
  return session.lock_file(l.ns, labs_dir(l) .. "/lock", "ex", false,
    "another `lab up` or `lab down`")
end

-- ------------------------------------------------------------ helpers

local function must(what, v, err, code, stage, sig)
  if v == nil or v == false then fail(what, err, code, stage, sig) end
  return v, err
end

-- Run @fn(...) with the record and the lab lock; Failure errors become
-- nil, message, errno[, stage, signal].
local function guarded(l, topo, opts, fn)
  local id, file = identity(topo, opts)
  -- (the state directory is found, and made, by the first Lab call)
  local first, ferr, fcode, fstage, fsig = l:networks()
  if not first then return nil, ferr, fcode, fstage, fsig end
  local dir = labs_dir(l)
  local ok, err, code = core.mkdir(dir, PRIVATE_DIR)
  if not ok and code ~= errno.EEXIST then return nil, err, code end
  local lock <close>, lerr, lcode, lstage, lsig = lab_lock(l)
  if not lock then return nil, lerr, lcode, lstage, lsig end
  local rec, rerr, rcode = open_record(l, id)
  if not rec then return nil, rerr, rcode end
  -- the names in /etc/hosts are written once, at the end, not once per
  -- node (each connect would rewrite every namespace's)
  l.ns.hosts_deferred = true
  local res = table.pack(pcall(fn, rec, file))
  l.ns.hosts_deferred = nil
  if l.ns.hosts_pending then
    l.ns.hosts_pending = nil
    l:_refresh_names()
  end
  if res[1] then return table.unpack(res, 2, res.n) end
  local e = res[2]
  if getmetatable(e) == Failure then return nil, e.msg, e.code, e.stage, e.sig end
  error(e, 0)
end

local function want_of(topo, file)
  if type(topo) == "string" then
    local t, err = topology.load(topo)
    if not t then fail(nil, err, errno.EINVAL) end
    return t
  end
  local t, err = topology.validate(topo)
  if not t then fail(nil, ("topology `%s`: %s"):format(file or "(table)", err), errno.EINVAL) end
  return t
end

local function exec_script(l, name, script, what)
  local how, status, code, stage, sig = l:exec(name, { "sh", "-c", script })
  if how ~= "exited" or status ~= 0 then
    if how == nil then fail(what, status, code, stage, sig) end
    fail(what, ("`sh -c` in `%s` %s %s"):format(name, how == "exited" and "exited with" or how, tostring(status)))
  end
end

local function sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- What is live: networks, namespaces, by name.
local function live_state(l)
  local nets = must("list the networks", l:networks())
  local list = must("list the namespaces", l:list())
  return { networks = nets, list = list }
end

-- ------------------------------------------------------------ up

local function up(l, topo, rec, file)
  local want = want_of(topo, file)
  local data = rec.data
  local changes = {}
  local function did(fmt, ...) changes[#changes + 1] = fmt:format(...) end
  local live = live_state(l)
  local nplan = must(nil, topology.network_plan(want, data, live.networks))
  local dplan = must(nil, topology.node_plan(want, data, live.list))
  local by_name, relinked = {}, {}
  for _, e in ipairs(live.list) do by_name[e.name] = e end

  -- 1. namespaces no longer wanted, or to be made anew
  for _, name in ipairs(dplan.remove) do
    must(("delete namespace `%s`"):format(name), l:del(name, { force = true }))
    by_name[name] = nil
    data.nodes[name] = nil
    rec:save()
    core.fault_point("lab-up-removed")
    did(want.nodes[name] and "remade %s" or "deleted %s", name)
  end
  for name in pairs(data.nodes) do
    if not want.nodes[name] and not by_name[name] then data.nodes[name] = nil end
  end

  -- 2. networks no longer wanted, or to be made anew: our own members
  -- leave first, so that one of someone else's still makes it refuse
  local members = {}
  for _, n in ipairs(live.networks) do members[n.name] = n.members or {} end
  for _, net in ipairs(nplan.remove) do
    for _, m in ipairs(members[net] or {}) do
      if data.nodes[m] and by_name[m] then
        must(("disconnect `%s` from `%s`"):format(m, net), l:disconnect(m, { network = net }))
        by_name[m].networks[net] = nil
        data.nodes[m].links[net] = nil
        relinked[m] = true
        did("disconnected %s from %s", m, net)
      end
    end
    must(("remove network `%s`"):format(net), l:network_rm(net))
    data.networks[net] = nil
    rec:save()
    core.fault_point("lab-up-network-removed")
    did(want.networks[net] and "remade network %s" or "removed network %s", net)
  end
  for net in pairs(data.networks) do
    if not want.networks[net] then data.networks[net] = nil end
  end

  -- 3. networks
  for _, net in ipairs(nplan.create) do
    local w = want.networks[net]
    data.networks[net] = { state = "making", subnet = w.subnet, subnet6 = w.subnet6, internal = w.internal }
    rec:save()
    core.fault_point("lab-up-network-recorded")
    must(("create network `%s`"):format(net),
      l:network_create(net, { subnet = w.subnet, subnet6 = w.subnet6, internal = w.internal }))
    data.networks[net].state = "made"
    rec:save()
    core.fault_point("lab-up-network")
    did("created network %s", net)
  end

  -- 4. namespaces
  for _, name in ipairs(dplan.add) do
    data.nodes[name] = { state = "making", links = {} }
    rec:save()
    core.fault_point("lab-up-node-recorded")
    must(("add namespace `%s`"):format(name), l:add(name))
    data.nodes[name].state = "made"
    rec:save()
    core.fault_point("lab-up-node")
    -- (a new namespace, or a stale one made anew: connected to nothing)
    by_name[name] = nil
    did("added %s", name)
  end

  -- 5. connections
  for _, name in ipairs(sorted(want.nodes)) do
    local w, r = want.nodes[name], data.nodes[name]
    local lp = topology.link_plan(w, r, by_name[name])
    local wanted = {}
    for _, link in ipairs(w.links) do wanted[link.network] = true end
    for net in pairs(r.links) do
      if not wanted[net] then r.links[net] = nil end
    end
    for _, net in ipairs(lp.disconnect) do
      -- the record goes first: a disconnect killed after it leaves a
      -- connection this lab's record does not explain, made again below
      r.links[net] = nil
      rec:save()
      must(("disconnect `%s` from `%s`"):format(name, net), l:disconnect(name, { network = net }))
      relinked[name] = true
      did("disconnected %s from %s", name, net)
    end
    for _, link in ipairs(lp.connect) do
      r.links[link.network] = { state = "connecting", ip = link.ip, ip6 = link.ip6, rate = link.rate,
        default_route = link.default_route }
      rec:save()
      core.fault_point("lab-up-connect-recorded")
      local lease = must(("connect `%s` to `%s`"):format(name, link.network), l:connect(name, {
        network = link.network, ip = link.ip, ip6 = link.ip6, rate = link.rate, default_route = link.default_route }))
      r.links[link.network].state = "connected"
      rec:save()
      core.fault_point("lab-up-connect")
      relinked[name] = true
      did("connected %s to %s%s", name, link.network, lease.address and (" as " .. lease.address) or "")
    end
  end

  -- 6. forwarding and routes, against the addresses now live
  live = next(changes) and live_state(l) or live
  local routes = topology.routes(want, topology.subnets(live.networks), live.list)
  for _, name in ipairs(sorted(want.nodes)) do
    local w, r = want.nodes[name], data.nodes[name]
    local wanted = { forward = w.forward, routes = routes[name] }
    local applied = r.config
    local base, old = topology.applied_base(applied, relinked[name])
    local script = topology.config_script(wanted, base, old)
    if script then
      r.config = { state = "applying", forward = wanted.forward, routes = wanted.routes, old = old }
      rec:save()
      core.fault_point("lab-up-config-recorded")
      exec_script(l, name, script, ("configure `%s`"):format(name))
      r.config = { state = "done", forward = wanted.forward, routes = wanted.routes }
      rec:save()
      core.fault_point("lab-up-configured")
      did("configured %s", name)
    end
  end

  -- 7. start commands, once per namespace
  for _, name in ipairs(sorted(want.nodes)) do
    local w, r = want.nodes[name], data.nodes[name]
    if not r.start then
      local text = topology.start_text(w.start)
      if #w.start > 0 then
        -- (a start killed half way is not run again over itself: its
        -- node is made anew by the next `up`, see topology.node_plan)
        r.start = { state = "starting", text = text }
        rec:save()
        core.fault_point("lab-up-start-recorded")
        exec_script(l, name, topology.start_script(w.start, rec.log), ("start the commands of `%s`"):format(name))
        did("started %d command%s in %s", #w.start, #w.start == 1 and "" or "s", name)
      end
      r.start = { state = "started", text = text }
      rec:save()
      core.fault_point("lab-up-started")
    end
  end

  local report = topology.status(want, data, next(changes) and live_state(l) or live)
  report.changes, report.file, report.record = changes, data.file, rec.path
  report.log = rec.log
  return report
end

--- Make the lab that @topo describes, changing only what differs from
-- what is live and from the last `up` of the same file.
-- @tparam Lab l
-- @tparam string|table topo a topology file, or the table one returns
-- @tparam[opt] table opts {file = the path @topo came from (which lab it
--   is), id = a name for a table's lab (default "default")}
-- @treturn[1] table the status (as M.status), with `changes`: what was
--   done, one line each (empty when nothing was)
-- @return[2] nil, message, errno
function M.up(l, topo, opts)
  opts = opts or {}
  return guarded(l, topo, opts, function(rec, file) return up(l, topo, rec, file) end)
end

-- ------------------------------------------------------------ down

local function down(l, rec)
  local data = rec.data
  local changes = {}
  local live = live_state(l)
  local listed, nets = {}, {}
  for _, e in ipairs(live.list) do listed[e.name] = e end
  for _, n in ipairs(live.networks) do nets[n.name] = n end
  for _, name in ipairs(sorted(data.nodes)) do
    if listed[name] then
      must(("delete namespace `%s`"):format(name), l:del(name, { force = true }))
      changes[#changes + 1] = "deleted " .. name
    end
    data.nodes[name] = nil
    rec:save()
    core.fault_point("lab-down-node")
  end
  for _, net in ipairs(sorted(data.networks)) do
    if nets[net] and net ~= topology.DEFAULT_NETWORK then
      must(("remove network `%s`"):format(net), l:network_rm(net))
      changes[#changes + 1] = "removed network " .. net
    end
    data.networks[net] = nil
    rec:save()
    core.fault_point("lab-down-network")
  end
  rec:remove()
  return { changes = changes, file = data.file }
end

--- Remove what `up` of @topo made (from its record: the file need not
-- load, or exist, any more), and nothing else.
-- @tparam Lab l
-- @tparam string|table topo as for M.up
-- @tparam[opt] table opts as for M.up
-- @treturn[1] table {changes = {...}, file}
-- @return[2] nil, message, errno
function M.down(l, topo, opts)
  opts = opts or {}
  return guarded(l, topo, opts, function(rec) return down(l, rec) end)
end

-- ------------------------------------------------------------ status

--- Each node and network of @topo, wanted against live.
-- @treturn[1] table {file, networks = {{name, state, why, subnet, subnet6,
--   internal, owned}}, nodes = {{name, state, why, forward, networks =
--   {{network, address, address6, interface}}}}, left_over = {...}}; state
--   is "up to date", "missing" or "differs"
-- @return[2] nil, message, errno
function M.status(l, topo, opts)
  opts = opts or {}
  return guarded(l, topo, opts, function(rec, file)
    local want = want_of(topo, file)
    local report = topology.status(want, rec.data, live_state(l))
    report.file, report.record, report.topology = rec.data.file, rec.path, want
    return report
  end)
end

-- A library handle does the whole of each in one worker (its Lab calls
-- then run there directly), never a worker per step.
require("rootlessnetns.worker").wrap(M, { "up", "down", "status" }, function(l) return l.ns end)

return M
