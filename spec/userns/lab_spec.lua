-- Named namespaces and the lab network, through the CLI, as an
-- unprivileged user.  Traffic goes only to the namespaces these specs
-- create and to a listener on the host's 127.0.0.1.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

local function json(text)
  return assert(cjson.decode(text or ""), "not JSON: " .. tostring(text))
end

describe("named namespaces", function()
  local xdg, env, cfg, base

  local function cli(args, extra)
    return helper.cli_with({ "--config", cfg }, function() return env end)(args, extra)
  end

  local function ok(args)
    local code, out, err = cli(args)
    assert.equal(0, code, table.concat(args, " ") .. ": " .. tostring(err))
    return out, err
  end

  local function list()
    return json(ok { "netns", "list", "--json" })
  end

  local function by_name()
    local t = {}
    for _, e in ipairs(list()) do t[e.name] = e end
    return t
  end

  local function status()
    return json(ok { "status", "--json" })
  end

  -- interfaces of the rootless netns whose name starts with @prefix
  local function rootless_links(prefix)
    local out = ok { "run", "--", "ip", "-o", "link" }
    local found = {}
    for name in out:gmatch("%d+: ([^:@%s]+)") do
      if name:sub(1, #prefix) == prefix then found[#found + 1] = name end
    end
    table.sort(found)
    return found
  end

  local function rootless_pin() return base .. "/rootless-netns/rootless-netns" end

  local function assert_rootless_gone()
    assert.is_nil(core.lstat(rootless_pin()), "the rootless netns is still there")
    assert.equal(0, #helper.settled_processes(rootless_pin(), 0), "backend left running")
  end

  before_each(function()
    xdg = helper.runtime_dir()
    env = { XDG_RUNTIME_DIR = xdg }
    base = xdg .. "/rootlessnetns"
    cfg = helper.tmpdir() .. "/config.lua"
    helper.write(cfg, 'return { backend = "slirp4netns", slirp4netns = { allow_host_loopback = true } }\n')
  end)

  after_each(function()
    helper.cli({ "cleanup" }, env)
    helper.cleanup_dirs()
  end)

  userns_it("are created, listed, entered and deleted", function()
    assert.equal("web\n", (ok { "netns", "add", "web" }))
    local random = ok { "netns", "add" }:gsub("\n$", "")
    assert.matches("^netns%-%x+%-%x+%-%x+%-%x+%-%x+$", random)
    local entries = list()
    assert.equal(2, #entries)
    local names = by_name()
    assert.is_true(names.web.live)
    assert.equal(xdg .. "/netns/web", names.web.path)
    assert.equal(cjson.null, names.web.address)
    assert.same({}, names.web.pids)
    -- its own interfaces only (in /sys too), loopback up, exit status passed on
    local out = ok { "netns", "exec", "web", "sh", "-c", "ls /sys/class/net; ip -o link show lo" }
    assert.matches("^lo\n", out)
    assert.matches("LOOPBACK,UP", out)
    assert.equal(7, (cli { "netns", "exec", "web", "--", "sh", "-c", "exit 7" }))
    assert.equal(127, (cli { "netns", "exec", "web", "no-such-command-here" }))
    -- each namespace is its own: an address in one is not in the other
    ok { "netns", "exec", "web", "ip", "addr", "add", "198.51.100.7/32", "dev", "lo" }
    assert.matches("198%.51%.100%.7", ok { "netns", "exec", "web", "ip", "-o", "addr" })
    assert.not_matches("198%.51%.100%.7", ok { "netns", "exec", random, "ip", "-o", "addr" })
    assert.equal("", (ok { "netns", "del", "web" }))
    ok { "netns", "del", random }
    assert.same({}, list())
    assert.same({}, core.listdir(xdg .. "/netns"))
  end)

  userns_it("give clear errors for collisions, bad names and unknown names", function()
    ok { "netns", "add", "web" }
    for args, pattern in pairs {
      [{ "netns", "add", "web" }] = "namespace `web` already exists",
      [{ "netns", "add", "a/b" }] = "invalid namespace name `a/b`",
      [{ "netns", "add", ".." }] = "invalid namespace name",
      [{ "netns", "add", ("x"):rep(65) }] = "longer than 64",
      [{ "netns", "exec", "nope", "true" }] = "no namespace `nope`",
      [{ "netns", "del", "nope" }] = "no namespace `nope`",
      [{ "netns", "connect", "nope" }] = "no namespace `nope`",
      [{ "netns", "disconnect", "web" }] = "namespace `web` is not connected",
      [{ "netns", "connect", "web", "--ip", "10.89.0.1" }] = "the bridge's own address",
      [{ "netns", "connect", "web", "--ip", "10.99.0.5/24" }] = "outside the bridge subnet",
      [{ "netns" }] = "a command is required",
    } do
      local code, _, err = cli(args)
      assert.equal(125, code, table.concat(args, " "))
      assert.matches("^rootlessnetns: [^\n]*" .. pattern:gsub("[%.%-%(%)`/]", "%%%0"), err)
      assert.not_matches("traceback", err)
    end
    -- nothing was set up by the failed connects
    assert_rootless_gone()
    -- a pin that is not ours (podman's, say) is neither taken nor listed
    assert(core.writefile(xdg .. "/netns/theirs", ""))
    local code, _, err = cli { "netns", "add", "theirs" }
    assert.equal(125, code)
    assert.matches("is not one of ours", err)
    assert.is_nil(by_name().theirs)
    code = cli { "netns", "del", "theirs" }
    assert.equal(125, code)
    assert.is_truthy(core.lstat(xdg .. "/netns/theirs"), "someone else's file was removed")
  end)

  userns_it("reach each other and the host's loopback once connected", function()
    ok { "netns", "add", "a" }
    ok { "netns", "add", "b" }
    local la = json(ok { "netns", "connect", "a", "--json" })
    assert.equal("10.89.0.2", la.address)
    assert.equal(24, la.prefix)
    assert.equal("10.89.0.1", la.gateway)
    local out = ok { "netns", "connect", "b", "--ip", "10.89.0.77/24" }
    assert.equal("b: 10.89.0.77/24 fdeb:ada5:1686::4d/64 on rlnsbr0 (gateway 10.89.0.1)\n", out)
    local names = by_name()
    assert.equal("10.89.0.2/24", names.a.address)
    assert.equal("10.89.0.77/24", names.b.address)
    assert.equal(2, status().refs.connections)

    ok { "netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.89.0.77" }
    ok { "netns", "exec", "b", "ping", "-c", "1", "-W", "5", "10.89.0.2" }
    -- a default route via the bridge, in /sys the namespace's own links
    assert.matches("default via 10%.89%.0%.1 dev eth0", ok { "netns", "exec", "a", "ip", "route" })
    assert.equal("eth0\nlo\n", ok { "netns", "exec", "a", "ls", "/sys/class/net" })

    -- a listener on the host's 127.0.0.1, reached through slirp4netns' 10.0.2.2
    local port = 20000 + math.random(0, 9999)
    local dir = helper.tmpdir()
    local got = assert(core.open(dir .. "/got", "w"))
    local listener = assert(core.spawn { argv = { "nc", "-lk", "127.0.0.1", tostring(port) },
      fds = { [0] = false, [1] = got, [2] = got } })
    got:close()
    finally(function()
      listener:kill(core.SIGKILL)
      listener:wait()
    end)
    for _, name in ipairs { "a", "b" } do
      local script = ("for i in $(seq 50); do echo hello-from-%s | nc -N -w 3 10.0.2.2 %d && exit 0; "
        .. "sleep 0.1; done; exit 1"):format(name, port)
      ok { "netns", "exec", name, "sh", "-c", script }
    end
    local text = helper.eventually(function()
      local t = helper.read(dir .. "/got")
      return t and t:find("hello-from-b", 1, true) and t
    end, 5)
    assert.matches("hello%-from%-a", text)
    assert.matches("hello%-from%-b", text)
  end)

  userns_it("disconnect and del remove every veth, lease and reference", function()
    ok { "netns", "add", "a" }
    ok { "netns", "add", "b" }
    ok { "netns", "connect", "a" }
    ok { "netns", "connect", "b" }
    assert.same({ "rlnsv0", "rlnsv1" }, rootless_links("rlnsv"))
    ok { "netns", "disconnect", "a" }
    assert.same({ "rlnsv1" }, rootless_links("rlnsv"))
    assert.equal("lo\n", ok { "netns", "exec", "a", "ls", "/sys/class/net" })
    assert.equal(cjson.null, by_name().a.address)
    local st = status()
    assert.is_true(st.up)
    assert.equal(1, st.refs.connections)
    -- the address stays taken until b lets go; a reconnects to the next one
    assert.equal("10.89.0.4", json(ok { "netns", "connect", "a", "--json" }).address)
    ok { "netns", "disconnect", "a" }
    -- deleting a connected namespace disconnects it; the last one out
    -- takes the rootless netns down
    ok { "netns", "del", "b" }
    assert_rootless_gone()
    assert.is_nil(core.lstat(base .. "/rootless-netns/leases.json"))
    assert.is_nil(core.lstat(xdg .. "/netns/b"))
    ok { "netns", "del", "a" }
    assert.same({}, list())
  end)

  userns_it("keep the rootless netns alive while connected, with setup's references counted apart", function()
    ok { "netns", "add", "a" }
    ok { "setup" }
    ok { "netns", "connect", "a" }
    ok { "teardown" }
    local st = status()
    assert.is_true(st.up, "teardown took the namespace down under a connection")
    assert.equal(0, st.refs.nets)
    ok { "netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.89.0.1" }
    ok { "netns", "disconnect", "a" }
    assert_rootless_gone()
  end)

  userns_it("connected in parallel get distinct addresses and one bridge", function()
    local names = {}
    for i = 1, 8 do
      names[i] = "n" .. i
      ok { "netns", "add", names[i] }
    end
    local procs = {}
    for i, name in ipairs(names) do
      procs[i] = helper.cli({ "--config", cfg, "netns", "connect", name, "--json" }, env, { wait = false })
    end
    for _, proc in ipairs(procs) do assert.same({ "exited", 0 }, { proc:wait(60000) }) end
    local seen = {}
    for _, e in ipairs(list()) do
      assert.is_string(e.address, e.name .. " is not connected")
      assert.is_nil(seen[e.address], "address handed out twice: " .. tostring(e.address))
      seen[e.address] = true
    end
    assert.equal(8, status().refs.connections)
    assert.equal(8, #rootless_links("rlnsv"))
    assert.same({ "rlnsbr0" }, rootless_links("rlnsbr"))
    ok { "netns", "exec", "n8", "ping", "-c", "1", "-W", "5", "10.89.0.1" }
    for _, name in ipairs(names) do ok { "netns", "del", name } end
    assert_rootless_gone()
  end)

  userns_it("survive a damaged leases file: the next command removes the veths it no longer names", function()
    ok { "netns", "add", "a" }
    ok { "setup" }
    ok { "netns", "connect", "a" }
    assert(core.writefile(base .. "/rootless-netns/leases.json", "{garbage"))
    local _, warn = ok { "netns", "list" }
    assert.matches("leases%.json", warn)
    assert.same({}, rootless_links("rlnsv"))
    assert.equal(0, status().refs.connections)
    assert.is_true(status().up, "setup's reference still holds it")
    assert.equal("10.89.0.2", json(ok { "netns", "connect", "a", "--json" }).address)
    ok { "netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.89.0.1" }
  end)

  userns_it("stay live when the holder's record is lost, and del still refuses while a process is inside", function()
    ok { "netns", "add", "web" }
    local proc = helper.cli({ "--config", cfg, "netns", "exec", "web", "sleep", "30" }, env, { wait = false })
    assert(helper.eventually(function() return #(list()[1].pids) > 0 end, 10), "the process never started")
    assert(core.unlink(base .. "/holder.json"))
    assert.is_true(list()[1].live, "listed as stale")
    assert(core.unlink(base .. "/holder.json"))
    local code, _, err = cli { "netns", "del", "web" }
    assert.equal(125, code)
    assert.matches("still has 1 process inside", err)
    proc:kill(core.SIGTERM)
    proc:wait()
  end)

  userns_it("repair a lease without its prefix, drop one without an address", function()
    ok { "netns", "add", "a" }
    ok { "netns", "add", "b" }
    ok { "setup" }
    ok { "netns", "connect", "a" }
    ok { "netns", "connect", "b" }
    local file = base .. "/rootless-netns/leases.json"
    local data = json(helper.read(file))
    data.leases.a.prefix = nil
    data.leases.b.address = { 1 }
    assert(core.writefile(file, require("cjson").encode(data)))
    local out, warn = ok { "netns", "list" }
    assert.matches("a%s+live%s+10%.89%.0%.2/24", out)
    assert.matches("the lease of b is damaged", warn)
    assert.equal(1, status().refs.connections)
    ok { "netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.89.0.1" }
    assert.matches("^10%.89%.0%.%d+$", json(ok { "netns", "connect", "b", "--json" }).address)
  end)

  userns_it("take a new bridge subnet once nothing is connected", function()
    ok { "netns", "add", "a" }
    ok { "setup" }
    ok { "netns", "connect", "a" }
    helper.write(cfg, 'return { backend = "slirp4netns", connect = { subnet = "10.90.0.0/24" } }\n')
    ok { "netns", "add", "b" }
    local code, _, err = cli { "netns", "connect", "b" }
    assert.equal(125, code)
    assert.matches("serves 10%.89%.0%.0/24 for connected namespaces; disconnect them", err)
    ok { "netns", "disconnect", "a" }
    assert.equal("10.90.0.2", json(ok { "netns", "connect", "a", "--json" }).address)
    ok { "netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.90.0.1" }
    assert.matches("inet 10%.90%.0%.1/24", ok { "run", "--", "ip", "-o", "addr", "show", "dev", "rlnsbr0" })
  end)

  userns_it("get their way out back when the backend died", function()
    ok { "netns", "add", "a" }
    ok { "netns", "connect", "a" }
    local before = status().backend
    local pid = math.tointeger(before.pid)
    local starttime = assert(core.starttime(pid))
    helper.kill_and_wait(pid, starttime)
    local _, err = ok { "netns", "exec", "a", "true" }
    assert.matches("is gone; restarting it", err)
    -- the bridge and the veths are ours, not the dead backend's: no wait for them to go
    assert.not_matches("still there", err)
    local after = status().backend
    assert.is_true(after.alive)
    assert.are_not.equal(before.pid, after.pid)
    ok { "netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.89.0.1" }
    ok { "netns", "del", "a" }
    assert_rootless_gone()
  end)

  userns_it("refuse to delete a namespace with processes inside unless forced", function()
    ok { "netns", "add", "busy" }
    local proc = helper.cli({ "--config", cfg, "netns", "exec", "busy", "sleep", "60" }, env, { wait = false })
    local pid = helper.eventually(function()
      local pids = by_name().busy.pids
      return #pids > 0 and pids[1]
    end, 10)
    assert.is_truthy(pid, "the process never showed up inside")
    local code, _, err = cli { "netns", "del", "busy" }
    assert.equal(125, code)
    assert.matches("still has 1 process inside %(pid " .. math.tointeger(pid) .. "%)", err)
    assert.is_true(by_name().busy.live)
    ok { "netns", "del", "busy", "--force" }
    local how, status_code = proc:wait(10000)
    assert.equal("exited", how)
    assert.equal(128 + core.SIGKILL, status_code)
    assert.same({}, list())
  end)

  userns_it("outlive the rootless netns and its backend's sandbox", function()
    ok { "netns", "add", "keep" }
    ok { "setup" }
    ok { "teardown" }
    assert_rootless_gone()
    assert.is_true(by_name().keep.live, "starting or stopping slirp4netns unmounted a named namespace")
  end)

  userns_it("go stale with their holder; del and add repair them", function()
    ok { "netns", "add", "old" }
    ok { "netns", "add", "older" }
    local holder = json(helper.read(base .. "/holder.json"))
    local pid, starttime = math.tointeger(holder.pid), math.tointeger(holder.starttime)
    helper.kill_and_wait(pid, starttime)
    local names = by_name()
    assert.is_false(names.old.live)
    local code, _, err = cli { "netns", "exec", "old", "true" }
    assert.equal(125, code)
    assert.matches("is stale", err)
    ok { "netns", "del", "old" }
    local _, warn = ok { "netns", "add", "older" }
    assert.matches("was stale", warn)
    assert.is_true(by_name().older.live)
  end)

  local CONNECT_POINTS = { "connect-reserved", "connect-veth", "connect-configured" }
  for _, point in ipairs(CONNECT_POINTS) do
    userns_it("repair a connect SIGKILLed at " .. point, function()
      ok { "netns", "add", "a" }
      ok { "netns", "add", "b" }
      ok { "netns", "connect", "b" }
      local code = cli({ "netns", "connect", "a" }, { ROOTLESSNETNS_FAULT = point })
      assert.equal(128 + core.SIGKILL, code, "the fault point was not reached")
      -- the next command repairs: the half-made connection holds nothing
      assert.equal(cjson.null, by_name().a.address)
      assert.same({ "rlnsv0" }, rootless_links("rlnsv"))
      assert.equal(1, status().refs.connections)
      local la = json(ok { "netns", "connect", "a", "--json" })
      ok { "netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.89.0.2" }
      assert.equal(1, select(2, ok { "netns", "exec", "a", "ip", "-o", "addr", "show", "dev", "eth0" }
        :gsub("inet ", "")))
      assert.are_not.equal("10.89.0.2", la.address)
      ok { "netns", "del", "a" }
      ok { "netns", "del", "b" }
      assert_rootless_gone()
    end)
  end

  userns_it("repair a first connect SIGKILLed before it held a reference", function()
    ok { "netns", "add", "a" }
    assert.equal(128 + core.SIGKILL, (cli({ "netns", "connect", "a" }, { ROOTLESSNETNS_FAULT = "connect-veth" })))
    local _, warn = ok { "netns", "list" }
    assert.matches("removing the unfinished connection of `a`", warn)
    -- what the killed connect set up for itself alone is taken down again
    assert_rootless_gone()
    ok { "netns", "connect", "a" }
    ok { "netns", "disconnect", "a" }
    assert_rootless_gone()
  end)

  for _, point in ipairs { "disconnect-unleased", "netns-del-disconnected", "netns-add-recorded" } do
    userns_it("repair a lab command SIGKILLed at " .. point, function()
      ok { "netns", "add", "a" }
      ok { "netns", "add", "b" }
      ok { "netns", "connect", "a" }
      ok { "netns", "connect", "b" }
      local args = ({
        ["disconnect-unleased"] = { "netns", "disconnect", "a" },
        ["netns-del-disconnected"] = { "netns", "del", "a" },
        ["netns-add-recorded"] = { "netns", "add", "c" },
      })[point]
      assert.equal(128 + core.SIGKILL, (cli(args, { ROOTLESSNETNS_FAULT = point })))
      ok { "netns", "list" }
      if point ~= "netns-add-recorded" then
        assert.same({ "rlnsv1" }, rootless_links("rlnsv"))
        assert.equal(1, status().refs.connections)
      else
        assert.is_false(by_name().c.live)
        ok { "netns", "add", "c" }
        ok { "netns", "connect", "c" }
        ok { "netns", "exec", "c", "ping", "-c", "1", "-W", "5", "10.89.0.2" }
      end
      for _, e in ipairs(list()) do ok { "netns", "del", e.name } end
      assert_rootless_gone()
      assert.same({}, list())
    end)
  end
end)

describe("named namespaces with pasta", function()
  local fx = helper.state_fixture(before_each, after_each)

  userns_it("reach each other through the bridge", function()
    local function ok(...)
      local code, out, err = helper.cli({ "--backend", "pasta", ... }, fx.env)
      assert.equal(0, code, err)
      return out
    end
    ok("netns", "add", "a")
    ok("netns", "add", "b")
    ok("netns", "connect", "a")
    ok("netns", "connect", "b")
    ok("netns", "exec", "a", "ping", "-c", "1", "-W", "5", "10.89.0.3")
    ok("netns", "exec", "b", "ping", "-c", "1", "-W", "5", "10.89.0.1")
    ok("netns", "del", "a")
    ok("netns", "del", "b")
    assert.is_false(json(ok("status", "--json")).up)
  end)
end)

describe("a lab subnet that overlaps the backend's network", function()
  local fx = helper.state_fixture(before_each, after_each)

  userns_it("is refused when pasta's DNS forwarder is in it, and nothing is connected", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/config.lua", 'return { backend = "pasta", connect = { subnet = "169.254.1.0/24" } }\n')
    local function cli(...) return helper.cli({ "--config", dir .. "/config.lua", ... }, fx.env) end
    assert.equal(0, (cli("netns", "add", "a")))
    local code, _, err = cli("netns", "connect", "a")
    assert.equal(125, code)
    assert.matches("overlaps the rootless netns's own 169%.254%.1%.1 %(DNS forwarder%)", err)
    local _, out = cli("status", "--json")
    assert.equal(0, math.tointeger(json(out).refs.connections))
  end)

  it("is refused when slirp4netns's network holds it, before anything is made", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/config.lua", 'return { connect = { subnet = "10.0.2.0/26" } }\n')
    local code, _, err = helper.cli({ "--config", dir .. "/config.lua", "netns", "add", "a" },
      { XDG_RUNTIME_DIR = dir })
    assert.equal(125, code)
    assert.matches("overlaps slirp4netns's network 10%.0%.2%.0/24", err)
    assert.is_nil(core.lstat(dir .. "/rootlessnetns"))
  end)
end)

describe("a runtime directory with a space in its path", function()
  after_each(function() helper.cleanup_dirs() end)

  userns_it("connects namespaces all the same", function()
    local xdg = helper.runtime_dir() .. "/with space"
    assert(core.mkdir(xdg, tonumber("700", 8)))
    local env = { XDG_RUNTIME_DIR = xdg }
    local function ok(...)
      local code, out, err = helper.cli({ "--backend", "slirp4netns", ... }, env)
      assert.equal(0, code, err)
      return out
    end
    ok("netns", "add", "a")
    ok("netns", "connect", "a")
    ok("netns", "exec", "a", "ip", "-o", "addr", "show", "eth0")
    ok("cleanup")
  end)
end)
