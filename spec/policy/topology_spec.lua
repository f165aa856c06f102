-- Topology files: loading, validation, and `lab up`/`lab down` against a
-- fake Lab (an in-memory world of networks and namespaces), so that every
-- decision, and the repair of an `up` killed at every step, runs without
-- privileges.
local core = require "rootlessnetns"
local helper = require "helper"
local topology = require "rootlessnetns.lab.topology"
local apply = require "rootlessnetns.lab.apply"

local errno = core.errno

-- ------------------------------------------------------------ the fake

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

--- A world: networks (default always there), namespaces with their
-- connections, and what was run in each.
local function new_world()
  return {
    nets = { default = { name = "default", subnet = "10.89.0.0/24", subnet6 = "fd00:89::/64", internal = false,
      bridge = "rlnsbr0" } },
    ns = {},
    execs = {},
    calls = 0,
    mutations = 0,
    next_subnet = 1,
  }
end

local function fake_lab(world, base)
  local l = { ns = { paths = { base = base }, in_process = true } }
  local function step(fn)
    return function(...)
      world.calls = world.calls + 1
      if world.kill_at == world.calls and world.kill_before then error("killed before", 0) end
      local res = table.pack(fn(...))
      if world.kill_at == world.calls then error("killed after", 0) end
      return table.unpack(res, 1, res.n)
    end
  end
  local function mutate() world.mutations = world.mutations + 1 end
  local function members(net)
    local m = {}
    for name, n in pairs(world.ns) do if n.networks[net] then m[#m + 1] = name end end
    table.sort(m)
    return m
  end
  l.networks = step(function()
    local out = {}
    for name, n in pairs(world.nets) do
      local e = copy(n)
      e.members = members(name)
      out[#out + 1] = e
    end
    table.sort(out, function(a, b) return a.name < b.name end)
    return out
  end)
  l.network_create = step(function(_, name, o)
    if world.nets[name] then return nil, ("network `%s` exists"):format(name), errno.EEXIST end
    mutate()
    local subnet = o.subnet
    if not subnet then
      subnet = ("10.91.%d.0/24"):format(world.next_subnet)
      world.next_subnet = world.next_subnet + 1
    end
    world.nets[name] = { name = name, subnet = subnet, subnet6 = o.subnet6 or ("fd00:91:%d::/64"):format(#name),
      internal = o.internal == true, bridge = "rlnsbr-" .. name }
    return copy(world.nets[name])
  end)
  l.network_rm = step(function(_, name, o)
    if not world.nets[name] then return nil, "no network", errno.ENOENT end
    if #members(name) > 0 and not (o and o.force) then return nil, "busy", errno.EBUSY end
    mutate()
    for _, n in pairs(world.ns) do n.networks[name] = nil end
    world.nets[name] = nil
    return true
  end)
  l.add = step(function(_, name)
    if world.ns[name] and world.ns[name].live then return nil, "exists", errno.EEXIST end
    mutate()
    world.ns[name] = { live = true, networks = {} }
    world.execs[name] = {}
    return name, base .. "/netns/" .. name
  end)
  l.del = step(function(_, name)
    if not world.ns[name] then return nil, "no namespace", errno.ENOENT end
    mutate()
    world.ns[name] = nil
    world.execs[name] = nil
    return true
  end)
  l.list = step(function()
    local out = {}
    for name, n in pairs(world.ns) do
      out[#out + 1] = { name = name, path = base .. "/netns/" .. name, live = n.live, pids = {}, ports = {},
        networks = copy(n.networks) }
    end
    table.sort(out, function(a, b) return a.name < b.name end)
    return out
  end)
  l.connect = step(function(_, name, o)
    local n, net = world.ns[name], world.nets[o.network or "default"]
    if not n then return nil, "no namespace", errno.ENOENT end
    if not net then return nil, "no network", errno.ENOENT end
    if n.networks[net.name] then return nil, "already", errno.EEXIST end
    mutate()
    local address = o.ip
    if not address then
      local used = {}
      for _, other in pairs(world.ns) do
        local c = other.networks[net.name]
        if c then used[c.address] = true end
      end
      local prefix = net.subnet:match("^(%d+%.%d+%.%d+)%.")
      for i = 2, 254 do
        local a = prefix .. "." .. i
        if not used[a] then address = a break end
      end
    end
    local count = 0
    for _ in pairs(n.networks) do count = count + 1 end
    n.networks[net.name] = { address = address, address6 = o.ip6 or ("fd00::%d"):format(#address),
      interface = "eth" .. count, rate = o.rate }
    return { name = name, network = net.name, address = address, prefix = 24 }
  end)
  l.disconnect = step(function(_, name, o)
    local n = world.ns[name]
    if not n or not n.networks[o.network] then return nil, "not connected", errno.ENOENT end
    mutate()
    n.networks[o.network] = nil
    return true
  end)
  l.exec = step(function(_, name, argv)
    if not world.ns[name] then return nil, "no namespace", errno.ENOENT end
    local list = world.execs[name]
    list[#list + 1] = argv[3]
    return "exited", 0
  end)
  return l
end

-- The world as data to compare: namespaces and their addresses, networks.
local function snapshot(world)
  local s = { nets = {}, ns = {} }
  for name, n in pairs(world.nets) do s.nets[name] = { subnet = n.subnet, internal = n.internal } end
  for name, n in pairs(world.ns) do
    s.ns[name] = {}
    for net, c in pairs(n.networks) do s.ns[name][net] = { address = c.address, rate = c.rate } end
  end
  return s
end

local TWO_TIER = {
  networks = { front = {}, back = { internal = true, subnet = "10.90.1.0/24" } },
  nodes = {
    web = { networks = { "front" }, start = { { "sh", "-c", "echo 'serving'" } } },
    router = { networks = { "front", "back" }, forward = true },
    db = { networks = { back = { ip = "10.90.1.10" } }, routes = { { to = "front", via = "router" } } },
  },
}

local function states(report)
  local out = {}
  for _, n in ipairs(report.networks) do out["network " .. n.name] = n.state end
  for _, n in ipairs(report.nodes) do out[n.name] = n.state end
  return out
end

local function all_up_to_date(report)
  for k, v in pairs(states(report)) do
    if v ~= "up to date" then return false, k .. " " .. v end
  end
  return #report.left_over == 0, "left over: " .. table.concat(report.left_over, ", ")
end

-- ------------------------------------------------------------ specs

describe("a topology", function()
  local function err_of(t)
    local ok, err = topology.validate(t)
    assert.is_nil(ok)
    return err
  end

  it("is normalized: links in order, maps sorted, defaults filled in", function()
    local t = assert(topology.validate(TWO_TIER))
    assert.same({ { network = "front" }, { network = "back" } }, t.nodes.router.links)
    assert.is_true(t.nodes.router.forward)
    assert.is_false(t.nodes.web.forward)
    assert.same({ { network = "back", ip = "10.90.1.10" } }, t.nodes.db.links)
    assert.same({ { to = "front", via = "router", network = "front" } }, t.nodes.db.routes)
    assert.same({ name = "back", subnet = "10.90.1.0/24", internal = true }, t.networks.back)
    assert.same({}, assert(topology.validate {}).nodes)
  end)

  it("says which key is wrong, and why", function()
    for want, t in pairs {
      ["nodes.db.routes[1].via: no node `rooter`"] = { nodes = { a = { networks = { "default" } },
        db = { networks = { "default" }, routes = { { to = "10.1.0.0/16", via = "rooter" } } } } },
      ["nodes.web.networks[1]: no network `fornt` (declare it under networks)"] =
        { networks = { front = {} }, nodes = { web = { networks = { "fornt" } } } },
      ["networks.back.subnet: must be an IPv4 subnet such as 10.90.1.0/24"] =
        { networks = { back = { subnet = "10.90.1.0" } } },
      ["networks.back.subnet: has host bits set"] = { networks = { back = { subnet = "10.90.1.1/24" } } },
      ["networks.back.subnet6: must be an IPv6 subnet such as fd00:90::/64"] =
        { networks = { back = { subnet6 = "fd00::zz/64" } } },
      ["networks.back.internal: must be a boolean, not a string"] = { networks = { back = { internal = "yes" } } },
      ["networks.back.mtu: unknown key (known: internal, subnet, subnet6)"] = { networks = { back = { mtu = 1 } } },
      ["nodes.web.forwrd: unknown key (known: forward, networks, routes, start)"] =
        { nodes = { web = { forwrd = true } } },
      ["nodes.web.networks.default.ip: must be an IPv4 address such as 10.90.1.10"] =
        { nodes = { web = { networks = { default = { ip = "10.89.0.300" } } } } },
      ["nodes.web.networks.default.rate: must be a rate such as 10mbit, 512kbit or 1gbit"] =
        { nodes = { web = { networks = { default = { rate = "fast" } } } } },
      ["nodes.db.networks.back.ip: 10.91.0.5 is outside the subnet 10.90.1.0/24"] =
        { networks = { back = { subnet = "10.90.1.0/24" } },
          nodes = { db = { networks = { back = { ip = "10.91.0.5" } } } } },
      ["nodes.b.networks.default.ip: 10.89.0.5 is also a's"] = { nodes = {
        a = { networks = { default = { ip = "10.89.0.5" } } },
        b = { networks = { default = { ip = "10.89.0.5" } } } } },
      ["nodes.a.routes[1].via: `b` shares no network with `a`"] = { networks = { x = {} }, nodes = {
        a = { networks = { "default" }, routes = { { to = "x", via = "b" } } }, b = { networks = { "x" } } } },
      ["nodes.a.routes[1].to: `a` is on network `default` already"] = { nodes = {
        a = { networks = { "default" }, routes = { { to = "default", via = "b" } } },
        b = { networks = { "default" } } } },
      ["nodes.a.routes[1].to: no network `elsewhere`, and not a CIDR such as 10.1.0.0/24"] = { nodes = {
        a = { networks = { "default" }, routes = { { to = "elsewhere", via = "b" } } },
        b = { networks = { "default" } } } },
      ["nodes.a.routes[1].via: is required"] = { nodes = { a = { routes = { { to = "10.0.0.0/8" } } } } },
      ["nodes.a.start[1]: must be a command as a list of strings, e.g. { \"sh\", \"-c\", \"...\" }"] =
        { nodes = { a = { start = { "echo hi" } } } },
      ["nodes.a/b: invalid name `a/b`: letters, digits, `_`, `.` and `-` only, starting with a letter or digit"] =
        { nodes = { ["a/b"] = {} } },
      ["networks.default: is the config's `connect` network, always there; it is not declared"] =
        { networks = { default = {} } },
      ["networks.b.subnet: 10.90.0.0/16 overlaps networks.a.subnet 10.90.1.0/24"] =
        { networks = { a = { subnet = "10.90.1.0/24" }, b = { subnet = "10.90.0.0/16" } } },
      ["nodes.a.networks[2]: network `default` twice"] = { nodes = { a = { networks = { "default", "default" } } } },
      ["nodez: unknown key (known: networks, nodes)"] = { nodez = {} },
      -- the rules of `network create` and `netns connect`, before anything is made
      ["networks.Net_A: invalid network name `Net_A`: a lowercase letter, then lowercase letters, digits or `-` "
        .. "(not last), at most 32 (it ends host names: NAME.NETWORK)"] = { networks = { Net_A = {} } },
      ["networks.back.subnet: subnet `127.0.0.0/24` is within 127.0.0.0/8 (loopback): not for a network"] =
        { networks = { back = { subnet = "127.0.0.0/24" } } },
      ["networks.back.subnet6: `fd00:90::/56` is not an IPv6 /64 subnet (X:X:X:X::/64)"] =
        { networks = { back = { subnet6 = "fd00:90::/56" } } },
    } do
      assert.equal(want, err_of(t))
    end
    assert.equal("nodes.web.networks.default.rate: must be a rate such as 10mbit, 512kbit or 1gbit",
      err_of { nodes = { web = { networks = { default = { rate = "1tbps" } } } } })
    -- IPv6 as `ip` spells it: written otherwise, it is no change at the next up
    local t = assert(topology.validate { networks = { back = { subnet6 = "fd00:0090:0000::/64" } },
      nodes = { db = { networks = { back = { ip6 = "fd00:0090::000a" } } } } })
    assert.equal("fd00:90::/64", t.networks.back.subnet6)
    assert.equal("fd00:90::a", t.nodes.db.links[1].ip6)
    assert.equal("must return a table, not a string", err_of("x"))
  end)

  it("loads from a file in a sandbox, and errors name the file", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/lab.lua", "leaked = 1\nreturn { nodes = { db = { routes = { { to = '10.1.0.0/16', "
      .. "via = 'rooter' } } } } }\n")
    local t, err = topology.load(dir .. "/lab.lua")
    assert.is_nil(t)
    assert.equal(("topology `%s/lab.lua`: nodes.db.routes[1].via: no node `rooter`"):format(dir), err)
    assert.is_nil(rawget(_G, "leaked"))
    helper.write(dir .. "/bad.lua", "return {\n")
    assert.matches("^topology " .. dir:gsub("%p", "%%%0") .. "/bad%.lua:2:",
      select(2, topology.load(dir .. "/bad.lua")))
    assert.equal(("topology `%s/none.lua`: cannot read the file"):format(dir),
      select(2, topology.load(dir .. "/none.lua")))
    helper.write(dir .. "/raise.lua", "error('no')\n")
    assert.matches("^topology .*raise%.lua:1: no$", select(2, topology.load(dir .. "/raise.lua")))
  end)

  it("examples/two-tier.lua loads, with an internal network and a router", function()
    local t = assert(topology.load(helper.ROOT .. "/examples/two-tier.lua"))
    assert.is_true(t.networks.back.internal)
    assert.is_true(t.nodes.router.forward)
    assert.equal("router", t.nodes.db.routes[1].via)
  end)

  it("parses IPv6 addresses and CIDRs of both families", function()
    assert.same({ 0xfd00, 0, 0, 0, 0, 0, 0, 1 }, topology.parse_ipv6("fd00::1"))
    assert.same({ 0, 0, 0, 0, 0, 0, 0, 0 }, topology.parse_ipv6("::"))
    assert.is_nil(topology.parse_ipv6("fd00::1::2"))
    assert.is_nil(topology.parse_ipv6("1:2:3:4:5:6:7"))
    assert.is_nil(topology.parse_ipv6("10.0.0.1"))
    assert.same({ family = 6, prefix = 64, groups = { 0xfd00, 0x90, 0, 0, 0, 0, 0, 0 }, host_bits = false },
      topology.parse_cidr("fd00:90::/64"))
    assert.is_true(topology.parse_cidr("fd00:90::1/64").host_bits)
    assert.equal(4, topology.parse_cidr("10.0.0.0/8").family)
    assert.is_nil(topology.parse_cidr("fd00::/129"))
  end)

  it("is recorded under a file name made from its absolute path", function()
    assert.equal("/work/lab.lua", topology.absolute("../lab.lua", "/work/x"))
    assert.equal("/a/b.lua", topology.absolute("/a//./b.lua", "/"))
    assert.equal("%2Fhome%2Fu%2Fmy%20lab.lua.json", topology.record_name("/home/u/my lab.lua"))
    local long = topology.record_name("/" .. ("d"):rep(300))
    assert.is_true(#long < 200)
    assert.are_not.equal(long, topology.record_name("/x" .. ("d"):rep(299)))
  end)

  it("configures a node with one script: forwarding, routes replaced, routes gone deleted", function()
    assert.equal("set -e\necho 1 > /proc/sys/net/ipv4/ip_forward\n"
      .. "if [ -e /proc/sys/net/ipv6/conf/all/forwarding ]; then echo 1 > /proc/sys/net/ipv6/conf/all/forwarding; fi\n"
      .. "ip route replace 10.90.0.0/24 via 10.90.1.2\n",
      topology.config_script({ forward = true, routes = { ["10.90.0.0/24"] = "10.90.1.2" } },
        { forward = false, routes = {} }))
    assert.is_nil(topology.config_script({ forward = false, routes = {} }, { forward = false, routes = {} }))
    assert.equal("set -e\nip route del 10.1.0.0/16 2>/dev/null || true\nip -6 route replace fd00:1::/64 via fd00::2\n",
      topology.config_script({ forward = false, routes = { ["fd00:1::/64"] = "fd00::2" } },
        { forward = false, routes = { ["10.1.0.0/16"] = "10.90.1.2" } }))
    -- unknown (an interrupted configure): everything again
    assert.matches("ip_forward", topology.config_script({ forward = false, routes = {} }, nil))
  end)

  it("starts commands in the background, quoted, their output to the log", function()
    assert.equal("sh -c 'echo '\\''hi'\\''' </dev/null >>'/run/a b.log' 2>&1 &\n"
      .. "sleep 1 </dev/null >>'/run/a b.log' 2>&1 &\n",
      topology.start_script({ { "sh", "-c", "echo 'hi'" }, { "sleep", "1" } }, "/run/a b.log"))
  end)

  it("draws as Graphviz DOT: networks as boxes, internal ones dashed, edges with addresses", function()
    local t = assert(topology.validate(TWO_TIER))
    local dot = topology.dot(t, { networks = { { name = "front", subnet = "10.91.1.0/24" } },
      nodes = { { name = "web", networks = { { network = "front", address = "10.91.1.2" } } } } })
    assert.matches("^graph lab {\n", dot)
    assert.matches('"net:back" %[shape=box, style="dashed,filled"[^\n]*'
      .. 'label="back\\n10%.90%.1%.0/24\\n%(internal%)"%]', dot)
    assert.matches('"net:front" %[shape=box, style=filled[^\n]*label="front\\n10%.91%.1%.0/24"%]', dot)
    assert.matches('"router" %[shape=ellipse, peripheries=2%];', dot)
    assert.matches('"web" %-%- "net:front" %[label="10%.91%.1%.2"%];', dot)
    assert.matches('"db" %-%- "net:back" %[label="10%.90%.1%.10", style=dashed%];', dot)
    assert.matches('"db" %-%- "router" %[style=dotted[^\n]*label="to front"%];', dot)
    assert.matches("}\n$", dot)
  end)
end)

describe("lab up and down, on a fake lab", function()
  local base, world, l

  before_each(function()
    base = helper.tmpdir()
    world = new_world()
    l = fake_lab(world, base)
  end)
  after_each(function() helper.cleanup_dirs() end)

  local function up(t)
    return assert(apply.up(l, t or TWO_TIER, { id = "spec" }))
  end

  it("makes the networks, the namespaces, their connections, routes and start commands", function()
    local report = up()
    assert.same({ "created network back", "created network front", "added db", "added router", "added web",
      "connected db to back as 10.90.1.10", "connected router to front as 10.91.1.2",
      "connected router to back as 10.90.1.2", "connected web to front as 10.91.1.3", "configured db",
      "configured router", "started 1 command in web" }, report.changes)
    assert.same({ front = { subnet = "10.91.1.0/24", internal = false }, back = { subnet = "10.90.1.0/24",
      internal = true }, default = { subnet = "10.89.0.0/24", internal = false } }, snapshot(world).nets)
    -- db's route to front goes via the router's address on back, the network they share
    assert.same({ "set -e\nip route replace 10.91.1.0/24 via 10.90.1.2\n"
      .. "ip -6 route replace fd00:91:5::/64 via fd00::9\n" },
      world.execs.db)
    assert.matches("echo 1 > /proc/sys/net/ipv4/ip_forward", world.execs.router[1])
    assert.matches("^sh %-c 'echo '\\''serving'\\''' </dev/null >>'?" .. base:gsub("%p", "%%%0")
      .. "/labs/.*%.log'? 2>&1 &\n$",
      world.execs.web[1])
    assert(all_up_to_date(report))
    assert.equal("10.90.1.10", report.nodes[1].networks[1].address)
  end)

  it("changes nothing the second time", function()
    up()
    local before, mutations, execs = snapshot(world), world.mutations, copy(world.execs)
    local report = up()
    assert.same({}, report.changes)
    assert.equal(mutations, world.mutations)
    assert.same(execs, world.execs)
    assert.same(before, snapshot(world))
    assert.same(assert(apply.status(l, TWO_TIER, { id = "spec" })), assert(apply.status(l, TWO_TIER, { id = "spec" })))
  end)

  it("converges to an edited topology, touching only the difference", function()
    up()
    local edited = copy(TWO_TIER)
    edited.nodes.web = nil                                           -- removed
    edited.nodes.db.networks.back.ip = "10.90.1.20"                  -- readdressed
    edited.nodes.cache = { networks = { back = { rate = "10mbit" } } } -- added
    edited.networks.front.subnet = "10.92.0.0/24"                    -- renumbered
    local report = up(edited)
    assert.same({ "deleted web", "disconnected router from front", "remade network front", "created network front",
      "added cache", "connected cache to back as 10.90.1.3", "disconnected db from back",
      "connected db to back as 10.90.1.20", "connected router to front as 10.92.0.2", "configured db" },
      report.changes)
    assert(all_up_to_date(report))
    local s = snapshot(world)
    assert.is_nil(s.ns.web)
    assert.same({ address = "10.90.1.20" }, s.ns.db.back)
    assert.same({ address = "10.90.1.3", rate = "10mbit" }, s.ns.cache.back)
    assert.equal("10.92.0.0/24", s.nets.front.subnet)
    assert.matches("^set %-e\nip route del 10%.91%.1%.0/24 2>/dev/null || true\nip route replace 10%.92%.0%.0/24 via "
      .. "10%.90%.1%.2\n", world.execs.db[#world.execs.db])
    -- a rate changed is a connection made again; routes lost with it come
    -- back, and the routes via it follow its new address
    edited.nodes.db.networks.back = { rate = "1mbit" }
    report = up(edited)
    assert.same({ "disconnected db from back", "connected db to back as 10.90.1.4", "configured db" },
      report.changes)
    assert.matches("^set %-e\nip route replace 10%.92%.0%.0/24 via 10%.90%.1%.2\n", world.execs.db[#world.execs.db])
    assert(all_up_to_date(report))
  end)

  it("refuses a wanted name that is someone else's, and leaves it alone", function()
    assert(l:add("web"))
    local ok, err = apply.up(l, TWO_TIER, { id = "spec" })
    assert.is_nil(ok)
    assert.equal("namespace `web` exists and is not this lab's (`rootlessnetns netns del web`, or rename "
      .. "the node)", err)
    assert(l:network_create("front", {}))
    assert(l:del("web"))
    ok, err = apply.up(l, TWO_TIER, { id = "spec" })
    assert.is_nil(ok)
    assert.matches("network `front` exists and is not this lab's", err)
  end)

  it("says what is missing or differs, and what is left over", function()
    up()
    assert(l:del("web"))
    assert(l:disconnect("db", { network = "back" }))
    local smaller = copy(TWO_TIER)
    smaller.nodes.router = nil
    smaller.nodes.db.routes = nil
    local report = assert(apply.status(l, smaller, { id = "spec" }))
    assert.same({ ["network back"] = "up to date", ["network front"] = "up to date", db = "differs",
      web = "missing" }, states(report))
    assert.equal("connections to back", report.nodes[1].why)
    assert.same({ "router" }, report.left_over)
  end)

  it("down removes what up made and nothing else", function()
    assert(l:add("mine"))
    assert(l:network_create("other", {}))
    assert(l:connect("mine", { network = "default" }))
    up()
    local report = assert(apply.down(l, TWO_TIER, { id = "spec" }))
    assert.same({ "deleted db", "deleted router", "deleted web", "removed network back", "removed network front" },
      report.changes)
    assert.same({ default = { subnet = "10.89.0.0/24", internal = false }, other = { subnet = "10.91.1.0/24",
      internal = false } }, snapshot(world).nets)
    assert.same({ mine = { default = { address = "10.89.0.2" } } }, snapshot(world).ns)
    local left = {}
    for _, f in ipairs(core.listdir(base .. "/labs")) do if f ~= "lock" then left[#left + 1] = f end end
    assert.same({}, left)
    -- and again: nothing to do
    assert.same({}, assert(apply.down(l, TWO_TIER, { id = "spec" })).changes)
  end)

  it("a node whose start commands change is made anew", function()
    up()
    local edited = copy(TWO_TIER)
    edited.nodes.web.start = { { "sleep", "60" } }
    local report = up(edited)
    assert.same({ "remade web", "added web", "connected web to front as 10.91.1.3", "started 1 command in web" },
      report.changes)
    assert.same({ "sleep 60 </dev/null >>" .. topology.quote(report.log) .. " 2>&1 &\n" }, world.execs.web)
  end)

  -- an `up` killed at each of its calls into the Lab, before or after
  -- the call did its work: the next `up` makes the same lab as an `up`
  -- never killed, and `down` instead leaves what was there before
  local clean = (function()
    local w = new_world()
    local dir = helper.tmpdir()
    assert(apply.up(fake_lab(w, dir), TWO_TIER, { id = "spec" }))
    local n = w.calls
    local s = snapshot(w)
    helper.cleanup_dirs()
    return { calls = n, snapshot = s }
  end)()

  for _, then_what in ipairs { "up", "down" } do
    for _, when in ipairs { "before", "after" } do
      it(("is repaired by %s after an up killed %s each of its steps"):format(then_what, when), function()
        for n = 1, clean.calls do
          world = new_world()
          base = helper.tmpdir()
          l = fake_lab(world, base)
          world.kill_at, world.kill_before = n, when == "before"
          local ok, err = pcall(apply.up, l, TWO_TIER, { id = "spec" })
          assert.is_false(ok, "call " .. n)
          assert.matches("^killed", err)
          world.kill_at = nil
          if then_what == "up" then
            local report = assert(apply.up(l, TWO_TIER, { id = "spec" }))
            assert(all_up_to_date(report))
            assert.same(clean.snapshot, snapshot(world), "killed at call " .. n)
            local execs = copy(world.execs)
            assert.same({}, assert(apply.up(l, TWO_TIER, { id = "spec" })).changes)
            assert.same(execs, world.execs)
            -- the start command ran once in the web that is live
            assert.equal(1, #world.execs.web, "killed at call " .. n)
          else
            assert(apply.down(l, TWO_TIER, { id = "spec" }))
            assert.same(snapshot(new_world()), snapshot(world), "killed at call " .. n)
          end
        end
      end)
    end
  end
end)
