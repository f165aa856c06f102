local core = require "rootlessnetns"
local helper = require "helper"

describe("flock", function()
  local dir
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.cleanup_dirs() end)

  -- A child process takes the lock and holds it until we close its pipe.
  local function holder_process(path, mode)
    local r, w = core.pipe()
    local ready_r, ready_w = core.pipe()
    local pid = assert(core.fork())
    if pid == 0 then
      w:close()
      ready_r:close()
      local lock = assert(core.flock(path, mode))
      ready_w:write("1")
      r:read(1)
      lock:close()
      core._exit(0)
    end
    r:close()
    ready_w:close()
    assert.equal("1", ready_r:read(1, 5000))
    ready_r:close()
    return w, assert(core.process(pid))
  end

  it("excludes a second process while held, and is free once released", function()
    local path = dir .. "/lock"
    local release, proc = holder_process(path, "ex")
    local lock, msg, code = core.flock(path, "ex", true)
    assert.is_nil(lock)
    assert.matches("^lock `.*`: ", msg)
    assert.equal(core.errno.EWOULDBLOCK, code)
    release:close()
    proc:wait()
    lock = assert(core.flock(path, "ex", true))
    lock:close()
  end)

  it("lets shared holders share and keeps an exclusive one out", function()
    local path = dir .. "/lock"
    local release, proc = holder_process(path, "sh")
    local shared = assert(core.flock(path, "sh", true))
    assert.is_nil((core.flock(path, "ex", true)))
    shared:close()
    release:close()
    proc:wait()
  end)

  it("is released by <close>", function()
    local path = dir .. "/lock"
    do
      local _ <close> = assert(core.flock(path))
    end
    local pid = assert(core.fork())
    if pid == 0 then core._exit(core.flock(path, "ex", true) and 0 or 1) end
    assert.same({ "exited", 0 }, { assert(core.process(pid)):wait() })
  end)

  it("creates the lock file 0600 and never through a symlink", function()
    local path = dir .. "/lock"
    assert(core.flock(path)):close()
    assert.equal(tonumber("600", 8), core.lstat(path).mode)
    assert(core.symlink(path, dir .. "/link"))
    local lock, _, code = core.flock(dir .. "/link")
    assert.is_nil(lock)
    assert.equal(core.errno.ELOOP, code)
  end)

  it("locks a directory too", function()
    assert(core.flock(dir)):close()
  end)

  it("reports a missing directory and rejects a bad mode", function()
    local lock, _, code = core.flock(dir .. "/missing/lock")
    assert.is_nil(lock)
    assert.equal(core.errno.ENOENT, code)
    assert.has_error(function() core.flock(dir .. "/l", "both") end)
  end)
end)
