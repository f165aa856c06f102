local addrpool = require "rootlessnetns.addrpool"
local lab = require "rootlessnetns.lab"

describe("bridge subnets", function()
  it("parse with the gateway first and the rest for namespaces", function()
    local net = assert(addrpool.subnet("10.89.0.0/24"))
    assert.equal("10.89.0.1", addrpool.format_ipv4(net.gateway))
    assert.equal("10.89.0.2", addrpool.format_ipv4(net.first))
    assert.equal("10.89.0.254", addrpool.format_ipv4(net.last))
    assert.equal(24, net.prefix)
  end)

  it("refuse what is not a subnet, with the reason", function()
    for text, why in pairs {
      ["10.89.0.0"] = "not an IPv4 subnet", ["10.89.0.0/"] = "not an IPv4 subnet",
      ["10.89.0.256/24"] = "not an IPv4 subnet", ["010.89.0.0/24"] = "not an IPv4 subnet",
      ["fd00::/64"] = "not an IPv4 subnet", ["10.0.0.0/7"] = "from 8 to 29",
      ["10.0.0.0/30"] = "from 8 to 29", ["10.89.0.1/24"] = "did you mean 10.89.0.0/24",
    } do
      local net, err = addrpool.subnet(text)
      assert.is_nil(net, text)
      assert.matches(why, err, 1, true)
    end
  end)
end)

describe("the address allocator", function()
  local net = assert(addrpool.subnet("10.89.0.0/29")) -- .2 to .6

  it("goes round from the address after the last one handed out", function()
    assert.equal("10.89.0.2", addrpool.next_free(net, {}, nil))
    assert.equal("10.89.0.5", addrpool.next_free(net, {}, "10.89.0.4"))
    assert.equal("10.89.0.2", addrpool.next_free(net, {}, "10.89.0.6"))
  end)

  it("never hands out an address in use", function()
    local leases = { a = { address = "10.89.0.5" }, b = { address = "10.89.0.6" } }
    assert.equal("10.89.0.2", addrpool.next_free(net, leases, "10.89.0.4"))
  end)

  it("says so when the subnet is full", function()
    local leases = {}
    for i = 2, 6 do leases["n" .. i] = { address = "10.89.0." .. i } end
    local addr, err = addrpool.next_free(net, leases, nil)
    assert.is_nil(addr)
    assert.matches("no free address left in 10.89.0.0/29", err, 1, true)
  end)

  it("checks an address asked for", function()
    local leases = { web = { address = "10.89.0.3" } }
    assert.equal("10.89.0.4", addrpool.check_requested(net, leases, "10.89.0.4"))
    assert.equal("10.89.0.4", addrpool.check_requested(net, leases, "10.89.0.4/29"))
    for text, why in pairs {
      ["10.89.0.3"] = "already leased to `web`", ["10.89.0.1"] = "the bridge's own address",
      ["10.89.0.0"] = "network or broadcast", ["10.89.0.7"] = "network or broadcast",
      ["10.89.0.9"] = "outside the bridge subnet", ["10.89.0.4/24"] = "must be the bridge subnet's, /29",
      ["ten"] = "not an IPv4 address",
    } do
      local addr, err = addrpool.check_requested(net, leases, text)
      assert.is_nil(addr, text)
      assert.matches(why, err, 1, true)
    end
  end)

  it("names host interfaces by the smallest free index", function()
    assert.equal(0, addrpool.free_index {})
    assert.equal(1, addrpool.free_index { a = { index = 0 }, b = { index = 2 } })
    -- round from the last one handed out, past those in use
    assert.equal(3, addrpool.free_index({ a = { index = 0 }, b = { index = 2 } }, 1))
    assert.equal(0, addrpool.free_index({}, addrpool.INDEX_LIMIT - 1))
  end)
end)

describe("namespace names", function()
  it("take letters, digits, `_`, `.` and `-`", function()
    for _, name in ipairs { "web", "db-1", "a.b_c", "netns-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", ("x"):rep(64) } do
      assert.equal(name, lab.check_name(name))
    end
  end)

  it("refuse paths, dots, empty and overlong names", function()
    for _, name in ipairs { "", "a/b", "..", ".", ".hidden", "-x", "a b", "x\n", ("x"):rep(65) } do
      local ok, err = lab.check_name(name)
      assert.is_nil(ok, name)
      assert.is_string(err)
    end
    assert.matches("longer than 64", select(2, lab.check_name(("x"):rep(65))), 1, true)
    assert.is_nil(lab.check_name(nil))
  end)
end)
