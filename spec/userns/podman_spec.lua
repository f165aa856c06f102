-- `userns = "podman"`: the rootless netns lives in podman's pause process
-- (`podman unshare`), as podman's own does.  Mixing it with our own
-- holder never destroys a live namespace, and a dead pause process is
-- named, with its fix, and its backend stopped.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

local function have_podman()
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if core.access(dir .. "/podman", "x") then return true end
  end
  return false
end

local podman_it = have_podman() and userns_it
  or function(name) pending(name .. " (podman is not installed)") end

describe("userns = podman", function()
  local env, xdg, conf, pause_file

  -- the CLI as a default-mode user (own holder) or in podman mode
  local function own(args) return helper.cli(args, env) end
  local function podman_mode(args)
    return helper.cli({ "--config", conf, table.unpack(args) }, env)
  end

  local function podman_unshare()
    local argv = { "podman", "unshare", "true" }
    local vars = { PATH = os.getenv("PATH"), HOME = env.HOME, XDG_RUNTIME_DIR = xdg }
    local proc = assert(core.spawn { argv = argv, env = vars, fds = { [0] = false, [1] = false, [2] = false } })
    local how, code = proc:wait(60000)
    assert.same({ "exited", 0 }, { how, code }, "podman unshare true")
  end

  local function pause_pid()
    return math.tointeger(tonumber((helper.read(pause_file) or ""):match("%d+") or ""))
  end

  local function status(run)
    local code, out, err = run { "status", "--json" }
    assert.equal(0, code, err)
    return assert(cjson.decode(out))
  end

  before_each(function()
    xdg = helper.runtime_dir()
    local home = helper.tmpdir()
    -- podman's storage and config of its own for each spec
    env = { XDG_RUNTIME_DIR = xdg, HOME = home, XDG_CONFIG_HOME = false, XDG_DATA_HOME = false }
    conf = home .. "/podman-mode.lua"
    helper.write(conf, 'return { userns = "podman" }\n')
    pause_file = xdg .. "/libpod/tmp/pause.pid"
    podman_unshare()
  end)

  after_each(function()
    podman_mode { "cleanup" }
    own { "cleanup" }
    local pid = pause_pid()
    local st = pid and core.starttime(pid)
    if st then core.kill(pid, st, core.SIGKILL) end
    helper.cleanup_dirs()
  end)

  podman_it("runs in podman's pause process and names it as the holder", function()
    assert.equal(0, (podman_mode { "setup" }))
    local st = status(podman_mode)
    assert.is_true(st.up)
    assert.same({ pid = pause_pid(), alive = true, kind = "podman" }, st.holder)
    local code, out = podman_mode { "info" }
    assert.equal(0, code)
    assert.matches("holder%s+pid " .. pause_pid() .. " %(podman's pause process%)", out)
    -- a command run there that calls us finds the same namespace
    code, out = podman_mode { "run", "--", "lua5.4", helper.CLI, "status", "--json" }
    assert.equal(0, code, out)
    local nested = assert(cjson.decode(out))
    assert.is_true(nested.up)
    assert.equal(1, nested.refs.runs)
    assert.equal(st.backend.pid, nested.backend.pid)
  end)

  podman_it("refuses a default-mode command on a podman-mode namespace, and keeps it", function()
    assert.equal(0, (podman_mode { "setup" }))
    local before = status(podman_mode)
    for _, args in ipairs { { "run", "--", "true" }, { "setup" }, { "teardown" }, { "cleanup" }, { "status" } } do
      local code, out, err = own(args)
      assert.equal(125, code, table.concat(args, " ") .. ": " .. out .. err)
      assert.matches("^rootlessnetns: the rootless netns lives in podman's pause process %(userns = \"podman\"%)"
        .. ", not in rootlessnetns' own holder, which this command uses; [^\n]*`rootlessnetns %-%-config FILE "
        .. "cleanup`%)\n$", err)
    end
    -- nothing of it was lost: the setup reference, the backend, the pin
    local after = status(podman_mode)
    assert.is_true(after.up)
    assert.equal(1, after.refs.nets)
    assert.equal(before.backend.pid, after.backend.pid)
    assert.equal(0, (podman_mode { "run", "--", "true" }))
  end)

  podman_it("refuses a podman-mode command on our own holder's namespace, and keeps it", function()
    assert.equal(0, (own { "setup" }))
    local before = status(own)
    for _, args in ipairs { { "run", "--", "true" }, { "teardown" }, { "cleanup" } } do
      local code, _, err = podman_mode(args)
      assert.equal(125, code, table.concat(args, " ") .. ": " .. err)
      assert.matches("^rootlessnetns: the rootless netns lives in rootlessnetns' own holder, not in podman's "
        .. "pause process %(userns = \"podman\"%), which this command uses; drop userns = \"podman\"", err)
    end
    local after = status(own)
    assert.is_true(after.up)
    assert.equal(1, after.refs.nets)
    assert.equal(before.backend.pid, after.backend.pid)
    assert.equal(before.holder.pid, after.holder.pid)
  end)

  podman_it("keeps a named namespace to the mode it was made in", function()
    assert.equal(0, (podman_mode { "netns", "add", "web" }))
    local code, out, err = own { "netns", "del", "web" }
    assert.equal(125, code, out .. err)
    assert.matches("namespace `web` lives in podman's pause process", err)
    code, out = own { "netns", "list" }
    assert.equal(0, code)
    assert.matches("web%s+elsewhere %(userns = podman%)", out)
    code, out, err = own { "netns", "add", "web" }
    assert.equal(125, code, out .. err)
    assert.matches("namespace `web` lives in podman's pause process", err)
    -- still there, and live, where it was made
    code, out = podman_mode { "netns", "list" }
    assert.equal(0, code)
    assert.matches("web%s+live", out)
    assert.equal(0, (podman_mode { "netns", "exec", "web", "--", "true" }))
    assert.equal(0, (podman_mode { "netns", "del", "web" }))
  end)

  podman_it("names a dead pause process and its fix, and stops the backend it served", function()
    assert.equal(0, (podman_mode { "setup" }))
    local before = status(podman_mode)
    local bst = assert(core.starttime(before.backend.pid))
    local pid = pause_pid()
    assert(core.kill(pid, core.starttime(pid), core.SIGKILL))
    assert(helper.eventually(function()
      local st, pstate = core.starttime(pid)
      return st == nil or pstate == "Z"
    end, 5))
    local code, out, err = podman_mode { "run", "--", "true" }
    assert.equal(125, code, out .. err)
    assert.not_matches("pidfd_open", err)
    assert.matches("rootlessnetns: podman's pause process %(pid " .. pid .. ", from `[^`]+`%) is gone; start a "
      .. "new one with `podman unshare true`\n$", err)
    assert.matches("warning: podman's pause process " .. pid .. " died", err)
    assert(helper.eventually(function() return not core.alive(before.backend.pid, bst) end, 5),
      "the backend of the dead pause process still runs")
    local st = status(podman_mode)
    assert.is_false(st.up)
    assert.same({ alive = false, kind = "podman" }, { alive = st.holder.alive, kind = st.holder.kind })
    code, out, err = podman_mode { "teardown" }
    assert.equal(0, code, out .. err)
    code, out, err = podman_mode { "cleanup" }
    assert.equal(0, code, out .. err)
    -- and with a new pause process, a new namespace
    podman_unshare()
    code, out, err = podman_mode { "run", "--", "true" }
    assert.equal(0, code, out .. err)
  end)
end)
