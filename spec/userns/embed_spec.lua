-- A long-lived program that embeds the library: what it calls works in
-- forked workers, so nothing anyone else does to the namespace (a
-- `cleanup`, a killed holder) strands it, and its own namespaces, fds,
-- cwd and signal handling never change.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

describe("an embedding program", function()
  local fx = helper.state_fixture(before_each, after_each)

  local function handle(extra)
    local netns = require "rootlessnetns.netns"
    local opts = { backend = "slirp4netns", getenv = function(k)
      if k == "XDG_RUNTIME_DIR" then return fx.xdg end
      return os.getenv(k)
    end }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(netns.new(opts))
  end

  local function own_namespaces()
    local out = {}
    for _, kind in ipairs { "user", "mnt", "net" } do out[kind] = core.readlink("/proc/self/ns/" .. kind) end
    out.cwd = core.readlink("/proc/self/cwd")
    out.fds = helper.fd_count()
    return out
  end

  userns_it("keeps one handle across another user's cleanup and a killed holder", function()
    local base = fx.xdg .. "/rootlessnetns"
    local res = assert(helper.in_child(function()
      local ns = handle()
      local before = own_namespaces()
      local out = { before = before }
      out.first = { ns:run { "true" } }
      assert(ns:setup())
      out.up = ns:status().up
      -- someone else removes everything, holder included
      out.cleanup = (helper.cli({ "cleanup" }, fx.env))
      out.after_cleanup = { ns:run { "sh", "-c", "ip -o link show tap0 >/dev/null && exit 7" } }
      assert(ns:setup())
      -- (until each has exited: a dying holder can still be joined)
      for _, pid in ipairs(helper.holders(base)) do helper.kill_and_wait(pid, core.starttime(pid)) end
      out.after_kill = { ns:run { "true" } }
      out.status_after = ns:status().holder.alive
      out.after = own_namespaces()
      ns:cleanup { holder = true }
      return out
    end))
    assert.same({ "exited", 0 }, res.first)
    assert.is_true(res.up)
    assert.equal(0, res.cleanup)
    assert.same({ "exited", 7 }, res.after_cleanup)
    assert.same({ "exited", 0 }, res.after_kill)
    assert.is_true(res.status_after)
    assert.same(res.before, res.after)
  end)

  userns_it("a Lab handle works in workers too and leaves the caller alone", function()
    local res = assert(helper.in_child(function()
      local lab = require "rootlessnetns.lab"
      local l = assert(lab.new(handle()))
      local before = own_namespaces()
      assert(l:add("web"))
      local how, code = l:exec("web", { "sh", "-c", "ip -o link show lo >/dev/null" })
      local listed = l:list()
      assert(l:del("web"))
      return { how = how, code = code, names = #listed, before = before, after = own_namespaces() }
    end))
    assert.equal("exited", res.how)
    assert.equal(0, res.code)
    assert.equal(1, res.names)
    assert.same(res.before, res.after)
  end)

  userns_it("a signal it blocked ends a method's wait for the lock", function()
    local marker = helper.tmpdir() .. "/ran"
    local res = assert(helper.in_child(function()
      local signals <close> = core.block_signals { core.SIGTERM }
      local ns = handle { signals = signals }
      assert(ns:status())
      local lock <close> = assert(core.flock(fx.xdg .. "/rootlessnetns/lock", "ex"))
      local killer = assert(core.spawn { argv = { "sh", "-c", ("sleep 0.3; kill -TERM %d"):format(core.getpid()) } })
      local r = table.pack(ns:run { "touch", marker })
      killer:wait()
      lock:close()
      -- and the handle goes on working
      local again = table.pack(ns:run { "true" })
      return { r[1] == nil, r[4], r[5], again[1], again[2] }
    end))
    assert.same({ true, "signal", core.SIGTERM, "exited", 0 }, res)
    assert.is_nil(core.lstat(marker), "the command ran")
  end)

  userns_it("says nothing (nil, never cjson.null) for what is missing", function()
    local res = assert(helper.in_child(function()
      local ns = handle()
      local down = ns:status()
      assert(ns:setup())
      local info = ns:info()
      local l = require("rootlessnetns.lab").new(ns)
      assert(l:add("web"))
      local entry = l:list()[1]
      ns:cleanup { holder = true }
      return { down_pid = down.backend.pid == nil, down_name = down.backend.name == nil,
        holder = down.holder.pid == nil, map_guest = info.MapGuestIps == nil, address = entry.address == nil }
    end))
    assert.same({ down_pid = true, down_name = true, holder = true, map_guest = true, address = true }, res)
  end)

  userns_it("a Lua function run inside must return an exit status", function()
    local res = assert(helper.in_child(function()
      local ns = handle()
      local out = {}
      for i, ret in ipairs { "yes", 300, 2.5, 7, true, false } do
        local r = table.pack(ns:run(function() return ret end))
        out[i] = { r[1] or false, r[2], r[4] or false }
      end
      ns:cleanup { holder = true }
      return out
    end))
    for i = 1, 3 do
      assert.is_false(res[i][1], "a bad return was taken for a status")
      assert.matches("it must return an exit status", res[i][2])
      assert.equal("function", res[i][3])
    end
    assert.same({ "exited", 7, false }, res[4])
    assert.same({ "exited", 0, false }, res[5])
    assert.same({ "exited", 1, false }, res[6])
  end)

  -- A tmpfs the plan mounts: one filesystem for every run that joins the
  -- prepared mount namespace, a fresh one for each run that applies the
  -- plan itself.
  local function scratch_plan(target)
    return function(plan)
      plan[#plan + 1] = { name = "scratch", source = "tmpfs", target = target, fstype = "tmpfs",
        options = "mode=0700" }
      return plan
    end
  end

  userns_it("runs join the prepared mount namespace: the plan is applied once, not per run", function()
    local scratch, out = helper.tmpdir(), helper.tmpdir()
    local res = assert(helper.in_child(function()
      local ns = handle { mounts = scratch_plan(scratch) }
      assert(ns:setup())
      local got = {}
      for i = 1, 2 do
        got[i] = { ns:run { "sh", "-c", ('stat -c %%d "$1" >"$2/dev%d"; ls "$1" >"$2/seen%d"; touch "$1/mark"')
          :format(i, i), "sh", scratch, out } }
      end
      ns:cleanup { holder = true }
      return got
    end))
    assert.same({ { "exited", 0 }, { "exited", 0 } }, res)
    assert.equal(core.readfile(out .. "/dev1", 64), core.readfile(out .. "/dev2", 64))
    assert.equal("mark\n", core.readfile(out .. "/seen2", 64), "the second run got a tmpfs of its own")
    assert.is_nil(core.lstat(scratch .. "/mark"), "the plan's tmpfs was not mounted")
  end)

  userns_it("a handle whose plan differs from the prepared one applies its own, every run", function()
    local first, second, out = helper.tmpdir(), helper.tmpdir(), helper.tmpdir()
    local res = assert(helper.in_child(function()
      local a = handle { mounts = scratch_plan(first) }
      assert(a:setup())
      assert(a:run { "true" })
      local b = handle { mounts = scratch_plan(second) }
      local got = {}
      for i = 1, 2 do
        got[i] = { b:run { "sh", "-c", ('ls "$1" >"$2/seen%d"; touch "$1/mark"; mountpoint -q "$3" || exit 9')
          :format(i), "sh", second, out, first } }
      end
      a:cleanup { holder = true }
      return got
    end))
    -- b's own tmpfs each time, and none of a's plan
    assert.same({ { "exited", 9 }, { "exited", 9 } }, res)
    assert.equal("", core.readfile(out .. "/seen2", 64))
  end)

  userns_it("a Lua error in a config hook comes back as a message", function()
    local res = assert(helper.in_child(function()
      local ns = handle { mounts = function() error("boom", 0) end }
      local r = table.pack(ns:run { "true" })
      return { r[1] == nil, r[2] }
    end))
    assert.is_true(res[1])
    assert.matches("config mounts hook: boom", res[2])
  end)
end)
