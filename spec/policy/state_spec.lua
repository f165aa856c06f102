local core = require "rootlessnetns"
local state = require "rootlessnetns.state"
local holder = require "rootlessnetns.holder"
local helper = require "helper"

local O700, O755 = tonumber("700", 8), tonumber("755", 8)

describe("state files", function()
  local dir
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.cleanup_dirs() end)

  local cases = {
    { nil, 0, nil }, { "", 0, nil }, { "3", 3, nil }, { " 7\n", 7, nil },
    { "abc", 0, "not a number" }, { "-1", 0, "negative count" },
    { "1048560", 1048560, nil }, { "99999999999", 99999999999, nil },
    { "99999999999999999999", 0, "not a number" }, { "1e3", 0, "not a number" },
  }
  for _, c in ipairs(cases) do
    it(("read a ref-count of %q as %d"):format(tostring(c[1]), c[2]), function()
      local path = dir .. "/ref-count"
      if c[1] then helper.write(path, c[1]) end
      local n, warning = state.read_count(path)
      assert.equal(c[2], n)
      if c[3] then assert.matches(c[3], warning) else assert.is_nil(warning) end
    end)
  end

  it("round-trip JSON and name the file holding garbage", function()
    assert(state.write_json(dir .. "/x.json", { pid = 5, starttime = 7 }))
    local rec = state.read_json(dir .. "/x.json")
    assert.is_true(state.valid_identity(rec))
    assert.equal("integer", math.type(rec.pid))
    helper.write(dir .. "/bad.json", "{nope")
    local v, err = state.read_json(dir .. "/bad.json")
    assert.is_nil(v)
    assert.matches("bad.json`: not a JSON object", err)
    assert.is_nil((state.read_json(dir .. "/missing.json")))
  end)

  it("accept only sane identities", function()
    assert.is_false(state.valid_identity { pid = -1, starttime = 1 })
    assert.is_false(state.valid_identity { pid = 1.5, starttime = 1 })
    assert.is_false(state.valid_identity { pid = "1", starttime = 1 })
    assert.is_false(state.valid_identity(nil))
  end)

  it("count only the records of live processes and reap the rest", function()
    local p = state.paths(dir)
    assert(state.prepare_dir(p))
    assert(state.add_ref(p, core.getpid(), core.starttime(core.getpid())))
    assert(state.add_ref(p, core.getpid(), 1)) -- a reused pid
    helper.write(p.refs .. "/garbage", "")
    assert.equal(1, state.live_refs(p))
    assert.same({ ("%d-%d"):format(core.getpid(), core.starttime(core.getpid())) }, core.listdir(p.refs))
  end)
end)

describe("directory checks", function()
  after_each(function() helper.cleanup_dirs() end)
  local uid = core.getuid()

  it("accept a private directory of ours", function()
    local dir = helper.tmpdir()
    assert.is_true(state.check_private_dir(dir, uid, tonumber("077", 8), "state dir"))
  end)

  it("refuse a symlink, a file, another owner and an open mode", function()
    local dir = helper.tmpdir()
    assert(core.symlink(dir, dir .. "/link"))
    local _, err = state.check_private_dir(dir .. "/link", uid, 0, "state dir")
    assert.matches("is a symlink", err)
    helper.write(dir .. "/file", "")
    _, err = state.check_private_dir(dir .. "/file", uid, 0, "state dir")
    assert.matches("not a directory", err)
    _, err = state.check_private_dir(dir, uid + 1, 0, "state dir")
    assert.matches("is owned by uid", err)
    assert(core.chmod(dir, O755))
    _, err = state.check_private_dir(dir, uid, tonumber("077", 8), "state dir")
    assert.matches("has mode 0755, open to other users", err)
    assert(core.chmod(dir, O700))
  end)

  it("resolve XDG_RUNTIME_DIR, refusing a relative one", function()
    local dir = helper.tmpdir()
    local env = { XDG_RUNTIME_DIR = dir }
    assert.equal(dir, state.runtime_dir(function(k) return env[k] end, uid))
    env.XDG_RUNTIME_DIR = "relative/dir"
    local v, err = state.runtime_dir(function(k) return env[k] end, uid)
    assert.is_nil(v)
    assert.matches("not an absolute path", err)
  end)

  it("fall back to $TMPDIR/rootlessnetns-run-<uid>", function()
    local tmp = helper.tmpdir()
    local env = { TMPDIR = tmp }
    local got = state.runtime_dir(function(k) return env[k] end, uid)
    if got:match("^/run/user/") then return end -- this host has a real one
    assert.equal(("%s/rootlessnetns-run-%d"):format(tmp, uid), got)
    assert.equal(O700, core.lstat(got).mode)
  end)
end)

describe("subordinate ids", function()
  it("parse ranges by name or uid, sorted", function()
    local text = "alice:200000:1000\nbob:100000:65536\n1000:100:10\n# x\nalice:100000:5\nbroken line\n"
    assert.same({ { start = 100000, count = 5 }, { start = 200000, count = 1000 } },
      holder.parse_subids(text, "alice", 1001))
    assert.same({ { start = 100, count = 10 } }, holder.parse_subids(text, "carol", 1000))
  end)

  it("map 0 to the user and the ranges from 1 on", function()
    assert.same({ "42", "0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10" },
      holder.map_args(42, 1000, { { start = 100000, count = 65536 }, { start = 300000, count = 10 } }))
    local args, err = holder.map_args(42, 1000, { { start = 900, count = 200 } })
    assert.is_nil(args)
    assert.matches("includes the user's own id", err)
  end)
end)
