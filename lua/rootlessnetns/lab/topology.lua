--- Topology files: loading, validation, and what `lab up` must change —
-- pure functions of their inputs (the topology, the record of the last
-- `up` and what is live), so every decision is tested without a namespace.
--
-- A topology is a Lua file returning
--
--   { networks = { NAME = { subnet = CIDR?, subnet6 = CIDR?, internal = bool? } },
--     nodes = { NAME = { networks = { "NET", ... } | { NET = { ip?, ip6?, rate?, default_route? } },
--                        forward = bool?, routes = { { to = NET | CIDR, via = NODE } },
--                        start = { { "argv", ... } } } } }
--
-- Errors name the file and the key: "topology `lab.lua`: nodes.db.routes[1].via: no node `rooter`".
local addrpool = require "rootlessnetns.addrpool"
local names = require "rootlessnetns.lab.names"
local networks = require "rootlessnetns.lab.networks"
local shaping = require "rootlessnetns.lab.shaping"

local M = {}

--- The network every lab has: the config's `connect` subnet.  Nodes may
-- join it; a topology neither declares nor removes it.
M.DEFAULT_NETWORK = "default"

-- ------------------------------------------------------------ addresses

local function ipv4(v) return addrpool.parse_ipv4(v) ~= nil end

--- Parse an IPv6 address into its 8 groups (nil when it is not one).
M.parse_ipv6 = addrpool.parse_ipv6

--- "ADDR/P" as {family = 4|6, prefix, host_bits}; nil when it is not a
-- CIDR of either family.
function M.parse_cidr(text)
  if type(text) ~= "string" then return nil end
  local addr, p = text:match("^([^/]+)/(%d+)$")
  p = math.tointeger(tonumber(p))
  if not addr then return nil end
  if ipv4(addr) then
    local net, host_bits = addrpool.network(text)
    if not net then return nil end
    return { family = 4, prefix = net.prefix, network = net.network, host_bits = host_bits }
  end
  local groups = M.parse_ipv6(addr)
  if not groups or p > 128 then return nil end
  local host_bits = false
  for i, g in ipairs(groups) do
    local keep = math.max(0, math.min(16, p - (i - 1) * 16))
    if g & ((1 << (16 - keep)) - 1) ~= 0 then host_bits = true end
  end
  return { family = 6, prefix = p, groups = groups, host_bits = host_bits }
end

-- ------------------------------------------------------------ the schema

-- Each rule: types, and check(value, path, ctx) returning a problem.
local function cidr_of(family)
  return function(v)
    local c = M.parse_cidr(v)
    if not c or c.family ~= family then
      return family == 4 and "must be an IPv4 subnet such as 10.90.1.0/24"
        or "must be an IPv6 subnet such as fd00:90::/64"
    end
    if c.host_bits then return "has host bits set" end
    -- the rules of `network create`, so that no `up` fails half way
    local ok, err = (family == 4 and addrpool.subnet or addrpool.subnet6)(v)
    if not ok then return err end
  end
end

local function address_of(family)
  return function(v)
    if family == 4 and not ipv4(v) then return "must be an IPv4 address such as 10.90.1.10" end
    if family == 6 and not M.parse_ipv6(v) then return "must be an IPv6 address such as fd00:90::10" end
  end
end

-- (what `netns connect --rate` takes)
local function rate(v)
  if not shaping.check { rate = v } then return "must be a rate such as 10mbit, 512kbit or 1gbit" end
end

-- A node's name is a namespace's, a network's a network's.
local function a_name(v, is_network)
  local ok, err
  if is_network then ok, err = networks.check_name(v) else ok, err = names.check_name(v) end
  if not ok then return (err:gsub("namespace name", "name")) end
end

local LINK = {
  ip = { types = { "string" }, check = address_of(4) },
  ip6 = { types = { "string" }, check = address_of(6) },
  rate = { types = { "string" }, check = rate },
  default_route = { types = { "boolean" } },
}

local ROUTE = {
  to = { types = { "string" }, required = true },
  via = { types = { "string" }, required = true },
}

