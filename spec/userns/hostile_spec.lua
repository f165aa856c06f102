-- Hostile environments and bad input: refused with one line, status 125,
-- nothing created.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

local function one_line(err)
  assert.is_string(err)
  assert.matches("^rootlessnetns: [^\n]+\n$", err)
  assert.is_nil(err:find("traceback", 1, true))
end

describe("a hostile environment", function()
  after_each(function() helper.cleanup_dirs() end)

  it("refuses an XDG_RUNTIME_DIR that is a symlink", function()
    local dir = helper.tmpdir()
    assert(core.mkdir(dir .. "/real", tonumber("700", 8)))
    assert(core.symlink(dir .. "/real", dir .. "/link"))
    local code, _, err = helper.cli({ "run", "--", "true" }, { XDG_RUNTIME_DIR = dir .. "/link" })
    assert.equal(125, code)
    one_line(err)
    assert.matches("is a symlink", err)
    assert.same({}, core.listdir(dir .. "/real"))
  end)

  it("refuses an XDG_RUNTIME_DIR owned by someone else", function()
    if core.getuid() == 0 then return end
    local code, _, err = helper.cli({ "run", "--", "true" }, { XDG_RUNTIME_DIR = "/" })
    assert.equal(125, code)
    one_line(err)
    assert.matches("is owned by uid 0", err)
  end)

  it("refuses an XDG_RUNTIME_DIR or state dir open to others", function()
    local dir = helper.tmpdir()
    assert(core.chmod(dir, tonumber("777", 8)))
    local code, _, err = helper.cli({ "run", "--", "true" }, { XDG_RUNTIME_DIR = dir })
    assert.equal(125, code)
    one_line(err)
    assert.matches("open to other users", err)
    assert(core.chmod(dir, tonumber("700", 8)))
    assert(core.mkdir(dir .. "/rootlessnetns", tonumber("755", 8)))
    code, _, err = helper.cli({ "run", "--", "true" }, { XDG_RUNTIME_DIR = dir })
    assert.equal(125, code)
    assert.matches("state dir .* has mode 0755", err)
  end)

  it("refuses a state dir that is a symlink", function()
    local dir = helper.tmpdir()
    local elsewhere = helper.tmpdir()
    assert(core.symlink(elsewhere, dir .. "/rootlessnetns"))
    local code, _, err = helper.cli({ "setup" }, { XDG_RUNTIME_DIR = dir })
    assert.equal(125, code)
    assert.matches("state dir .* is a symlink", err)
    assert.same({}, core.listdir(elsewhere))
  end)

  userns_it("never writes through a symlink planted in the state dir", function()
    local dir = helper.runtime_dir()
    local victim = helper.tmpdir() .. "/victim"
    helper.write(victim, "precious")
    assert.equal(0, (helper.cli({ "setup" }, { XDG_RUNTIME_DIR = dir })))
    local count = dir .. "/rootlessnetns/rootless-netns/ref-count"
    assert(core.unlink(count))
    assert(core.symlink(victim, count))
    local code, _, err = helper.cli({ "setup" }, { XDG_RUNTIME_DIR = dir })
    assert.equal(0, code, err)
    assert.equal("precious", helper.read(victim))
    assert.equal("file", core.lstat(count).type)
    helper.cli({ "cleanup" }, { XDG_RUNTIME_DIR = dir })
  end)

  userns_it("never follows a symlink planted where the commands' /run is made", function()
    local dir = helper.runtime_dir()
    local env = { XDG_RUNTIME_DIR = dir }
    local elsewhere = helper.tmpdir()
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, env)))
    local run = dir .. "/rootlessnetns/rootless-netns/run"
    assert(core.rmtree(run))
    assert(core.symlink(elsewhere, run))
    local code, _, err = helper.cli({ "run", "--", "true" }, env)
    assert.equal(125, code)
    one_line(err)
    assert.matches("run` is a symlink, not a directory; refusing to follow it", err)
    assert.same({}, core.listdir(elsewhere), "made something through the symlink")
    -- a new namespace replaces it
    assert.equal(0, (helper.cli({ "cleanup" }, env)))
    code, _, err = helper.cli({ "--backend", "slirp4netns", "run", "--", "true" }, env)
    assert.equal(0, code, err)
    assert.same({}, core.listdir(elsewhere))
    helper.cli({ "cleanup" }, env)
  end)

  it("refuses an XDG_RUNTIME_DIR too long to build inside, before anything is made", function()
    local dir = helper.tmpdir()
    local xdg = dir
    while #xdg < 2050 do
      xdg = xdg .. "/" .. ("d"):rep(200)
      assert(core.mkdir(xdg, tonumber("700", 8)))
    end
    local code, _, err = helper.cli({ "--backend", "slirp4netns", "setup" }, { XDG_RUNTIME_DIR = xdg })
    assert.equal(125, code)
    one_line(err)
    assert.matches("characters long: the paths made inside it would pass PATH_MAX", err)
    assert.same({}, core.listdir(xdg))
  end)

  userns_it("a run is counted or does not run: a damaged refs/ is rebuilt, an unwritable one refused", function()
    local dir = helper.runtime_dir()
    local env = { XDG_RUNTIME_DIR = dir }
    local marker = helper.tmpdir() .. "/ran"
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, env)))
    local refs = dir .. "/rootlessnetns/rootless-netns/refs"
    assert(core.rmtree(refs))
    helper.write(refs, "not a directory")
    local code, out, err = helper.cli({ "run", "--", "lua5.4", helper.CLI, "status" }, env)
    assert.equal(0, code, err)
    assert.matches("runs 1", out)
    assert.matches("is not a directory; rebuilding it", err)
    assert.equal("directory", core.lstat(refs).type)
    -- read-only where the CLI works (in the holder's mount namespace),
    -- as a full or failing file system would be
    local st = require("cjson").decode((select(2, helper.cli({ "status", "--json" }, env))))
    local holder = math.tointeger(st.holder.pid)
    local function in_holder(cmd)
      local how, status, output = require("rootlessnetns.child").capture({ "nsenter", "-t", tostring(holder),
        "-U", "-m", "--preserve-credentials", "sh", "-c", cmd }, 10000)
      assert.same({ "exited", 0 }, { how, status }, output)
    end
    in_holder(("mount --bind '%s' '%s' && mount -o remount,bind,ro '%s'"):format(refs, refs, refs))
    -- (the slow path: a warm run records itself before it joins anything,
    -- where this read-only view does not reach)
    code, out, err = helper.cli({ "run", "--", "touch", marker },
      { XDG_RUNTIME_DIR = dir, ROOTLESSNETNS_LOG_LEVEL = "warn" })
    in_holder(("umount '%s'"):format(refs))
    assert.equal("", out)
    assert.equal(125, code)
    one_line(err)
    assert.matches("cannot record the command's reference, so it was not run", err)
    assert.is_nil(core.lstat(marker), "the command ran uncounted")
    helper.cli({ "cleanup" }, env)
  end)

  userns_it("refuses a command whose config disagrees with the running namespace", function()
    local dir = helper.runtime_dir()
    local env = { XDG_RUNTIME_DIR = dir }
    local cfgdir = helper.tmpdir()
    helper.write(cfgdir .. "/loopback.lua", "return { slirp4netns = { allow_host_loopback = true } }\n")
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "setup" }, env)))
    for _, case in ipairs {
      { { "--backend", "pasta" }, "backend is slirp4netns, this command asks for pasta" },
      { { "--config", helper.ROOT .. "/examples/loopback-only-backend.lua" },
        "backend is slirp4netns, this command asks for custom:loopback%-only" },
      { { "--config", cfgdir .. "/loopback.lua" },
        "slirp4netns%.allow_host_loopback is false, this command asks for true" },
    } do
      local args = table.move(case[1], 1, #case[1], 1, {})
      table.move({ "run", "--", "true" }, 1, 3, #args + 1, args)
      local code, _, err = helper.cli(args, env)
      assert.equal(125, code, table.concat(args, " "))
      one_line(err)
      assert.matches(case[2], err)
      assert.matches("`rootlessnetns teardown` %(or `cleanup`%) it first", err)
    end
    -- asking for nothing in particular, or for what runs, is fine
    assert.equal(0, (helper.cli({ "run", "--", "true" }, env)))
    assert.equal(0, (helper.cli({ "--backend", "slirp4netns", "run", "--", "true" }, env)))
    assert.equal(0, (helper.cli({ "teardown" }, env)))
    local code, _, err = helper.cli({ "--config", cfgdir .. "/loopback.lua", "run", "--", "true" }, env)
    assert.equal(0, code, err)
    helper.cli({ "cleanup" }, env)
  end)

  userns_it("names the fix when newuidmap is missing", function()
    if not core.lstat("/etc/subuid") then return end
    local dir = helper.runtime_dir()
    local bin = helper.tmpdir()
    for _, tool in ipairs { "lua5.4", "sh", "true", "slirp4netns", "ip" } do
      local path = assert(require("rootlessnetns.child").which(tool))
      assert(core.symlink(path, bin .. "/" .. tool))
    end
    local code, _, err = helper.cli({ "run", "--", "true" }, { XDG_RUNTIME_DIR = dir, PATH = bin })
    local has_ranges = (helper.read("/etc/subuid") or ""):find("^" .. (os.getenv("USER") or "?") .. ":")
      or (helper.read("/etc/subuid") or ""):find("\n" .. (os.getenv("USER") or "?") .. ":")
    if has_ranges then
      assert.equal(125, code)
      one_line(err)
      assert.matches("newuidmap", err)
      assert.matches("uidmap package", err)
    end
    helper.cli({ "cleanup" }, { XDG_RUNTIME_DIR = dir })
  end)
end)

