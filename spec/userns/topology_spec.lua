-- Topology files through the CLI, as an unprivileged user: `lab up` makes
-- a lab and, run again, changes nothing; an edited file converges; `lab
-- down` leaves nothing of it; an `up` SIGKILLed at each of its steps is
-- repaired by the next `up` or `down`; and the two-tier example routes db
-- to web through its router.  Traffic stays among the namespaces made here.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)
local EXAMPLE = helper.ROOT .. "/examples/two-tier.lua"

local function json(text)
  return assert(cjson.decode(text or ""), "not JSON: " .. tostring(text))
end

describe("lab up and down", function()
  local xdg, env, cfg, base, dir

  local function cli(args, extra)
    return helper.cli_with({ "--config", cfg }, function() return env end)(args, extra)
  end

  local function ok(args, extra)
    local code, out, err = cli(args, extra)
    assert.equal(0, code, table.concat(args, " ") .. ": " .. tostring(err))
    return out, err
  end

  local function status(file)
    return json(ok { "lab", "status", file, "--json" })
  end

  local function assert_up_to_date(file)
    local st = status(file)
    for _, kind in ipairs { "networks", "nodes" } do
      for _, e in ipairs(st[kind]) do
        assert.equal("up to date", e.state, ("%s %s: %s"):format(kind, e.name, tostring(e.why)))
      end
    end
    assert.same({}, st.left_over)
    return st
  end

  -- interfaces of the rootless netns (when it is up) whose name starts with @prefix
  local function rootless_links(prefix)
    if not core.lstat(base .. "/rootless-netns/rootless-netns") then return {} end
    local out = ok { "run", "--", "ip", "-o", "link" }
    local found = {}
    for name in out:gmatch("%d+: ([^:@%s]+)") do
      if name:sub(1, #prefix) == prefix then found[#found + 1] = name end
    end
    table.sort(found)
    return found
  end

  -- what the lab leaves: nothing of it, whatever else there was
  local function assert_nothing_left(networks_before)
    assert.same({}, json(ok { "netns", "list", "--json" }), "a namespace is left")
    assert.same({}, core.listdir(xdg .. "/netns") or {}, "a pin is left")
    local st = json(ok { "status", "--json" })
    assert.equal(0, math.tointeger(st.refs.connections), "a connection is left")
    assert.is_false(st.up, "the rootless netns is still held")
    assert.is_nil(core.lstat(base .. "/rootless-netns/leases.json"), "a lease is left")
    assert.same({}, rootless_links("rlns"), "a veth or bridge is left")
    local names = {}
    for _, n in ipairs(json(ok { "network", "list", "--json" })) do names[#names + 1] = n.name end
    table.sort(names)
    assert.same(networks_before or { "default" }, names, "a network is left")
    local records = {}
    for _, f in ipairs(core.listdir(base .. "/labs") or {}) do
      if f ~= "lock" then records[#records + 1] = f end
    end
    assert.same({}, records, "the lab's record is left")
  end

  before_each(function()
    xdg = helper.runtime_dir()
    env = { XDG_RUNTIME_DIR = xdg }
    base = xdg .. "/rootlessnetns"
    dir = helper.tmpdir()
    cfg = dir .. "/config.lua"
    helper.write(cfg, 'return { backend = "slirp4netns" }\n')
  end)

  after_each(function()
    helper.cli({ "cleanup" }, env)
    helper.cleanup_dirs()
  end)

  userns_it("the two-tier example: db reaches web through the router, by address and by name", function()
    local out = ok { "lab", "up", EXAMPLE }
    assert.matches("created network back\n", out)
    assert.matches("started 1 command in web\n", out)
    local st = assert_up_to_date(EXAMPLE)
    assert.equal(3, #st.nodes)
    -- db's way to front is the router's address on back
    assert.matches("via 10%.90%.1%.2", ok { "netns", "exec", "db", "ip", "route", "get", "10.90.0.10" })
    local script = "for i in $(seq 20); do nc -N -w 2 %s 8080 && exit 0; sleep 0.1; done; exit 1"
    assert.equal("hello from web\n", ok { "netns", "exec", "db", "sh", "-c", script:format("10.90.0.10") })
    -- by name: web, reached through the router, and the router itself
    assert.equal("hello from web\n", ok { "netns", "exec", "db", "sh", "-c", script:format("web") })
    ok { "netns", "exec", "db", "ping", "-c", "1", "-W", "5", "router" }
    -- the traffic went through the router: its forwarding is on
    assert.equal("1\n", ok { "netns", "exec", "router", "cat", "/proc/sys/net/ipv4/ip_forward" })
    local dot = ok { "lab", "status", EXAMPLE, "--dot" }
    assert.matches('^graph lab {\n', dot)
    assert.matches('"db" %-%- "net:back" %[label="10%.90%.1%.10[^"]*", style=dashed%]', dot)
    ok { "lab", "down", EXAMPLE }
    assert_nothing_left()
  end)

  userns_it("up twice changes nothing; status --json is the same", function()
    local file = dir .. "/lab.lua"
    helper.write(file, assert(helper.read(EXAMPLE)))
    ok { "lab", "up", file }
    local before = status(file)
    local links = rootless_links("rlns")
    local out = ok { "lab", "up", file }
    assert.equal(("lab `%s`: up to date, nothing changed\n"):format(file), out)
    assert.same(before, status(file))
    assert.same(links, rootless_links("rlns"))
    -- the start command ran once
    local pids = {}
    for _, e in ipairs(json(ok { "netns", "list", "--json" })) do pids[e.name] = #e.pids end
    assert.equal(0, pids.db)
    ok { "lab", "down", file }
    assert_nothing_left()
  end)

  userns_it("an edited file converges, and down removes only what up made", function()
    -- someone else's namespace and network, there before and after
    ok { "netns", "add", "mine" }
    ok { "network", "create", "other", "--subnet", "10.77.0.0/24" }
    ok { "netns", "connect", "mine", "--network", "other" }
    local file = dir .. "/lab.lua"
    local text = assert(helper.read(EXAMPLE))
    helper.write(file, text)
    ok { "lab", "up", file }
    local edited = text:gsub('web = {.-\n    },\n', "", 1)
      :gsub('10%.90%.1%.10', "10.90.1.20")
      :gsub("    db = {", '    cache = { networks = { "back" } },\n    db = {')
    helper.write(file, edited)
    local out = ok { "lab", "up", file }
    assert.matches("deleted web\n", out)
    assert.matches("added cache\n", out)
    assert.matches("connected db to back as 10%.90%.1%.20", out)
    assert_up_to_date(file)
    local names = {}
    for _, e in ipairs(json(ok { "netns", "list", "--json" })) do names[#names + 1] = e.name end
    assert.same({ "cache", "db", "mine", "router" }, names)
    assert.matches("10%.90%.1%.20", ok { "netns", "exec", "db", "ip", "-o", "addr" })
    ok { "netns", "exec", "db", "ping", "-c", "1", "-W", "5", "10.90.0.2" }
    ok { "lab", "down", file }
    local left = json(ok { "netns", "list", "--json" })
    assert.equal(1, #left)
    assert.equal("mine", left[1].name)
    ok { "netns", "exec", "mine", "ip", "-o", "addr", "show", "dev", "eth0" }
    ok { "netns", "del", "mine" }
    assert_nothing_left({ "default", "other" })
  end)

  local POINTS = { "lab-up-network-recorded", "lab-up-network", "lab-up-node-recorded", "lab-up-node",
    "lab-up-connect-recorded", "lab-up-connect", "lab-up-config-recorded", "lab-up-configured",
    "lab-up-start-recorded", "lab-up-started" }
  for _, point in ipairs(POINTS) do
    userns_it("an up SIGKILLed at " .. point .. " is repaired by down, and by the next up", function()
      local file = dir .. "/lab.lua"
      helper.write(file, assert(helper.read(EXAMPLE)))
      assert.equal(128 + core.SIGKILL, (cli({ "lab", "up", file }, { ROOTLESSNETNS_FAULT = point })),
        "the fault point was not reached")
      ok { "lab", "down", file }
      assert_nothing_left()
      assert.equal(128 + core.SIGKILL, (cli({ "lab", "up", file }, { ROOTLESSNETNS_FAULT = point })))
      ok { "lab", "up", file }
      assert_up_to_date(file)
      assert.equal(("lab `%s`: up to date, nothing changed\n"):format(file), (ok { "lab", "up", file }))
      local script = "for i in $(seq 20); do nc -N -w 2 10.90.0.10 8080 && exit 0; sleep 0.1; done; exit 1"
      assert.equal("hello from web\n", ok { "netns", "exec", "db", "sh", "-c", script })
      ok { "lab", "down", file }
      assert_nothing_left()
    end)
  end

  for _, point in ipairs { "lab-down-node", "lab-down-network" } do
    userns_it("a down SIGKILLed at " .. point .. " is finished by the next down", function()
      ok { "lab", "up", EXAMPLE }
      assert.equal(128 + core.SIGKILL, (cli({ "lab", "down", EXAMPLE }, { ROOTLESSNETNS_FAULT = point })))
      ok { "lab", "down", EXAMPLE }
      assert_nothing_left()
    end)
  end

  userns_it("errors name the file and the key, and nothing is made", function()
    local file = dir .. "/lab.lua"
    helper.write(file, 'return { nodes = { db = { networks = { "default" }, routes = { { to = "10.1.0.0/16", '
      .. 'via = "rooter" } } } } }\n')
    local code, _, err = cli { "lab", "up", file }
    assert.equal(125, code)
    assert.equal(("rootlessnetns: topology `%s`: nodes.db.routes[1].via: no node `rooter`\n"):format(file), err)
    assert.same({}, json(ok { "netns", "list", "--json" }))
  end)
end)
