-- Racing commands: parallel first use, setup/teardown storms, teardown
-- racing runs.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

describe("concurrency", function()
  local xdg, env, base, pin
  before_each(function()
    xdg = helper.runtime_dir()
    env = { XDG_RUNTIME_DIR = xdg }
    base = xdg .. "/rootlessnetns"
    pin = base .. "/rootless-netns/rootless-netns"
  end)
  after_each(function()
    helper.cli({ "cleanup" }, env)
    helper.cleanup_dirs()
  end)

  local function start(args)
    return helper.cli(args, env, { wait = false })
  end

  local function finish(proc, dir)
    local how, code = proc:wait(120000)
    return how == "signaled" and 128 + code or code, helper.read(dir .. "/out"), helper.read(dir .. "/err")
  end

  userns_it("many parallel runs from a cold start share one holder and one backend", function()
    local procs = {}
    for i = 1, 12 do
      local p, dir = start { "--backend", "slirp4netns", "run", "--", "sh", "-c",
        'sleep 1; cat "$XDG_RUNTIME_DIR/rootlessnetns/rootless-netns/rootless-netns-conn.pid"' }
      procs[i] = { p, dir }
    end
    local pids = {}
    for _, pd in ipairs(procs) do
      local code, out, err = finish(pd[1], pd[2])
      assert.equal(0, code, err)
      pids[out] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.equal(1, n, "more than one backend served the overlapping runs")
    assert.equal(1, #helper.settled_holders(base, 1))
    assert.is_nil(core.lstat(pin))
    assert.same({}, helper.settled_processes(pin, 0))
  end)

  userns_it("setup/teardown storms end at zero with nothing left", function()
    local procs = {}
    for i = 1, 6 do
      local p, dir = start { "--backend", "slirp4netns", "setup" }
      procs[#procs + 1] = { p, dir }
      if i % 2 == 0 then core.sleep(5) end
    end
    for _, pd in ipairs(procs) do assert.equal(0, (finish(pd[1], pd[2]))) end
    procs = {}
    for _ = 1, 6 do
      local p, dir = start { "teardown" }
      procs[#procs + 1] = { p, dir }
      p, dir = start { "run", "--", "true" }
      procs[#procs + 1] = { p, dir }
    end
    for _, pd in ipairs(procs) do assert.equal(0, (finish(pd[1], pd[2]))) end
    -- (a teardown to zero under warm runs leaves the cleanup to the
    -- reaper, after the last of them: it takes a moment to notice)
    assert.truthy(helper.eventually(function() return core.lstat(pin) == nil end, 5), "the namespace stayed up")
    assert.same({}, helper.settled_processes(pin, 0))
  end)

  userns_it("a teardown racing runs never leaves a run in a half-built namespace", function()
    -- each run checks what it got; 3 would mean it ran without resolv.conf or a route
    local check = "grep -q '^nameserver' /etc/resolv.conf && ip route | grep -q '^default' || exit 3"
    local procs = {}
    for round = 1, 4 do
      procs[#procs + 1] = { start { "--backend", "slirp4netns", "setup" } }
      for _ = 1, 3 do procs[#procs + 1] = { start { "run", "--", "sh", "-c", check } } end
      procs[#procs + 1] = { start { "teardown" } }
      if round % 2 == 0 then core.sleep(20) end
    end
    for _, pd in ipairs(procs) do
      local code, _, err = finish(pd[1], pd[2])
      assert.is_true(code == 0, ("exit %d: %s"):format(code, err or ""))
    end
  end)
end)
