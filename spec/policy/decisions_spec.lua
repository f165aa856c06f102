-- The flow's decision tables with a fake core: what get-or-create,
-- teardown and the lab's repair do for each state they can find, tested
-- without user namespaces.  Only what needs privileges is faked (the
-- namespaces, process identities, the holder, programs run inside); the
-- state files are real, in a scratch directory.
local real = require "rootlessnetns"
local helper = require "helper"

-- Modules that hold the injected core (reloaded for every spec).
local FLOW = { "session", "instance", "refs", "inside", "netns", "lab", "lab.connections", "lab.names",
  "state", "holder", "child", "worker", "procs", "backends", "mounts" }

describe("the flow's decisions", function()
  local world, netns, lab, xdg, saved

  local function fake_core()
    local fake = setmetatable({}, { __index = real })
    function fake.nsfs(path)
      if world.pins[path] then return true end
      if world.nsfs_error then return nil, "check: " .. world.nsfs_error, real.errno.EIO end
      if real.lstat(path) then return false end
      return nil, "no such file", real.errno.ENOENT
    end
    function fake.netns_create(path)
      assert(real.writefile(path, "", tonumber("600", 8)))
      world.pins[path] = true
      world.created = world.created + 1
      return true
    end
    function fake.netns_unmount(path)
      world.pins[path] = nil
      world.unmounted = world.unmounted + 1
      return true
    end
    function fake.alive(pid, starttime) return world.alive[pid] == starttime end
    function fake.kill(pid, starttime)
      if world.alive[pid] ~= starttime then return nil, "no such process", real.errno.ESRCH end
      world.killed[#world.killed + 1] = pid
      world.alive[pid] = nil
      return true
    end
    function fake.starttime(pid) return world.alive[pid] end
    function fake.fault_point() end
    return fake
  end

  local function fake_holder()
    return {
      ensure = function() return world.holder end,
      recorded = function() return world.holder end,
      find_running = function() return {} end,
      in_child_userns = function() return false end,
      stop = function() return true end,
    }
  end

  -- what programs run in a netns see, and what they were asked to do
  local function fake_child(child)
    return setmetatable({
      link_names = function() return world.links end,
      capture = function(argv, _, opts)
        world.ran[#world.ran + 1] = { argv = argv, input = opts and opts.input }
        return "exited", 0, ""
      end,
    }, { __index = child })
  end

  local backend = {
    name = "fake",
    start = function()
      world.started = world.started + 1
      world.next_pid = world.next_pid + 1
      world.alive[world.next_pid] = 7
      return { pid = world.next_pid, starttime = 7, info = { IPAddresses = { "10.0.2.100/24" } } }
    end,
  }

  before_each(function()
    world = { pins = {}, alive = { [1] = 1 }, killed = {}, created = 0, unmounted = 0, started = 0,
      next_pid = 4000, links = { "lo" }, ran = {}, holder = { mode = "own", pid = 1, starttime = 1 } }
    saved = {}
    for _, m in ipairs(FLOW) do
      saved[m] = package.loaded["rootlessnetns." .. m]
      package.loaded["rootlessnetns." .. m] = nil
    end
    saved.core = package.loaded["rootlessnetns"]
    package.loaded["rootlessnetns"] = fake_core()
    package.loaded["rootlessnetns.holder"] = fake_holder()
    package.loaded["rootlessnetns.child"] = fake_child(require "rootlessnetns.child")
    -- the link check after a backend's death runs in the netns: seen as done
    package.loaded["rootlessnetns.inside"] = setmetatable({ call = function(_, fn) return fn() end },
      { __index = dofile(helper.ROOT .. "/lua/rootlessnetns/inside.lua") })
    netns = require "rootlessnetns.netns"
    lab = require "rootlessnetns.lab"
    xdg = helper.tmpdir()
  end)

  after_each(function()
    for _, m in ipairs(FLOW) do package.loaded["rootlessnetns." .. m] = saved[m] end
    package.loaded["rootlessnetns"] = saved.core
    helper.cleanup_dirs()
  end)

  local function handle()
    return assert(netns.new { backend = backend, in_process = true, getenv = function(k)
      if k == "XDG_RUNTIME_DIR" then return xdg end
      return os.getenv(k)
    end })
  end

  local function paths() return require("rootlessnetns.state").paths(xdg .. "/rootlessnetns") end

  local function count()
    return require("rootlessnetns.state").read_count(paths().refcount)
  end

  describe("get-or-create", function()
    it("creates the namespace and starts the backend when there is none", function()
      assert(handle():setup())
      assert.same({ 1, 1, 1 }, { world.created, world.started, count() })
      assert.is_true(world.pins[paths().pin])
    end)

    it("reuses a live namespace whose backend lives", function()
      local ns = handle()
      assert(ns:setup())
      assert(ns:setup())
      assert.same({ 1, 1, 2 }, { world.created, world.started, count() })
    end)

    it("restarts a dead backend in the same namespace", function()
      local ns = handle()
      assert(ns:setup())
      world.alive[world.next_pid] = nil -- the backend died
      assert(ns:setup())
      assert.same({ 1, 2, 0 }, { world.created, world.started, world.unmounted })
      assert.equal(2, count())
    end)

    it("recreates a pin that is not a live namespace (an interrupted create)", function()
      local ns = handle()
      assert(ns:setup())
      local backend_pid = world.next_pid
      world.pins[paths().pin] = nil -- a plain file is left
      assert(ns:setup())
      assert.same({ 2, 2 }, { world.created, world.started })
      assert.same({ backend_pid }, world.killed, "the old backend was not stopped")
      assert.equal(1, count(), "a recreated namespace starts its count anew")
    end)

    it("finishes an interrupted cleanup (a directory, no pin) before creating", function()
      local ns = handle()
      assert(ns:setup())
      local backend_pid = world.next_pid
      world.pins[paths().pin] = nil
      real.unlink(paths().pin)
      assert(ns:setup())
      assert.same({ backend_pid }, world.killed)
      assert.same({ 2, 2, 1 }, { world.created, world.started, count() })
    end)

    it("refuses a pin it cannot check, and starts nothing", function()
      world.nsfs_error = "I/O error"
      assert(real.mkdir(xdg .. "/rootlessnetns", tonumber("700", 8)))
      assert(real.mkdir(paths().dir, tonumber("700", 8)))
      assert(real.writefile(paths().pin, "", tonumber("600", 8)))
      world.pins = {}
      -- (the pin exists as a file, but checking it fails)
      local fake = package.loaded["rootlessnetns"]
      local nsfs = fake.nsfs
      fake.nsfs = function(path)
        if path == paths().pin then return nil, "check: I/O error", real.errno.EIO end
        return nsfs(path)
      end
      local ok, err = handle():setup()
      assert.is_nil(ok)
      assert.matches("check `.-rootless%-netns`: check: I/O error", err)
      assert.same({ 0, 0 }, { world.created, world.started })
    end)
  end)

  describe("teardown", function()
    it("counts down and keeps the namespace while users are left", function()
      local ns = handle()
      assert(ns:setup(2))
      assert(ns:teardown(1))
      assert.same({ 1, 0 }, { count(), #world.killed })
      assert.is_true(world.pins[paths().pin])
    end)

    it("the last one out unmounts, stops the backend and removes the directory", function()
      local ns = handle()
      assert(ns:setup())
      assert(ns:teardown())
      assert.same({ 1, 1 }, { world.unmounted, #world.killed })
      assert.is_nil(real.lstat(paths().dir))
    end)

    it("a live run record keeps the namespace up at a count of zero", function()
      local ns = handle()
      assert(ns:setup())
      world.alive[777] = 3
      assert(require("rootlessnetns.state").add_ref(paths(), 777, 3))
      assert(ns:teardown())
      assert.same({ 0, 0 }, { count(), world.unmounted })
      world.alive[777] = nil -- the run is gone: the next command reaps it
      assert(ns:teardown())
      assert.is_nil(real.lstat(paths().dir))
    end)

    it("bounds the count when it is added, and keeps a large one", function()
      local ns = handle()
      for _ = 1, 15 do assert(ns:setup(65535)) end
      assert.equal(983025, count())
      local ok, err = ns:setup(65535)
      assert.is_nil(ok)
      assert.matches("past the bound of 1000000", err)
      assert.equal(983025, count(), "a refused setup changed the count")
      assert(ns:teardown(1))
      assert.equal(983024, count())
      assert.is_true(world.pins[paths().pin])
    end)

    it("more nets than counted floors at zero and cleans up", function()
      local ns = handle()
      assert(ns:setup())
      assert(ns:teardown(5))
      assert.is_nil(real.lstat(paths().dir))
    end)

    it("with no holder, removes what is left, an orphaned backend included", function()
      local ns = handle()
      assert(ns:setup())
      local backend_pid = world.next_pid
      world.holder = false
      -- (a new process: the holder it would have joined is gone)
      package.loaded["rootlessnetns.session"] = nil
      package.loaded["rootlessnetns.netns"] = nil
      package.loaded["rootlessnetns.lab"] = nil
      netns = require "rootlessnetns.netns"
      assert(handle():teardown())
      assert.same({ backend_pid }, world.killed)
      assert.is_nil(real.lstat(paths().dir))
    end)
  end)

  describe("the lab's repair", function()
    local function leases(data)
      assert(require("rootlessnetns.state").write_leases(paths(), data))
    end

    it("drops unfinished connections and veths no lease names, keeps the rest", function()
      local ns = handle()
      assert(ns:setup())
      leases { subnet = "10.89.0.0/24", bridge = "rlnsbr0", leases = {
        web = { address = "10.89.0.2", prefix = 24, gateway = "10.89.0.1", index = 0, connected = true },
        db = { address = "10.89.0.3", prefix = 24, gateway = "10.89.0.1", index = 1, connected = false },
      } }
      world.links = { "lo", "tap0", "rlnsbr0", "rlnsv0", "rlnsv1", "rlnsv7" }
      assert(lab.new(ns):list())
      local kept = require("rootlessnetns.state").read_leases(paths()).leases
      assert.same({ "web" }, (function() local t = {} for k in pairs(kept) do t[#t + 1] = k end return t end)())
      assert.equal(1, #world.ran)
      assert.equal("link del rlnsv1\nlink del rlnsv7\n", world.ran[1].input)
      assert.is_true(world.pins[paths().pin], "the namespace has users left")
    end)

    it("an interrupted first connect was all that kept the namespace: it goes", function()
      local ns = handle()
      assert(ns:setup())
      leases { subnet = "10.89.0.0/24", bridge = "rlnsbr0", leases = {
        web = { address = "10.89.0.2", prefix = 24, gateway = "10.89.0.1", index = 0, connected = false },
      } }
      -- (what a connect of a namespace nobody else used leaves when killed)
      assert(require("rootlessnetns.state").write_count(paths().refcount, 0))
      assert(lab.new(ns):list())
      assert.is_nil(real.lstat(paths().dir))
    end)
  end)
end)