local NETWORK = {
  subnet = { types = { "string" }, check = cidr_of(4) },
  subnet6 = { types = { "string" }, check = cidr_of(6) },
  internal = { types = { "boolean" } },
}

local NODE = {
  networks = { types = { "table" } },
  forward = { types = { "boolean" } },
  routes = { types = { "table" }, list = ROUTE },
  start = { types = { "table" } },
}

--- The schema, by level: key -> {types, check, fields | map (of NAME -> fields) | list (of fields)}.
M.schema = {
  networks = { types = { "table" }, map = NETWORK },
  nodes = { types = { "table" }, map = NODE },
}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function join(prefix, key)
  if math.type(key) == "integer" then return ("%s[%d]"):format(prefix, key) end
  return prefix == "" and tostring(key) or (prefix .. "." .. tostring(key))
end

local function is_list(t)
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > #t then return false end
  end
  return true
end

local check_fields

local function check_value(value, rule, path)
  local ok = false
  for _, t in ipairs(rule.types) do if type(value) == t then ok = true end end
  if not ok then
    return nil, ("%s: must be a %s, not a %s"):format(path, table.concat(rule.types, " or "), type(value))
  end
  if rule.map then
    for _, k in ipairs(sorted_keys(value)) do
      local p = join(path, k)
      if type(k) ~= "string" then return nil, p .. ": names are strings" end
      local bad = a_name(k, rule.map == NETWORK)
      if bad then return nil, ("%s: %s"):format(p, bad) end
      if type(value[k]) ~= "table" then return nil, ("%s: must be a table, not a %s"):format(p, type(value[k])) end
      local okf, err = check_fields(value[k], rule.map, p)
      if not okf then return nil, err end
    end
  elseif rule.list then
    if not is_list(value) then return nil, path .. ": must be a list" end
    for i, item in ipairs(value) do
      local p = join(path, i)
      if type(item) ~= "table" then return nil, ("%s: must be a table, not a %s"):format(p, type(item)) end
      local okf, err = check_fields(item, rule.list, p)
      if not okf then return nil, err end
    end
  end
  local problem = rule.check and rule.check(value)
  if problem then return nil, ("%s: %s"):format(path, problem) end
  return true
end

function check_fields(tbl, fields, prefix)
  for _, key in ipairs(sorted_keys(tbl)) do
    local rule = type(key) == "string" and fields[key]
    local p = join(prefix, key)
    if not rule then
      return nil, ("%s: unknown key (known: %s)"):format(p, table.concat(sorted_keys(fields), ", "))
    end
    local ok, err = check_value(tbl[key], rule, p)
    if not ok then return nil, err end
  end
  for _, key in ipairs(sorted_keys(fields)) do
    if fields[key].required and tbl[key] == nil then return nil, join(prefix, key) .. ": is required" end
  end
  return true
end

-- A node's `networks`, as an ordered list of links {network, ip, ip6, rate, default_route}.
local function links_of(v, path)
  local out = {}
  if is_list(v) then
    for i, net in ipairs(v) do
      if type(net) ~= "string" then
        return nil, ("%s: must be a network name, not a %s"):format(join(path, i), type(net))
      end
      out[i] = { network = net, path = join(path, i) }
    end
  else
    for _, net in ipairs(sorted_keys(v)) do
      local p = join(path, net)
      if type(net) ~= "string" then return nil, p .. ": a network name is a string" end
      local opts = v[net]
      if opts == true then opts = {} end
      if type(opts) ~= "table" then
        return nil, ("%s: must be a table of ip, ip6, rate, default_route (or true), not a %s"):format(p, type(opts))
      end
      local ok, err = check_fields(opts, LINK, p)
      if not ok then return nil, err end
      local ip6 = opts.ip6 and addrpool.parse_ipv6(opts.ip6)
      out[#out + 1] = { network = net, ip = opts.ip, ip6 = ip6 and addrpool.format_ipv6(ip6) or opts.ip6,
        rate = opts.rate,
        default_route = opts.default_route, path = p }
    end
  end
  local seen = {}
  for _, link in ipairs(out) do
    if seen[link.network] then return nil, ("%s: network `%s` twice"):format(link.path, link.network) end
    seen[link.network] = true
  end
  return out
