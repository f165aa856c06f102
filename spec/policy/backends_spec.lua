local pasta = require "rootlessnetns.backend.pasta"
local slirp = require "rootlessnetns.backend.slirp4netns"
local backends = require "rootlessnetns.backends"
local config = require "rootlessnetns.config"

describe("pasta argv", function()
  it("is podman's with no options", function()
    local argv, scan = pasta.argv("pasta", {}, "/D/pid", "/D/ns")
    assert.same({ "pasta", "--config-net", "--pid", "/D/pid", "--dns-forward", "169.254.1.1",
      "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw", "--quiet",
      "--netns", "/D/ns", "--map-guest-addr", "169.254.1.2" }, argv)
    assert.is_true(scan.added_map_guest)
  end)

  it("lets user options suppress the defaults they cover", function()
    local argv, scan = pasta.argv("pasta",
      { "-t", "8080", "--dns-forward", "10.9.9.9", "--map-gw", "--debug", "--map-guest-addr", "10.0.0.1" },
      "/D/pid", "/D/ns")
    assert.same({ "pasta", "--config-net", "-t", "8080", "--dns-forward", "10.9.9.9", "--debug",
      "--map-guest-addr", "10.0.0.1", "--pid", "/D/pid", "-u", "none", "-T", "none", "-U", "none",
      "--netns", "/D/ns" }, argv)
    assert.same({ "10.9.9.9" }, scan.dns_forward)
    assert.is_false(scan.added_map_guest)
  end)

  it("discovers addresses as podman does", function()
    local ips, dns, map, v6 = pasta.discover({
      { family = "inet", address = "127.0.0.1", loopback = true },
      { family = "inet", address = "192.0.2.2" },
      { family = "inet6", address = "fe80::1", linklocal = true },
      { family = "inet6", address = "2001:db8::2" },
    }, { dns_forward = { "169.254.1.1", "fd00::53" }, map_guest = { "169.254.1.2" } })
    assert.same({ "192.0.2.2", "2001:db8::2" }, ips)
    assert.same({ "169.254.1.1", "fd00::53" }, dns)
    assert.same({ "169.254.1.2" }, map)
    assert.is_true(v6)
    local _
    _, dns = pasta.discover({ { family = "inet6", address = "2001:db8::2" } },
      { dns_forward = { "169.254.1.1" }, map_guest = {} })
    assert.same({}, dns) -- no IPv4 inside: the IPv4 forwarder is useless
  end)
end)

describe("slirp4netns argv", function()
  local all = setmetatable({}, { __index = function() return true end })

  it("is podman's with the defaults", function()
    local argv = slirp.argv("slirp4netns", config.defaults().slirp4netns, all, "/D/ns")
    assert.same({ "slirp4netns", "--disable-host-loopback", "--mtu=65520", "--enable-sandbox",
      "--enable-seccomp", "--enable-ipv6", "-c", "-r", "3", "--netns-type=path", "/D/ns", "tap0" }, argv)
  end)

  it("honours the options", function()
    local o = config.defaults().slirp4netns
    o.allow_host_loopback, o.mtu, o.cidr, o.enable_ipv6, o.outbound_addr = true, 1500, "10.5.0.0/16", false, "eth0"
    local argv = slirp.argv("s", o, all, "/D/ns")
    assert.same({ "s", "--mtu=1500", "--enable-sandbox", "--enable-seccomp", "--cidr=10.5.0.0/16",
      "--outbound-addr=eth0", "-c", "-r", "3", "--netns-type=path", "/D/ns", "tap0" }, argv)
  end)

  it("refuses an option this slirp4netns lacks", function()
    local o = config.defaults().slirp4netns
    o.cidr = "10.5.0.0/16"
    local argv, err = slirp.argv("s", o, {}, "/D/ns")
    assert.is_nil(argv)
    assert.equal("this slirp4netns does not support cidr", err)
  end)

  it("derives guest, gateway and DNS from the CIDR", function()
    assert.same({ guest = "10.0.2.100", gateway = "10.0.2.2", dns = "10.0.2.3" }, slirp.addresses(nil))
    assert.same({ guest = "172.16.0.100", gateway = "172.16.0.2", dns = "172.16.0.3" },
      slirp.addresses("172.16.0.9/16"))
  end)
end)

