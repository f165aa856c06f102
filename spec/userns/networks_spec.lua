-- The lab's networks as a user sees them: several per namespace, IPv6,
-- internal ones, routers, names in /etc/hosts, shaped links.  Traffic
-- goes only between the namespaces made here, and to the host's loopback.
local core = require "rootlessnetns"
local helper = require "helper"
local cjson = require "cjson"

local userns_it = helper.userns_it(it, pending)

describe("lab networks", function()
  local fx = helper.state_fixture(before_each, after_each)
  local background = {}
  local function cli(args, opts) return helper.cli(args, fx.env, opts) end
  local function ok(args)
    local code, out, err = cli(args)
    assert.equal(0, code, table.concat(args, " ") .. ": " .. tostring(err))
    return out, err
  end
  local function exec(name, script)
    return cli { "netns", "exec", name, "sh", "-c", script }
  end
  after_each(function()
    for _, p in ipairs(background) do
      p:kill(core.SIGTERM)
      if not p:wait(5000) then p:kill(core.SIGKILL) p:wait() end
    end
    background = {}
  end)

  userns_it("are made, listed and removed, with subnets that never overlap", function()
    local out = ok { "network", "create", "front", "--json" }
    local front = cjson.decode(out)
    assert.equal("10.89.1.0/24", front.subnet)
    assert.matches("^fd%x%x:%x+:%x+::/64$", front.subnet6)
    assert.is_false(front.internal)
    local back = cjson.decode((ok { "network", "create", "back", "--subnet", "10.90.1.0/24", "--internal", "--json" }))
    assert.is_true(back.internal)
    assert.are_not.equal(front.bridge, back.bridge)
    for _, case in ipairs {
      { { "network", "create", "front" }, "network `front` already exists" },
      { { "network", "create", "x", "--subnet", "10.89.1.128/25" }, "overlaps network `front`" },
      { { "network", "create", "x", "--subnet", "10.89.0.0/16" }, "overlaps network `" },
      { { "network", "create", "x", "--subnet", "10.0.2.0/24" }, "overlaps slirp4netns's network" },
      { { "network", "create", "x", "--subnet6", "fd00::/48" }, "not an IPv6 /64" },
      { { "network", "create", "no.dots" }, "invalid network name" },
      { { "network", "rm", "default" }, "cannot be removed" },
      { { "network", "rm", "nope" }, "no network `nope`" },
      { { "netns", "connect", "web", "--network", "nope" }, "no network `nope`" },
    } do
      local code, _, err = cli(case[1])
      assert.equal(125, code, table.concat(case[1], " "))
      assert.matches("^rootlessnetns: [^\n]*" .. case[2]:gsub("%p", "%%%0") .. "[^\n]*\n$", err)
    end
    local list = cjson.decode((ok { "network", "list", "--json" }))
    assert.same({ "default", "back", "front" }, { list[1].name, list[2].name, list[3].name })
    assert.same({ "bridge", "internal", "members", "name", "subnet", "subnet6" }, (function()
      local keys = {}
      for k in pairs(list[3]) do keys[#keys + 1] = k end
      table.sort(keys)
      return keys
    end)())
    ok { "netns", "add", "web" }
    ok { "netns", "connect", "web", "--network", "front" }
    local code, _, err = cli { "network", "rm", "front" }
    assert.equal(125, code)
    assert.matches("has 1 namespace on it %(web%)", err)
    ok { "network", "rm", "--force", "front" }
    ok { "network", "rm", "back" }
    list = cjson.decode((ok { "network", "list", "--json" }))
    assert.equal(1, #list)
    -- the last connection went with the network: nothing holds the rootless netns
    local st = cjson.decode((ok { "status", "--json" }))
    assert.is_false(st.up)
  end)

  userns_it("put a namespace on several networks: eth0, eth1, one default route", function()
    ok { "network", "create", "front" }
    ok { "network", "create", "back", "--internal" }
    ok { "netns", "add", "router" }
    local a = cjson.decode((ok { "netns", "connect", "router", "--network", "back", "--json" }))
    local b = cjson.decode((ok { "netns", "connect", "router", "--network", "front", "--json" }))
    assert.equal("eth0", a.interface)
    assert.equal("eth1", b.interface)
    assert.is_false(a.default_route, "an internal network carries the default route")
    assert.is_true(b.default_route)
    local _, routes = exec("router", "ip route show default")
    assert.matches("^default via " .. b.gateway:gsub("%p", "%%%0") .. " dev eth1", routes)
    local c = cjson.decode((ok { "netns", "connect", "router", "--default-route", "--json" }))
    assert.equal("eth2", c.interface)
    _, routes = exec("router", "ip route show default")
    assert.matches("^default via 10%.89%.0%.1 dev eth2", routes)
    -- its route out moves on when it goes
    ok { "netns", "disconnect", "router", "--network", "default" }
    _, routes = exec("router", "ip route show default")
    assert.matches("^default via " .. b.gateway:gsub("%p", "%%%0") .. " dev eth1", routes)
    local entry = cjson.decode((ok { "netns", "list", "--json" }))[1]
    assert.same({ "back", "front" }, (function()
      local n = {}
      for k in pairs(entry.networks) do n[#n + 1] = k end
      table.sort(n)
      return n
    end)())
    local code, _, err = cli { "netns", "connect", "router", "--network", "back", "--default-route" }
    assert.equal(125, code)
    assert.matches("already connected to network `back`", err)
    ok { "netns", "disconnect", "router" }
    assert.same({}, cjson.decode((ok { "netns", "list", "--json" }))[1].networks)
  end)

  userns_it("an internal network's namespaces reach each other but not the outside", function()
    local port = math.random(20000, 60000)
    local listener = assert(core.spawn { argv = { "nc", "-k", "-l", "127.0.0.1", tostring(port) } })
    background[#background + 1] = listener
    local cfg = helper.tmpdir() .. "/config.lua"
    helper.write(cfg, 'return { backend = "slirp4netns", slirp4netns = { allow_host_loopback = true } }')
    local function okc(args) return ok { "--config", cfg, table.unpack(args) } end
    okc { "network", "create", "back", "--internal", "--subnet", "10.90.1.0/24" }
    for _, n in ipairs { "a", "b", "out" } do okc { "netns", "add", n } end
    okc { "netns", "connect", "a", "--network", "back", "--ip", "10.90.1.10" }
    okc { "netns", "connect", "b", "--network", "back", "--ip", "10.90.1.11" }
    okc { "netns", "connect", "out" }
    assert.equal(0, (exec("a", "ping -c 1 -W 2 10.90.1.11 >/dev/null")))
    assert.equal(0, (exec("a", "ping -c 1 -W 2 b >/dev/null")), "no name for b")
    -- the host's loopback, through slirp4netns: reached from a network with a way out...
    assert.equal(0, (exec("out", ("nc -z -w 2 10.0.2.2 %d"):format(port))))
    -- ...but not from the internal one, not even with a route of its own
    local code, _, err = exec("a", ("ip route add default via 10.90.1.1 && nc -z -w 2 10.0.2.2 %d"):format(port))
    assert.are_not.equal(0, code, err)
  end)

  userns_it("a router forwards between two networks; db reaches web through it, by name, over IPv6 too", function()
    ok { "network", "create", "front", "--subnet", "10.91.1.0/24" }
    ok { "network", "create", "back", "--subnet", "10.91.2.0/24", "--internal" }
    for _, n in ipairs { "web", "router", "db" } do ok { "netns", "add", n } end
    local web = cjson.decode((ok { "netns", "connect", "web", "--network", "front", "--json" }))
    local rf = cjson.decode((ok { "netns", "connect", "router", "--network", "front", "--json" }))
    local rb = cjson.decode((ok { "netns", "connect", "router", "--network", "back", "--json" }))
    local db = cjson.decode((ok { "netns", "connect", "db", "--network", "back", "--json" }))
    assert.truthy(web.address6 and rf.address6 and rb.address6 and db.address6)
    assert.equal(0, (exec("router", "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")))
    assert.equal(0, (exec("db", ("ip route add 10.91.1.0/24 via %s && ip -6 route add %s via %s")
      :format(rb.address, web.address6:gsub("::%x+$", "::/64"), rb.address6))))
    assert.equal(0, (exec("web", ("ip route add 10.91.2.0/24 via %s && ip -6 route add %s via %s")
      :format(rf.address, db.address6:gsub("::%x+$", "::/64"), rf.address6))))
    local code, out, err = exec("db", "ping -c 1 -W 2 web && ping -6 -c 1 -W 2 web.front")
    assert.equal(0, code, out .. err)
    local _, trace = exec("db", "ip route get " .. web.address)
    assert.matches("via " .. rb.address:gsub("%p", "%%%0"), trace)
    -- and IPv6 out to the rootless netns over the bridge (its gateway)
    assert.equal(0, (exec("web", "ping -6 -c 1 -W 2 " .. web.gateway6 .. " >/dev/null")))
    -- no address is left tentative for the command that starts right after
    local _, addrs = exec("db", "ip -6 addr show tentative")
    assert.equal("", addrs)
  end)

  userns_it("/etc/hosts in a running netns exec shows a namespace connected after it started", function()
    ok { "netns", "add", "a" }
    ok { "netns", "add", "c" }
    ok { "netns", "connect", "a" }
    local proc, dir = cli({ "netns", "exec", "a", "sh", "-c",
      "i=0; while ! grep -q 'c.default c$' /etc/hosts; do i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done; "
        .. "grep 'c.default' /etc/hosts" }, { wait = false })
    background[#background + 1] = proc
    core.sleep(300)
    local lease = cjson.decode((ok { "netns", "connect", "c", "--json" }))
    assert.same({ "exited", 0 }, { proc:wait(15000) })
    assert.matches(lease.address:gsub("%p", "%%%0") .. "\tc%.default c\n", helper.read(dir .. "/out"))
    -- and it goes on disconnect
    ok { "netns", "disconnect", "c" }
    local _, hosts = exec("a", "cat /etc/hosts")
    assert.is_nil(hosts:find("c.default", 1, true))
    assert.matches("a%.default a", hosts)
  end)

  userns_it("--rate limits the link; --delay is refused, naming the module, where netem is missing", function()
    local which = require("rootlessnetns.child").which
    if not which("iperf3") then return pending("needs iperf3") end
    for _, n in ipairs { "a", "b" } do ok { "netns", "add", n } end
    local la = cjson.decode((ok { "netns", "connect", "a", "--json" }))
    local lb = cjson.decode((ok { "netns", "connect", "b", "--rate", "20mbit", "--json" }))
    assert.same({ rate = "20mbit" }, lb.shape)
    local server = cli({ "netns", "exec", "a", "iperf3", "-s", "-1", "-B", la.address }, { wait = false })
    background[#background + 1] = server
    core.sleep(500)
    for _, reverse in ipairs { "", "-R" } do
      local code, out = exec("b", ("iperf3 -c %s -t 3 -J %s"):format(la.address, reverse))
      assert.equal(0, code, out)
      local bps = cjson.decode(out)["end"].sum_received.bits_per_second
      assert.is_true(bps > 16e6 and bps < 24e6, ("%s %.1f Mbit/s through a 20mbit link"):format(reverse, bps / 1e6))
      if reverse == "" then
        server = cli({ "netns", "exec", "a", "iperf3", "-s", "-1", "-B", la.address }, { wait = false })
        background[#background + 1] = server
        core.sleep(500)
      end
    end
    local code, _, err = cli { "netns", "connect", "a", "--network", "default", "--delay", "20ms" }
    assert.equal(125, code)
    if err:find("sch_netem", 1, true) then
      assert.matches("^rootlessnetns: %-%-delay needs the kernel's netem qdisc %(module sch_netem%)", err)
      -- nothing was made: a keeps its one connection
      local entry = cjson.decode((ok { "netns", "list", "--json" }))[1]
      assert.equal(la.address .. "/24", entry.networks.default.address)
    else
      assert.matches("already connected", err)
    end
    for _, case in ipairs {
      { { "--rate", "fast" }, "a rate such as 10mbit" },
      { { "--jitter", "5ms" }, "--jitter needs --delay" },
      { { "--loss", "200%" }, "a percentage" },
    } do
      local c2, _, e2 = cli { "netns", "connect", "b", "--network", "default", table.unpack(case[1]) }
      assert.equal(125, c2)
      assert.matches(case[2]:gsub("%p", "%%%0"), e2)
    end
  end)
end)
