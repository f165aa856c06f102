-- Waits end on a signal, and the lock is never held while a user's
-- command runs: the tool works from inside any command it runs.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

-- Generous bounds: a loaded CI machine must keep them.  The real latency
-- of an interrupted wait is well under a second.
local PROMPT_MS = 5000

describe("waits", function()
  local xdg, env, base
  before_each(function()
    xdg = helper.runtime_dir()
    env = { XDG_RUNTIME_DIR = xdg }
    base = xdg .. "/rootlessnetns"
  end)
  after_each(function()
    helper.cli({ "cleanup" }, env)
    helper.cleanup_dirs()
  end)

  local function start(args, extra)
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra or {}) do e[k] = v end
    return helper.cli(args, e, { wait = false })
  end

  local function finish(proc, dir, timeout)
    local how, code = proc:wait(timeout or 120000)
    if not how then
      proc:kill(core.SIGKILL)
      proc:wait()
      return nil, "still running", helper.read(dir .. "/err")
    end
    return how == "signaled" and 128 + code or code, helper.read(dir .. "/out"), helper.read(dir .. "/err")
  end

  --- Hold the state lock the way another command would.
  local function hold_lock()
    assert.equal(0, (helper.cli({ "status" }, env))) -- makes the state dir
    return assert(core.flock(base .. "/lock", "ex"))
  end

  for _, case in ipairs { { core.SIGINT, "SIGINT" }, { core.SIGTERM, "SIGTERM" }, { core.SIGHUP, "SIGHUP" } } do
    local sig, name = case[1], case[2]
    userns_it(name .. " while `run` waits for the lock ends it with 128+N; the command never starts", function()
      local lock <close> = hold_lock()
      local marker = helper.tmpdir() .. "/ran"
      local proc, dir = start { "--backend", "slirp4netns", "run", "--", "touch", marker }
      core.sleep(300)
      assert.equal("running", proc:poll(), "run did not wait for the lock")
      assert(proc:kill(sig))
      local code, _, err = finish(proc, dir, PROMPT_MS)
      assert.equal(128 + sig, code, err)
      assert.equal("", err)
      assert.is_nil(core.lstat(marker), "the command ran")
      lock:close()
    end)
  end

  userns_it("SIGINT while `status` and `netns add` wait for the lock: 130, no internal error", function()
    local lock <close> = hold_lock()
    for _, args in ipairs { { "status" }, { "cleanup" }, { "netns", "add", "w1" } } do
      local proc, dir = start(args)
      core.sleep(200)
      assert(proc:kill(core.SIGINT))
      local code, _, err = finish(proc, dir, PROMPT_MS)
      assert.equal(130, code, table.concat(args, " ") .. ": " .. tostring(err))
      assert.is_nil(tostring(err):find("internal error", 1, true), err)
    end
    lock:close()
  end)

  userns_it("SIGTERM during a slow backend start leaves no backend and no pin", function()
    local slow = helper.tmpdir()
    helper.write(slow .. "/slow_backend.lua", [[
local M = { name = "slow_backend" }
-- starts a process naming the pin (as a backend does), then never becomes ready
function M.start(ctx)
  local c = ctx.core
  local proc = assert(c.spawn { argv = { "tail", "-f", "/dev/null", ctx.paths.pin }, setsid = true,
    fds = { [0] = false, [1] = false, [2] = false } })
  assert(c.writefile(ctx.paths.pidfile, tostring(proc:pid()), tonumber("600", 8)))
  while true do
    local sig = ctx.signals and ctx.signals:wait(20) or c.sleep(20)
    if sig then
      proc:kill(c.SIGKILL)
      proc:wait()
      return nil, "interrupted", sig
    end
  end
end
return M
]])
    local proc, dir = start({ "--backend", "slow_backend", "setup" }, { LUA_PATH = slow .. "/?.lua;;" })
    local pin = base .. "/rootless-netns/rootless-netns"
    assert(helper.eventually(function() return core.lstat(base .. "/rootless-netns/rootless-netns-conn.pid") end, 20),
      "the backend never started")
    assert(proc:kill(core.SIGTERM))
    local code, _, err = finish(proc, dir, PROMPT_MS)
    assert.equal(143, code, err)
    assert.is_nil(core.lstat(pin), "pin left")
    assert.equal(0, #helper.settled_processes(pin, 0), "backend left running")
  end)

  userns_it("SIGTERM while pasta sets the namespace up ends the wait; no pasta, no pin", function()
    local dir = helper.tmpdir()
    -- a pasta that answers --help and then takes its time (as it does
    -- when it hangs)
    helper.write(dir .. "/pasta", "#!/bin/bash\n"
      .. "case \"$1\" in --help|--version) echo --map-guest-addr; exit 0 ;; esac\n"
      .. "exec -a rlns-fake-pasta sleep 3133\n", tonumber("755", 8))
    helper.write(dir .. "/config.lua", ("return { backend = 'pasta', pasta_path = %q }\n"):format(dir .. "/pasta"))
    local proc, out = start { "--config", dir .. "/config.lua", "run", "--", "true" }
    local pin = base .. "/rootless-netns/rootless-netns"
    assert(helper.eventually(function() return #helper.processes("rlns-fake-pasta") > 0 end, 20), "pasta never started")
    assert(proc:kill(core.SIGTERM))
    local code, _, err = finish(proc, out, PROMPT_MS)
    assert.equal(143, code, err)
    assert.equal("", err)
    assert.is_nil(core.lstat(pin), "pin left")
    assert.equal(0, #helper.settled(function() return helper.processes("rlns-fake-pasta") end, 0), "pasta left running")
  end)

  userns_it("SIGTERM while the id-map helpers run ends the wait; no holder is left", function()
    local dir = helper.tmpdir()
    for _, name in ipairs { "newuidmap", "newgidmap" } do
      helper.write(dir .. "/" .. name, "#!/bin/bash\nexec -a rlns-fake-idmap sleep 3134\n", tonumber("755", 8))
    end
    local proc, out = start({ "--backend", "slirp4netns", "run", "--", "true" },
      { PATH = dir .. ":" .. os.getenv("PATH") })
    assert(helper.eventually(function() return #helper.processes("rlns-fake-idmap") > 0 end, 20), "no helper started")
    assert(proc:kill(core.SIGTERM))
    local code, _, err = finish(proc, out, PROMPT_MS)
    assert.equal(143, code, err)
    assert.equal("", err)
    assert.equal(0, #helper.settled_holders(base, 0), "holder left")
    assert.equal(0, #helper.settled(function() return helper.processes("rlns-fake-idmap") end, 0), "helper left")
  end)

  userns_it("`setup -- rootlessnetns status` finishes and shows the namespace up", function()
    local code, out, err = helper.cli({ "--backend", "slirp4netns", "setup", "--", "lua5.4", helper.CLI, "status" },
      env, { timeout = 60000 })
    assert.equal(0, code, err)
    assert.matches("state%s+up", out)
    assert.matches("runs 1", out)
    local st
    code, st = helper.cli({ "status" }, env)
    assert.equal(0, code)
    assert.matches("nets 1, runs 0", st)
  end)

  userns_it("`teardown -- rootlessnetns status` finishes; the namespace goes once the command is done", function()
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, env)))
    local code, out, err = helper.cli({ "teardown", "--", "lua5.4", helper.CLI, "status" }, env, { timeout = 60000 })
    assert.equal(0, code, err)
    assert.matches("state%s+up", out)
    local pin = base .. "/rootless-netns/rootless-netns"
    assert.is_nil(core.lstat(pin), "pin left")
    assert.equal(0, #helper.settled_processes(pin, 0), "backend left running")
  end)

  userns_it("a namespace added from inside `run` is there for everyone afterwards", function()
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, env)))
    local code, _, err = helper.cli({ "run", "--", "lua5.4", helper.CLI, "netns", "add", "web" }, env)
    assert.equal(0, code, err)
    code, _, err = helper.cli({ "run", "--", "lua5.4", helper.CLI, "netns", "exec", "web", "true" }, env)
    assert.equal(0, code, err)
    local out
    code, out, err = helper.cli({ "netns", "exec", "web", "ip", "-o", "link", "show", "lo" }, env)
    assert.equal(0, code, err)
    assert.matches("UP", out)
    code, out = helper.cli({ "netns", "list" }, env)
    assert.equal(0, code)
    assert.matches("web%s+live", out)
  end)

  userns_it("`cleanup` from inside `run` removes everything, holder and backend included", function()
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, env)))
    local code, _, err = helper.cli({ "run", "--", "lua5.4", helper.CLI, "cleanup" }, env, { timeout = 60000 })
    assert.equal(0, code, err)
    assert.equal("", err)
    local pin = base .. "/rootless-netns/rootless-netns"
    assert.equal(0, #helper.settled_processes(pin, 0), "backend left running")
    assert.equal(0, #helper.settled_holders(base, 0), "holder left running")
    local _, out = helper.cli({ "status" }, env)
    assert.matches("state%s+down", out)
  end)

  userns_it("a failed `setup -- CMD` that created the namespace leaves nothing", function()
    local code = helper.cli({ "--backend", "slirp4netns", "setup", "--", "false" }, env, { timeout = 60000 })
    assert.equal(1, code)
    local pin = base .. "/rootless-netns/rootless-netns"
    assert.is_nil(core.lstat(pin), "pin left")
    assert.equal(0, #helper.settled_processes(pin, 0), "backend left running")
  end)
end)
