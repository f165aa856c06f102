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

describe("the rockspec", function()
  local text = assert(helper.read(helper.ROOT .. "/rockspec/rootlessnetns-scm-1.rockspec"))

  it("installs every Lua module of the tree", function()
    for _, path in ipairs(files(helper.ROOT .. "/lua", ".lua", helper.ROOT .. "/")) do
      local module = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.truthy(text:find(('["%s"] = "%s"'):format(module, path), 1, true), path .. " is not in the rockspec")
    end
  end)

  it("builds every C file of the tree", function()
    for _, path in ipairs(files(helper.ROOT .. "/csrc", ".c", helper.ROOT .. "/")) do
      assert.truthy(text:find('"' .. path .. '"', 1, true), path .. " is not in the rockspec")
    end
  end)
end)
