--- Configuration: defaults, the user's Lua file, and validation.
--
-- A config file is Lua that returns a table.  Every key is checked against
-- the schema below; an unknown key or a wrong type is an error naming the
-- file and the key, so a typo never silently falls back to a default.
local M = {}

M.USERNS_MODES = { "auto", "current", "podman" }
M.BUILTIN_BACKENDS = { "auto", "pasta", "slirp4netns" }

--- A fresh table of defaults (callers may modify it).
function M.defaults()
  return {
    backend = "auto",
    pasta_path = nil,          -- default: "pasta" in PATH
    pasta_options = {},
    slirp4netns_path = nil,    -- default: "slirp4netns" in PATH
    slirp4netns = {
      mtu = 65520,
      cidr = nil,              -- default 10.0.2.0/24
      enable_ipv6 = true,
      allow_host_loopback = false,
      outbound_addr = nil,
      outbound_addr6 = nil,
      enable_sandbox = true,
      enable_seccomp = true,
    },
    userns = "auto",
    mounts = nil,              -- function(plan, ctx) -> plan
    resolv_conf = nil,         -- function(text, ctx) -> text
    host_resolv_conf = nil,    -- the host's resolver config (default /etc/resolv.conf)
    cni = false,
    state_dir = nil,           -- default $XDG_RUNTIME_DIR/rootlessnetns
    ready_timeout = 10,        -- seconds a backend may take to become ready
    log_level = nil,
    connect = {                -- `netns connect`: the bridge in the rootless netns
      subnet = "10.89.0.0/24", -- the bridge takes .1, namespaces the others
      subnet6 = nil,           -- an IPv6 /64; default: a ULA stable per network name
      bridge = "rlnsbr0",
      interface = "eth0",      -- the namespace's end of its veth pair
      mtu = nil,               -- default: the kernel's (1500)
    },
  }
end

--- The keys a namespace is built from: once it runs, a command that asks
-- for other values of these cannot have them without a new namespace.
-- (The mount plan and the resolv.conf hook apply to each run instead.)
M.BUILD_KEYS = {
  "backend", "userns", "cni", "host_resolv_conf", "pasta_path", "pasta_options", "slirp4netns_path",
  "slirp4netns.mtu", "slirp4netns.cidr", "slirp4netns.enable_ipv6", "slirp4netns.allow_host_loopback",
  "slirp4netns.outbound_addr", "slirp4netns.outbound_addr6", "slirp4netns.enable_sandbox",
  "slirp4netns.enable_seccomp",
}

--- The value of the dotted key @key in @cfg, as text to record and
-- compare (a list joined, a backend table by its name, nil as "-").
function M.build_value(cfg, key)
  local v = cfg
  for part in key:gmatch("[^.]+") do
    if type(v) ~= "table" then v = nil break end
    v = v[part]
  end
  if type(v) == "table" then
    if v.start then return "custom:" .. tostring(v.name or "custom") end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return "[" .. table.concat(parts, " ") .. "]"
  end
  if v == nil then return "-" end
  return tostring(v)
end

--- What the namespace made under @cfg is built from: key -> value text.
function M.build_record(cfg)
  local rec = {}
  for _, key in ipairs(M.BUILD_KEYS) do rec[key] = M.build_value(cfg, key) end
  return rec
end

