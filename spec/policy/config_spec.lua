local config = require "rootlessnetns.config"
local helper = require "helper"

describe("config", function()
  after_each(function() helper.cleanup_dirs() end)

  it("has podman's defaults", function()
    local d = config.defaults()
    assert.equal("auto", d.backend)
    assert.equal(65520, d.slirp4netns.mtu)
    assert.is_false(d.slirp4netns.allow_host_loopback)
    assert.is_true(d.slirp4netns.enable_ipv6)
    assert.equal("auto", d.userns)
  end)

  it("merges nested tables over the defaults", function()
    local cfg = assert(config.validate { slirp4netns = { mtu = 1500 }, pasta_options = { "-4" } })
    assert.equal(1500, cfg.slirp4netns.mtu)
    assert.is_true(cfg.slirp4netns.enable_ipv6)
    assert.same({ "-4" }, cfg.pasta_options)
  end)

  local bad = {
    { { bakend = "pasta" }, "unknown key `bakend`" },
    { { slirp4netns = { mtu = "big" } }, "key `slirp4netns.mtu` must be a number, not a string" },
    { { slirp4netns = { mtu = 10 } }, "key `slirp4netns.mtu` must be an integer from 68 to 65521" },
    { { slirp4netns = { cidr = "10.0.2.0" } }, "IPv4 CIDR" },
    { { slirp4netns = { colour = 1 } }, "unknown key `slirp4netns.colour`" },
    { { userns = "nope" }, "must be one of auto, current, podman" },
    { { pasta_options = { "-4", 5 } }, "item 2 must be a string" },
    { { pasta_options = "-4" }, "must be a table" },
    { { state_dir = "relative" }, "must be an absolute path" },
    { { mounts = {} }, "must be a function" },
    { { backend = { stop = function() end } },
      "key `backend` is a backend table, but `start` must be a function, not missing" },
    { { ready_timeout = -1 }, "seconds" },
    { { ready_timeout = 0 }, "seconds above 0" },
    { { ready_timeout = 0 / 0 }, "seconds above 0" },
    { { ready_timeout = math.huge }, "at most 3600" },
    { { slirp4netns = { cidr = "10.0.2.5/24" } }, "has host bits set (did you mean 10.0.2.0/24?)" },
    { { connect = { subnet = "10.0.2.0/26" } }, "overlaps slirp4netns's network 10.0.2.0/24" },
    { { slirp4netns = { cidr = "10.89.0.0/16" } }, "key `connect.subnet` 10.89.0.0/24 overlaps" },
    { { [1] = "x" }, "unknown key `1`" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[2], function()
      local cfg, err = config.validate(case[1])
      assert.is_nil(cfg)
      assert.matches(case[2], err, 1, true)
    end)
  end

  it("rejects a file that does not return a table", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/c.lua", "return 42\n")
    local cfg, err = config.load(dir .. "/c.lua")
    assert.is_nil(cfg)
    assert.equal(("config `%s/c.lua`: must return a table, not a number"):format(dir), err)
  end)

  it("names file and line for syntax and runtime errors", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/syntax.lua", "return {\n  backend = \n}\n")
    local _, err = config.load(dir .. "/syntax.lua")
    assert.matches("syntax.lua:3:", err, 1, true)
    helper.write(dir .. "/runtime.lua", "local x = nil\nreturn { backend = x.y }\n")
    _, err = config.load(dir .. "/runtime.lua")
    assert.matches("runtime.lua:2:", err, 1, true)
  end)

  it("names the file and key of a bad value", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/c.lua", "return { slirp4netns = { allow_host_loopback = 'yes' } }\n")
    local _, err = config.load(dir .. "/c.lua")
    assert.equal(("config `%s/c.lua`: key `slirp4netns.allow_host_loopback` must be a boolean, not a string")
      :format(dir), err)
  end)

  it("reports a missing explicit file", function()
    local _, err = config.load("/nonexistent/config.lua")
    assert.equal("config `/nonexistent/config.lua`: cannot read the file", err)
  end)

  it("finds the XDG file before /etc", function()
    local dir = helper.tmpdir()
    assert(require("rootlessnetns").mkdir(dir .. "/rootlessnetns"))
    helper.write(dir .. "/rootlessnetns/config.lua", "return {}")
    local env = { XDG_CONFIG_HOME = dir }
    assert.equal(dir .. "/rootlessnetns/config.lua", (config.locate(nil, function(k) return env[k] end)))
    assert.same({ "/x.lua", true }, { config.locate("/x.lua", os.getenv) })
  end)

  it("checks the options of `netns connect`", function()
    local cfg = assert(config.validate { connect = { subnet = "10.90.0.0/16" } })
    assert.equal("10.90.0.0/16", cfg.connect.subnet)
    assert.equal("rlnsbr0", cfg.connect.bridge)
    for _, wrong in ipairs {
      { connect = { subnet = "10.90.0.1/16" } }, { connect = { bridge = "a-very-long-bridge" } },
      { connect = { interface = "eth 0" } }, { connect = { mtu = 10 } }, { connect = { gateway = "x" } },
    } do
      local ok, err = config.validate(wrong)
      assert.is_nil(ok)
      assert.matches("connect%.", err)
    end
  end)
end)

describe("what a namespace is built from", function()
  it("counts only what a command asks for away from the defaults", function()
    local built = config.build_record(assert(config.validate { slirp4netns = { mtu = 1500 } }))
    assert.same({}, config.build_conflicts(assert(config.validate {}), built))
    assert.same({}, config.build_conflicts(assert(config.validate { slirp4netns = { mtu = 1500 } }), built))
    assert.same({ { key = "slirp4netns.mtu", want = "9000", have = "1500" } },
      config.build_conflicts(assert(config.validate { slirp4netns = { mtu = 9000 } }), built))
    assert.same({ { key = "slirp4netns.allow_host_loopback", want = "true", have = "false" } },
      config.build_conflicts(assert(config.validate { slirp4netns = { allow_host_loopback = true } }), built))
    assert.same({ { key = "pasta_options", want = "[-t 8080]", have = "[]" } },
      config.build_conflicts(assert(config.validate { pasta_options = { "-t", "8080" } }), built))
  end)
end)
