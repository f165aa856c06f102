--- What the lab asks `ip -batch` and `nft -f` to do, as text: pure
-- functions of their inputs, so every line is tested without a namespace.
local addrpool = require "rootlessnetns.addrpool"

local M = {}

--- The nftables table that masquerades the bridge's subnet.
M.NFT_TABLE = "rootlessnetns"

local function mtu_of(c) return c.mtu and (" mtu " .. c.mtu) or "" end

--- The bridge inside the rootless netns, with the gateway's address.
-- @tparam table c the config's `connect` table
-- @tparam table net an addrpool subnet
function M.bridge(c, net)
  return {
    ("link add %s%s type bridge"):format(c.bridge, mtu_of(c)),
    ("addr add %s/%d dev %s"):format(addrpool.format_ipv4(net.gateway), net.prefix, c.bridge),
    ("link set %s up"):format(c.bridge),
  }
end

--- One nft transaction that replaces our table whole: masquerade what
-- leaves @cidr for elsewhere.
function M.masquerade(cidr)
  return table.concat({
    ("add table ip %s"):format(M.NFT_TABLE),
    ("delete table ip %s"):format(M.NFT_TABLE),
    ("table ip %s {"):format(M.NFT_TABLE),
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    ("    ip saddr %s ip daddr != %s masquerade"):format(cidr, cidr),
    "  }",
    "}",
  }, "\n") .. "\n"
end

--- The veth pair of a lease, run in the rootless netns: its host end on
-- the bridge, its other end moved into the namespace pinned at @peer_pin.
function M.veth(lease, c, peer_pin)
  local mtu = mtu_of(c)
  return {
    ("link add %s%s type veth peer name %s%s netns %s"):format(lease.host_interface, mtu, c.interface, mtu, peer_pin),
    ("link set %s master %s"):format(lease.host_interface, c.bridge),
    ("link set %s up"):format(lease.host_interface),
  }
end

--- The address and default route of a lease, run in its namespace.
function M.address(lease, c)
  return {
    ("addr add %s/%d dev %s"):format(lease.address, lease.prefix, c.interface),
    ("link set %s up"):format(c.interface),
    ("route add default via %s dev %s"):format(lease.gateway, c.interface),
  }
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
