-- The rockspec installs what the tree has: a module added to lua/ or a
-- C file added to csrc/ and forgotten there would work in the tree and
-- be missing for every LuaRocks user.
local core = require "rootlessnetns"
local helper = require "helper"

local function files(dir, suffix, prefix, out)
  out = out or {}
  for _, name in ipairs(assert(core.listdir(dir))) do
    local path = dir .. "/" .. name
    local st = core.lstat(path)
    if st and st.type == "directory" then
      files(path, suffix, prefix, out)
    elseif name:sub(-#suffix) == suffix then
      out[#out + 1] = path:sub(#prefix + 1)
    end
  end
  table.sort(out)
  return out
end

--- A rockspec's fields, as LuaRocks reads them (a Lua file of globals).
local function load_rockspec(path)
  local text = assert(helper.read(path))
  local fields = {}
  assert(load(text, "@" .. path, "t", fields))()
  return fields, text
end

--- @t without the fields named in @skip.
local function without(t, skip)
  local out = {}
  for k, v in pairs(t) do
    if not skip[k] then out[k] = v end
  end
  return out
end

local SCM = "rockspec/rootlessnetns-scm-1.rockspec"
local RELEASE = ("rockspec/rootlessnetns-%s-1.rockspec"):format(core._VERSION)

for _, name in ipairs { SCM, RELEASE } do
  describe(name, function()
    local text = assert(helper.read(helper.ROOT .. "/" .. name), name .. " is missing")

    it("installs every Lua module of the tree", function()
      for _, path in ipairs(files(helper.ROOT .. "/lua", ".lua", helper.ROOT .. "/")) do
        local module = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
        assert.truthy(text:find(('["%s"] = "%s"'):format(module, path), 1, true), path .. " is not in " .. name)
      end
    end)

    it("builds every C file of the tree", function()
      for _, path in ipairs(files(helper.ROOT .. "/csrc", ".c", helper.ROOT .. "/")) do
        assert.truthy(text:find('"' .. path .. '"', 1, true), path .. " is not in " .. name)
      end
    end)
  end)
end

describe("the release rockspec", function()
  it("is the version the module reports, and names its tag", function()
    assert.matches("^%d+%.%d+%.%d+$", core._VERSION)
    local release = load_rockspec(helper.ROOT .. "/" .. RELEASE)
    assert.equal(core._VERSION .. "-1", release.version)
    assert.equal("v" .. core._VERSION, release.source.tag)
  end)

  it("agrees with the scm one in everything but the version and where it comes from", function()
    local scm = load_rockspec(helper.ROOT .. "/" .. SCM)
    local release = load_rockspec(helper.ROOT .. "/" .. RELEASE)
    assert.equal("scm-1", scm.version)
    assert.same(without(scm, { version = true, source = true }), without(release, { version = true, source = true }))
    assert.equal(scm.source.url, release.source.url)
  end)

  it("is the version the changelog's latest entry names", function()
    local changelog = assert(helper.read(helper.ROOT .. "/CHANGELOG.md"), "no CHANGELOG.md")
    assert.equal(core._VERSION, changelog:match("\n## %[?(%d+%.%d+%.%d+)"))
  end)
end)