end

local function check_start(v, path)
  if not is_list(v) then return nil, path .. ": must be a list of commands" end
  for i, cmd in ipairs(v) do
    local p = join(path, i)
    if type(cmd) ~= "table" or #cmd == 0 or not is_list(cmd) then
      return nil, p .. ': must be a command as a list of strings, e.g. { "sh", "-c", "..." }'
    end
    for j, word in ipairs(cmd) do
      if type(word) ~= "string" then return nil, ("%s: must be a string"):format(join(p, j)) end
    end
  end
  return true
end

local function in_subnet(addr, subnet)
  local net = addrpool.network(subnet)
  local a = addrpool.network(addr)
  return net and a and addrpool.overlaps(net, a)
end

--- Validate a topology table and normalize it:
-- {networks = {NAME = {name, subnet, subnet6, internal}}, nodes = {NAME =
-- {name, links = {{network, ip, ip6, rate, default_route}...}, forward,
-- routes = {{to, via, network (when @to names one)}}, start}}}.
-- @treturn[1] table the topology
-- @return[2] nil, "key.path: problem"
function M.validate(t)
  if type(t) ~= "table" then return nil, ("must return a table, not a %s"):format(type(t)) end
  local ok, err = check_fields(t, M.schema, "")
  if not ok then return nil, err end
  local out = { networks = {}, nodes = {} }
  for name, n in pairs(t.networks or {}) do
    if name == M.DEFAULT_NETWORK then
      return nil, ("networks.%s: is the config's `connect` network, always there; it is not declared")
        :format(name)
    end
    -- (IPv6 as `ip` and the networks' record spell it: a /64 written
    -- otherwise is not a change)
    out.networks[name] = { name = name, subnet = n.subnet, subnet6 = n.subnet6 and addrpool.subnet6(n.subnet6).cidr,
      internal = n.internal == true }
  end
  -- subnets apart from each other
  local nets = sorted_keys(out.networks)
  for i, a in ipairs(nets) do
    for j = i + 1, #nets do
      local b = nets[j]
      local sa, sb = out.networks[a].subnet, out.networks[b].subnet
      if sa and sb and addrpool.overlaps(addrpool.network(sa), addrpool.network(sb)) then
        return nil, ("networks.%s.subnet: %s overlaps networks.%s.subnet %s"):format(b, sb, a, sa)
      end
      if out.networks[a].subnet6 and out.networks[a].subnet6 == out.networks[b].subnet6 then
        return nil, ("networks.%s.subnet6: the same as networks.%s.subnet6"):format(b, a)
      end
    end
  end
  local function known(net) return net == M.DEFAULT_NETWORK or out.networks[net] ~= nil end
  local taken = {}
  for _, name in ipairs(sorted_keys(t.nodes or {})) do
    local n = t.nodes[name]
    local path = "nodes." .. name
    local links, lerr = links_of(n.networks or {}, path .. ".networks")
    if not links then return nil, lerr end
    for _, link in ipairs(links) do
      if not known(link.network) then
        return nil, ("%s: no network `%s` (declare it under networks)"):format(link.path, link.network)
      end
      local subnet = out.networks[link.network] and out.networks[link.network].subnet
      if link.ip and subnet and not in_subnet(link.ip, subnet) then
        return nil, ("%s.ip: %s is outside the subnet %s"):format(link.path, link.ip, subnet)
      end
      for _, key in ipairs { "ip", "ip6" } do
        local id = link[key] and (link.network .. " " .. link[key])
        if id and taken[id] then
          return nil, ("%s.%s: %s is also %s's"):format(link.path, key, link[key], taken[id])
        end
        if id then taken[id] = name end
      end
      link.path = nil
    end
    local start = n.start or {}
    local sok, serr = check_start(start, path .. ".start")
    if not sok then return nil, serr end
    out.nodes[name] = { name = name, links = links, forward = n.forward == true, routes = {}, start = start }
  end
  -- routes, now that every node's networks are known
  for _, name in ipairs(sorted_keys(t.nodes or {})) do
    local node = out.nodes[name]
    for i, r in ipairs(t.nodes[name].routes or {}) do
      local path = ("nodes.%s.routes[%d]"):format(name, i)
      local via = out.nodes[r.via]
      if not via then return nil, ("%s.via: no node `%s`"):format(path, r.via) end
      if r.via == name then return nil, path .. ".via: a node does not route via itself" end
      if not M.shared_network(node, via) then
        return nil, ("%s.via: `%s` shares no network with `%s`"):format(path, r.via, name)
      end
      local route = { to = r.to, via = r.via }
      if known(r.to) then
        for _, link in ipairs(node.links) do
          if link.network == r.to then
            return nil, ("%s.to: `%s` is on network `%s` already"):format(path, name, r.to)
          end
        end
        route.network = r.to
      else
        local c = M.parse_cidr(r.to)
        if not c then
          return nil, ("%s.to: no network `%s`, and not a CIDR such as 10.1.0.0/24"):format(path, r.to)
        end
        if c.host_bits then return nil, ("%s.to: %s has host bits set"):format(path, r.to) end
        route.family = c.family
      end
      node.routes[i] = route
    end
  end
  return out
