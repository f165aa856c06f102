local resolvconf = require "rootlessnetns.resolvconf"

describe("resolv.conf generation", function()
  it("puts the forwarders first and drops loopback servers", function()
    local out = resolvconf.generate {
      host = "nameserver 127.0.0.53\nnameserver 192.168.1.1\nnameserver ::1\nsearch lan\n",
      nameservers = { "169.254.1.1" }, ipv6 = true,
    }
    assert.equal("search lan\nnameserver 169.254.1.1\nnameserver 192.168.1.1\n", out)
  end)

  it("reads systemd-resolved's real file behind a single 127.0.0.53 stub", function()
    local asked
    local out = resolvconf.generate {
      host = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
      read = function(path)
        asked = path
        return "nameserver 10.1.1.1\nsearch corp.example\n"
      end,
      nameservers = { "10.0.2.3" },
    }
    assert.equal("/run/systemd/resolve/resolv.conf", asked)
    assert.equal("search corp.example\nnameserver 10.0.2.3\nnameserver 10.1.1.1\n", out)
  end)

  it("reads NetworkManager's file behind a 127.0.0.1 stub and keeps the stub when missing", function()
    local asked
    local out = resolvconf.generate {
      host = "nameserver 127.0.0.1\n",
      read = function(path) asked = path return nil end,
      nameservers = { "10.0.2.3" },
    }
    assert.equal("/run/NetworkManager/no-stub-resolv.conf", asked)
    assert.equal("nameserver 10.0.2.3\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n", out)
  end)

  it("drops zoned IPv6 servers, and every IPv6 server when IPv6 is off", function()
    local host = "nameserver fe80::1%eth0\nnameserver 2001:db8::53\nnameserver 192.0.2.53\n"
    assert.equal("nameserver 10.0.2.3\nnameserver 2001:db8::53\nnameserver 192.0.2.53\n",
      resolvconf.generate { host = host, nameservers = { "10.0.2.3" }, ipv6 = true })
    assert.equal("nameserver 10.0.2.3\nnameserver 192.0.2.53\n",
      resolvconf.generate { host = host, nameservers = { "10.0.2.3" }, ipv6 = false })
  end)

  it("falls back to public servers, with IPv6 ones when IPv6 works", function()
    assert.equal("nameserver 10.0.2.3\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
      .. "nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\n",
      resolvconf.generate { host = "", nameservers = { "10.0.2.3" }, ipv6 = true })
  end)

  it("keeps the last search and options lines, ignores comments and junk", function()
    local host = "# comment\nsearch a b\nsearch c d\noptions ndots:2\nnameserver not-an-ip\nnameserver 1.1.1.1 # x\n"
    assert.equal("search c d\nnameserver 10.0.2.3\nnameserver 1.1.1.1\noptions ndots:2\n",
      resolvconf.generate { host = host, nameservers = { "10.0.2.3" } })
  end)

  it("lists a server once even when the host names a forwarder", function()
    assert.equal("nameserver 10.0.2.3\n",
      resolvconf.generate { host = "nameserver 10.0.2.3\n", nameservers = { "10.0.2.3" } })
  end)
end)
