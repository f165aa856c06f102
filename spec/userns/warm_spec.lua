-- Warm runs: with the namespace held by `setup`, `run -- CMD` is one exec
-- (rootlessnetns.warm) into a prepared mount namespace.  The command is
-- the CLI's own process; everything else behaves as a slow run does.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

describe("warm run", function()
  local fx = helper.state_fixture(before_each, after_each)
  local env, home

  local function cli(args, extra)
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra or {}) do e[k] = v end
    return helper.cli(args, e)
  end

  local function status()
    local _, out = cli { "status", "--json" }
    return assert(cjson.decode(out or ""))
  end

  local function cmdline(pid)
    return (core.readfile(("/proc/%d/cmdline"):format(pid), 4096) or ""):gsub("%z", " ")
  end

  -- up, held by `setup`, and one slow run made what warm runs use
  local function warm_up()
    assert.equal(0, (cli { "--backend", "slirp4netns", "setup" }))
    -- (a slow machine, ASan: the keeper may miss its ready time once;
    -- the next slow run makes it again)
    local record = fx.xdg .. "/rootlessnetns/rootless-netns/warm-run"
    for _ = 1, 3 do
      local code, _, err = cli({ "run", "--", "true" }, { ROOTLESSNETNS_LOG_LEVEL = "warn" })
      assert.equal(0, code, err)
      if core.lstat(record) then return end
    end
    error("no slow run prepared warm runs")
  end

  before_each(function()
    home = helper.tmpdir()
    -- the default config location, under a HOME of the spec's own
    env = { XDG_RUNTIME_DIR = fx.xdg, HOME = home }
  end)

  after_each(function()
    cli { "cleanup" }
  end)

  userns_it("is the command itself: its pid is the CLI's, its status its own", function()
    warm_up()
    local proc, dir = helper.cli({ "run", "--", "sh", "-c", "echo $$; exit 7" }, env, { wait = false })
    assert.same({ "exited", 7 }, { proc:wait(10000) })
    assert.equal(tostring(proc:pid()) .. "\n", helper.read(dir .. "/out"))
    -- inside the namespace, with its resolv.conf and its /run
    local code, out, err = cli { "run", "--", "sh", "-c", "ip -o link show tap0 && cat /etc/resolv.conf && ls /run" }
    assert.equal(0, code, err)
    assert.matches("tap0", out)
    assert.matches("nameserver 10.0.2.3", out)
    assert.matches("systemd", out)
  end)

  userns_it("reports a command it cannot run as a slow run does, and changes nothing", function()
    warm_up()
    local code, _, err = cli { "run", "--", "no-such-command-here" }
    assert.equal(127, code)
    assert.equal("rootlessnetns: exec `no-such-command-here`: command not found\n", err)
    local script = helper.tmpdir() .. "/not-executable"
    helper.write(script, "#!/bin/sh\n", tonumber("644", 8))
    code, _, err = cli { "run", "--", script }
    assert.equal(126, code)
    assert.matches("^rootlessnetns: exec `" .. script:gsub("%p", "%%%0") .. "`: Permission denied\n$", err)
    local st = status()
    assert.equal(1, st.refs.nets)
    assert.equal(0, st.refs.runs)
  end)

  userns_it("with its prepared mount namespace gone, runs on the slow path, which prepares another", function()
    warm_up()
    local record = fx.xdg .. "/rootlessnetns/rootless-netns/warm-run"
    local keeper = tonumber(helper.read(record):match("\nkeeper (%d+) "))
    local since = core.starttime(keeper)
    assert(core.kill(keeper, since, core.SIGKILL))
    assert(helper.eventually(function() return not core.alive(keeper, since) end, 5))
    local function pid_of_run()
      local proc, dir = helper.cli({ "run", "--", "sh", "-c", "echo $$" }, env, { wait = false })
      assert.same({ "exited", 0 }, { proc:wait(10000) })
      return proc:pid(), tonumber(helper.read(dir .. "/out"))
    end
    local cli_pid, cmd_pid = pid_of_run()
    assert.are_not.equal(cli_pid, cmd_pid) -- forked: the slow path
    assert.equal(0, status().refs.runs)
    cli_pid, cmd_pid = pid_of_run()
    assert.equal(cli_pid, cmd_pid) -- warm again
    assert.are_not.equal(keeper, tonumber(helper.read(record):match("\nkeeper (%d+) ")))
  end)

  userns_it("SIGKILLed, leaks no reference", function()
    warm_up()
    local proc = helper.cli({ "run", "--", "sleep", "30" }, env, { wait = false })
    assert(helper.eventually(function() return cmdline(proc:pid()):match("^/%S*sleep 30") end, 5),
      "not exec'd in place: " .. cmdline(proc:pid()))
    assert.equal(1, status().refs.runs)
    proc:kill(core.SIGKILL)
    proc:wait()
    assert.equal(0, status().refs.runs)
  end)

  userns_it("under a teardown keeps the namespace up until it ends, then nothing is left", function()
    warm_up()
    local pin = fx.xdg .. "/rootlessnetns/rootless-netns/rootless-netns"
    local proc = helper.cli({ "run", "--", "sleep", "1.5" }, env, { wait = false })
    assert(helper.eventually(function() return cmdline(proc:pid()):match("^/%S*sleep 1.5") end, 5))
    assert.equal(0, (cli { "teardown" }))
    local st = status()
    assert.is_true(st.up, "torn down under a running command")
    assert.same({ 0, 1 }, { st.refs.nets, st.refs.runs })
    assert.equal(1, #helper.processes("rootlessnetns-reaper"))
    assert.same({ "exited", 0 }, { proc:wait(10000) })
    assert.equal(0, #helper.settled_processes(pin, 0), "the backend outlived the last run")
    assert(helper.eventually(function() return core.lstat(pin) == nil end, 5), "the pin outlived the last run")
    assert.equal(0, #helper.settled(function() return helper.processes("rootlessnetns-reaper") end, 0))
    assert.is_false(status().up)
  end)

  userns_it("a SIGKILLed reaper is replaced by the next command", function()
    warm_up()
    local pin = fx.xdg .. "/rootlessnetns/rootless-netns/rootless-netns"
    local proc = helper.cli({ "run", "--", "sleep", "2" }, env, { wait = false })
    assert(helper.eventually(function() return cmdline(proc:pid()):match("^/%S*sleep 2") end, 5))
    assert.equal(0, (cli { "teardown" }))
    local reapers = helper.processes("rootlessnetns-reaper")
    assert.equal(1, #reapers)
    assert(core.kill(reapers[1], core.starttime(reapers[1]), core.SIGKILL))
    assert.equal(0, #helper.settled(function() return helper.processes("rootlessnetns-reaper") end, 0))
    assert.is_true(status().up)
    assert.equal(1, #helper.processes("rootlessnetns-reaper"), "status did not start another reaper")
    proc:wait(10000)
    assert.equal(0, #helper.settled_processes(pin, 0))
    assert(helper.eventually(function() return core.lstat(pin) == nil end, 5))
  end)

  userns_it("keeps a run's mounts from a concurrent run", function()
    warm_up()
    local a, adir = helper.cli({ "run", "--", "sh", "-c",
      "mount -t tmpfs spec-tmpfs /mnt && touch /mnt/mine && echo mounted && exec sleep 2" }, env, { wait = false })
    assert(helper.eventually(function() return helper.read(adir .. "/out") == "mounted\n" end, 5),
      "the first run could not mount: " .. tostring(helper.read(adir .. "/err")))
    local code, out, err = cli { "run", "--", "sh", "-c", "test -e /mnt/mine && echo seen || echo unseen" }
    assert.equal(0, code, err)
    assert.equal("unseen\n", out)
    a:kill(core.SIGTERM)
    a:wait()
  end)

  userns_it("takes a changed mount plan in the config on the next run", function()
    warm_up()
    local probe = { "run", "--", "sh", "-c", "grep -c ' /mnt ' /proc/self/mountinfo || true" }
    local code, out = cli(probe)
    assert.equal(0, code)
    assert.equal("0\n", out)
    local conf = home .. "/.config/rootlessnetns"
    assert(core.mkdir(home .. "/.config", tonumber("700", 8)))
    assert(core.mkdir(conf, tonumber("700", 8)))
    helper.write(conf .. "/config.lua", [[
return { mounts = function(plan)
  plan[#plan + 1] = { name = "spec", source = "tmpfs", target = "/mnt", fstype = "tmpfs", options = "mode=0755" }
  return plan
end }
]])
    for _ = 1, 2 do -- the run that notices, then a warm one
      code, out = cli(probe)
      assert.equal(0, code)
      assert.equal("1\n", out)
    end
    assert(core.unlink(conf .. "/config.lua"))
    code, out = cli(probe)
    assert.equal(0, code)
    assert.equal("0\n", out)
  end)

  userns_it("sees a changed host resolv.conf", function()
    local host = helper.tmpdir() .. "/resolv.conf"
    helper.write(host, "nameserver 192.0.2.1\n")
    local conf = home .. "/.config/rootlessnetns"
    assert(core.mkdir(home .. "/.config", tonumber("700", 8)))
    assert(core.mkdir(conf, tonumber("700", 8)))
    helper.write(conf .. "/config.lua", ("return { host_resolv_conf = %q }\n"):format(host))
    warm_up()
    local code, out = cli { "run", "--", "cat", "/etc/resolv.conf" }
    assert.equal(0, code)
    assert.matches("nameserver 192.0.2.1", out)
    helper.write(host, "nameserver 192.0.2.2\n")
    code, out = cli { "run", "--", "cat", "/etc/resolv.conf" }
    assert.equal(0, code)
    assert.matches("nameserver 192.0.2.2", out)
    assert.not_matches("192.0.2.1", out)
  end)

  userns_it("ends at a signal while it waits for the lock, and never runs the command", function()
    warm_up()
    local marker = helper.tmpdir() .. "/ran"
    local lock = assert(core.flock(fx.xdg .. "/rootlessnetns/lock", "ex"))
    local proc = helper.cli({ "run", "--", "touch", marker }, env, { wait = false })
    core.sleep(300)
    proc:kill(core.SIGTERM)
    local how, code = proc:wait(2000)
    lock:close()
    assert.same({ "exited", 143 }, { how, code })
    assert.is_nil(core.lstat(marker))
  end)

  userns_it("can call rootlessnetns from inside", function()
    warm_up()
    local code, out, err = cli { "run", "--", "lua5.4", helper.CLI, "status", "--json" }
    assert.equal(0, code, err)
    local nested = assert(cjson.decode(out))
    assert.is_true(nested.up)
    assert.equal(1, nested.refs.runs)
  end)
end)
