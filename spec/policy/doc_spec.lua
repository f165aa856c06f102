-- The API reference is generated from the sources (make doc): a public
-- function without a doc comment is missing from it without a word, and a
-- topic page that lists config keys drifts from the validator unless
-- something compares them.  Both are checked here, from the text alone.
local core = require "rootlessnetns"
local config = require "rootlessnetns.config"
local helper = require "helper"

local function files(dir, suffix, out)
  out = out or {}
  for _, name in ipairs(assert(core.listdir(dir))) do
    local path = dir .. "/" .. name
    local st = core.lstat(path)
    if st and st.type == "directory" then
      files(path, suffix, out)
    elseif name:sub(-#suffix) == suffix then
      out[#out + 1] = path
    end
  end
  table.sort(out)
  return out
end

local function lines_of(path)
  local out = {}
  for line in assert(helper.read(path)):gmatch("([^\n]*)\n?") do out[#out + 1] = line end
  return out
end

local function short(path)
  return path:sub(#helper.ROOT + 2)
end

describe("doc comments", function()
  it("precede every public function of every Lua module", function()
    local missing = {}
    for _, path in ipairs(files(helper.ROOT .. "/lua/rootlessnetns", ".lua")) do
      local lines = lines_of(path)
      for n, line in ipairs(lines) do
        -- `function M.name(` and `function Class:name(`; a leading _ is private
        local name = line:match("^%s*function%s+[%w_]+[.:]([%w_]+)%s*%(")
        if name and name:sub(1, 1) ~= "_" then
          -- the comment block right above must open with `---`
          local i = n - 1
          while i > 0 and lines[i]:match("^%s*%-%-") and not lines[i]:match("^%s*%-%-%-") do i = i - 1 end
          if not (i > 0 and lines[i]:match("^%s*%-%-%-")) then
            missing[#missing + 1] = ("%s:%d: %s"):format(short(path), n, line:match("^%s*(.-)%s*$"))
          end
        end
      end
    end
    assert.are.same({}, missing)
  end)

  it("document with @function every C function registered for Lua", function()
    local missing = {}
    for _, path in ipairs(files(helper.ROOT .. "/csrc", ".c")) do
      local text = assert(helper.read(path))
      local documented = {}
      for name in text:gmatch("%*%s*@function%s+([%w_.:]+)") do documented[name] = true end
      for name in text:gmatch('{"([%w_]+)",%s*l_[%w_]+}') do
        if not documented[name] then missing[#missing + 1] = short(path) .. ": " .. name end
      end
    end
    assert.are.same({}, missing)
  end)
end)

describe("docs/config.md", function()
  local rows = {}
  for line in assert(helper.read(helper.ROOT .. "/docs/config.md")):gmatch("[^\n]+") do
    local key, types, default = line:match("^| `([%w_.]+)` | ([^|]-) | ([^|]-) |")
    if key then rows[key] = { types = types, default = default } end
  end

  -- every key the validator accepts, dotted for nested tables
  local function each_key(schema, prefix, fn)
    for key, rule in pairs(schema) do
      fn(prefix .. key, rule)
      if rule.fields then each_key(rule.fields, prefix .. key .. ".", fn) end
    end
  end

  local function default_of(key)
    local v = config.defaults()
    for part in key:gmatch("[^.]+") do v = v[part] end
    return v
  end

  -- how a default is written in the table when it is a value
  local function literal(v)
    if type(v) == "string" then return ('`"%s"`'):format(v) end
    if type(v) == "table" then return next(v) == nil and "`{}`" or "see its keys" end
    return ("`%s`"):format(tostring(v))
  end

  it("lists every key the validator accepts, with its types and default", function()
    local problems = {}
    each_key(config.schema, "", function(key, rule)
      local row = rows[key]
      if not row then
        problems[#problems + 1] = key .. ": missing"
        return
      end
      local types = table.concat(rule.types, " or ")
      if row.types ~= types then
        problems[#problems + 1] = ("%s: type %q, the validator says %q"):format(key, row.types, types)
      end
      local default = default_of(key)
      if default ~= nil and row.default ~= literal(default) then
        problems[#problems + 1] = ("%s: default %s, config.defaults() says %s"):format(key, row.default,
          literal(default))
      end
    end)
    table.sort(problems)
    assert.are.same({}, problems)
  end)

  it("lists no key the validator refuses", function()
    local known = {}
    each_key(config.schema, "", function(key) known[key] = true end)
    local extra = {}
    for key in pairs(rows) do
      if not known[key] then extra[#extra + 1] = key end
    end
    table.sort(extra)
    assert.are.same({}, extra)
  end)
end)

describe("the topic pages", function()
  it("never break a code span across lines (LDoc renders it as text)", function()
    local broken = {}
    for _, path in ipairs(files(helper.ROOT .. "/docs", ".md")) do
      local fence = false
      for n, line in ipairs(lines_of(path)) do
        if line:match("^```") then
          fence = not fence
        elseif not fence and select(2, line:gsub("`", "")) % 2 == 1 then
          broken[#broken + 1] = ("%s:%d"):format(short(path), n)
        end
      end
    end
    assert.are.same({}, broken)
  end)

  it("name every key of doctor --json", function()
    local text = assert(helper.read(helper.ROOT .. "/docs/json.md"))
    local result = require("rootlessnetns.doctor").run { getenv = function() return nil end, root = "/nonexistent" }
    local keys = {}
    for _, r in ipairs(result) do
      for k in pairs(r) do keys[k] = true end
    end
    for k in pairs(keys) do
      assert.truthy(text:find('"' .. k .. '":', 1, true), "docs/json.md does not name doctor's key " .. k)
    end
    assert.truthy(text:find('"checks":', 1, true) and text:find('"ok":', 1, true))
  end)
end)
