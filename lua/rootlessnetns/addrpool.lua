--- IPv4 subnets and the address allocator of `netns connect`: pure
-- functions of their inputs, no I/O.
--
-- The bridge takes the subnet's first host address; namespaces get the
-- others.  Allocation goes round from the address after the last one
-- handed out, so a freed address is the last to be handed out again (a
-- peer's stale ARP entry for it has time to expire), and an address in
-- use is never handed out twice.
local M = {}

local function parse_ipv4(text)
  if type(text) ~= "string" then return nil end
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local n = 0
  for _, part in ipairs { a, b, c, d } do
    local v = tonumber(part)
    if v > 255 or (#part > 1 and part:sub(1, 1) == "0") then return nil end
    n = n * 256 + v
  end
  return n
end
M.parse_ipv4 = parse_ipv4

--- An IPv4 address as dotted text, from its 32-bit integer (the inverse
-- of parse_ipv4).
-- @tparam int n 0 to 2^32-1
-- @treturn string "A.B.C.D"
function M.format_ipv4(n)
  return ("%d.%d.%d.%d"):format(n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)
end

local function split_cidr(text)
  if type(text) ~= "string" then return nil end
  local addr, prefix = text:match("^([%d.]+)/(%d+)$")
  if not addr then return parse_ipv4(text), nil end
  return parse_ipv4(addr), math.tointeger(tonumber(prefix))
end

--- Parse "A.B.C.D/P" as a subnet for the bridge.
-- @treturn[1] table {network, prefix, gateway, first, last, cidr}
-- @return[2] nil, message
function M.subnet(text)
  local addr, prefix = split_cidr(text)
  if not addr or not prefix then
    return nil, ("`%s` is not an IPv4 subnet (A.B.C.D/P)"):format(tostring(text))
  end
  if prefix < 8 or prefix > 29 then
    return nil, ("subnet `%s`: the prefix must be from 8 to 29"):format(text)
  end
  local size = 1 << (32 - prefix)
  local network = addr & ~(size - 1) & 0xffffffff
  if network ~= addr then
    return nil, ("subnet `%s` has host bits set (did you mean %s/%d?)"):format(
      text, M.format_ipv4(network), prefix)
  end
  return {
    network = network, prefix = prefix, cidr = text,
    gateway = network + 1,
    -- the network and broadcast addresses are never handed out
    first = network + 2, last = network + size - 2,
  }
end

local function in_use(leases)
  local used = {}
  for name, lease in pairs(leases) do
    local a = parse_ipv4(type(lease) == "table" and lease.address or nil)
    if a then used[a] = name end
  end
  return used
end

--- Check an address asked for with --ip: inside @net, neither its
-- network, broadcast nor gateway address, not leased to another name.
-- @tparam string text "A.B.C.D" or "A.B.C.D/P" (P must be the subnet's)
-- @treturn[1] string the address (no prefix)
-- @return[2] nil, message
function M.check_requested(net, leases, text)
  local addr, prefix = split_cidr(text)
  if not addr then
    return nil, ("--ip `%s` is not an IPv4 address (A.B.C.D or A.B.C.D/P)"):format(tostring(text))
  end
  if prefix and prefix ~= net.prefix then
    return nil, ("--ip `%s`: the prefix must be the bridge subnet's, /%d (%s)"):format(
      text, net.prefix, net.cidr)
  end
  if addr < net.network or addr > net.last + 1 then
    return nil, ("--ip `%s` is outside the bridge subnet %s"):format(text, net.cidr)
  end
  if addr == net.gateway then
    return nil, ("--ip `%s` is the bridge's own address"):format(text)
  end
  if addr < net.first or addr > net.last then
    return nil, ("--ip `%s` is the network or broadcast address of %s"):format(text, net.cidr)
  end
  local holder = in_use(leases)[addr]
  if holder then
    return nil, ("--ip `%s` is already leased to `%s`"):format(text, holder)
  end
  return M.format_ipv4(addr)
end

--- The next free address after @last (an address string or nil).
-- @treturn[1] string address
-- @return[2] nil, message (the subnet is full)
function M.next_free(net, leases, last)
  local used = in_use(leases)
  local span = net.last - net.first + 1
  local start = parse_ipv4(last)
  start = (start and start >= net.first and start <= net.last) and (start - net.first + 1) or 0
  for i = 0, span - 1 do
    local candidate = net.first + (start + i) % span
    if not used[candidate] then return M.format_ipv4(candidate) end
  end
  return nil, ("no free address left in %s (%d leased)"):format(net.cidr, span)
end

--- The smallest index not used by a lease: host-side interfaces are
-- named after it, which keeps them within the kernel's 15 characters.
function M.free_index(leases)
  local used = {}
  for _, lease in pairs(leases) do
    if type(lease) == "table" and math.type(lease.index) == "integer" then used[lease.index] = true end
  end
  local i = 0
  while used[i] do i = i + 1 end
  return i
end

--- The network "A.B.C.D/P" (any prefix, 0 to 32) as {network, prefix},
-- with the host bits cleared; a bare address is a /32.
-- @treturn[1] table
-- @treturn[1] boolean were host bits set?
-- @return[2] nil (not an IPv4 address or network)
function M.network(text)
  local addr, prefix = split_cidr(text)
  if not addr then return nil end
  prefix = prefix or 32
  if prefix < 0 or prefix > 32 then return nil end
  local mask = prefix == 0 and 0 or (0xffffffff << (32 - prefix)) & 0xffffffff
  return { network = addr & mask, prefix = prefix }, addr & mask ~= addr
end

--- Do two subnets overlap?
function M.overlaps(a, b)
  local lo_a, hi_a = a.network, a.network + (1 << (32 - a.prefix)) - 1
  local lo_b, hi_b = b.network, b.network + (1 << (32 - b.prefix)) - 1
  return lo_a <= hi_b and lo_b <= hi_a
end

return M
