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
    stop = function(rec, ctx)
      ctx.log.debug("loopback-only backend %s: nothing to stop", rec.name)
    end,
  },
}