describe("bad input", function()
  local xdg
  before_each(function() xdg = helper.tmpdir() end)
  after_each(function() helper.cleanup_dirs() end)

  local function refused(args, pattern)
    local code, _, err = helper.cli(args, { XDG_RUNTIME_DIR = xdg })
    assert.equal(125, code)
    one_line(err)
    assert.matches(pattern, err)
    assert.same({}, core.listdir(xdg), "something was created")
  end

  it("an unknown backend lists the valid ones", function()
    refused({ "--backend", "vpnkit", "run", "--", "true" }, "valid: auto, pasta, slirp4netns")
  end)

  for _, n in ipairs { "0", "-1", "abc", "1.5", "99999999", "" } do
    it(("--nets %q"):format(n), function()
      refused({ "setup", "--nets", n }, "%-%-nets")
    end)
  end

  it("an unknown log level", function()
    refused({ "--log-level", "loud", "status" }, "unknown log level")
  end)

  it("an unknown or mistyped config key, naming file and key", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/c.lua", "return { bakend = 'pasta' }\n")
    refused({ "--config", dir .. "/c.lua", "status" }, "c.lua`: unknown key `bakend`")
    helper.write(dir .. "/c.lua", "return { slirp4netns = { mtu = '1500' } }\n")
    refused({ "--config", dir .. "/c.lua", "status" }, "key `slirp4netns.mtu` must be a number")
  end)

  it("a malformed config, naming file and line", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/c.lua", "return {\n  backend = 'pasta'\n  userns = 'auto'\n}\n")
    refused({ "--config", dir .. "/c.lua", "status" }, "c.lua:3:")
  end)

  it("a missing config file", function()
    refused({ "--config", "/nonexistent/c.lua", "status" }, "cannot read the file")
  end)

  it("an unknown command or option, and a command given to info", function()
    refused({ "frobnicate" }, "rootlessnetns: ")
    refused({ "run", "--bogus" }, "rootlessnetns: ")
    refused({ "info", "--", "true" }, "takes no command")
  end)
end)
