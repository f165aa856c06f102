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
  -- (no room for a lab: this host, loopback, multicast, reserved)
  for _, r in ipairs(M.UNUSABLE4) do
    if M.overlaps({ network = network, prefix = prefix }, r) then
      return nil, ("subnet `%s` is within %s (%s): not for a network"):format(text, r.cidr, r.what)
    end
  end
  return {
    network = network, prefix = prefix, cidr = text,
    gateway = network + 1,
    -- the network and broadcast addresses are never handed out
    first = network + 2, last = network + size - 2,
  }
end

--- IPv4 ranges no lab network may use.
M.UNUSABLE4 = {}
for _, r in ipairs {
  { "0.0.0.0/8", "this network" }, { "127.0.0.0/8", "loopback" },
  { "224.0.0.0/4", "multicast" }, { "240.0.0.0/4", "reserved" },
} do
  local a, p = r[1]:match("^(.+)/(%d+)$")
  M.UNUSABLE4[#M.UNUSABLE4 + 1] = { network = parse_ipv4(a), prefix = tonumber(p), cidr = r[1], what = r[2] }
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

--- Indices stay below this: `rlnsv999999` fits the kernel's 15 characters.
M.INDEX_LIMIT = 1000000

--- The index a new lease gets: the first after @last (an index or nil)
-- that no lease uses, round below M.INDEX_LIMIT; host-side interfaces
-- are named after it.
function M.free_index(leases, last)
  local used = {}
  for _, lease in pairs(leases) do
    if type(lease) == "table" and math.type(lease.index) == "integer" then used[lease.index] = true end
  end
  local i = math.type(last) == "integer" and (last + 1) % M.INDEX_LIMIT or 0
  while used[i] do i = (i + 1) % M.INDEX_LIMIT end
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

-- ------------------------------------------------------------ IPv6

--- The eight 16-bit groups of an IPv6 address (no prefix, no zone), or nil.
function M.parse_ipv6(text)
  if type(text) ~= "string" or not text:match("^[%x:]+$") or #text > 39 then return nil end
  local head, tail = text:match("^(.-)::(.*)$")
  if head and (head:find("::", 1, true) or tail:find("::", 1, true)) then return nil end
  local function groups(part)
    local out = {}
    if part == "" then return out end
    for g in (part .. ":"):gmatch("([^:]*):") do
      if not g:match("^%x%x?%x?%x?$") then return nil end
      out[#out + 1] = tonumber(g, 16)
    end
    return out
  end
  local a, b
  if head then a, b = groups(head), groups(tail) else a, b = groups(text), {} end
  if not (a and b) then return nil end
  if (head and #a + #b > 7) or (not head and #a ~= 8) then return nil end
  local out = {}
  for i = 1, #a do out[i] = a[i] end
  for _ = 1, 8 - #a - #b do out[#out + 1] = 0 end
  for i = 1, #b do out[#out + 1] = b[i] end
  return out
end

--- Eight 16-bit groups as IPv6 text, as `ip` prints it (RFC 5952: the
-- longest run of two or more zero groups is `::`).
function M.format_ipv6(g)
  local best, best_len, i = nil, 1, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j + 1 <= 8 and g[j + 1] == 0 do j = j + 1 end
      if j - i + 1 > best_len then best, best_len = i, j - i + 1 end
      i = j + 1
    else
      i = i + 1
    end
  end
  local function hex(from, to)
    local out = {}
    for k = from, to do out[#out + 1] = ("%x"):format(g[k]) end
    return table.concat(out, ":")
  end
  if not best then return hex(1, 8) end
  return hex(1, best - 1) .. "::" .. hex(best + best_len, 8)
end

--- An address of the /64 whose first four groups are @prefix, with
-- interface identifier @host (an integer below 2^32), as text.
function M.format_ipv6_host(prefix, host)
  return M.format_ipv6 { prefix[1], prefix[2], prefix[3], prefix[4], 0, 0, host >> 16 & 0xffff, host & 0xffff }
end

--- Parse "X:X:X:X::/64" as a lab network's IPv6 subnet (a /64 only: one
-- address per IPv4 host, the same host number).
-- @treturn[1] table {prefix = {g1..g4}, cidr, gateway}
-- @return[2] nil, message
function M.subnet6(text)
  local addr, plen = (type(text) == "string" and text or ""):match("^([%x:]+)/(%d+)$")
  local g = M.parse_ipv6(addr)
  if not g or plen ~= "64" then
    return nil, ("`%s` is not an IPv6 /64 subnet (X:X:X:X::/64)"):format(tostring(text))
  end
  for i = 5, 8 do
    if g[i] ~= 0 then return nil, ("subnet `%s` has host bits set"):format(text) end
  end
  -- unique local (fc00::/7) or global unicast (2000::/3) only
  if not (g[1] & 0xfe00 == 0xfc00 or g[1] & 0xe000 == 0x2000) then
    return nil, ("subnet `%s` is neither unique local (fc00::/7) nor global unicast (2000::/3)"):format(text)
  end
  local prefix = { g[1], g[2], g[3], g[4] }
  return { prefix = prefix, cidr = M.format_ipv6 { g[1], g[2], g[3], g[4], 0, 0, 0, 0 } .. "/64",
    gateway = M.format_ipv6_host(prefix, 1) }
end

--- A unique local /64 (fd00::/8) for the network @name: stable, the same
-- name gives the same subnet (its 40-bit global ID is a hash of @name).
function M.ula(name)
  local h = 0xcbf29ce484222325
  for i = 1, #name do h = ((h ~ name:byte(i)) * 0x100000001b3) & 0xffffffffffffffff end
  local id = h >> 24 -- 40 bits
  return M.subnet6(("fd%02x:%x:%x::/64"):format(id >> 32 & 0xff, id >> 16 & 0xffff, id & 0xffff))
end

--- The IPv6 address of the host whose IPv4 address is @addr4 in @net:
-- the same host number in @net6.
function M.ipv6_of(net, net6, addr4)
  return M.format_ipv6_host(net6.prefix, parse_ipv4(addr4) - net.network)
end

--- Check an address asked for with --ip6: inside @net6, not the
-- gateway, not leased to another name.
-- @treturn[1] string the address
-- @return[2] nil, message
function M.check_requested6(net6, leases, text)
  local g = M.parse_ipv6(text)
  if not g then return nil, ("--ip6 `%s` is not an IPv6 address"):format(tostring(text)) end
  for i = 1, 4 do
    if g[i] ~= net6.prefix[i] then return nil, ("--ip6 `%s` is outside %s"):format(text, net6.cidr) end
  end
  if g[5] ~= 0 or g[6] ~= 0 or (g[7] == 0 and g[8] <= 1) then
    return nil, ("--ip6 `%s`: the interface identifier must be from ::2 to ::ffff:ffff"):format(text)
  end
  local addr = M.format_ipv6_host(net6.prefix, g[7] << 16 | g[8])
  for name, lease in pairs(leases) do
    if type(lease) == "table" and lease.address6 == addr then
      return nil, ("--ip6 `%s` is already leased to `%s`"):format(text, name)
    end
  end
  return addr
end

return M
