-- The holder process: what it shows in ps and which descriptors it keeps.
-- It outlives the command that made it, so nothing of that command's may
-- stay visible or open in it.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local child = require "rootlessnetns.child"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

local TITLE = "rootlessnetns-holder"

--- A lua5.4 process running @body (which sees `core`, `DIR` and `report`)
-- with @args and the shell redirections @redirect before it: returns what
-- it reported.  A holder it made is killed before it exits.
local function lua_process(body, args, redirect, dir)
  local script = dir .. "/script.lua"
  helper.write(script, table.concat({
    ("package.cpath, package.path = %q, %q"):format(package.cpath, package.path),
    'local core = require "rootlessnetns"',
    'local cjson = require "cjson.safe"',
    ("local DIR = %q"):format(dir),
    "local holder_pid",
    "local function release(pid, ctl)",
    "  holder_pid = pid",
    '  assert(core.write_idmap(pid, "setgroups", "deny"))',
    '  assert(core.write_idmap(pid, "uid_map", ("0 %d 1\\n"):format(core.getuid())))',
    '  assert(core.write_idmap(pid, "gid_map", ("0 %d 1\\n"):format(select(2, core.getuid()))))',
    "  assert(core.holder_release(ctl))",
    "end",
    "local ok, res = pcall(function()",
    body,
    "end)",
    "if holder_pid then core.kill(holder_pid, core.starttime(holder_pid) or 0, core.SIGKILL) end",
    "io.stdout:write(cjson.encode { ok = ok, result = res })",
  }, "\n"))
  local words = { "exec", redirect or "", "lua5.4", "'" .. script .. "'" }
  for _, a in ipairs(args or {}) do words[#words + 1] = "'" .. a .. "'" end
  local how, code, out = child.capture({ "sh", "-c", table.concat(words, " ") }, 20000)
  assert.equal("exited", how)
  assert.equal(0, code, out)
  local msg = assert(cjson.decode(out), out)
  assert(msg.ok, tostring(msg.result))
  return msg.result
end

--- Release a holder with a single mapping, from a process that stays out.
local function release(pid, ctl)
  local uid, gid = core.getuid()
  assert(core.write_idmap(pid, "setgroups", "deny"))
  assert(core.write_idmap(pid, "uid_map", ("0 %d 1\n"):format(uid)))
  assert(core.write_idmap(pid, "gid_map", ("0 %d 1\n"):format(gid)))
  assert(core.holder_release(ctl))
end

describe("the holder", function()
  after_each(function() helper.cleanup_dirs() end)

  userns_it("shows a fixed title, nothing of the arguments of the command that made it", function()
    local res = assert(helper.in_child(function()
      local pid, ctl = assert(core.holder_start())
      local title = core.readfile(("/proc/%d/cmdline"):format(pid), 65536)
      release(pid, ctl)
      local after = core.readfile(("/proc/%d/cmdline"):format(pid), 65536)
      core.kill(pid, assert(core.starttime(pid)), core.SIGKILL)
      return { title = title, after = after, ours = core.readfile("/proc/self/cmdline", 65536) }
    end))
    assert.equal(TITLE .. "\0", res.title)
    assert.equal(TITLE .. "\0", res.after)
    for arg in res.ours:gmatch("[^%z]+") do
      assert.is_nil(res.title:find(arg, 1, true), arg)
    end
  end)

  userns_it("keeps no secret from the command line in its cmdline", function()
    local dir = helper.tmpdir()
    local res = lua_process([[
      local pid, ctl = assert(core.holder_start())
      release(pid, ctl)
      return { cmdline = core.readfile(("/proc/%d/cmdline"):format(pid), 65536),
               comm = core.readfile(("/proc/%d/comm"):format(pid), 64),
               mine = core.readfile("/proc/self/cmdline", 65536) }
    ]], { "--token=s3cr3t" }, nil, dir)
    assert.matches("--token=s3cr3t", res.mine, 1, true) -- the secret was there to keep
    assert.equal(TITLE .. "\0", res.cmdline)
    assert.equal("rlns-holder\n", res.comm)
  end)

  userns_it("keeps a descriptor numbered below 3 as fd 3, and nothing of the caller's", function()
    local dir = helper.tmpdir()
    assert(core.mkdir(dir .. "/state"))
    -- started with 0 and 2 closed, as a command may be: the directory is
    -- opened as fd 0, the control socket lands on 2 and 3
    local res = lua_process([[
      local keep = assert(core.open(DIR .. "/state", "path"))
      assert(keep:fileno() == 0, "the directory is not fd 0")
      local pid, ctl = assert(core.holder_start(nil, keep))
      keep:close()
      release(pid, ctl)
      local fds = {}
      for _, name in ipairs(assert(core.listdir(("/proc/%d/fd"):format(pid)))) do
        fds[name] = core.readlink(("/proc/%d/fd/%s"):format(pid, name))
      end
      return fds
    ]], {}, "0<&- 2>&-", dir)
    assert.same({ ["0"] = "/dev/null", ["1"] = "/dev/null", ["2"] = "/dev/null", ["3"] = dir .. "/state" }, res)
  end)

  userns_it("keeps a descriptor given as an integer, and closes the caller's others", function()
    if helper.under_valgrind() then return pending("valgrind keeps descriptors of its own in the holder") end
    local dir = helper.tmpdir()
    local res = assert(helper.in_child(function()
      local keep = assert(core.open(dir, "path"))
      local extra = assert(core.open(dir, "path")) -- open in the caller, not to be kept
      local pid, ctl = assert(core.holder_start(nil, keep:fileno()))
      release(pid, ctl)
      local fds = assert(core.listdir(("/proc/%d/fd"):format(pid)))
      table.sort(fds)
      local fd3 = core.readlink(("/proc/%d/fd/3"):format(pid))
      core.kill(pid, assert(core.starttime(pid)), core.SIGKILL)
      keep:close()
      extra:close()
      return { fds = fds, fd3 = fd3 }
    end))
    assert.same({ "0", "1", "2", "3" }, res.fds)
    assert.equal(dir, res.fd3)
  end)
end)
