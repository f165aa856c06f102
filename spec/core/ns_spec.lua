-- Namespace primitives.  Everything that changes namespaces runs in a
-- forked child (helper.in_child), so this process stays where it is.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

describe("namespace primitives", function()
  after_each(function() helper.cleanup_dirs() end)

  it("tell a live namespace from a plain file", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/plain", "")
    assert.is_true(core.nsfs("/proc/self/ns/net"))
    assert.is_false(core.nsfs(dir .. "/plain"))
    local v, _, code = core.nsfs(dir .. "/missing")
    assert.is_nil(v)
    assert.equal(core.errno.ENOENT, code)
  end)

  it("identify namespaces by inode", function()
    local fd = core.ns_open(0, "net")
    assert.equal(core.ns_id("/proc/self/ns/net"), core.ns_id(fd))
    fd:close()
    local p = assert(core.spawn { argv = { "sleep", "5" } })
    assert.equal(core.ns_id("/proc/self/ns/net"), core.ns_id("/proc/" .. p:pid() .. "/ns/net"))
    p:kill(core.SIGKILL)
    p:wait()
  end)

  it("refuse invalid flags with EINVAL and bad arguments by raising", function()
    local ok, _, code = core.unshare(0x1)
    assert.is_nil(ok)
    assert.equal(core.errno.EINVAL, code)
    assert.has_error(function() core.unshare("net") end)
    assert.has_error(function() core.setns({}) end)
    assert.has_error(function() core.ns_open(-1, "net") end)
  end)

  it("cannot create a pin without privileges, and remove the placeholder", function()
    if helper.in_child(function() return core.getuid() == 0 end) == true then return end
    local dir = helper.tmpdir()
    local ok, msg, code = core.netns_create(dir .. "/pin")
    assert.is_nil(ok)
    assert.matches("create netns", msg)
    assert.is_true(code == core.errno.EPERM or code == core.errno.EACCES)
    assert.is_nil(core.lstat(dir .. "/pin"))
  end)

  userns_it("create a pinned netns without moving the caller, then unmount it", function()
    local dir = helper.tmpdir()
    local res = assert(helper.in_child(function()
      helper.join_fresh_holder()
      local mine = core.ns_id("/proc/self/ns/net")
      assert(core.netns_create(dir .. "/pin"))
      local out = {
        nsfs = core.nsfs(dir .. "/pin"),
        differs = core.ns_id(dir .. "/pin") ~= mine,
        unchanged = core.ns_id("/proc/self/ns/net") == mine,
        fstype = core.mountinfo(dir .. "/pin").fstype,
      }
      local _, _, code = core.netns_create(dir .. "/pin")
      out.eexist = code == core.errno.EEXIST
      assert(core.netns_unmount(dir .. "/pin"))
      out.gone = core.lstat(dir .. "/pin") == nil
      out.again = core.netns_unmount(dir .. "/pin") == true
      return out
    end))
    assert.same({ nsfs = true, differs = true, unchanged = true, fstype = "nsfs",
                  eexist = true, gone = true, again = true }, res)
  end)

  userns_it("leave the pin a plain file outside the holder's mount namespace", function()
    local dir = helper.tmpdir()
    assert(helper.in_child(function()
      helper.join_fresh_holder()
      assert(core.netns_create(dir .. "/pin"))
    end))
    -- the holder died with the child's namespaces: what is left is a file
    assert.is_false(core.nsfs(dir .. "/pin"))
  end)

  userns_it("name netns pins under a run directory made rshared", function()
    local dir = helper.tmpdir()
    local res = assert(helper.in_child(function()
      helper.join_fresh_holder()
      local p1, n1 = assert(core.netns_create_in(dir .. "/netns"))
      local p2, n2 = assert(core.netns_create_in(dir .. "/netns"))
      local p3 = assert(core.netns_create_in(dir .. "/netns", "named"))
      local _, _, dup = core.netns_create_in(dir .. "/netns", "named")
      local info = core.mountinfo(dir .. "/netns")
      return {
        pattern = n1:match("^netns%-%x+%-%x+%-%x+%-%x+%-%x+$") ~= nil,
        distinct = n1 ~= n2 and p1 ~= p2,
        named = p3 == dir .. "/netns/named",
        eexist = dup == core.errno.EEXIST,
        propagation = info and info.propagation,
      }
    end))
    assert.same({ pattern = true, distinct = true, named = true, eexist = true, propagation = "shared" }, res)
    assert.has_error(function() core.netns_create_in(dir, "../x") end,
      "bad argument #2 to 'netns_create_in' (invalid namespace name)")
  end)

  userns_it("mount through libmount inside a user+mount namespace", function()
    local dir = helper.tmpdir()
    local res = assert(helper.in_child(function()
      helper.join_fresh_holder()
      assert(core.mkdir(dir .. "/a"))
      assert(core.mkdir(dir .. "/b"))
      helper.write(dir .. "/a/file", "content")
      assert(core.mount(dir .. "/a", dir .. "/b", nil, "rbind"))
      local out = { seen = helper.read(dir .. "/b/file") }
      assert(core.mount("tmpfs", dir .. "/a", "tmpfs", "nosuid,nodev,noexec,mode=0755"))
      local info = core.mountinfo(dir .. "/a")
      out.fstype, out.options = info.fstype, info.options
      assert(core.mount(nil, dir .. "/a", nil, "private"))
      out.private = core.mountinfo(dir .. "/a").propagation
      assert(core.umount(dir .. "/a", "lazy"))
      out.not_mounted = core.mountinfo(dir .. "/a") == false
      local ok, msg, code = core.mount(dir .. "/missing", dir .. "/b", nil, "bind")
      out.missing = ok == nil and code == core.errno.ENOENT and msg:match("^mount `") ~= nil
      ok = core.umount(dir .. "/a")
      out.umount_unmounted = ok == nil
      return out
    end))
    assert.equal("content", res.seen)
    assert.equal("tmpfs", res.fstype)
    assert.matches("nosuid", res.options)
    assert.equal("private", res.private)
    assert.is_true(res.not_mounted)
    assert.is_true(res.missing)
    assert.is_true(res.umount_unmounted)
  end)

  userns_it("mount with one syscall what needs no interpretation, the rest through libmount", function()
    local dir = helper.tmpdir()
    local res = assert(helper.in_child(function()
      helper.join_fresh_holder()
      for _, d in ipairs { "src", "a", "b", "c" } do assert(core.mkdir(dir .. "/" .. d)) end
      helper.write(dir .. "/src/file", "x")
      local out = {}
      -- bind,ro is a bind then a read-only remount: libmount's work
      assert(core.mount(dir .. "/src", dir .. "/a", nil, "bind,ro"))
      out.ro = core.mountinfo(dir .. "/a").options:match("^ro") ~= nil
      out.write_refused = select(3, core.writefile(dir .. "/a/new", "y")) == core.errno.EROFS
      -- x-* options mean something to mount(8) only: libmount drops them
      assert(core.mount("tmpfs", dir .. "/b", "tmpfs", "nosuid,x-rootlessnetns.note=1,size=1m"))
      local info = core.mountinfo(dir .. "/b")
      out.tmpfs = info.fstype == "tmpfs" and info.options:match("nosuid") ~= nil
      -- a bad propagation change reports the step in the same words either way
      local ok, msg, code = core.mount(nil, dir .. "/c", nil, "rslave")
      out.not_a_mount = ok == nil and code == core.errno.EINVAL
        and msg:find(("mount rslave `%s/c`: "):format(dir), 1, true) == 1
      ok, msg, code = core.mount(dir .. "/nope", dir .. "/c", nil, "rbind")
      out.missing = ok == nil and code == core.errno.ENOENT and msg:match("^mount `.*/nope` on `.*/c`: ") ~= nil
      return out
    end))
    assert.same({ ro = true, write_refused = true, tmpfs = true, not_a_mount = true, missing = true }, res)
  end)

  it("loads libmount only when a mount needs it", function()
    local function maps_after(code)
      local f = assert(io.popen(("%s -e %q"):format("lua5.4", 'package.cpath = "build/?.so;" .. package.cpath '
        .. 'local core = require "rootlessnetns" ' .. code
        .. ' io.write((io.open("/proc/self/maps"):read("a"):find("libmount", 1, true)) and "loaded" or "not")')))
      local out = f:read("a")
      f:close()
      return out
    end
    assert.equal("not", maps_after(""))
    assert.equal("not", maps_after('core.mount(nil, "/nonexistent", nil, "rslave")'))
    assert.equal("loaded", maps_after('core.mountinfo("/")'))
  end)

  userns_it("keep / rslave in the holder and report the holder's failures", function()
    local res = assert(helper.in_child(function()
      helper.join_fresh_holder()
      return core.mountinfo("/").propagation
    end))
    assert.is_true(res == "slave" or res == "private")
    -- a holder released without maps cannot become root: the error says so
    local err = helper.in_child(function()
      local pid, ctl = assert(core.holder_start())
      local ok, msg = core.holder_release(ctl)
      core.kill(pid, assert(core.starttime(pid)), core.SIGKILL)
      return ok and "released" or msg
    end)
    assert.matches("set up holder namespaces", err)
  end)

  userns_it("spawn into a network namespace, and never unmount ours from a new mount namespace", function()
    local dir = helper.tmpdir()
    local res = assert(helper.in_child(function()
      helper.join_fresh_holder()
      local pin = assert(core.netns_create_in(dir .. "/netns", "n1"))
      local out = {}
      -- a program joins the namespace given as `netns`
      local r, w = core.pipe()
      local netfd = assert(core.open(pin, "r"))
      local proc = assert(core.spawn { argv = { "readlink", "/proc/self/ns/net" }, netns = netfd, fds = { [1] = w } })
      netfd:close()
      w:close()
      out.joined = r:readall(5000) == ("net:[%d]\n"):format(core.ns_id(pin))
      r:close()
      proc:wait()
      -- the run directory is rshared: a copy made by unshare would be its
      -- peer, and an unmount there would unmount our pin here
      proc = assert(core.spawn { argv = { "umount", "-l", pin }, unshare = core.CLONE_NEWNS,
        fds = { [1] = false, [2] = false } })
      proc:wait()
      out.still_pinned = core.nsfs(pin)
      -- the loopback of a fresh namespace starts down; link_up brings it up
      out.lo = helper.in_child(function()
        assert(core.setns(pin, core.CLONE_NEWNET))
        local was = core.getifaddrs()[1]
        assert(core.link_up("lo"))
        assert(core.link_up("lo")) -- idempotent
        local missing, msg, code = core.link_up("nope0")
        return { index = core.if_index("lo"), up = core.getifaddrs()[1].up, was_up = was and was.up or false,
          missing = missing == nil and code == core.errno.ENODEV and msg:match("nope0") ~= nil,
          no_index = core.if_index("nope0") == nil }
      end)
      assert(core.netns_unmount(pin))
      return out
    end))
    assert.is_true(res.joined)
    assert.is_true(res.still_pinned)
    assert.same({ index = 1, up = true, was_up = false, missing = true, no_index = true }, res.lo)
    assert.has_error(function() core.link_up("") end)
    assert.has_error(function() core.link_up(("x"):rep(16)) end)
  end)

  userns_it("write id maps that the kernel accepts exactly once", function()
    local res = assert(helper.in_child(function()
      local pid, ctl = assert(core.holder_start())
      local uid = core.getuid()
      assert(core.write_idmap(pid, "setgroups", "deny"))
      assert(core.write_idmap(pid, "uid_map", ("0 %d 1\n"):format(uid)))
      local again, _, code = core.write_idmap(pid, "uid_map", ("0 %d 1\n"):format(uid))
      local st = core.starttime(pid)
      core.kill(pid, st, core.SIGKILL)
      ctl:close()
      return again == nil and code == core.errno.EPERM
    end))
    assert.is_true(res)
    assert.has_error(function() core.write_idmap(1, "bogus", "") end)
  end)
end)
