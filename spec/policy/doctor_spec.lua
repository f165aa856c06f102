local core = require "rootlessnetns"
local doctor = require "rootlessnetns.doctor"
local helper = require "helper"

local function by_name(results)
  local out = {}
  for _, r in ipairs(results) do out[r.name] = r end
  return out
end

describe("doctor", function()
  after_each(function() helper.cleanup_dirs() end)

  it("checks this machine, each line ok, warn or fail with a fix", function()
    local results = doctor.run { getenv = os.getenv }
    assert.is_true(#results >= 7)
    for _, r in ipairs(results) do
      assert.is_truthy(r.status == "ok" or r.status == "warn" or r.status == "fail", r.name)
      assert.is_string(r.detail)
      if r.status ~= "ok" then assert.is_string(r.fix, r.name .. " has no fix") end
    end
    local names = by_name(results)
    for _, n in ipairs { "user namespaces", "subordinate ids", "newuidmap", "newgidmap", "/dev/net/tun",
                         "pasta", "slirp4netns", "link shaping", "XDG_RUNTIME_DIR" } do
      assert.is_table(names[n], n)
    end
  end)

  it("says which shaping options this kernel has, by trying them", function()
    local have = doctor.shaping(os.getenv)
    if not have then return pending("no tc, or no user namespaces here") end
    local r = by_name(doctor.run { getenv = os.getenv })["link shaping"]
    if have.netem then
      assert.equal("ok", r.status)
    else
      assert.equal("warn", r.status)
      assert.matches("sch_netem", r.detail, 1, true)
      assert.matches("--delay", r.detail, 1, true)
    end
    assert.is_boolean(have.tbf)
    assert.is_boolean(have.htb)
  end)

  it("fails on a faked host without user namespaces, tun device or subordinate ids", function()
    local root = helper.tmpdir()
    for _, d in ipairs { "/proc", "/proc/sys", "/proc/sys/user", "/proc/sys/kernel", "/etc", "/dev" } do
      assert(core.mkdir(root .. d))
    end
    helper.write(root .. "/proc/sys/user/max_user_namespaces", "0\n")
    helper.write(root .. "/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n")
    for _, d in ipairs { "/sys", "/sys/module", "/sys/module/apparmor", "/sys/module/apparmor/parameters",
                         "/etc/apparmor.d" } do
      assert(core.mkdir(root .. d))
    end
    helper.write(root .. "/sys/module/apparmor/parameters/enabled", "Y\n")
    helper.write(root .. "/etc/apparmor.d/usr.bin.passt", "profile passt {}\n")
    local results = doctor.run { getenv = os.getenv, root = root, user = "nobody-here" }
    local r = by_name(results)
    assert.equal("fail", r["user namespaces"].status)
    assert.matches("max_user_namespaces", r["user namespaces"].fix)
    assert.equal("warn", r["apparmor userns restriction"].status)
    assert.equal("warn", r["apparmor passt profile"].status)
    assert.matches("slirp4netns", r["apparmor passt profile"].fix)
    assert.equal("warn", r["subordinate ids"].status)
    assert.matches("usermod %-%-add%-subuids", r["subordinate ids"].fix)
    assert.equal("fail", r["/dev/net/tun"].status)
    assert.is_true(doctor.failed(results))
  end)

  it("fails when XDG_RUNTIME_DIR is unusable", function()
    local env = { XDG_RUNTIME_DIR = "relative" }
    local r = by_name(doctor.run { getenv = function(k) return env[k] end })
    assert.equal("fail", r.XDG_RUNTIME_DIR.status)
  end)
end)

describe("doctor on the command line", function()
  after_each(function() helper.cleanup_dirs() end)

  it("prints JSON with every check and exits by the verdict", function()
    local code, out = helper.cli({ "doctor", "--json" }, { XDG_RUNTIME_DIR = helper.tmpdir() })
    local doc = assert(require("cjson").decode(out))
    assert.is_table(doc.checks)
    assert.equal(doc.ok and 0 or 1, code)
    code, out = helper.cli({ "doctor" }, { XDG_RUNTIME_DIR = "relative" })
    assert.equal(1, code)
    assert.matches("fail  XDG_RUNTIME_DIR", out)
  end)
end)

describe("doctor's subordinate ids", function()
  after_each(function() helper.cleanup_dirs() end)

  local function fake_root(passwd, subuid, subgid)
    local root = helper.tmpdir()
    assert(core.mkdir(root .. "/etc"))
    helper.write(root .. "/etc/passwd", passwd)
    helper.write(root .. "/etc/subuid", subuid)
    helper.write(root .. "/etc/subgid", subgid)
    return root
  end

  it("names the real uid's user, whatever $USER says", function()
    local root = fake_root("root:x:0:0::/root:/bin/sh\nalice:x:4321:4321::/home/alice:/bin/sh\n",
      "alice:200000:65536\n", "alice:200000:65536\n")
    for _, user in ipairs { false, "root" } do
      local r = by_name(doctor.run { root = root, uid = 4321,
        getenv = function(k) if k == "USER" then return user or nil end return os.getenv(k) end })
      assert.equal("ok", r["subordinate ids"].status)
    end
  end)

  it("suggests a range that no user has in either file", function()
    local root = fake_root("bob:x:4322:4322::/home/bob:/bin/sh\n",
      "alice:100000:65536\ncarol:231072:65536\n", "alice:100000:65536\ndave:165536:1000\n")
    local r = by_name(doctor.run { root = root, uid = 4322, getenv = os.getenv })
    assert.equal("warn", r["subordinate ids"].status)
    assert.equal("usermod --add-subuids 296608-362143 --add-subgids 296608-362143 bob", r["subordinate ids"].fix)
  end)

  it("finds free ranges around the used ones", function()
    assert.same({ 100000, 165535 }, { doctor.free_range({ "", nil }, 65536) })
    assert.same({ 165536, 231071 }, { doctor.free_range({ "a:100000:65536\n", "" }, 65536) })
    assert.same({ 231072, 296607 }, { doctor.free_range({ "a:100000:65536\n", "b:170000:10\n" }, 65536) })
  end)
end)
