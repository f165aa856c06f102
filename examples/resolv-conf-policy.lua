-- A different resolv.conf policy: only the backend's forwarders (never
-- the host's own servers), a search domain of the lab, and ndots:1.
--
--   rootlessnetns --config examples/resolv-conf-policy.lua run -- cat /etc/resolv.conf
return {
  backend = "slirp4netns",
  resolv_conf = function(_, ctx)
    local lines = { "search lab.example" }
    for _, server in ipairs(ctx.nameservers) do
      lines[#lines + 1] = "nameserver " .. server
    end
    lines[#lines + 1] = "options ndots:1"
    return table.concat(lines, "\n") .. "\n"
  end,
}
