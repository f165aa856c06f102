-- Crashes, dead helpers, reused pids and damaged state: after any of them
-- the next command works and leaves exactly one holder, one pin, one
-- backend and the right count.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

local FAULT_POINTS = {
  "holder-created", "holder-recorded", "netns-before-create", "netns-placeholder", "netns-created",
  "backend-spawned", "backend-recorded", "setup-before-count",
}

for _, backend in ipairs { "slirp4netns", "pasta" } do
  describe("recovery with " .. backend, function()
    local xdg, env, paths

    local cli = helper.cli_with({ "--backend", backend }, function() return env end)

    local function status()
      local _, out = cli { "status", "--json" }
      return assert(cjson.decode(out or ""), "status --json: " .. tostring(out))
    end

    -- exactly one holder, one pin, one backend, and @nets references
    local function assert_one_of_each(nets)
      local st = status()
      assert.is_true(st.up, "not up")
      assert.equal(nets, st.refs.nets)
      assert.equal(1, #helper.settled_holders(paths.base, 1), "holders")
      assert.equal(1, helper.mounts_in(st.holder.pid, paths.pin), "pin mounts")
      assert.equal(1, #helper.settled_processes(paths.pin, 1), "backend processes")
    end

    local function assert_all_gone()
      assert.is_nil(core.lstat(paths.pin), "pin left")
      assert.equal(0, #helper.settled_processes(paths.pin, 0), "backend left running")
    end

    before_each(function()
      xdg = helper.runtime_dir()
      env = { XDG_RUNTIME_DIR = xdg }
      local base = xdg .. "/rootlessnetns"
      paths = {
        base = base, pin = base .. "/rootless-netns/rootless-netns",
        backend = base .. "/rootless-netns/backend.json", pidfile = base .. "/rootless-netns/rootless-netns-conn.pid",
        holder = base .. "/holder.json", count = base .. "/rootless-netns/ref-count",
        info = base .. "/rootless-netns/info.json",
      }
    end)

    after_each(function()
      helper.cli({ "cleanup" }, env)
      helper.cleanup_dirs()
    end)

    for _, point in ipairs(FAULT_POINTS) do
      userns_it("survives a SIGKILL at " .. point, function()
        local code = cli({ "setup" }, { ROOTLESSNETNS_FAULT = point })
        assert.equal(128 + core.SIGKILL, code, "the fault point was not reached")
        local err
        code, _, err = cli { "setup" }
        assert.equal(0, code, err)
        assert_one_of_each(1)
        assert.equal(0, (cli { "teardown" }))
        assert_all_gone()
      end)
    end

    local TEARDOWN_POINTS = { "cleanup-start", "cleanup-unmounted", "cleanup-backend-stopped", "teardown-before-count" }
    for _, point in ipairs(TEARDOWN_POINTS) do
      userns_it("survives a SIGKILL at " .. point .. " during teardown", function()
        assert.equal(0, (cli { "setup" }))
        assert.equal(128 + core.SIGKILL, (cli({ "teardown" }, { ROOTLESSNETNS_FAULT = point })))
        local code, _, err = cli { "setup" }
        assert.equal(0, code, err)
        assert_one_of_each(point == "teardown-before-count" and 2 or 1)
        assert.equal(0, (cli { "teardown", "--nets", "2" }))
        assert_all_gone()
      end)
    end

    userns_it("every command finds a live holder whose record was lost", function()
      assert.equal(0, (cli { "setup", "--nets", "2" }))
      local before = status()
      assert(core.unlink(paths.holder))
      local st = status()
      assert.is_true(st.up, "status said down")
      assert.equal(before.holder.pid, st.holder.pid)
      assert(core.unlink(paths.holder))
      assert.equal(0, (cli { "teardown" }))
      st = status()
      assert.is_true(st.up, "one teardown of two setups took it down")
      assert.equal(1, st.refs.nets)
      assert.equal(before.backend.pid, st.backend.pid)
      assert_one_of_each(1)
    end)

    userns_it("restarts a killed backend into the same namespace, with a warning", function()
      assert.equal(0, (cli { "setup" }))
      local before = status()
      local st = assert(core.starttime(before.backend.pid))
      assert(core.kill(before.backend.pid, st, core.SIGKILL))
      helper.eventually(function() return not core.alive(before.backend.pid, st) end, 5)
      local code, out, err = cli { "run", "--", "ip", "-o", "route", "show", "default" }
      assert.equal(0, code, err)
      assert.matches("default via", out)
      assert.matches("backend %(pid %d+%) is gone; restarting it", err)
      local after = status()
      assert.are_not.equal(before.backend.pid, after.backend.pid)
      assert.equal(tostring(math.tointeger(after.backend.pid)), helper.read(paths.pidfile))
      assert_one_of_each(1)
    end)

    -- set up, then SIGKILL the holder; returns the status from before and
    -- a check that the orphaned backend is gone
    local function setup_and_kill_holder()
      assert.equal(0, (cli { "setup" }))
      local before = status()
      local hst = assert(core.starttime(before.holder.pid))
      local bst = assert(core.starttime(before.backend.pid))
      helper.kill_and_wait(before.holder.pid, hst)
      return before, function()
        return helper.eventually(function() return not core.alive(before.backend.pid, bst) end, 5)
      end
    end

    userns_it("rebuilds after the holder is SIGKILLed and stops the orphaned backend", function()
      local before, orphan_gone = setup_and_kill_holder()
      local code, _, err = cli { "setup" }
      assert.equal(0, code, err)
      assert.matches("previous holder died", err)
      local after = status()
      assert.are_not.equal(before.holder.pid, after.holder.pid)
      assert.is_truthy(orphan_gone(), "the orphaned backend still runs")
      assert.equal(1, #helper.processes(paths.pin))
      assert.equal(1, #helper.settled_holders(paths.base, 1))
    end)

    userns_it("keeps the old backend for a command still inside a dead holder's namespace, then stops it", function()
      assert.equal(0, (cli { "setup" }))
      local inside, idir = helper.cli({ "--backend", backend, "run", "--", "sleep", "3137" }, env, { wait = false })
      assert(helper.eventually(function() return status().refs.runs == 1 end, 10), "the run never started")
      local sleeper = helper.processes("/sleep\0" .. "3137")[1]
      finally(function()
        inside:kill(core.SIGKILL)
        inside:wait()
        local st = sleeper and core.starttime(sleeper)
        if st then core.kill(sleeper, st, core.SIGKILL) end
      end)
      local before, orphan_gone = setup_and_kill_holder()
      local code, _, err = cli { "run", "--", "true" }
      assert.equal(0, code, err)
      assert.matches("1 process still inside the old namespace keeps the old network", err)
      local bst = assert(core.starttime(before.backend.pid), "the old backend was stopped under the command")
      -- the backend's interface (tap0, or pasta's copy of the host's) is still there
      local links = helper.read(("/proc/%d/net/dev"):format(sleeper)) or ""
      assert.matches("\n%s*[%w.-]+:.*\n%s*[%w.-]+:", links, nil, false, "only lo is left: " .. links)
      assert.equal(0, (cli { "status" }))
      assert.equal(bst, core.starttime(before.backend.pid), "status stopped the old backend too early")
      inside:kill(core.SIGTERM)
      assert.same({ "exited", 143 }, { inside:wait() }, helper.read(idir .. "/err"))
      helper.settled(function() return helper.processes("/sleep\0" .. "3137") end, 0)
      assert.equal(0, (cli { "status" }))
      assert.is_truthy(orphan_gone(), "the old backend outlived the last command in its namespace")
    end)

    userns_it("teardown after the holder died stops the orphaned backend", function()
      local _, orphan_gone = setup_and_kill_holder()
      local code, _, err = cli { "teardown" }
      assert.equal(0, code, err)
      assert.is_truthy(orphan_gone(), "the orphaned backend still runs")
      assert_all_gone()
      assert.equal(0, #helper.settled_holders(paths.base, 0))
    end)

    userns_it("replaces a plain file left at the pin", function()
      assert(core.mkdir(paths.base, tonumber("700", 8)))
      assert(core.mkdir(paths.base .. "/rootless-netns", tonumber("700", 8)))
      helper.write(paths.pin, "")
      local code, _, err = cli { "setup" }
      assert.equal(0, code, err)
      assert.matches("not a live namespace", err)
      assert_one_of_each(1)
    end)

    userns_it("never signals an unrelated process named by the records", function()
      assert.equal(0, (cli { "setup" }))
      local rec = cjson.decode(helper.read(paths.backend))
      rec.pid, rec.starttime = math.tointeger(rec.pid), math.tointeger(rec.starttime)
      -- a stranger started in another clock tick than the backend
      local bystander, st
      repeat
        if bystander then bystander:kill(core.SIGKILL) bystander:wait() core.sleep(15) end
        bystander = assert(core.spawn { argv = { "sleep", "60" } })
        st = assert(core.starttime(bystander:pid()))
      until st ~= rec.starttime
      -- the backend "died" and its pid now names a stranger with another start time
      helper.kill_and_wait(rec.pid, rec.starttime)
      rec.pid = bystander:pid()
      assert(core.writefile(paths.backend, cjson.encode(rec)))
      assert(core.writefile(paths.pidfile, tostring(bystander:pid())))
      local code = cli { "status", "--json" }
      assert.equal(0, code)
      assert.is_false(status().backend.alive)
      assert.equal(0, (cli { "run", "--", "true" }))
      assert.equal(0, (cli { "teardown" }))
      assert.is_true(core.alive(bystander:pid(), st), "the bystander was signalled")
      bystander:kill(core.SIGKILL)
      bystander:wait()
    end)

    local garbage = { "", "abc", "-1", "0", "4294967296", "{\"pid\": 1.5}", "[]",
      '{"IPAddresses":[{}],"DnsForwardIps":"x","MapGuestIps":[1],"pid":"7","starttime":[],"name":{}}' }
    for _, junk in ipairs(garbage) do
      userns_it(("repairs state files holding %q"):format(junk), function()
        assert.equal(0, (cli { "setup" }))
        for _, f in ipairs { paths.backend, paths.pidfile, paths.holder, paths.count, paths.info } do
          -- (a number is a valid count, kept as it is: not junk there)
          if not (f == paths.count and junk:match("^%d+$")) then helper.write(f, junk) end
        end
        local code, _, err = cli { "setup" }
        assert.equal(0, code, err)
        assert.is_nil(err:match("traceback"), err)
        for line in err:gmatch("[^\n]+") do
          assert.matches("^rootlessnetns: warning: ", line)
        end
        code, _, err = cli { "info" }
        assert.equal(0, code, err)
        assert.equal(0, (cli { "teardown", "--nets", "5" }))
        assert_all_gone()
      end)
    end

    userns_it("leaves nothing usable when the backend fails, with its message", function()
      local dir = helper.tmpdir()
      local fake = dir .. "/" .. backend
      helper.write(fake, "#!/bin/sh\n"
        .. "case \"$*\" in *--help*)\n"
        .. "  echo '--disable-host-loopback --mtu --enable-sandbox --enable-seccomp --enable-ipv6'; exit 0;;\n"
        .. "esac\n"
        .. "echo 'WARNING: Support for seccomp is experimental' >&2\n"
        .. "printf 'cannot open /dev/net/tun: Permission denied (fake)\\033[0m\\n' >&2\n"
        .. "echo 'WARNING: Support for IPv6 is experimental' >&2; exit 1\n", tonumber("755", 8))
      local cfgfile = dir .. "/config.lua"
      helper.write(cfgfile, ("return { %s_path = %q }\n"):format(backend, fake))
      local code, _, err = cli { "--config", cfgfile, "setup" }
      assert.equal(125, code)
      assert.matches("cannot open /dev/net/tun: Permission denied %(fake%)\\x1b%[0m %(hint: /dev/net/tun", err)
      assert.matches("^rootlessnetns: [^\n]+\n$", err, nil, false)
      assert.is_nil(core.lstat(paths.pin))
      assert.is_nil(core.lstat(paths.count))
      code, _, err = cli { "setup" }
      assert.equal(0, code, err)
      assert_one_of_each(1)
    end)

    userns_it("reports a custom backend that raises as a failed start, leaving nothing", function()
      local dir = helper.tmpdir()
      helper.write(dir .. "/config.lua",
        'return { backend = { name = "boom", start = function() error("kaput") end } }\n')
      local code, _, err = helper.cli({ "--config", dir .. "/config.lua", "run", "--", "true" }, env)
      assert.equal(125, code)
      assert.matches("^rootlessnetns: rootless netns: start boom: .*kaput\n$", err)
      assert.is_nil(core.lstat(paths.pin))
      code, _, err = cli { "setup" }
      assert.equal(0, code, err)
      assert.is_nil(err:find("gone", 1, true), "the failed start left a usable-looking namespace")
    end)

    userns_it("teardown never starts a backend", function()
      assert.equal(0, (cli { "setup" }))
      local st = status()
      local bst = assert(core.starttime(st.backend.pid))
      assert(core.kill(st.backend.pid, bst, core.SIGKILL))
      helper.eventually(function() return not core.alive(st.backend.pid, bst) end, 5)
      local dir = helper.tmpdir()
      local marker = dir .. "/started"
      local fake = dir .. "/fake"
      helper.write(fake, "#!/bin/sh\ntouch " .. marker .. "\nexit 1\n", tonumber("755", 8))
      helper.write(dir .. "/config.lua", ("return { %s_path = %q }\n"):format(backend, fake))
      local code, _, err = cli { "--config", dir .. "/config.lua", "teardown" }
      assert.equal(0, code, err)
      assert.is_nil(core.lstat(marker), "teardown started a backend")
      assert_all_gone()
    end)

    userns_it("counts a retried teardown once", function()
      assert.equal(0, (cli { "setup", "--nets", "2" }))
      local code = cli { "teardown", "--", "false" }
      assert.equal(1, code)
      assert.equal(2, status().refs.nets)
      assert.equal(0, (cli { "teardown", "--", "true" }))
      assert.equal(1, status().refs.nets)
    end)

    userns_it("reaps the reference of a SIGKILLed run", function()
      assert.equal(0, (cli { "setup" }))
      local run = helper.cli({ "--backend", backend, "run", "--", "sleep", "2" }, env, { wait = false })
      assert.is_truthy(helper.eventually(function() return status().refs.runs == 1 end, 10))
      run:kill(core.SIGKILL)
      run:wait()
      -- the command itself still runs: its record stays until it ends
      assert.equal(1, status().refs.runs)
      assert.is_truthy(helper.eventually(function() return status().refs.runs == 0 end, 10))
      assert.equal(0, (cli { "teardown" }))
      assert_all_gone()
    end)
  end)
end
