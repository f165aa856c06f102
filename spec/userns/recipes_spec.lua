-- The README's recipes with real clients: the CNI bridge and host-local
-- plugins (`cni = true`), netavark with aardvark-dns, and podman run
-- inside, each run in the rootless netns after `setup`, attaching a named
-- namespace made here.  A recipe whose tool is not installed is pending.
-- Traffic goes only to the namespaces made here (aardvark-dns answers
-- for its own network's names).
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

--- @name on PATH, or the first of @places that exists.
local function program(name, places)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if core.access(dir .. "/" .. name, "x") then return dir .. "/" .. name end
  end
  for _, p in ipairs(places or {}) do
    if core.access(p, "x") then return p end
  end
  return nil
end

local CNI_PATH = "/usr/lib/cni"
local have_cni = core.access(CNI_PATH .. "/bridge", "x") and core.access(CNI_PATH .. "/host-local", "x")
local netavark = program("netavark", { "/usr/lib/podman/netavark", "/usr/libexec/podman/netavark" })
local aardvark = program("aardvark-dns", { "/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns" })
local iptables = program("iptables", { "/usr/sbin/iptables", "/sbin/iptables" })
local podman = program("podman")

--- `it` when every tool is there, else pending naming what is missing.
local function needs(tools)
  local missing = {}
  for _, t in ipairs(tools) do
    if not t[2] then missing[#missing + 1] = t[1] end
  end
  if #missing == 0 then return userns_it end
  return function(name) pending(name .. " (not installed: " .. table.concat(missing, ", ") .. ")") end
end

local cni_it = needs { { "containernetworking-plugins", have_cni } }
local netavark_it = needs { { "netavark", netavark }, { "aardvark-dns", aardvark }, { "iptables", iptables } }
local podman_it = needs { { "podman", podman } }

local MYNET = [[
{ "cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "bridge": "cni0", "isGateway": true,
  "ipam": { "type": "host-local", "subnet": "10.88.0.0/16", "routes": [ { "dst": "0.0.0.0/0" } ] } }
]]

describe("recipes", function()
  local xdg, home, env, conf

  local function cli(args) return helper.cli({ "--config", conf, table.unpack(args) }, env) end

  --- The CNI bridge plugin as the README's cni.sh runs it: @command for
  -- the named namespace @name, inside the rootless netns.
  local function bridge(command, name)
    return cli { "run", "--", "sh", "-c", ('CNI_COMMAND=%s CNI_CONTAINERID=%s CNI_NETNS=%s/netns/%s '
      .. 'CNI_IFNAME=eth0 CNI_PATH=%s exec %s/bridge < %s/mynet.json'):format(command, name, xdg, name, CNI_PATH,
      CNI_PATH, home) }
  end

  --- The addresses of @name's eth0, as "A.B.C.D/P".
  local function addresses(name)
    local code, out, err = cli { "netns", "exec", name, "ip", "-j", "-4", "addr" }
    assert.equal(0, code, err)
    local found = {}
    for _, link in ipairs(assert(cjson.decode(out))) do
      for _, a in ipairs(link.ifname == "eth0" and link.addr_info or {}) do
        found[#found + 1] = ("%s/%d"):format(a["local"], a.prefixlen)
      end
    end
    return found
  end

  local function leases() return xdg .. "/rootlessnetns/rootless-netns/var/lib/cni/networks/mynet" end

  before_each(function()
    xdg, home = helper.runtime_dir(), helper.tmpdir()
    env = { XDG_RUNTIME_DIR = xdg, HOME = home, XDG_CONFIG_HOME = false, XDG_DATA_HOME = false }
    conf = home .. "/cni.lua"
    helper.write(conf, "return { cni = true }\n")
    helper.write(home .. "/mynet.json", MYNET)
  end)

  after_each(function()
    cli { "cleanup" }
    -- an aardvark-dns a failed netavark spec left running
    for _, pid in ipairs(helper.processes(xdg .. "/netavark/aardvark-dns")) do
      local st = core.starttime(pid)
      if st then core.kill(pid, st, core.SIGKILL) end
    end
    helper.cli({ "--config", home .. "/podman-mode.lua", "cleanup" }, env)
    local pause = math.tointeger(tonumber((helper.read(xdg .. "/libpod/tmp/pause.pid") or ""):match("%d+") or ""))
    local st = pause and core.starttime(pause)
    if st then core.kill(pause, st, core.SIGKILL) end
    helper.cleanup_dirs()
  end)

  cni_it("CNI bridge + host-local: an address that reaches the bridge, leases in the state dir", function()
    assert.equal(0, (cli { "setup" }))
    assert.equal(0, (cli { "netns", "add", "web" }))
    local code, out, err = bridge("ADD", "web")
    assert.equal(0, code, out .. err)
    local result = assert(cjson.decode(out), out)
    local address = result.ips[1].address
    assert.matches("^10%.88%.%d+%.%d+/16$", address)
    assert.same({ address }, addresses("web"))
    -- the container reaches the bridge, and the bridge reaches it
    code, out, err = cli { "netns", "exec", "web", "ping", "-c", "1", "-W", "5", "10.88.0.1" }
    assert.equal(0, code, out .. err)
    code, out, err = cli { "run", "--", "ping", "-c", "1", "-W", "5", (address:match("^[^/]+")) }
    assert.equal(0, code, out .. err)
    -- host-local's lease, written inside, is in the state dir on the host
    assert.is_truthy(core.lstat(leases() .. "/" .. address:match("^[^/]+")), "no lease in " .. leases())
    code, out, err = bridge("DEL", "web")
    assert.equal(0, code, out .. err)
    assert.is_nil(core.lstat(leases() .. "/" .. address:match("^[^/]+")))
    assert.same({}, addresses("web"))
    -- the last teardown takes the bridge's state with the namespace
    assert.equal(0, (cli { "netns", "del", "web" }))
    assert.equal(0, (cli { "teardown" }))
    assert.is_nil(core.lstat(xdg .. "/rootlessnetns/rootless-netns"))
  end)

  cni_it("CNI: without cni = true host-local cannot keep its leases", function()
    helper.write(conf, "return {}\n")
    assert.equal(0, (cli { "setup" }))
    assert.equal(0, (cli { "netns", "add", "web" }))
    local code, out = bridge("ADD", "web")
    assert.not_equal(0, code)
    assert.matches("/var/lib/cni", out)
  end)

  cni_it("CNI: a lone run removes everything it attached", function()
    assert.equal(0, (cli { "netns", "add", "web" }))
    -- no setup: the namespace the run made goes when it ends
    local code, out, err = bridge("ADD", "web")
    assert.equal(0, code, out .. err)
    code = cli { "run", "--", "ip", "link", "show", "cni0" }
    assert.not_equal(0, code)
    assert.is_nil(core.lstat(leases()))
  end)

  netavark_it("netavark setup and teardown, with aardvark-dns answering for the container", function()
    local config = xdg .. "/netavark"
    assert(core.mkdir(config, tonumber("700", 8)))
    local id = ("%064x"):format(1)
    helper.write(home .. "/web.json", cjson.encode {
      container_id = id, container_name = "web",
      networks = { lab = { interface_name = "eth0", static_ips = { "10.77.0.5" }, aliases = { "web" } } },
      network_info = { lab = { name = "lab", id = ("%064x"):format(2), driver = "bridge",
        network_interface = "lab0", subnets = { { subnet = "10.77.0.0/24", gateway = "10.77.0.1" } },
        ipv6_enabled = false, internal = false, dns_enabled = true } },
    })
    local function run_netavark(what)
      return cli { "run", "--", "sh", "-c", ('exec %s --rootless true --config %s --aardvark-binary %s %s %s/netns/web'
        .. ' < %s/web.json 2>>%s/netavark.log'):format(netavark, config, aardvark, what, xdg, home, home) }
    end
    assert.equal(0, (cli { "setup" }))
    assert.equal(0, (cli { "netns", "add", "web" }))
    local code, out, err = run_netavark("setup")
    assert.equal(0, code, out .. err .. (helper.read(home .. "/netavark.log") or ""))
    local result = assert(cjson.decode(out), out)
    assert.equal("10.77.0.5/24", result.lab.interfaces.eth0.subnets[1].ipnet)
    assert.same({ "10.77.0.5/24" }, addresses("web"))
    code, out, err = cli { "netns", "exec", "web", "ping", "-c", "1", "-W", "5", "10.77.0.1" }
    assert.equal(0, code, out .. err)
    -- its firewall rules are in the rootless netns
    code, out = cli { "run", "--", iptables, "-t", "nat", "-S" }
    assert.equal(0, code)
    assert.matches("NETAVARK", out)
    -- aardvark-dns, started by netavark, answers for the container's name
    local resolv = helper.tmpdir() .. "/resolv.conf"
    helper.write(resolv, "nameserver 10.77.0.1\nsearch dns.podman\n")
    code, out, err = cli { "netns", "exec", "web", "unshare", "-m", "sh", "-c",
      ("mount --bind %s /etc/resolv.conf && getent hosts web"):format(resolv) }
    assert.equal(0, code, out .. err)
    assert.matches("^10%.77%.0%.5%s+web", out)
    assert.equal(1, #helper.processes(config .. "/aardvark-dns"))
    -- teardown: the interfaces go, and aardvark-dns with the last container
    code, out, err = run_netavark("teardown")
    assert.equal(0, code, out .. err)
    assert.same({}, addresses("web"))
    assert.not_equal(0, (cli { "run", "--", "ip", "link", "show", "lab0" }))
    assert.same({}, helper.settled_processes(config .. "/aardvark-dns", 0))
  end)

  podman_it("podman inside, in podman's pause process, is rootless with the environment podman unshare gives",
    function()
      local mode = home .. "/podman-mode.lua"
      helper.write(mode, 'return { userns = "podman" }\n')
      local proc = assert(core.spawn { argv = { "podman", "unshare", "true" },
        env = { PATH = os.getenv("PATH"), HOME = home, XDG_RUNTIME_DIR = xdg },
        fds = { [0] = false, [1] = false, [2] = false } })
      assert.same({ "exited", 0 }, { proc:wait(60000) })
      local function pm(args) return helper.cli({ "--config", mode, table.unpack(args) }, env) end
      assert.equal(0, (pm { "setup" }))
      local format = "{{.Host.Security.Rootless}} {{.Store.GraphRoot}}"
      -- as root of the user namespace, podman takes itself for root
      local code = pm { "run", "--", "podman", "info", "--format", format }
      assert.not_equal(0, code)
      local uid, gid = core.getuid()
      local code2, out, err = pm { "run", "--", "env", "_CONTAINERS_USERNS_CONFIGURED=done",
        "_CONTAINERS_ROOTLESS_UID=" .. uid, "_CONTAINERS_ROOTLESS_GID=" .. gid, "podman", "info", "--format", format }
      assert.equal(0, code2, err)
      assert.equal("true " .. home .. "/.local/share/containers/storage\n", out)
      assert.equal(0, (pm { "teardown" }))
    end)
end)
