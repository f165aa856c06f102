-- The rootless netns end to end, through the CLI, as an unprivileged user,
-- for each backend.  Traffic goes only to loopback and to the namespaces
-- these specs create.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

local runtime_dir = helper.runtime_dir

local function json(text)
  return assert(cjson.decode(text), "not JSON: " .. tostring(text))
end

local function mountinfo()
  return helper.read("/proc/self/mountinfo")
end

for _, backend in ipairs { "slirp4netns", "pasta" } do
  describe("with " .. backend, function()
    local xdg, env, pin
    local function cli(...)
      return helper.cli({ "--backend", backend, ... }, env)
    end

    before_each(function()
      xdg = runtime_dir()
      env = { XDG_RUNTIME_DIR = xdg }
      pin = xdg .. "/rootlessnetns/rootless-netns/rootless-netns"
    end)

    after_each(function()
      helper.cli({ "cleanup" }, env)
      core.rmtree(xdg)
      helper.cleanup_dirs()
    end)

    local function assert_nothing_left()
      assert.is_nil(core.lstat(pin), "pin left behind")
      assert.same({}, helper.settled_processes(pin, 0), "backend left running")
    end

    userns_it("run shows an interface with an address and a default route", function()
      local before = mountinfo()
      local code, out, err = cli("run", "--", "sh", "-c", "ip -j addr; echo; ip -j route")
      assert.equal(0, code, err)
      local addrs, routes = out:match("^(.-)\n\n?(.*)$")
      local found
      for _, link in ipairs(json(addrs)) do
        for _, a in ipairs(link.addr_info or {}) do
          if link.ifname ~= "lo" and a.family == "inet" then found = a["local"] end
        end
      end
      assert.is_string(found, "no IPv4 address on a non-loopback interface: " .. addrs)
      local default
      for _, r in ipairs(json(routes)) do
        if r.dst == "default" then default = r end
      end
      assert.is_table(default, "no default route: " .. routes)
      assert.equal(before, mountinfo(), "the caller's mount table changed")
      assert_nothing_left()
    end)

    if backend == "slirp4netns" then
      userns_it("starts tap0 without IPv6 duplicate address detection, and restores the default", function()
        if not core.lstat("/proc/sys/net/ipv6") then return pending("no IPv6 here") end
        local code, out, err = cli("run", "--", "sh", "-c",
          "cat /proc/sys/net/ipv6/conf/tap0/accept_dad /proc/sys/net/ipv6/conf/default/accept_dad")
        assert.equal(0, code, err)
        local tap0, default = out:match("^(%d+)\n(%d+)\n$")
        assert.equal("0", tap0)
        assert.is_true(default ~= "0", "the namespace's default accept_dad was left at 0")
      end)
    end

    userns_it("follows the host's resolv.conf when it changes, for running commands too", function()
      local dir = helper.tmpdir()
      local host = dir .. "/resolv.conf"
      helper.write(host, "nameserver 192.0.2.53\nsearch example.test\n")
      helper.write(dir .. "/config.lua", ("return { host_resolv_conf = %q }\n"):format(host))
      local function cfgcli(...)
        return helper.cli({ "--backend", backend, "--config", dir .. "/config.lua", ... }, env)
      end
      assert.equal(0, (cfgcli("setup")))
      local code, out, err = cfgcli("run", "--", "cat", "/etc/resolv.conf")
      assert.equal(0, code, err)
      assert.matches("nameserver 192%.0%.2%.53", out)
      local waiting, wdir = helper.cli({ "run", "--", "sh", "-c", "sleep 3; cat /etc/resolv.conf" }, env,
        { wait = false })
      core.sleep(500)
      helper.write(host, "nameserver 192.0.2.99\n")
      code, out, err = cfgcli("run", "--", "cat", "/etc/resolv.conf")
      assert.equal(0, code, err)
      assert.matches("nameserver 192%.0%.2%.99", out)
      assert.is_nil(out:find("192.0.2.53", 1, true))
      assert.same({ "exited", 0 }, { waiting:wait(30000) })
      assert.matches("nameserver 192%.0%.2%.99", helper.read(wdir .. "/out"))
      assert.equal(0, (cli("teardown")))
    end)

    userns_it("passes exit statuses through", function()
      local code, _, err = cli("run", "--", "rlns-no-such-command")
      assert.equal(127, code)
      assert.equal("rootlessnetns: exec `rlns-no-such-command`: command not found\n", err)
      -- known before anything was made: not even a holder
      assert.is_nil(core.lstat(xdg .. "/rootlessnetns/holder.json"), "a holder was created for nothing")
      assert.equal(3, (cli("run", "--", "sh", "-c", "exit 3")))
      assert.equal(128 + core.SIGTERM, (cli("run", "--", "sh", "-c", "kill -TERM $$")))
      local dir = helper.tmpdir()
      helper.write(dir .. "/noexec", "#!/bin/sh\n", tonumber("644", 8))
      code, _, err = cli("run", "--", dir .. "/noexec")
      assert.equal(126, code)
      assert.matches("Permission denied", err)
      code, _, err = cli("--no-such-flag", "run")
      assert.equal(125, code)
      assert.matches("^rootlessnetns: ", err)
      assert_nothing_left()
    end)

    userns_it("gives commands the backend's DNS first and no loopback server", function()
      local code, out = cli("run", "--", "cat", "/etc/resolv.conf")
      assert.equal(0, code)
      local servers = {}
      for s in out:gmatch("nameserver%s+(%S+)") do servers[#servers + 1] = s end
      assert.equal(backend == "pasta" and "169.254.1.1" or "10.0.2.3", servers[1])
      for _, s in ipairs(servers) do
        assert.is_falsy(s:match("^127%.") or s == "::1", "loopback server " .. s)
      end
    end)

    userns_it("replaces /run with a private one that keeps XDG_RUNTIME_DIR", function()
      local code, out, err = cli("run", "--", "sh", "-c",
        'ls -A /run; echo "--"; test -d "$XDG_RUNTIME_DIR/rootlessnetns" && echo xdg-visible')
      assert.equal(0, code, err)
      local listing, rest = out:match("^(.-)%-%-\n(.*)$")
      for name in listing:gmatch("%S+") do
        assert.is_truthy(name == "user" or name == "systemd", "host /run entry visible inside: " .. name)
      end
      assert.equal("xdg-visible\n", rest)
    end)

    userns_it("counts setup, run and teardown, and cleans up after the last user", function()
      assert.equal(0, (cli("setup", "--nets", "2")))
      local _, out = cli("status", "--json")
      local st = json(out)
      assert.is_true(st.up)
      assert.equal(2, st.refs.nets)
      assert.equal(backend, st.backend.name)
      local backend_pid = st.backend.pid
      -- a run while set up reuses the namespace and leaves it up
      assert.equal(0, (cli("run", "--", "true")))
      st = json(select(2, cli("status", "--json")))
      assert.is_true(st.up)
      assert.equal(backend_pid, st.backend.pid)
      assert.equal(0, st.refs.runs)
      assert.equal(0, (cli("teardown")))
      st = json(select(2, cli("status", "--json")))
      assert.is_true(st.up)
      assert.equal(1, st.refs.nets)
      assert.equal(0, (cli("teardown")))
      st = json(select(2, cli("status", "--json")))
      assert.is_false(st.up)
      assert.equal(0, st.refs.nets)
      assert_nothing_left()
      -- once more is harmless
      assert.equal(0, (cli("teardown")))
    end)

    userns_it("info reports podman's keys", function()
      assert.equal(0, (cli("setup")))
      local code, out = cli("info", "--json")
      assert.equal(0, code)
      local info = json(out)
      assert.is_table(info.IPAddresses)
      assert.is_table(info.DnsForwardIps)
      assert.equal(backend, info.backend)
      if backend == "slirp4netns" then
        assert.same({ "10.0.2.100" }, info.IPAddresses)
        assert.same({ "10.0.2.3" }, info.DnsForwardIps)
        assert.equal(cjson.null, info.MapGuestIps)
      end
      local stored = json(helper.read(xdg .. "/rootlessnetns/rootless-netns/info.json"))
      assert.same(info.IPAddresses, stored.IPAddresses)
      assert.equal(0, (cli("teardown")))
    end)

    userns_it("holds a reference while a command runs, and only then", function()
      local proc = helper.cli({ "--backend", backend, "run", "--", "sleep", "30" }, env, { wait = false })
      local st = helper.eventually(function()
        local _, out = cli("status", "--json")
        local s = cjson.decode(out or "")
        return s and s.refs.runs == 1 and s or nil
      end, 10)
      assert.is_table(st, "the run never showed up")
      assert.is_true(st.up)
      proc:kill(core.SIGTERM) -- reaches the command; the CLI still drops its reference
      assert.equal("exited", (proc:wait(10000)))
      assert_nothing_left()
    end)
  end)
end

describe("cni = true", function()
  local fx = helper.state_fixture(before_each, after_each)

  userns_it("gives commands a private /var/lib/cni, or the deepest existing ancestor", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/c.lua", "return { cni = true }\n")
    local target = core.lstat("/var/lib/cni") and "/var/lib/cni" or "/var/lib"
    local code, out, err = helper.cli({ "--config", dir .. "/c.lua", "run", "--", "sh", "-c",
      ("touch %s/rlns-spec-mark && ls -A %s"):format(target, target) }, fx.env)
    assert.equal(0, code, err)
    assert.equal("rlns-spec-mark\n", out)
    assert.is_nil(core.lstat(target .. "/rlns-spec-mark"), "the host's directory was written")
  end)
end)

describe("host loopback", function()
  local xdg, listener, port
  before_each(function()
    xdg = runtime_dir()
    port = math.random(20000, 40000)
    listener = assert(core.spawn { argv = { "nc", "-k", "-l", "127.0.0.1", tostring(port) },
      fds = { [0] = false, [1] = false } })
    core.sleep(100)
  end)
  after_each(function()
    listener:kill(core.SIGKILL)
    listener:wait()
    helper.cli({ "cleanup" }, { XDG_RUNTIME_DIR = xdg })
    core.rmtree(xdg)
    helper.cleanup_dirs()
  end)

  userns_it("is unreachable by default and reachable as 10.0.2.2 with allow_host_loopback", function()
    local probe = { "run", "--", "nc", "-z", "-w", "2", "10.0.2.2", tostring(port) }
    local code = helper.cli({ "--backend", "slirp4netns", table.unpack(probe) }, { XDG_RUNTIME_DIR = xdg })
    assert.equal(1, code)
    local dir = helper.tmpdir()
    helper.write(dir .. "/config.lua", "return { slirp4netns = { allow_host_loopback = true } }\n")
    code = helper.cli({ "--config", dir .. "/config.lua", "--backend", "slirp4netns", table.unpack(probe) },
      { XDG_RUNTIME_DIR = xdg })
    assert.equal(0, code)
  end)
end)
