-- The text the lab hands to `ip -batch` and `nft -f`.
local text = require "rootlessnetns.lab.text"
local addrpool = require "rootlessnetns.addrpool"

describe("lab text", function()
  local net = assert(addrpool.subnet("10.89.0.0/24"))
  local c = { bridge = "rlnsbr0", interface = "eth0" }
  local lease = { address = "10.89.0.2", prefix = 24, gateway = "10.89.0.1", host_interface = "rlnsv0" }

  it("makes the bridge with the gateway's address, with the MTU only when set", function()
    assert.same({ "link add rlnsbr0 type bridge", "addr add 10.89.0.1/24 dev rlnsbr0", "link set rlnsbr0 up" },
      text.bridge(c, net))
    assert.equal("link add rlnsbr0 mtu 9000 type bridge",
      text.bridge({ bridge = "rlnsbr0", interface = "eth0", mtu = 9000 }, net)[1])
  end)

  it("plugs a veth into the bridge and moves its peer into the namespace", function()
    assert.same({
      "link add rlnsv0 type veth peer name eth0 netns /run/user/1/netns/web",
      "link set rlnsv0 master rlnsbr0",
      "link set rlnsv0 up",
    }, text.veth(lease, c, "/run/user/1/netns/web"))
    assert.same({ "addr add 10.89.0.2/24 dev eth0", "link set eth0 up", "route add default via 10.89.0.1 dev eth0" },
      text.address(lease, c))
  end)

  it("replaces its nft table whole, masquerading only what leaves the subnet", function()
    local t = text.masquerade("10.89.0.0/24")
    assert.matches("^add table ip rootlessnetns\ndelete table ip rootlessnetns\ntable ip rootlessnetns {\n", t)
    assert.matches("ip saddr 10.89.0.0/24 ip daddr != 10.89.0.0/24 masquerade", t, 1, true)
  end)

  it("deletes only our veths that no lease keeps", function()
    assert.same({ "link del rlnsv3" },
      text.orphans({ "lo", "tap0", "rlnsbr0", "rlnsv0", "rlnsv3", "rlnsvx", "eth0" }, { rlnsv0 = true }, "rlnsv"))
  end)
end)
