-- Every config in examples/ loads, and does what its comment says.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local config = require "rootlessnetns.config"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)
local EXAMPLES = helper.ROOT .. "/examples"

describe("examples", function()
  local fx = helper.state_fixture(before_each, after_each)

  it("all load and validate: configs, and the topology files", function()
    local names = assert(core.listdir(EXAMPLES))
    assert.is_true(#names >= 4)
    local topology = require "rootlessnetns.lab.topology"
    for _, name in ipairs(names) do
      local path = EXAMPLES .. "/" .. name
      if helper.read(path):match("^%-%- A topology file") then
        assert(topology.load(path))
      else
        assert(config.load(path))
      end
    end
  end)

  userns_it("extra-bind-mount shows a host directory read-only at /srv", function()
    local shared = helper.tmpdir()
    helper.write(shared .. "/hello", "from the host\n")
    fx.env.SHARED_DIR = shared
    local code, out, err = helper.cli({ "--config", EXAMPLES .. "/extra-bind-mount.lua", "run", "--", "sh", "-c",
      "cat /srv/hello; touch /srv/new 2>/dev/null && echo writable || echo read-only" }, fx.env)
    assert.equal(0, code, err)
    assert.equal("from the host\nread-only\n", out)
  end)

  userns_it("loopback-only-backend gives loopback and nothing else", function()
    local cfg = EXAMPLES .. "/loopback-only-backend.lua"
    assert.equal(0, (helper.cli({ "--config", cfg, "setup" }, fx.env)))
    local code, out, err = helper.cli({ "--config", cfg, "run", "--", "sh", "-c",
      "ip -o link; echo routes:$(ip route)" }, fx.env)
    assert.equal(0, code, err)
    assert.matches("^%d+: lo: <[^>]*UP", out)
    assert.is_nil(out:find("\n%d+: "), "an interface besides lo")
    assert.matches("\nroutes:\n$", out)
    local st = cjson.decode((select(2, helper.cli({ "--config", cfg, "status", "--json" }, fx.env))))
    assert.is_true(st.up)
    assert.equal("loopback-only", st.backend.name)
    assert.equal(cjson.null, st.backend.pid)
    local info = cjson.decode((select(2, helper.cli({ "--config", cfg, "info", "--json" }, fx.env))))
    assert.same({ "127.0.0.1" }, info.IPAddresses) -- from the backend's info hook
    -- its alive hook says lo went down: the next command restarts it
    assert.equal(0, (helper.cli({ "--config", cfg, "run", "--", "ip", "link", "set", "lo", "down" }, fx.env)))
    code, out, err = helper.cli({ "--config", cfg, "run", "--", "true" }, fx.env)
    assert.equal("", out)
    assert.equal(0, code, err)
    assert.matches("loopback%-only backend is gone; restarting it", err)
    assert.equal(0, (helper.cli({ "--config", cfg, "teardown" }, fx.env)))
    assert.is_false(cjson.decode((select(2, helper.cli({ "status", "--json" }, fx.env)))).up)
  end)

  userns_it("resolv-conf-policy writes only the forwarders and a search domain", function()
    local code, out, err = helper.cli({ "--config", EXAMPLES .. "/resolv-conf-policy.lua", "run", "--",
      "cat", "/etc/resolv.conf" }, fx.env)
    assert.equal(0, code, err)
    assert.equal("search lab.example\nnameserver 10.0.2.3\noptions ndots:1\n", out)
  end)

  userns_it("slirp4netns-options sets subnet, MTU and no IPv6", function()
    local code, out, err = helper.cli({ "--config", EXAMPLES .. "/slirp4netns-options.lua", "run", "--", "sh", "-c",
      "ip -o -4 addr show tap0; ip -o link show tap0; echo v6:$(ip -6 route show default)" }, fx.env)
    assert.equal(0, code, err)
    assert.matches("10%.99%.0%.100/24", out)
    assert.matches("mtu 1500 ", out)
    assert.matches("\nv6:\n$", out)
  end)
end)
