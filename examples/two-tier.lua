-- A topology file: `rootlessnetns lab up examples/two-tier.lua`.
--
-- Two tiers and a router: `web` on the network `front`, `db` on the
-- internal network `back` (no way out of the lab), and `router` on both,
-- forwarding between them.  Each of web and db has a route to the other's
-- network through the router, so db reaches web's server (started when
-- web is made) through it.
return {
  networks = {
    front = { subnet = "10.90.0.0/24" },
    back = { subnet = "10.90.1.0/24", internal = true },
  },
  nodes = {
    web = {
      networks = { front = { ip = "10.90.0.10" } },
      routes = { { to = "back", via = "router" } },
      start = { { "sh", "-c", "while :; do echo hello from web | nc -l -N 8080; done" } },
    },
    router = {
      networks = { front = { ip = "10.90.0.2" }, back = { ip = "10.90.1.2" } },
      forward = true,
    },
    db = {
      networks = { back = { ip = "10.90.1.10" } },
      routes = { { to = "front", via = "router" } },
    },
  },
}
