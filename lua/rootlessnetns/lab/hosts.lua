--- Names in the lab: inside `netns exec NAME`, /etc/hosts lists every
-- connected namespace as `OTHER.NETWORK`, with its addresses on that
-- network, and as `OTHER` on the first network it shares with NAME (so a
-- namespace behind a router is found by name too); NAME itself is listed
-- the same way.  Each namespace's
-- file is `<state dir>/hosts/NAME`, bind-mounted on /etc/hosts by exec
-- and rewritten in place (the same inode) on every connect, disconnect
-- and del, so running commands see the change.
local core = require "rootlessnetns"

local PRIVATE_DIR, PRIVATE_FILE = tonumber("700", 8), tonumber("600", 8)

local M = {}

M.HEADER = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

--- The file of namespace @name.
function M.path(ns, name) return ns.paths.base .. "/hosts/" .. name end

--- The /etc/hosts text of namespace @name, from @members: network ->
-- {namespace -> lease} (connected leases only).  Every connected
-- namespace is `OTHER.NETWORK` on each of its networks; the plain `OTHER`
-- is its address on the first network it shares with @name (by name), or
-- on its first network when they share none (reached through a router).
-- Pure.
function M.text(name, members)
  local mine, nets = {}, {}
  for net, m in pairs(members) do
    nets[#nets + 1] = net
    if m[name] then mine[net] = true end
  end
  table.sort(nets)
  local plain = {}
  for _, pass in ipairs { "shared", "any" } do
    for _, net in ipairs(nets) do
      if pass == "any" or mine[net] then
        for other in pairs(members[net]) do
          if not plain[other] then plain[other] = net end
        end
      end
    end
  end
  local lines = { M.HEADER }
  for _, net in ipairs(nets) do
    local others = {}
    for other in pairs(members[net]) do others[#others + 1] = other end
    table.sort(others)
    for _, other in ipairs(others) do
      local lease = members[net][other]
      local names = other .. "." .. net .. (plain[other] == net and (" " .. other) or "")
      lines[#lines + 1] = ("%s\t%s\n"):format(lease.address, names)
      if lease.address6 then lines[#lines + 1] = ("%s\t%s\n"):format(lease.address6, names) end
    end
  end
  return table.concat(lines)
end

--- Write @text into @path in place (truncate and write the same inode:
-- a bind mount of it shows the new text at once).
local function write_in_place(path, text)
  local f, err = core.open(path, "w", PRIVATE_FILE)
  if not f then return nil, err end
  local ok, werr = f:write(text)
  f:close()
  return ok, werr
end

--- Rewrite the hosts file of every namespace in @names from @members (as
-- M.text).  Best effort: a name that cannot be written keeps its old file.
function M.refresh(ns, names, members)
  local dir = ns.paths.base .. "/hosts"
  local ok, _, code = core.mkdir(dir, PRIVATE_DIR)
  if not ok and code ~= core.errno.EEXIST then return end
  for _, name in ipairs(names) do
    local path = M.path(ns, name)
    local text = M.text(name, members)
    if core.readfile(path, 1 << 20) ~= text then write_in_place(path, text) end
  end
end

--- Forget the hosts file of @name.
function M.forget(ns, name) core.unlink(M.path(ns, name)) end

return M