end

--- The first network of @node (in its order) that @other is on too.
function M.shared_network(node, other)
  for _, a in ipairs(node.links) do
    for _, b in ipairs(other.links) do
      if a.network == b.network then return a.network end
    end
  end
  return nil
end

--- Load and validate a topology file in an environment of its own (the
-- standard library readable, nothing it sets leaking out).
-- @tparam string path the file, as the user named it (errors say so)
-- @treturn[1] table the topology (M.validate's)
-- @return[2] nil, "topology `path`: ..."
function M.load(path)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then
    local f = io.open(path, "r")
    if not f then return nil, ("topology `%s`: cannot read the file"):format(path) end
    f:close()
    return nil, ("topology %s"):format(err)
  end
  local ok, result = pcall(chunk)
  if not ok then return nil, ("topology %s"):format(tostring(result)) end
  local t, verr = M.validate(result)
  if not t then return nil, ("topology `%s`: %s"):format(path, verr) end
  return t
end

-- ------------------------------------------------------------ the record

--- The file name of the record of the topology file whose absolute
-- path is @abs: its characters outside [%w._-] escaped, a long one cut
-- and told apart by a hash.
function M.record_name(abs)
  local s = abs:gsub("[^%w._-]", function(c) return ("%%%02X"):format(c:byte()) end)
  if #s > 180 then
    local h = 2166136261
    for i = 1, #abs do h = ((h ~ abs:byte(i)) * 16777619) & 0xffffffff end
    s = ("%s-%08x"):format(s:sub(-160), h)
  end
  return s .. ".json"
end

--- An absolute path for @path (relative to @cwd), with `.`, `..` and
-- repeated slashes resolved in the text.
function M.absolute(path, cwd)
  if path:sub(1, 1) ~= "/" then path = cwd .. "/" .. path end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return "/" .. table.concat(parts, "/")
end

--- An empty record.
function M.new_record(file)
  return { version = 1, file = file, networks = {}, nodes = {} }
end

--- A record read back: its parts made sane (a damaged one is empty,
-- with a warning).
-- @treturn table record
-- @treturn[opt] string warning
function M.checked_record(rec, file)
  if rec == nil then return M.new_record(file) end
  if type(rec) ~= "table" or rec.version ~= 1 or type(rec.networks) ~= "table" or type(rec.nodes) ~= "table" then
    return M.new_record(file), "the record of the last `lab up` is damaged; starting from what is live"
  end
  for name, n in pairs(rec.networks) do
    if type(name) ~= "string" or type(n) ~= "table" then rec.networks[name] = nil end
  end
  for name, n in pairs(rec.nodes) do
    if type(name) ~= "string" or type(n) ~= "table" then
      rec.nodes[name] = nil
    else
      if type(n.links) ~= "table" then n.links = {} end
      if type(n.config) ~= "table" then n.config = nil end
    end
  end
  return rec
end

-- ------------------------------------------------------------ the plan

local function same(a, b) return (a or false) == (b or false) end

--- Does the live network @live (of l:networks()) differ from what @want
-- asks?  A subnet not asked for is any.
-- @treturn[opt] string what differs
function M.network_differs(want, live)
  if want.subnet and want.subnet ~= live.subnet then
    return ("subnet %s, wanted %s"):format(tostring(live.subnet), want.subnet)
  end
  if want.subnet6 and want.subnet6 ~= live.subnet6 then
    return ("subnet6 %s, wanted %s"):format(tostring(live.subnet6), want.subnet6)
  end
  if not same(want.internal, live.internal) then
    return want.internal and "not internal, wanted internal" or "internal, wanted not"
  end
  return nil
end

local function strip_prefix(addr)
  return type(addr) == "string" and addr:match("^[^/]+") or addr
end

--- Does the live connection @live ({address, address6}) differ from the
-- link @want asks for, made as @made (what the record says the connect
-- was asked: {ip, ip6, rate, default_route}; nil when unknown)?
-- @treturn[opt] string what differs
function M.link_differs(want, live, made)
  if want.ip and strip_prefix(live.address) ~= want.ip then
    return ("address %s, wanted %s"):format(tostring(live.address), want.ip)
  end
  if want.ip6 and strip_prefix(live.address6) ~= want.ip6 then
    return ("address6 %s, wanted %s"):format(tostring(live.address6), want.ip6)
  end
  if not made then return "not made by this lab" end
  if made.rate ~= want.rate then
    return ("rate %s, wanted %s"):format(tostring(made.rate or "none"), tostring(want.rate or "none"))
  end
  if not same(made.default_route, want.default_route) then return "another default route choice" end
  return nil
end

--- What a start list is, as text to compare.
function M.start_text(start)
  local parts = {}
  for i, cmd in ipairs(start or {}) do parts[i] = table.concat(cmd, "\0") end
  return table.concat(parts, "\n")
end

local function index_by_name(list)
  local t = {}
  for _, e in ipairs(list or {}) do t[e.name] = e end
  return t
end

--- What must change for the networks: which to remove (ours, no longer
-- wanted or to be made anew) and which to create.
-- @tparam table want the topology
-- @tparam table rec the record
-- @tparam table live l:networks()
-- @treturn[1] table {remove = {NAME...}, create = {NAME...}}
-- @return[2] nil, message (a wanted network exists and is not this lab's)
function M.network_plan(want, rec, live)
  live = index_by_name(live)
  local plan = { remove = {}, create = {} }
  for _, name in ipairs(sorted_keys(rec.networks)) do
    local w, l = want.networks[name], live[name]
    if l and (not w or M.network_differs(w, l)) then plan.remove[#plan.remove + 1] = name end
  end
  local removed = {}
  for _, name in ipairs(plan.remove) do removed[name] = true end
  for _, name in ipairs(sorted_keys(want.networks)) do
    local l = live[name]
    if l and not rec.networks[name] then
      return nil, ("network `%s` exists and is not this lab's (`rootlessnetns network rm %s`, or rename it here)")
        :format(name, name)
    end
    if not l or removed[name] then plan.create[#plan.create + 1] = name end
  end
  return plan
end

--- What must change for the nodes: which namespaces to delete (ours, no
-- longer wanted, or to be made anew because their start commands changed
-- or may have half run) and which to add.
-- @tparam table want the wanted nodes
-- @tparam table rec the record of the last up
-- @tparam table live l:list()
-- @treturn[1] table {remove = {NAME...}, add = {NAME...}}
-- @return[2] nil, message (a wanted name is someone else's namespace)
function M.node_plan(want, rec, live)
  live = index_by_name(live)
  local plan = { remove = {}, add = {} }
  local remade = {}
  for _, name in ipairs(sorted_keys(rec.nodes)) do
    local w, r, l = want.nodes[name], rec.nodes[name], live[name]
    if l then
      local restart = w and r.start and (r.start.state ~= "started" or r.start.text ~= M.start_text(w.start))
      if not w or restart then
        plan.remove[#plan.remove + 1] = name
        remade[name] = w ~= nil
      end
    end
  end
  for _, name in ipairs(sorted_keys(want.nodes)) do
    local l = live[name]
    if l and not rec.nodes[name] then
      return nil, ("namespace `%s` exists and is not this lab's (`rootlessnetns netns del %s`, or rename the node)")
        :format(name, name)
    end
    if not (l and l.live) or remade[name] then plan.add[#plan.add + 1] = name end
  end
  return plan
end

--- What must change in the connections of node @w (wanted), recorded as
-- record @r, live as @l (an entry of l:list(), nil when made afresh).
-- @treturn table {disconnect = {NET...}, connect = {link...}}
function M.link_plan(w, r, l)
  local live = l and l.networks or {}
  local plan = { disconnect = {}, connect = {} }
  local wanted = {}
  for _, link in ipairs(w.links) do wanted[link.network] = link end
  for _, net in ipairs(sorted_keys(live)) do
    local link = wanted[net]
    local made = r and r.links[net]
    if not link or M.link_differs(link, live[net], made and made.state and made or nil) then
      plan.disconnect[#plan.disconnect + 1] = net
    end
  end
  local gone = {}
  for _, net in ipairs(plan.disconnect) do gone[net] = true end
  for _, link in ipairs(w.links) do
    if not live[link.network] or gone[link.network] then plan.connect[#plan.connect + 1] = link end
  end
  return plan
end

--- The live subnets of each network, from l:networks().
function M.subnets(live_networks)
  local out = {}
  for _, n in ipairs(live_networks or {}) do out[n.name] = { subnet = n.subnet, subnet6 = n.subnet6 } end
  return out
end

--- The routes of each node, resolved against what is live: CIDR -> the
-- via node's address on the network it shares with the node.  A route
-- whose via has no address there (yet) is left out.
-- @tparam table want the topology
-- @tparam table subnets M.subnets
-- @tparam table live l:list()
-- @treturn table node -> {CIDR -> ADDR}
function M.routes(want, subnets, live)
  live = index_by_name(live)
  local out = {}
  for name, node in pairs(want.nodes) do
    local routes = {}
    for _, r in ipairs(node.routes) do
      local shared = M.shared_network(node, want.nodes[r.via])
      local via = live[r.via] and live[r.via].networks and live[r.via].networks[shared]
      if via then
        local v4, v6 = strip_prefix(via.address), strip_prefix(via.address6)
        if r.network then
          local s = subnets[r.network] or {}
          if s.subnet and v4 then routes[s.subnet] = v4 end
          if s.subnet6 and v6 then routes[s.subnet6] = v6 end
        elseif r.family == 4 and v4 then
          routes[r.to] = v4
        elseif r.family == 6 and v6 then
          routes[r.to] = v6
        end
      end
    end
    out[name] = routes
  end
  return out
end

--- What a node's forwarding and routes are before this `up` configures
-- them, from its record @applied: a namespace never configured has the
-- kernel's defaults; one configured has what was recorded, less the
-- routes when it was connected anew (they went with its interfaces);
-- one whose configuring was interrupted is unknown (nil).  Also the
-- routes it may still hold, to delete when no longer wanted.
-- @treturn table|nil {forward, routes}
-- @treturn table CIDR -> true
function M.applied_base(applied, relinked)
  local old = {}
  for cidr in pairs(applied and applied.routes or {}) do old[cidr] = true end
  for cidr in pairs(applied and applied.old or {}) do old[cidr] = true end
  if not applied then return { forward = false, routes = {} }, old end
  if applied.state ~= "done" then return nil, old end
  if relinked then return { forward = applied.forward == true, routes = {} }, old end
  return { forward = applied.forward == true, routes = applied.routes or {} }, old
end

local function is6(cidr) return cidr:find(":", 1, true) ~= nil end

--- The shell script that brings a node's forwarding and routes from what
-- was @applied ({forward, routes}, nil: unknown) to @wanted; nil when
-- there is nothing to do.  Routes no longer wanted are deleted (a missing
-- one is no error), wanted ones replaced.
function M.config_script(wanted, applied, extra_old)
  local lines = {}
  local known = applied ~= nil
  applied = applied or { forward = false, routes = {} }
  if not known or wanted.forward ~= applied.forward then
    local v = wanted.forward and "1" or "0"
    lines[#lines + 1] = ("echo %s > /proc/sys/net/ipv4/ip_forward"):format(v)
    lines[#lines + 1] = ("if [ -e /proc/sys/net/ipv6/conf/all/forwarding ]; then echo %s > "
      .. "/proc/sys/net/ipv6/conf/all/forwarding; fi"):format(v)
  end
  local old = {}
  for cidr in pairs(applied.routes or {}) do old[cidr] = true end
  for cidr in pairs(extra_old or {}) do old[cidr] = true end
  for _, cidr in ipairs(sorted_keys(old)) do
    if not wanted.routes[cidr] then
      lines[#lines + 1] = ("ip %sroute del %s 2>/dev/null || true"):format(is6(cidr) and "-6 " or "", cidr)
    end
  end
  for _, cidr in ipairs(sorted_keys(wanted.routes)) do
    if not known or applied.routes[cidr] ~= wanted.routes[cidr] then
      lines[#lines + 1] = ("ip %sroute replace %s via %s"):format(is6(cidr) and "-6 " or "", cidr,
        wanted.routes[cidr])
    end
  end
  if #lines == 0 then return nil end
  return "set -e\n" .. table.concat(lines, "\n") .. "\n"
end

--- The string @s, quoted for sh.
function M.quote(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The script that starts a node's commands in the background, their
-- output appended to @log, their stdin /dev/null.
function M.start_script(start, log)
  local lines = {}
  for _, cmd in ipairs(start) do
    local words = {}
    for i, w in ipairs(cmd) do words[i] = M.quote(w) end
    lines[#lines + 1] = ("%s </dev/null >>%s 2>&1 &"):format(table.concat(words, " "), M.quote(log))
  end
  return table.concat(lines, "\n") .. "\n"
end

-- ------------------------------------------------------------ status

--- Each node and network, wanted against live: `up to date`, `missing`
-- or `differs` (with why).
-- @tparam table want the topology
-- @tparam table rec the record
-- @tparam table live {networks = l:networks(), list = l:list()}
-- @treturn table {networks = {{name, state, why, subnet, subnet6, internal, owned}...},
--   nodes = {{name, state, why, networks = {{network, address, address6}}...}}}
function M.status(want, rec, live)
  local lnets, lnodes = index_by_name(live.networks), index_by_name(live.list)
  local out = { networks = {}, nodes = {} }
  local subnets = M.subnets(live.networks)
  for _, name in ipairs(sorted_keys(want.networks)) do
    local w, l = want.networks[name], lnets[name]
    local e = { name = name, internal = w.internal, owned = rec.networks[name] ~= nil }
    if not l then
      e.state, e.subnet, e.subnet6 = "missing", w.subnet, w.subnet6
    else
      e.subnet, e.subnet6 = l.subnet, l.subnet6
      local why = M.network_differs(w, l) or (not e.owned and "not made by this lab" or nil)
      e.state, e.why = why and "differs" or "up to date", why
    end
    out.networks[#out.networks + 1] = e
  end
  local routes = M.routes(want, subnets, live.list)
  for _, name in ipairs(sorted_keys(want.nodes)) do
    local w, r, l = want.nodes[name], rec.nodes[name], lnodes[name]
    local e = { name = name, forward = w.forward, networks = {} }
    local why
    if not (l and l.live) then
      e.state = "missing"
    else
      for _, link in ipairs(w.links) do
        local c = l.networks and l.networks[link.network]
        e.networks[#e.networks + 1] = { network = link.network, address = c and strip_prefix(c.address) or nil,
          address6 = c and strip_prefix(c.address6) or nil, interface = c and c.interface or nil }
      end
      local lp = M.link_plan(w, r, l)
      if not r then
        why = "not made by this lab"
      elseif #lp.disconnect > 0 or #lp.connect > 0 then
        local nets = {}
        for _, n in ipairs(lp.disconnect) do nets[#nets + 1] = n end
        for _, link in ipairs(lp.connect) do nets[#nets + 1] = link.network end
        table.sort(nets)
        why = "connections to " .. table.concat(nets, ", ")
      elseif M.config_script({ forward = w.forward, routes = routes[name] }, M.applied_base(r.config)) then
        why = "routes or forwarding"
      elseif r.start and (r.start.state ~= "started" or r.start.text ~= M.start_text(w.start)) then
        why = "start commands"
      end
      e.state, e.why = why and "differs" or "up to date", why
    end
    out.nodes[#out.nodes + 1] = e
  end
  local extra = {}
  for _, name in ipairs(sorted_keys(rec.nodes)) do
    if not want.nodes[name] and lnodes[name] then extra[#extra + 1] = name end
  end
  for _, name in ipairs(sorted_keys(rec.networks)) do
    if not want.networks[name] and lnets[name] then extra[#extra + 1] = "network " .. name end
  end
  out.left_over = extra
  return out
end

-- ------------------------------------------------------------ DOT

local function dot_id(s) return '"' .. s:gsub('["\\]', "\\%0"):gsub("\n", "\\n") .. '"' end

--- The topology as Graphviz DOT: networks as boxes (internal ones dashed
-- and grey), nodes as ellipses (routers doubled), an edge per connection
-- labelled with its addresses (live ones from @report, M.status's, when
-- given; else the ones asked for), routes as dotted arrows.
function M.dot(want, report)
  local live = {}
  for _, e in ipairs(report and report.nodes or {}) do
    for _, c in ipairs(e.networks) do live[e.name .. "\0" .. c.network] = c end
  end
  local subnets = {}
  for _, e in ipairs(report and report.networks or {}) do subnets[e.name] = e end
  local out = { "graph lab {", "  graph [overlap=false, fontname=\"Helvetica\"];",
    "  node [fontname=\"Helvetica\"];", "  edge [fontname=\"Helvetica\", fontsize=10];" }
  local used = {}
  for _, node in pairs(want.nodes) do
    for _, link in ipairs(node.links) do used[link.network] = true end
  end
  local nets = sorted_keys(want.networks)
  if used[M.DEFAULT_NETWORK] then table.insert(nets, 1, M.DEFAULT_NETWORK) end
  for _, name in ipairs(nets) do
    local w = want.networks[name] or {}
    local s = subnets[name] or w
    local label = name
    for _, sub in ipairs { s.subnet, s.subnet6 } do label = label .. "\n" .. sub end
    if w.internal then
      out[#out + 1] = ("  %s [shape=box, style=\"dashed,filled\", fillcolor=\"#eeeeee\", color=\"#888888\", "
        .. "label=%s];"):format(dot_id("net:" .. name), dot_id(label .. "\n(internal)"))
    else
      out[#out + 1] = ("  %s [shape=box, style=filled, fillcolor=\"#dde8f8\", label=%s];")
        :format(dot_id("net:" .. name), dot_id(label))
    end
  end
  for _, name in ipairs(sorted_keys(want.nodes)) do
    local node = want.nodes[name]
    out[#out + 1] = ("  %s [shape=%s];"):format(dot_id(name), node.forward and "ellipse, peripheries=2" or "ellipse")
  end
  for _, name in ipairs(sorted_keys(want.nodes)) do
    for _, link in ipairs(want.nodes[name].links) do
      local c = live[name .. "\0" .. link.network] or {}
      local addrs = {}
      for _, a in ipairs { c.address or link.ip, c.address6 or link.ip6 } do addrs[#addrs + 1] = a end
      if link.rate then addrs[#addrs + 1] = link.rate end
      local internal = want.networks[link.network] and want.networks[link.network].internal
      out[#out + 1] = ("  %s -- %s [label=%s%s];"):format(dot_id(name), dot_id("net:" .. link.network),
        dot_id(table.concat(addrs, "\n")), internal and ", style=dashed" or "")
    end
  end
  for _, name in ipairs(sorted_keys(want.nodes)) do
    for _, r in ipairs(want.nodes[name].routes) do
      out[#out + 1] = ("  %s -- %s [style=dotted, dir=forward, arrowhead=vee, constraint=false, label=%s];")
        :format(dot_id(name), dot_id(r.via), dot_id("to " .. r.to))
    end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

return M
