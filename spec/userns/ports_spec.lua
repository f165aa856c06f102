-- Published ports, end to end as a user sees them: the host's loopback
-- reaches servers in the rootless netns and in a named namespace, the
-- server sees who connected, ports come and go while connections run,
-- and nothing is left listening once the target is gone.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

-- Is @port (on any address) listening on the host?  (/proc/net/tcp{,6},
-- state 0A; udp sockets are "07" bound.)
local function host_listening(port, proto)
  local hex = (":%04X"):format(port)
  for _, file in ipairs(proto == "udp" and { "udp", "udp6" } or { "tcp", "tcp6" }) do
    for line in (core.readfile("/proc/net/" .. file, 1 << 22) or ""):gmatch("[^\n]+") do
      local loc, st = line:match("^%s*%d+: %x+(:%x+) %x+:%x+ (%x%x)")
      if loc == hex and (st == "0A" or proto == "udp") then return true end
    end
  end
  return false
end

local function sh(script, ...)
  local proc = assert(core.spawn { argv = { "sh", "-c", script, "sh", ... } })
  local how, code = proc:wait(20000)
  if not how then proc:kill(core.SIGKILL) proc:wait() return -1 end
  return code
end

for _, backend in ipairs { "slirp4netns", "pasta" } do
  describe("published ports (" .. backend .. ")", function()
    local fx = helper.state_fixture(before_each, after_each)
    local servers = {}
    local function cli(args, opts) return helper.cli(args, fx.env, opts) end
    local function ok(args)
      local code, out, err = cli(args)
      assert.equal(0, code, table.concat(args, " ") .. ": " .. tostring(err))
      return out, err
    end
    local function free_port()
      for _ = 1, 50 do
        local p = math.random(20000, 60000)
        if not host_listening(p) and not host_listening(p, "udp") then return p end
      end
      error("no free port")
    end
    -- A server (nc) inside: `run` or `netns exec NAME`; its output files.
    local function server(where, args)
      local argv = where and { "netns", "exec", where, "--" } or { "run", "--" }
      table.move(args, 1, #args, #argv + 1, argv)
      local proc, dir = cli(argv, { wait = false })
      servers[#servers + 1] = proc
      return dir
    end
    local function listening_inside(where, port)
      local hex = (":%04X "):format(port)
      return helper.eventually(function()
        local argv = where and { "netns", "exec", where, "--", "cat", "/proc/net/tcp", "/proc/net/tcp6" }
          or { "run", "--", "cat", "/proc/net/tcp", "/proc/net/tcp6" }
        local _, out = cli(argv)
        return out and out:find(hex .. "00000000:0000 0A", 1, true) or out:find(hex, 1, true)
      end, 10)
    end

    before_each(function()
      ok { "--backend", backend, "setup" }
    end)
    after_each(function()
      -- (SIGTERM: the CLI passes it on to a command it forked)
      for _, p in ipairs(servers) do
        p:kill(core.SIGTERM)
        if not p:wait(5000) then p:kill(core.SIGKILL) p:wait() end
      end
      servers = {}
    end)

    userns_it("reach a server inside from the host's 127.0.0.1, which sees the client's address", function()
      local port = free_port()
      local dir = server(nil, { "nc", "-n", "-v", "-l", "-k", "8080" })
      assert.truthy(listening_inside(nil, 8080))
      local out = ok { "port", "add", port .. ":8080" }
      assert.equal(("127.0.0.1:%d:8080/tcp\n"):format(port), out)
      assert.equal(0, sh('echo hello-from-host | nc -N -s 127.0.0.2 127.0.0.1 "$1"', tostring(port)))
      assert.truthy(helper.eventually(function()
        return (helper.read(dir .. "/out") or ""):find("hello-from-host", 1, true)
      end))
      -- a forwarder that connected from anywhere else could not show this
      assert.matches("127%.0%.0%.2", helper.read(dir .. "/err"))
      local list = require("cjson").decode((ok { "port", "list", "--json" }))
      assert.equal(1, #list)
      assert.equal(("127.0.0.1:%d:8080/tcp"):format(port), list[1].spec)
      assert.is_true(list[1].forwarding)
      assert.equal(require("cjson").null, list[1].netns)
      local st = require("cjson").decode((ok { "status", "--json" }))
      assert.equal(("127.0.0.1:%d:8080/tcp"):format(port), st.ports[1].spec)
    end)

    userns_it("forward UDP and IPv6 ([::1])", function()
      local uport, vport = free_port(), free_port()
      local udp = server(nil, { "nc", "-u", "-l", "5353" })
      local v6 = server(nil, { "nc", "-6", "-n", "-v", "-l", "-k", "::1", "8081" })
      assert.truthy(listening_inside(nil, 8081))
      ok { "port", "add", uport .. ":5353/udp", "[::1]:" .. vport .. ":8081" }
      assert.equal(0, sh('echo over-udp | nc -u -w 1 127.0.0.1 "$1"', tostring(uport)))
      assert.truthy(helper.eventually(function()
        return (helper.read(udp .. "/out") or ""):find("over-udp", 1, true)
      end))
      assert.equal(0, sh('echo over-v6 | nc -6 -N ::1 "$1"', tostring(vport)))
      assert.truthy(helper.eventually(function() return (helper.read(v6 .. "/out") or ""):find("over-v6", 1, true) end))
      assert.matches("::1", helper.read(v6 .. "/err"))
    end)

    userns_it("reach a server in a named namespace; netns del leaves nothing listening", function()
      ok { "netns", "add", "web" }
      local port = free_port()
      local dir = server("web", { "nc", "-n", "-v", "-l", "-k", "80" })
      assert.truthy(listening_inside("web", 80))
      ok { "port", "add", "--netns", "web", port .. ":80" }
      assert.is_true(host_listening(port))
      assert.equal(0, sh('echo to-web | nc -N -s 127.0.0.3 127.0.0.1 "$1"', tostring(port)))
      assert.truthy(helper.eventually(function() return (helper.read(dir .. "/out") or ""):find("to-web", 1, true) end))
      assert.matches("127%.0%.0%.3", helper.read(dir .. "/err"))
      local listed = require("cjson").decode((ok { "netns", "list", "--json" }))
      assert.same({ ("127.0.0.1:%d:80/tcp"):format(port) }, listed[1].ports)
      -- the socket maker inside is no process of the user's
      local code, _, err = cli { "netns", "del", "web" }
      assert.equal(125, code)
      assert.matches("still has 1 process", err)
      ok { "netns", "del", "--force", "web" }
      assert.truthy(helper.eventually(function() return not host_listening(port) end))
      assert.same({}, helper.settled_processes("rootlessnetns-ports", 0))
    end)

    userns_it("port rm closes its host port; other forwards and their connections go on", function()
      local a, b, c = free_port(), free_port(), free_port()
      local dir = server(nil, { "nc", "-n", "-v", "-l", "-k", "8080" })
      assert.truthy(listening_inside(nil, 8080))
      ok { "port", "add", a .. ":8080", b .. ":8080" }
      -- a long-lived connection through a
      local long = assert(core.spawn { argv = { "sh", "-c",
        '(echo first; sleep 1.5; echo second) | nc -N 127.0.0.1 "$1"', "sh", tostring(a) } })
      assert.truthy(helper.eventually(function() return (helper.read(dir .. "/out") or ""):find("first", 1, true) end))
      ok { "port", "rm", tostring(b) }
      ok { "port", "add", c .. ":8080" }
      assert.is_false(host_listening(b))
      assert.equal(1, sh('nc -z -w 1 127.0.0.1 "$1"', tostring(b)))
      assert.same({ "exited", 0 }, { long:wait(10000) })
      assert.matches("first\nsecond", helper.read(dir .. "/out"))
      assert.equal(0, sh('echo third | nc -N 127.0.0.1 "$1"', tostring(c)))
    end)

    userns_it("a SIGKILLed forwarder is started again by the next command", function()
      local port = free_port()
      local dir = server(nil, { "nc", "-l", "-k", "8080" })
      assert.truthy(listening_inside(nil, 8080))
      ok { "port", "add", port .. ":8080" }
      local record = fx.xdg .. "/rootlessnetns/ports/rootless-netns.forwarder"
      local pid, st = require("rootlessnetns.state").read_identity(record)
      assert.truthy(pid)
      helper.kill_and_wait(pid, st)
      assert.truthy(helper.eventually(function() return not host_listening(port) end))
      local _, err = ok { "port", "list" }
      assert.matches("started it again with 1 port", err)
      assert.is_true(host_listening(port))
      assert.equal(0, sh('echo again | nc -N 127.0.0.1 "$1"', tostring(port)))
      assert.truthy(helper.eventually(function() return (helper.read(dir .. "/out") or ""):find("again", 1, true) end))
    end)

    userns_it("from a command run inside: published through a running forwarder, never one started in there",
      function()
      local a, b = free_port(), free_port()
      -- no forwarder yet: one started in here would listen inside
      local code, _, err = cli { "run", "--", "lua5.4", helper.CLI, "port", "add", a .. ":80" }
      assert.equal(125, code)
      assert.matches("ports are published from the host's network namespace", err)
      assert.is_false(host_listening(a))
      ok { "port", "add", a .. ":80" }
      -- with one running, it does the binding, on the host
      code, _, err = cli { "run", "--", "lua5.4", helper.CLI, "port", "add", b .. ":80" }
      assert.equal(0, code, err)
      assert.is_true(host_listening(b))
      -- a dead one is not started again from in there
      local record = fx.xdg .. "/rootlessnetns/ports/rootless-netns.forwarder"
      local pid, st = require("rootlessnetns.state").read_identity(record)
      helper.kill_and_wait(pid, st)
      assert.equal(0, (cli { "run", "--", "lua5.4", helper.CLI, "run", "true" }))
      assert.is_false(host_listening(a))
      ok { "port", "list" }
      assert.is_true(host_listening(a) and host_listening(b))
    end)

    userns_it("a signal ends the wait for a stopped forwarder, and the port it was asked for never opens",
      function()
      local a, b = free_port(), free_port()
      ok { "port", "add", a .. ":80" }
      local record = fx.xdg .. "/rootlessnetns/ports/rootless-netns.forwarder"
      local pid, st = require("rootlessnetns.state").read_identity(record)
      assert(core.kill(pid, st, core.SIGSTOP))
      local proc = cli({ "port", "add", b .. ":80" }, { wait = false })
      core.sleep(700)
      proc:kill(core.SIGINT)
      local how, code = proc:wait(3000)
      assert(core.kill(pid, st, core.SIGCONT))
      assert.same({ "exited", 130 }, { how, code })
      -- the forwarder takes the queued add, then the rm that undoes it
      core.sleep(500)
      assert.is_false(host_listening(b))
      local list = require("cjson").decode((ok { "port", "list", "--json" }))
      assert.equal(1, #list)
      ok { "port", "add", b .. ":80" }
      assert.is_true(host_listening(b))
    end)

    userns_it("port list ends at ^C while it waits for the lock, as every command", function()
      local lock = assert(core.flock(fx.xdg .. "/rootlessnetns/lock", "ex"))
      local proc = cli({ "port", "list" }, { wait = false })
      core.sleep(300)
      proc:kill(core.SIGINT)
      local how, code = proc:wait(3000)
      lock:close()
      assert.same({ "exited", 130 }, { how, code })
    end)

    userns_it("the last teardown and cleanup leave no listening socket", function()
      local a, b = free_port(), free_port()
      ok { "port", "add", a .. ":80", b .. ":53/udp" }
      assert.is_true(host_listening(a))
      ok { "teardown" }
      assert.truthy(helper.eventually(function() return not host_listening(a) and not host_listening(b, "udp") end))
      ok { "--backend", backend, "setup", "--publish", a .. ":80", "--publish", b .. ":53/udp" }
      assert.is_true(host_listening(a))
      -- publishing alike again is no error: setup is idempotent
      ok { "setup", "--publish", a .. ":80" }
      ok { "cleanup" }
      assert.truthy(helper.eventually(function() return not host_listening(a) and not host_listening(b, "udp") end))
      assert.same({}, helper.settled_processes("rootlessnetns-ports", 0))
    end)

    userns_it("each error is one line, and leaves nothing half made", function()
      local taken = free_port()
      local holder = assert(core.spawn { argv = { "nc", "-l", "127.0.0.1", tostring(taken) } })
      servers[#servers + 1] = holder
      assert.truthy(helper.eventually(function() return host_listening(taken) end))
      local port = free_port()
      ok { "port", "add", port .. ":80" }
      ok { "netns", "add", "web" }
      local cases = {
        { { "port", "add", taken .. ":80" }, "host port 127%.0%.0%.1:" .. taken .. "/tcp is in use" },
        { { "port", "add", "--netns", "nope", "8080" }, "no namespace `nope`" },
        { { "port", "add", port .. ":81" }, "127%.0%.0%.1:" .. port .. "/tcp is already published %(to port 80" },
        { { "port", "add", "--netns", "web", port .. ":81" },
          "already published %(to port 80 of the rootless netns%); `rootlessnetns port rm " },
        { { "port", "add", "80:80:80:80" }, "IPv6 address goes in brackets" },
        { { "port", "add", "8080/sctp" }, "protocol `sctp`" },
        { { "port", "rm", "9" }, "127%.0%.0%.1:9/tcp is not published" },
      }
      -- (where the host lets anyone bind port 80, that case cannot be had)
      if require("rootlessnetns.ports").unprivileged_start() > 80 then
        cases[#cases + 1] = { { "port", "add", "80" }, "below net%.ipv4%.ip_unprivileged_port_start" }
      end
      for _, case in ipairs(cases) do
        local code, out, err = cli(case[1])
        assert.equal(125, code, table.concat(case[1], " "))
        assert.equal("", out)
        assert.matches("^rootlessnetns: [^\n]*" .. case[2] .. "[^\n]*\n$", err)
      end
      local list = require("cjson").decode((ok { "port", "list", "--json" }))
      assert.equal(1, #list, "a failed add left a port behind")
      -- several at once: all or none
      local fresh = free_port()
      local code = cli { "port", "add", fresh .. ":80", port .. ":80" }
      assert.equal(125, code)
      assert.is_false(host_listening(fresh), "the first of a failed `port add A B` stayed")
      code = cli { "port", "rm", tostring(port), "9" }
      assert.equal(125, code)
      assert.is_true(host_listening(port), "the first of a failed `port rm A B` went")
    end)
  end)
end
