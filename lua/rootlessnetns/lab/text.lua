--- What the lab asks `ip -batch` and `nft -f` to do, as text: pure
-- functions of their inputs, so every line is tested without a namespace.
local addrpool = require "rootlessnetns.addrpool"

local M = {}

--- The nftables table of the lab (inet: IPv4 and IPv6).
M.NFT_TABLE = "rootlessnetns"

local function mtu_of(c) return c.mtu and (" mtu " .. c.mtu) or "" end

--- The bridge of network @n inside the rootless netns, with the
-- gateway's addresses (IPv6 without duplicate address detection: it is
-- usable at once).
-- @tparam table c the config's `connect` table (its mtu)
-- @tparam table n a network (rootlessnetns.lab.networks.get)
function M.bridge(c, n)
  local lines = {
    ("link add %s%s type bridge"):format(n.bridge, mtu_of(c)),
    ("addr add %s/%d dev %s"):format(addrpool.format_ipv4(n.net.gateway), n.net.prefix, n.bridge),
  }
  if n.net6 then lines[#lines + 1] = ("addr add %s/64 dev %s nodad"):format(n.net6.gateway, n.bridge) end
  lines[#lines + 1] = ("link set %s up"):format(n.bridge)
  return lines
end

--- One nft transaction that replaces our table whole, for the list of
-- networks @nets: what leaves a network that is not internal for
-- elsewhere than the lab is masqueraded (IPv4 and IPv6); an internal
-- network's bridge forwards nothing out.  (The table of older versions,
-- `ip rootlessnetns`, goes too.)
function M.rules(nets)
  local v4, v6 = {}, {}
  for _, n in ipairs(nets) do
    v4[#v4 + 1] = n.subnet
    if n.subnet6 then v6[#v6 + 1] = n.subnet6 end
  end
  local lab4, lab6 = "{ " .. table.concat(v4, ", ") .. " }", "{ " .. table.concat(v6, ", ") .. " }"
  local lines = {
    ("add table ip %s"):format(M.NFT_TABLE),
    ("delete table ip %s"):format(M.NFT_TABLE),
    ("add table inet %s"):format(M.NFT_TABLE),
    ("delete table inet %s"):format(M.NFT_TABLE),
    ("table inet %s {"):format(M.NFT_TABLE),
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
  }
  for _, n in ipairs(nets) do
    if not n.internal then
      lines[#lines + 1] = ("    ip saddr %s ip daddr != %s masquerade"):format(n.subnet, lab4)
      if n.subnet6 then lines[#lines + 1] = ("    ip6 saddr %s ip6 daddr != %s masquerade"):format(n.subnet6, lab6) end
    end
  end
  lines[#lines + 1] = "  }"
  lines[#lines + 1] = "  chain forward {"
  lines[#lines + 1] = "    type filter hook forward priority filter; policy accept;"
  for _, n in ipairs(nets) do
    -- (routed only: where br_netfilter is loaded, frames bridged between
    -- two namespaces on the network pass this hook too, out the bridge)
    if n.internal then lines[#lines + 1] = ("    iifname %q oifname != %q drop"):format(n.bridge, n.bridge) end
  end
  lines[#lines + 1] = "  }"
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

--- The veth pair of a lease, run in the rootless netns: its host end on
-- its network's bridge, its other end moved into the namespace pinned
-- at @peer_pin.
function M.veth(lease, c, peer_pin)
  local mtu = mtu_of(c)
  return {
    ("link add %s%s type veth peer name %s%s netns %s"):format(lease.host_interface, mtu, lease.interface, mtu,
      peer_pin),
    ("link set %s master %s"):format(lease.host_interface, lease.bridge),
    ("link set %s up"):format(lease.host_interface),
  }
end

--- The addresses and routes of a lease, run in its namespace: IPv6
-- without duplicate address detection (never tentative when a command
-- starts); a default route when the lease carries it.
function M.address(lease)
  local dev = lease.interface
  local lines = { ("addr add %s/%d dev %s"):format(lease.address, lease.prefix, dev) }
  if lease.address6 then lines[#lines + 1] = ("addr add %s/64 dev %s nodad"):format(lease.address6, dev) end
  lines[#lines + 1] = ("link set %s up"):format(dev)
  if lease.default_route then
    lines[#lines + 1] = ("route replace default via %s dev %s"):format(lease.gateway, dev)
  end
  if lease.default_route6 and lease.gateway6 then
    lines[#lines + 1] = ("route replace default via %s dev %s"):format(lease.gateway6, dev)
  end
  return lines
end

--- Delete the host-side veths among @links that match @prefix and
-- that @keep (a set of names) does not hold.
function M.orphans(links, keep, prefix)
  local lines = {}
  for _, link in ipairs(links) do
    if link:match("^" .. prefix .. "%d+$") and not keep[link] then
      lines[#lines + 1] = "link del " .. link
    end
  end
  return lines
end

return M