describe("backend resolution", function()
  it("names the valid backends for an unknown one", function()
    local b, err = backends.resolve { backend = "vpnkit" }
    assert.is_nil(b)
    assert.equal('unknown backend "vpnkit" (valid: auto, pasta, slirp4netns, or a Lua module name)', err)
    b, err = backends.resolve { backend = "../x" }
    assert.is_nil(b)
    assert.matches("unknown backend", err)
  end)

  it("accepts a table with start", function()
    local t = { start = function() end }
    assert.equal(t, backends.resolve { backend = t })
    assert.equal("custom", t.name)
  end)

  it("loads the builtin ones by name", function()
    assert.equal("pasta", backends.resolve({ backend = "pasta" }).name)
    assert.equal("slirp4netns", backends.resolve({ backend = "slirp4netns" }).name)
  end)
end)

describe("the backend contract", function()
  it("is checked when a backend is loaded, naming the key", function()
    local _, err = backends.resolve { backend = { start = function() end, alive = "yes" } }
    assert.equal("backend table: `alive` must be a function, not a string", err)
    _, err = backends.resolve { backend = { stop = function() end } }
    assert.equal("backend table: `start` must be a function, not missing", err)
    package.loaded["rlns_spec_bad_backend"] = { start = function() end, info = 3 }
    _, err = backends.resolve { backend = "rlns_spec_bad_backend" }
    assert.equal('backend module "rlns_spec_bad_backend": `info` must be a function, not a number', err)
    package.loaded["rlns_spec_bad_backend"] = nil
  end)

  it("holds the builtin backends too", function()
    for name in pairs(backends.BUILTIN) do
      assert.truthy(backends.validate(backends.resolve { backend = name }, name))
    end
  end)

  it("checks what start returned", function()
    assert.truthy(backends.check_started("b", { pid = false, nameservers = {}, ipv6 = false, info = {} }))
    assert.truthy(backends.check_started("b", { pid = 10, starttime = 5 }))
    for res, msg in pairs {
      [{ pid = 10 }] = "backend b returned no pid/starttime (pid = false: no process)",
      [{ pid = false, nameservers = "1.1.1.1" }] = "backend b: `nameservers` must be a list of strings",
      [{ pid = false, ipv6 = "yes" }] = "backend b: `ipv6` must be a boolean",
      [{ pid = false, info = "x" }] = "backend b: `info` must be a table",
    } do
      local ok, err = backends.check_started("b", res)
      assert.is_nil(ok)
      assert.equal(msg, err)
    end
    assert.equal("backend b: start returned a string, not a table", select(2, backends.check_started("b", "x")))
  end)
end)

describe("a backend's failure in one line", function()
  it("takes the line that says why, not the warnings around it", function()
    assert.equal('open("/dev/net/tun"): Permission denied', backends.summary(table.concat({
      'open("/dev/net/tun"): Permission denied', "WARNING: Support for seccomp is experimental",
      "WARNING: Support for IPv6 is experimental", "child failed(1)",
      "WARNING: Support for seccomp is experimental", "" }, "\n")))
    assert.equal("Failed to open tun socket in namespace",
      backends.summary("Failed to send 45 bytes to syslog\nFailed to open tun socket in namespace\n"))
  end)

  it("escapes control characters and stays short", function()
    assert.equal("bad\\x1b[31m red\\x00 nul", backends.summary("\r\nbad\27[31m red\0 nul\r\n"))
    assert.equal(240, #backends.summary(("x"):rep(1000)))
    assert.equal("WARNING: only warnings", backends.summary("WARNING: x\nWARNING: only warnings\n"))
    assert.equal("", backends.summary(nil))
  end)
end)
