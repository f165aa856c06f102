local core = require "rootlessnetns"
local helper = require "helper"

local function capture(opts)
  local r, w = core.pipe()
  opts.fds = opts.fds or {}
  opts.fds[1] = w
  local proc, err, code = core.spawn(opts)
  w:close()
  if not proc then r:close() return nil, err, code end
  local out = r:readall(10000)
  r:close()
  local how, status = proc:wait(10000)
  return out, how, status
end

describe("spawn", function()
  it("runs true and false and reports their exit statuses", function()
    local p = assert(core.spawn { argv = { "true" } })
    assert.same({ "exited", 0 }, { p:wait() })
    p = assert(core.spawn { argv = { "false" } })
    assert.same({ "exited", 1 }, { p:wait() })
  end)

  it("reports a missing binary through the exec pipe as ENOENT", function()
    local p, msg, code = core.spawn { argv = { "/nonexistent/rlns-binary" } }
    assert.is_nil(p)
    assert.equal("exec `/nonexistent/rlns-binary`: No such file or directory", msg)
    assert.equal(core.errno.ENOENT, code)
  end)

  it("reports a file that is not executable as EACCES", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/script", "#!/bin/sh\n", tonumber("644", 8))
    local p, _, code = core.spawn { argv = { dir .. "/script" } }
    helper.cleanup_dirs()
    assert.is_nil(p)
    assert.equal(core.errno.EACCES, code)
  end)

  it("reports a bad cwd as the chdir step", function()
    local p, msg, code = core.spawn { argv = { "true" }, cwd = "/nonexistent/dir" }
    assert.is_nil(p)
    assert.matches("^chdir", msg)
    assert.equal(core.errno.ENOENT, code)
  end)

  it("maps descriptors and closes every other one", function()
    local extra_r, extra_w = core.pipe()
    local r3, w3 = core.pipe()
    local out = capture { argv = { "sh", "-c", "echo via3 >&3; ls /proc/self/fd" }, fds = { [3] = w3 } }
    w3:close()
    assert.equal("via3\n", r3:readall(1000))
    -- 0, 1, 2, 3 and the fd ls opens for the listing: nothing of ours
    local fds = {}
    for n in out:gmatch("%d+") do fds[#fds + 1] = tonumber(n) end
    table.sort(fds)
    assert.same({ 0, 1, 2, 3, 4 }, fds)
    extra_r:close(); extra_w:close(); r3:close()
  end)

  it("can put /dev/null on a descriptor", function()
    local out = capture { argv = { "sh", "-c", "cat; echo done" }, fds = { [0] = false } }
    assert.equal("done\n", out)
  end)

  it("passes env as a list or a map, and cwd", function()
    assert.equal("a-b\n",
      capture { argv = { "sh", "-c", 'echo "$X-$Y"' }, env = { "X=a", Y = "b", PATH = "/usr/bin:/bin" } })
    assert.equal("/tmp\n", capture { argv = { "pwd" }, cwd = "/tmp" })
  end)

  it("starts a new session on request", function()
    local out = capture { argv = { "sh", "-c", "echo $$; cat /proc/$$/stat" }, setsid = true }
    local pid, stat = out:match("^(%d+)\n(.*)$")
    -- fields after the command name: state ppid pgrp session
    local sid = stat:match("%) %S+ %d+ %d+ (%d+)")
    assert.equal(pid, sid)
  end)

  it("resets blocked signals in the child", function()
    local blocked <close> = core.block_signals { core.SIGTERM }
    assert.is_truthy(blocked)
    local p = assert(core.spawn { argv = { "sleep", "10" } })
    assert.is_true(p:kill(core.SIGTERM))
    assert.same({ "signaled", core.SIGTERM }, { p:wait(5000) })
  end)

  it("waits with a timeout and kills through the pidfd", function()
    local p = assert(core.spawn { argv = { "sleep", "10" } })
    local how, msg, code = p:wait(30)
    assert.is_nil(how)
    assert.matches("timed out", msg)
    assert.equal(core.errno.ETIMEDOUT, code)
    assert.equal("running", p:poll())
    assert.is_true(p:kill(core.SIGKILL))
    assert.same({ "signaled", core.SIGKILL }, { p:wait() })
    -- reaped: a second kill must not hit a reused pid
    local ok, _, kcode = p:kill(core.SIGKILL)
    assert.is_nil(ok)
    assert.equal(core.errno.ESRCH, kcode)
  end)

  it("forwards blocked signals to the process it waits for", function()
    local sigs <close> = core.block_signals { core.SIGUSR1 }
    local p = assert(core.spawn { argv = { "sleep", "10" } })
    local killer = assert(core.spawn { argv = { "sh", "-c", "sleep 0.1; kill -USR1 " .. core.getpid() } })
    assert.same({ "signaled", core.SIGUSR1 }, { p:wait(5000, sigs) })
    killer:wait()
  end)

  it("leaks no descriptor, whether exec succeeds or fails", function()
    collectgarbage()
    local before = helper.fd_count()
    for _ = 1, 20 do
      local p = core.spawn { argv = { "true" } }
      p:wait()
      p:close()
      core.spawn { argv = { "/nonexistent" } }
    end
    collectgarbage()
    assert.equal(before, helper.fd_count())
  end)

  it("fork gives the child 0 and the parent a pid it can wait for", function()
    local pid = assert(core.fork())
    if pid == 0 then core._exit(3) end
    local p = assert(core.process(pid))
    assert.same({ "exited", 3 }, { p:wait() })
  end)

  it("exec reports failure in the calling process", function()
    local pid = assert(core.fork())
    if pid == 0 then
      local ok, _, code = core.exec { "/nonexistent/x" }
      core._exit(ok == nil and code == core.errno.ENOENT and 42 or 1)
    end
    assert.same({ "exited", 42 }, { assert(core.process(pid)):wait() })
  end)

  it("exec hands a signal still pending to its default action, not to lua5.4's handler", function()
    -- (lua5.4 catches SIGINT while it runs a chunk: caught, the signal
    -- would be lost and the program run as if nobody had pressed ^C)
    local script = ('package.cpath = %q; local core = require "rootlessnetns"; '
      .. 'local set = core.block_signals { core.SIGINT }; '
      .. 'core.kill(core.getpid(), core.starttime(core.getpid()), core.SIGINT); '
      .. 'core.exec { "true" }'):format(package.cpath)
    local p = assert(core.spawn { argv = { "lua5.4", "-e", script } })
    assert.same({ "signaled", core.SIGINT }, { p:wait() })
  end)

  it("rejects malformed options by raising", function()
    assert.has_error(function() core.spawn {} end, "bad spawn option 'argv' (table expected)")
    assert.has_error(function() core.spawn { argv = {} } end, "bad spawn option 'argv' (empty list)")
    assert.has_error(function() core.spawn { argv = { 1 } } end)
    assert.has_error(function() core.spawn { argv = { "true" }, fds = { x = 1 } } end)
    assert.has_error(function() core.spawn { argv = { "true" }, env = { X = 1 } } end)
    assert.has_error(function() core.spawn("true") end)
    assert.has_error(function() core.process(-1) end)
  end)
end)
