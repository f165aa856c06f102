-- Random SIGKILLs during random commands.  Bounded: ROOTLESSNETNS_CHAOS
-- iterations (default 300, about a minute).  Afterwards: no leaked
-- process, mount, pin or reference, and the next command works.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)
local ITERATIONS = tonumber(os.getenv("ROOTLESSNETNS_CHAOS")) or 300
-- `--backend pasta` while the namespace was built with another backend
local CONFLICT = "^rootlessnetns: the running rootless netns was built otherwise: "
  .. "backend is %S+, this command asks for pasta;[^\n]*\n$"

describe("chaos", function()
  -- a fresh XDG_RUNTIME_DIR, cleaned up even when an assertion fails
  local fx = helper.state_fixture(before_each, after_each)

  userns_it(("%d random commands, about half of them SIGKILLed"):format(ITERATIONS), function()
    local env = fx.env
    local base = fx.xdg .. "/rootlessnetns"
    local pin = base .. "/rootless-netns/rootless-netns"
    local commands = {
      { "run", "--", "sleep", "0.05" }, { "run", "--", "true" }, { "setup" }, { "teardown" },
      { "--backend", "pasta", "run", "--", "true" }, { "status" },
    }
    local seed = os.time()
    math.randomseed(seed)
    local outcomes = { killed = 0, ok = 0, refused = 0, failed = 0 }
    local failures = {}
    for i = 1, ITERATIONS do
      local args = commands[math.random(#commands)]
      local proc, dir = helper.cli(args, env, { wait = false })
      local kill = math.random() < 0.5
      if kill then
        core.sleep(math.random(0, 60))
        proc:kill(core.SIGKILL)
      end
      local how, code = proc:wait(60000)
      if how == "signaled" and code == core.SIGKILL then
        outcomes.killed = outcomes.killed + 1
      elseif how == "exited" and code == 0 then
        outcomes.ok = outcomes.ok + 1
      else
        local err = helper.read(dir .. "/err") or ""
        if args[1] == "--backend" and code == 125 and err:match(CONFLICT) then
          -- the promised refusal: pasta asked for while another backend serves
          outcomes.refused = outcomes.refused + 1
        else
          outcomes.failed = outcomes.failed + 1
          failures[#failures + 1] = ("%s: %s %s: %s"):format(table.concat(args, " "), how, code, err)
        end
      end
      core.rmtree(dir)
      if i % 25 == 0 then
        -- never two backends, never two holders (once signalled strays are gone)
        local backends = helper.eventually(function() return #helper.processes(pin) <= 1 end, 5)
        assert.is_truthy(backends, ("seed %d, iteration %d: two backends"):format(seed, i))
        local holders = helper.eventually(function() return #helper.holders(base) <= 1 end, 5)
        assert.is_truthy(holders, ("seed %d, iteration %d: two holders"):format(seed, i))
      end
    end
    -- commands that were not killed all worked
    assert.equal(0, outcomes.failed, ("seed %d: %d commands failed:\n%s"):format(seed, outcomes.failed,
      table.concat(failures, "\n", 1, math.min(#failures, 5))))
    -- a killed `run`'s command lives on (its reference with it) until it
    -- ends by itself: wait for the last `sleep 0.05` before counting
    helper.eventually(function() return #helper.processes("sleep\0000.05") == 0 end, 5)
    -- the next command works
    local code, out, err = helper.cli({ "run", "--", "ip", "route" }, env)
    assert.equal(0, code, err)
    assert.matches("^default", out)
    -- dropping every reference leaves nothing but the holder
    assert.equal(0, (helper.cli({ "teardown", "--nets", "65535" }, env)))
    assert.is_nil(core.lstat(pin))
    assert.same({}, helper.settled_processes(pin, 0))
    local st = require("cjson").decode((select(2, helper.cli({ "status", "--json" }, env))))
    assert.equal(0, st.refs.nets)
    assert.equal(0, st.refs.runs)
    assert.equal(1, #helper.settled_holders(base, 1))
    assert.equal(0, (helper.cli({ "cleanup" }, env)))
    assert.equal(0, #helper.settled_holders(base, 0))
  end)
end)
