-- What commands and helpers inherit, interactive use, the Lua API.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

describe("hygiene", function()
  local fx = helper.state_fixture(before_each, after_each)

  userns_it("commands inherit no descriptor of ours", function()
    local code, out, err = helper.cli({ "run", "--", "ls", "/proc/self/fd" }, fx.env)
    assert.equal(0, code, err)
    local fds = {}
    for n in out:gmatch("%d+") do fds[#fds + 1] = tonumber(n) end
    table.sort(fds)
    assert.same({ 0, 1, 2, 3 }, fds) -- 3 is ls's own directory
  end)

  userns_it("backends and the holder hold nothing of ours but what they need", function()
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, fx.env)))
    local base = fx.xdg .. "/rootlessnetns"
    local st = require("cjson").decode((select(2, helper.cli({ "status", "--json" }, fx.env))))
    for _, pid in ipairs { math.tointeger(st.backend.pid), math.tointeger(st.holder.pid) } do
      for _, fd in ipairs(assert(core.listdir(("/proc/%d/fd"):format(pid)))) do
        local target = core.readlink(("/proc/%d/fd/%s"):format(pid, fd)) or ""
        assert.is_nil(target:find(base .. "/lock", 1, true), ("pid %d holds the lock"):format(pid))
        assert.is_nil(target:find("pipe:", 1, true) and pid == st.holder.pid or nil, "holder holds a pipe")
      end
    end
  end)

  userns_it("no long-lived process of ours shows a user's command line", function()
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup", "--", "true", "--token=s3cr3t" }, fx.env)))
    local st = require("cjson").decode((select(2, helper.cli({ "status", "--json" }, fx.env))))
    local holder = core.readfile(("/proc/%d/cmdline"):format(math.tointeger(st.holder.pid)), 65536)
    assert.equal("rootlessnetns-holder\0", holder)
    local backend = core.readfile(("/proc/%d/cmdline"):format(math.tointeger(st.backend.pid)), 65536)
    assert.is_nil(backend:find("s3cr3t", 1, true))
  end)

  userns_it("an interactive shell gets job control and Ctrl-C", function()
    if not require("rootlessnetns.child").which("script") or not require("rootlessnetns.child").which("bash") then
      return pending("needs script(1) and bash")
    end
    local dir = helper.tmpdir()
    helper.write(dir .. "/drive.sh", table.concat({
      "( sleep 1; echo 'sleep 30 & jobs; kill %1; echo JOBCTL-OK'; sleep 0.5; echo 'sleep 20'; sleep 0.5;",
      "  printf '\\003'; sleep 0.5; echo 'echo AFTER-CTRL-C $?'; sleep 0.5; echo 'exit 4' ) |",
      ("  script -qfec 'SHELL=/bin/bash lua5.4 %s run' /dev/null"):format(helper.CLI),
    }, "\n") .. "\n")
    local proc = assert(core.spawn { argv = { "sh", dir .. "/drive.sh" }, env = {
      PATH = os.getenv("PATH"), HOME = os.getenv("HOME"), XDG_RUNTIME_DIR = fx.xdg,
    }, fds = { [0] = false, [1] = assert(core.open(dir .. "/out", "w")), [2] = false } })
    local how, status = proc:wait(30000)
    local out = (helper.read(dir .. "/out") or ""):gsub("\r", "")
    assert.equal("exited", how)
    assert.equal(4, status, out)
    assert.matches("JOBCTL%-OK", out)
    assert.matches("AFTER%-CTRL%-C 130", out)
  end)
end)

describe("the Lua API", function()
  after_each(function() helper.cleanup_dirs() end)

  userns_it("runs argv lists and Lua functions inside, and counts setup/teardown", function()
    local xdg = helper.runtime_dir()
    local res = assert(helper.in_child(function()
      local netns = require "rootlessnetns.netns"
      local ns = assert(netns.new { backend = "slirp4netns", getenv = function(k)
        if k == "XDG_RUNTIME_DIR" then return xdg end
        return os.getenv(k)
      end })
      local out = {}
      out.argv = { ns:run { "true" } }
      out.fn = { ns:run(function()
        for _, a in ipairs(core.getifaddrs()) do
          if a.name == "tap0" and a.family == "inet" then return 0 end
        end
        return 9
      end) }
      out.missing = { ns:run { "rlns-no-such-thing" } }
      assert(ns:setup(2))
      out.status = ns:status().refs.nets
      out.info = ns:info().IPAddresses[1]
      assert(ns:teardown(2))
      out.down = ns:status().up
      out.badnets = select(2, ns:setup(0))
      ns:cleanup { holder = true }
      return out
    end))
    assert.same({ "exited", 0 }, res.argv)
    assert.same({ "exited", 0 }, res.fn)
    assert.is_true(res.missing[1] == nil or res.missing[1] == require("cjson").null)
    assert.equal("exec `rlns-no-such-thing`: command not found", res.missing[2])
    assert.equal(2, res.status)
    assert.equal("10.0.2.100", res.info)
    assert.is_false(res.down)
    assert.matches("nets must be an integer", res.badnets)
  end)

  it("refuses bad options up front", function()
    local netns = require "rootlessnetns.netns"
    local ns, err = netns.new { backend = "nope" }
    assert.is_nil(ns)
    assert.matches("unknown backend", err)
    ns, err = netns.new { slirp4netns = { mtu = 1 } }
    assert.is_nil(ns)
    assert.matches("options: key `slirp4netns.mtu`", err)
  end)
end)