--- Where @cfg asks for something other than the namespace @built (a
-- build_record) was made with.  Only what @cfg sets away from the
-- defaults counts: a command that asks for nothing in particular takes
-- the namespace as it is.  "auto" takes any backend.
-- @treturn table list of {key, want, have}
function M.build_conflicts(cfg, built)
  local defaults = M.defaults()
  local out = {}
  for _, key in ipairs(M.BUILD_KEYS) do
    local want, default, have = M.build_value(cfg, key), M.build_value(defaults, key), built[key]
    if type(have) == "string" and want ~= default and want ~= have then
      out[#out + 1] = { key = key, want = want, have = have }
    end
  end
  return out
end

local function one_of(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return function(v)
    if not set[v] then
      return ("must be one of %s"):format(table.concat(list, ", "))
    end
  end
end

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  for _, o in ipairs { a, b, c, d } do
    if tonumber(o) > 255 then return nil end
  end
  return true
end
M.is_ipv4 = ipv4

local function cidr(v)
  local addr, len = v:match("^([%d%.]+)/(%d+)$")
  if not addr or not ipv4(addr) or tonumber(len) > 30 or tonumber(len) < 1 then
    return "must be an IPv4 CIDR such as 10.0.2.0/24"
  end
  local net, host_bits = require("rootlessnetns.addrpool").network(v)
  if host_bits then
    return ("has host bits set (did you mean %s/%s?)"):format(
      require("rootlessnetns.addrpool").format_ipv4(net.network), len)
  end
end

local function list_of_strings(v)
  for i = 1, #v do
    if type(v[i]) ~= "string" then
      return ("item %d must be a string"):format(i)
    end
  end
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > #v then
      return "must be a list of strings"
    end
  end
end

local function integer_between(lo, hi)
  return function(v)
    if math.type(v) ~= "integer" or v < lo or v > hi then
      return ("must be an integer from %d to %d"):format(lo, hi)
    end
  end
end

local function positive(v)
  -- (written so that NaN fails too: every wait has a bound)
  if not (v > 0 and v <= 3600) then return "must be a number of seconds above 0, at most 3600" end
end

local function absolute(v)
  if v:sub(1, 1) ~= "/" then return "must be an absolute path" end
end

local function subnet(v)
  local ok, err = require("rootlessnetns.addrpool").subnet(v)
  if not ok then return "must be an IPv4 subnet from /8 to /29: " .. err end
end

local function subnet6(v)
  local ok, err = require("rootlessnetns.addrpool").subnet6(v)
  if not ok then return "must be an IPv6 /64: " .. err end
end

local function ifname(v)
  if #v < 1 or #v > 15 or not v:match("^[%w_.-]+$") or v == "." or v == ".." then
    return "must be an interface name: 1 to 15 letters, digits, `_`, `.` or `-`"
  end
end

local function backend_value(v)
  if type(v) == "table" then
    local ok, err = require("rootlessnetns.backends").validate(v)
    if not ok then return "is a backend table, but " .. err end
  end
end

--- key -> { types, check, fields (for nested tables) }
M.schema = {
  backend = { types = { "string", "table" }, check = backend_value },
  pasta_path = { types = { "string" }, check = absolute },
  host_resolv_conf = { types = { "string" }, check = absolute },
  pasta_options = { types = { "table" }, check = list_of_strings },
  slirp4netns_path = { types = { "string" }, check = absolute },
  slirp4netns = {
    types = { "table" },
    fields = {
      mtu = { types = { "number" }, check = integer_between(68, 65521) },
      cidr = { types = { "string" }, check = cidr },
      enable_ipv6 = { types = { "boolean" } },
      allow_host_loopback = { types = { "boolean" } },
      outbound_addr = { types = { "string" } },
      outbound_addr6 = { types = { "string" } },
      enable_sandbox = { types = { "boolean" } },
      enable_seccomp = { types = { "boolean" } },
    },
  },
  userns = { types = { "string" }, check = one_of(M.USERNS_MODES) },
  mounts = { types = { "function" } },
  resolv_conf = { types = { "function" } },
  cni = { types = { "boolean" } },
  state_dir = { types = { "string" }, check = absolute },
  ready_timeout = { types = { "number" }, check = positive },
  log_level = { types = { "string" }, check = one_of { "error", "warn", "info", "debug" } },
  connect = {
    types = { "table" },
    fields = {
      subnet = { types = { "string" }, check = subnet },
      subnet6 = { types = { "string" }, check = subnet6 },
      bridge = { types = { "string" }, check = ifname },
      interface = { types = { "string" }, check = ifname },
      mtu = { types = { "number" }, check = integer_between(68, 65520) },
    },
  },
}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

local function check_table(tbl, schema, prefix, out)
  for key, value in pairs(tbl) do
    local name = prefix .. tostring(key)
    local rule = type(key) == "string" and schema[key]
    if not rule then
      return nil, ("unknown key `%s` (known: %s)"):format(name, table.concat(sorted_keys(schema), ", "))
    end
    local ok = false
    for _, t in ipairs(rule.types) do
      if type(value) == t then ok = true end
    end
    if not ok then
      return nil, ("key `%s` must be a %s, not a %s"):format(name, table.concat(rule.types, " or "), type(value))
    end
    if rule.fields then
      local sub, err = check_table(value, rule.fields, name .. ".", out[key] or {})
      if not sub then return nil, err end
      out[key] = sub
    else
      local problem = rule.check and rule.check(value)
      if problem then
        return nil, ("key `%s` %s"):format(name, problem)
      end
      out[key] = value
    end
  end
  return out
end

--- What no single key can tell: the lab's subnet must stay clear of
-- slirp4netns's network, where its gateway and DNS forwarder live (a
-- route to them would go via the lab's bridge, and DNS break).
local function check_across(cfg)
  if cfg.backend ~= "slirp4netns" and cfg.backend ~= "auto" then return cfg end
  local addrpool = require "rootlessnetns.addrpool"
  local lab = addrpool.network(cfg.connect.subnet)
  local slirp_cidr = cfg.slirp4netns.cidr or "10.0.2.0/24"
  local slirp = addrpool.network(slirp_cidr)
  if lab and slirp and addrpool.overlaps(lab, slirp) then
    return nil, ("key `connect.subnet` %s overlaps slirp4netns's network %s (its gateway and DNS are there); "
      .. "choose another, such as 10.89.0.0/24"):format(cfg.connect.subnet, slirp_cidr)
  end
  return cfg
end

--- Validate a user table and merge it over the defaults.
-- @treturn[1] table the effective configuration
-- @return[2] nil, message
function M.validate(tbl, base)
  if type(tbl) ~= "table" then
    return nil, ("must return a table, not a %s"):format(type(tbl))
  end
  local cfg, err = check_table(tbl, M.schema, "", base or M.defaults())
  if not cfg then return nil, err end
  return check_across(cfg)
end

--- Where the config file is: explicit path, else XDG, else /etc.
-- @tparam string|nil explicit the `--config` path, which must exist
-- @tparam function getenv os.getenv or a test's stand-in
-- @treturn string|nil path (nil: no config file, use defaults)
-- @treturn boolean explicit (an explicit path must exist)
function M.locate(explicit, getenv)
  if explicit then return explicit, true end
  local xdg = getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then
    local home = getenv("HOME")
    xdg = home and home ~= "" and (home .. "/.config") or nil
  end
  local candidates = {}
  if xdg then candidates[#candidates + 1] = xdg .. "/rootlessnetns/config.lua" end
  candidates[#candidates + 1] = "/etc/rootlessnetns/config.lua"
  for _, path in ipairs(candidates) do
    local f = io.open(path, "r")
    if f then
      f:close()
      return path, false
    end
  end
  return nil, false
end

--- Load and validate a config file.
-- @treturn[1] table configuration
-- @return[2] nil, "config `path`: ..." with the line for syntax and runtime errors
function M.load(path, base)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then
    local f = io.open(path, "r")
    if not f then
      return nil, ("config `%s`: cannot read the file"):format(path)
    end
    f:close()
    return nil, ("config %s"):format(err)
  end
  local ok, result = pcall(chunk)
  if not ok then
    return nil, ("config %s"):format(tostring(result))
  end
  local cfg, verr = M.validate(result, base)
  if not cfg then
    return nil, ("config `%s`: %s"):format(path, verr)
  end
  return cfg
end

return M
