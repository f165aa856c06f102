local core = require "rootlessnetns"

describe("process identity", function()
  it("reads this process's start time and state", function()
    local st, state = core.starttime(core.getpid())
    assert.is_true(math.type(st) == "integer" and st > 0)
    assert.equal("R", state)
    assert.is_true(core.alive(core.getpid(), st))
  end)

  it("signals a process only while its start time matches", function()
    local p = assert(core.spawn { argv = { "sleep", "10" } })
    local st = assert(core.starttime(p:pid()))
    -- a wrong start time stands for a reused pid: ESRCH, and no signal sent
    local ok, msg, code = core.kill(p:pid(), st + 1, core.SIGKILL)
    assert.is_nil(ok)
    assert.matches("No such process", msg)
    assert.equal(core.errno.ESRCH, code)
    assert.is_false(core.alive(p:pid(), st + 1))
    assert.equal("running", p:poll())
    assert.is_true(core.kill(p:pid(), st, core.SIGTERM))
    assert.same({ "signaled", core.SIGTERM }, { p:wait(5000) })
  end)

  it("treats a zombie as dead", function()
    local pid = assert(core.fork())
    if pid == 0 then core._exit(0) end
    local p = assert(core.process(pid))
    local st
    repeat
      local s, state = core.starttime(pid)
      st = s
    until state == "Z"
    assert.is_false(core.alive(pid, st))
    assert.is_nil((core.kill(pid, st, 0)))
    p:wait()
  end)

  it("says ESRCH for a pid that does not exist", function()
    local st, _, code = core.starttime(0x7ffffffe)
    assert.is_nil(st)
    assert.equal(core.errno.ESRCH, code)
    assert.is_false(core.alive(0x7ffffffe, 1))
  end)

  it("rejects bad pids and signals", function()
    assert.has_error(function() core.starttime(0) end)
    assert.has_error(function() core.kill(1, 1, 99) end)
    assert.has_error(function() core.alive("x", 1) end)
  end)

  it("exports errno and signal numbers", function()
    assert.equal(2, core.errno.ENOENT)
    assert.equal(15, core.SIGTERM)
    assert.equal("No such file or directory", core.strerror(core.errno.ENOENT))
  end)
end)