describe("output", function()
  local fx = helper.state_fixture(before_each, after_each)

  local function keys(t)
    local out = {}
    for k in pairs(t) do out[#out + 1] = k end
    table.sort(out)
    return out
  end

  userns_it("--log-level debug logs each step with its time", function()
    local code, _, err = helper.cli({ "--log-level", "debug", "--backend", "slirp4netns", "run", "--", "true" }, fx.env)
    assert.equal(0, code, err)
    for _, pattern in ipairs {
      "debug: locked `.-` %(ex%) after [%d.]+ ms",
      "debug: created and joined holder %d+ %(own%) in [%d.]+ ms",
      "debug: created netns `",
      "debug: exec /%S*slirp4netns ",
      "debug: slirp4netns started in [%d.]+ ms",
      -- (the plan is applied once, in the prepared mount namespace)
      "debug: mounted run: .- on /run %(rbind%) in [%d.]+ ms %(in the prepared mount namespace%)",
      "debug: joined the prepared mount namespace %(keeper %d+%)",
      "debug: exec /%S*/true",
      "debug: cleaned up `",
    } do
      assert.matches(pattern, err)
    end
  end)

  userns_it("status and info JSON carry exactly the documented keys", function()
    local st = assert(require("cjson.safe").decode((select(2, helper.cli({ "status", "--json" }, fx.env)))))
    assert.same({ "backend", "holder", "netns", "pin", "ports", "refs", "state_dir", "up" }, keys(st))
    assert.same({ "alive", "kind", "pid" }, keys(st.holder))
    assert.same({ "connections", "nets", "runs" }, keys(st.refs))
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, fx.env)))
    st = require("cjson").decode((select(2, helper.cli({ "status", "--json" }, fx.env))))
    assert.same({ "alive", "name", "pid" }, keys(st.backend))
    local info = require("cjson").decode((select(2, helper.cli({ "info", "--json" }, fx.env))))
    assert.same({ "DnsForwardIps", "IPAddresses", "MapGuestIps", "backend", "backend_pid", "holder_kind",
      "holder_pid", "ports", "refs" }, keys(info))
    -- no ports: a JSON list all the same; one: its documented keys
    assert.matches('"ports":%[%]', (select(2, helper.cli({ "status", "--json" }, fx.env))))
    assert.equal(0, (helper.cli({ "port", "add", "127.0.0.1:" .. math.random(20000, 60000) .. ":80" }, fx.env)))
    st = require("cjson").decode((select(2, helper.cli({ "status", "--json" }, fx.env))))
    assert.same({ "connections", "forwarding", "host_ip", "host_port", "inside_port", "proto", "spec" },
      keys(st.ports[1]))
    local listed = require("cjson").decode((select(2, helper.cli({ "port", "list", "--json" }, fx.env))))
    assert.same({ "connections", "forwarding", "host_ip", "host_port", "inside_port", "netns", "proto", "spec" },
      keys(listed[1]))
    assert.equal(0, (helper.cli({ "teardown" }, fx.env)))
    assert.equal("[]\n", (select(2, helper.cli({ "port", "list", "--json" }, fx.env))))
  end)

  userns_it("netns JSON carries exactly the documented keys", function()
    local cjson = require "cjson"
    local function json(...)
      local code, out, err = helper.cli({ "--backend", "slirp4netns", ... }, fx.env)
      assert.equal(0, code, err)
      return cjson.decode(out)
    end
    assert.same({ "name", "path" }, keys(json("netns", "add", "web", "--json")))
    assert.same({ "address", "address6", "bridge", "default_route", "gateway", "gateway6", "host_interface", "index",
      "interface", "name", "network", "prefix", "shape" }, keys(json("netns", "connect", "web", "--json")))
    local entries = json("netns", "list", "--json")
    assert.equal(1, #entries)
    assert.same({ "address", "elsewhere", "live", "name", "networks", "path", "pids", "ports" }, keys(entries[1]))
    assert.same({ "address", "address6", "interface" }, keys(entries[1].networks.default))
    assert.same({ "connected", "name" }, keys(json("netns", "disconnect", "web", "--json")))
    assert.same({ "deleted", "name" }, keys(json("netns", "del", "web", "--json")))
    -- an empty list is a JSON list
    local code, out = helper.cli({ "netns", "list", "--json" }, fx.env)
    assert.equal(0, code)
    assert.equal("[]\n", out)
  end)

  userns_it("status and info print aligned tables for people", function()
    local code, out = helper.cli({ "status" }, fx.env)
    assert.equal(0, code)
    assert.matches("^state       down\n", out)
    code = helper.cli({ "info" }, fx.env)
    assert.equal(125, code) -- not set up
  end)
end)
