-- slirp4netns with its own subnet, a smaller MTU, no IPv6, and the host's
-- loopback reachable as the gateway (10.99.0.2 here).
return {
  backend = "slirp4netns",
  slirp4netns = {
    cidr = "10.99.0.0/24",
    mtu = 1500,
    enable_ipv6 = false,
    allow_host_loopback = true,
  },
}
