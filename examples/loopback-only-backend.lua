-- A custom backend: an isolated namespace with only loopback and no way
-- out, for tests that must not reach any network.  No helper process
-- runs, so start() returns pid = false.
--
--   rootlessnetns --config examples/loopback-only-backend.lua run -- ip addr
return {
  backend = {
    name = "loopback-only",
    start = function(ctx)
      local up, err = ctx.in_netns(ctx.paths.pin, function()
        -- a fresh network namespace has lo down
        return os.execute("ip link set lo up") == true
      end)
      if not up then return nil, "bring lo up: " .. tostring(err or "ip failed") end
      return {
        pid = false,
        nameservers = {},
        ipv6 = false,
        info = { IPAddresses = {}, DnsForwardIps = {}, MapGuestIps = {} },
      }
    end,
    -- optional hooks: alive (is it still working?), info (fresh
    -- addresses for `info`), stop (at cleanup)
    alive = function(_, ctx)
      -- working as long as lo is up in the namespace
      return ctx.in_netns(ctx.paths.pin, function()
        return os.execute("ip link show lo up | grep -q UP") == true
      end) == true
    end,
    info = function()
      return { IPAddresses = { "127.0.0.1" } }
    end,
    stop = function(rec, ctx)
      ctx.log.debug("loopback-only backend %s: nothing to stop", rec.name)
    end,
  },
}
