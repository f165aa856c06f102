-- Forked workers: results come back exactly, failures come back as
-- messages, signals reach the worker, and the caller keeps nothing.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"
local worker = require "rootlessnetns.worker"

describe("worker.call", function()
  it("brings results back with their types, holes and cjson.null", function()
    local r = table.pack(worker.call(nil, function(a)
      return nil, a, 130, 1.5, { list = { 1, "two", cjson.null }, ["key with \n"] = true }, nil
    end, "arg"))
    assert.equal(6, r.n)
    assert.is_nil(r[1])
    assert.equal("arg", r[2])
    assert.equal("integer", math.type(r[3]))
    assert.equal(130, r[3])
    assert.equal(1.5, r[4])
    assert.same({ list = { 1, "two", cjson.null }, ["key with \n"] = true }, r[5])
  end)

  it("changes of the worker's stay in the worker", function()
    local mine = core.readlink("/proc/self/cwd")
    assert.is_true(worker.call(nil, function()
      assert(core.chdir("/"))
      _G.rlns_worker_spec_global = 1
      return true
    end))
    assert.equal(mine, core.readlink("/proc/self/cwd"))
    assert.is_nil(rawget(_G, "rlns_worker_spec_global"))
  end)

  it("a report bigger than a pipe holds comes back whole", function()
    local big = ("x"):rep(1 << 20)
    assert.equal(#big, #worker.call(nil, function() return big end))
  end)

  it("a Lua error, an unsendable result and a killed worker are messages", function()
    local ok, err = worker.call(nil, function() error("boom", 0) end)
    assert.is_nil(ok)
    assert.equal("boom", err)
    ok, err = worker.call(nil, function() return print end)
    assert.is_nil(ok)
    assert.equal("a result cannot be a function", err)
    ok, err = worker.call(nil, function() core.kill(core.getpid(), core.starttime(core.getpid()), core.SIGKILL) end)
    assert.is_nil(ok)
    assert.equal("rootlessnetns worker killed by signal 9", err)
  end)

  it("passes the caller's signals on to the worker", function()
    local res = assert(helper.in_child(function()
      local signals <close> = core.block_signals { core.SIGTERM }
      local killer = assert(core.spawn { argv = { "sh", "-c", ("sleep 0.2; kill -TERM %d"):format(core.getpid()) } })
      local got = worker.call(signals, function() return signals:wait(20000) end)
      killer:wait()
      return { got = got }
    end))
    assert.equal(core.SIGTERM, res.got)
  end)

  it("leaves no descriptor behind", function()
    local before = helper.fd_count()
    for _ = 1, 20 do worker.call(nil, function() return true end) end
    assert.equal(before, helper.fd_count())
  end)
end)

describe("worker.wrap", function()
  it("runs a method in a worker unless the handle joins in-process", function()
    local Class = {}
    Class.__index = Class
    function Class:where(x) return core.getpid(), x, self.in_process end
    worker.wrap(Class, { "where" })
    local me = core.getpid()
    local pid, x, marked = setmetatable({}, Class):where(5)
    assert.is_true(pid ~= me)
    assert.equal(5, x)
    assert.is_true(marked)
    pid = setmetatable({ in_process = true }, Class):where(5)
    assert.equal(me, pid)
  end)
end)
