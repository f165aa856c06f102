-- The text the lab hands to `ip -batch` and `nft -f`.
local text = require "rootlessnetns.lab.text"
local addrpool = require "rootlessnetns.addrpool"

describe("lab text", function()
  local c = { bridge = "rlnsbr0", interface = "eth0" }
  local n = { name = "default", subnet = "10.89.0.0/24", subnet6 = "fd00:89::/64", bridge = "rlnsbr0",
    net = assert(addrpool.subnet("10.89.0.0/24")), net6 = assert(addrpool.subnet6("fd00:89::/64")) }
  local lease = { address = "10.89.0.2", prefix = 24, gateway = "10.89.0.1", host_interface = "rlnsv0",
    interface = "eth0", bridge = "rlnsbr0", address6 = "fd00:89::2", gateway6 = "fd00:89::1" }

  it("makes the bridge with the gateways' addresses, with the MTU only when set", function()
    assert.same({ "link add rlnsbr0 type bridge", "addr add 10.89.0.1/24 dev rlnsbr0",
      "addr add fd00:89::1/64 dev rlnsbr0 nodad", "link set rlnsbr0 up" }, text.bridge(c, n))
    assert.equal("link add rlnsbr0 mtu 9000 type bridge",
      text.bridge({ bridge = "rlnsbr0", interface = "eth0", mtu = 9000 }, n)[1])
  end)

  it("plugs a veth into its network's bridge and moves its peer into the namespace", function()
    assert.same({
      "link add rlnsv0 type veth peer name eth0 netns /run/user/1/netns/web",
      "link set rlnsv0 master rlnsbr0",
      "link set rlnsv0 up",
    }, text.veth(lease, c, "/run/user/1/netns/web"))
    assert.same({ "addr add 10.89.0.2/24 dev eth0", "addr add fd00:89::2/64 dev eth0 nodad", "link set eth0 up" },
      text.address(lease))
    local routed = setmetatable({ default_route = true, default_route6 = true }, { __index = lease })
    assert.same({ "addr add 10.89.0.2/24 dev eth0", "addr add fd00:89::2/64 dev eth0 nodad", "link set eth0 up",
      "route replace default via 10.89.0.1 dev eth0", "route replace default via fd00:89::1 dev eth0" },
      text.address(routed))
  end)

  it("replaces its nft table whole: masquerades what leaves the lab, and internal networks forward nothing", function()
    local t = text.rules {
      n, { name = "back", subnet = "10.89.1.0/24", subnet6 = "fd00:90::/64", bridge = "rlnsbr1", internal = true },
    }
    assert.matches("^add table ip rootlessnetns\ndelete table ip rootlessnetns\nadd table inet rootlessnetns\n"
      .. "delete table inet rootlessnetns\ntable inet rootlessnetns {\n", t)
    assert.matches("ip saddr 10.89.0.0/24 ip daddr != { 10.89.0.0/24, 10.89.1.0/24 } masquerade", t, 1, true)
    assert.matches("ip6 saddr fd00:89::/64 ip6 daddr != { fd00:89::/64, fd00:90::/64 } masquerade", t, 1, true)
    assert.is_nil(t:find("ip saddr 10.89.1.0/24", 1, true), "an internal network is masqueraded")
    assert.matches('iifname "rlnsbr1" oifname != "rlnsbr1" drop', t, 1, true)
  end)

  it("deletes only our veths that no lease keeps", function()
    assert.same({ "link del rlnsv3" },
      text.orphans({ "lo", "tap0", "rlnsbr0", "rlnsv0", "rlnsv3", "rlnsvx", "eth0" }, { rlnsv0 = true }, "rlnsv"))
  end)
end)

describe("lab names (/etc/hosts)", function()
  local hosts = require "rootlessnetns.lab.hosts"
  local members = {
    front = { web = { address = "10.89.1.2", address6 = "fd01::2" }, router = { address = "10.89.1.3" } },
    back = { db = { address = "10.90.1.10" }, router = { address = "10.90.1.2" } },
  }

  it("names each namespace NAME.NETWORK, and NAME where it shares a network, first by name", function()
    assert.equal(hosts.HEADER
      .. "10.90.1.10\tdb.back db\n10.90.1.2\trouter.back router\n"
      .. "10.89.1.3\trouter.front\n10.89.1.2\tweb.front web\nfd01::2\tweb.front web\n",
      hosts.text("db", members))
  end)

  it("names one behind a router too, and itself", function()
    local t = hosts.text("web", members)
    assert.matches("10.90.1.10\tdb.back db\n", t, 1, true)
    assert.matches("10.89.1.3\trouter.front router\n", t, 1, true)
    assert.matches("10.90.1.2\trouter.back\n", t, 1, true)
    assert.matches("10.89.1.2\tweb.front web\n", t, 1, true)
  end)

  it("is just localhost for a namespace on no network", function()
    assert.equal(hosts.HEADER, hosts.text("lonely", {}))
  end)
end)
