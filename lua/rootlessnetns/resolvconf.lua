--- resolv.conf for the namespace: a pure function of its inputs.
--
-- As podman builds it: the backend's forwarders first, then the host's own
-- servers minus those that cannot work from another network namespace
-- (loopback, and IPv6 with a zone or when IPv6 is off); the host's last
-- `search` and `options` lines kept; public fallbacks when nothing is left.
local M = {}

M.STUBS = {
  ["127.0.0.53"] = "/run/systemd/resolve/resolv.conf",          -- systemd-resolved
  ["127.0.0.1"] = "/run/NetworkManager/no-stub-resolv.conf",    -- NetworkManager dns stub
}

M.FALLBACK4 = { "8.8.8.8", "8.8.4.4" }
M.FALLBACK6 = { "2001:4860:4860::8888", "2001:4860:4860::8844" }

local function is_ipv4(s)
  return s:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

local function is_ipv6(s)
  return s:find(":", 1, true) ~= nil and s:match("^[%x:%.]+%%?[%w_.-]*$") ~= nil
end

local function is_loopback(s)
  return s:match("^127%.") ~= nil or s == "::1"
end

--- Parse resolv.conf text.
-- @treturn table {nameservers = {...}, search = {...}|nil, options = {...}|nil}
function M.parse(text)
  local out = { nameservers = {} }
  for line in (text or ""):gmatch("[^\n]+") do
    line = line:gsub("[#;].*$", "")
    local key, rest = line:match("^%s*(%S+)%s*(.-)%s*$")
    if key == "nameserver" then
      local addr = rest:match("^(%S+)")
      if addr and (is_ipv4(addr) or is_ipv6(addr)) then
        out.nameservers[#out.nameservers + 1] = addr
      end
    elseif key == "search" or key == "domain" then
      -- the last search/domain line wins, as in the resolver
      local words = {}
      for w in rest:gmatch("%S+") do words[#words + 1] = w end
      out.search = words
    elseif key == "options" then
      local words = {}
      for w in rest:gmatch("%S+") do words[#words + 1] = w end
      out.options = words
    end
  end
  return out
end

--- Which file holds the real upstream servers: a single local stub
-- nameserver means systemd-resolved or NetworkManager's stub.
function M.stub_source(parsed)
  if #parsed.nameservers == 1 then
    return M.STUBS[parsed.nameservers[1]]
  end
end

--- Build the namespace's resolv.conf.
-- @tparam table args
--   host (string): the host's /etc/resolv.conf text ("" when missing)
--   read (function(path) -> text|nil): reads the stub's real file
--   nameservers (list): the backend's DNS forwarders, first
--   ipv6 (boolean): IPv6 works inside
-- @treturn string
function M.generate(args)
  local host = M.parse(args.host)
  local stub = M.stub_source(host)
  if stub and args.read then
    local real = args.read(stub)
    if real then host = M.parse(real) end
  end
  local servers, seen = {}, {}
  local function add(s)
    if not seen[s] then
      seen[s] = true
      servers[#servers + 1] = s
    end
  end
  for _, s in ipairs(args.nameservers or {}) do add(s) end
  local kept = 0
  for _, s in ipairs(host.nameservers) do
    local v6 = not is_ipv4(s)
    local drop = is_loopback(s) or (v6 and (not args.ipv6 or s:find("%", 1, true)))
    if not drop then
      add(s)
      kept = kept + 1
    end
  end
  if kept == 0 then
    for _, s in ipairs(M.FALLBACK4) do add(s) end
    if args.ipv6 then
      for _, s in ipairs(M.FALLBACK6) do add(s) end
    end
  end
  local lines = {}
  if host.search and #host.search > 0 and not (#host.search == 1 and host.search[1] == ".") then
    lines[#lines + 1] = "search " .. table.concat(host.search, " ")
  end
  for _, s in ipairs(servers) do lines[#lines + 1] = "nameserver " .. s end
  if host.options and #host.options > 0 then
    lines[#lines + 1] = "options " .. table.concat(host.options, " ")
  end
  return table.concat(lines, "\n") .. "\n"
end

return M
