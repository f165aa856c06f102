rockspec_format = "3.0"
package = "rootlessnetns"
version = "scm-1"
source = {
  url = "git+https://example.invalid/rootlessnetns.git",
}
description = {
  summary = "A persistent rootless network namespace for unprivileged users",
  detailed = [[
    An unprivileged user gets one persistent network namespace with outbound
    connectivity through pasta or slirp4netns, runs commands inside it, sets
    it up and tears it down, with reference counting so that the last user
    out cleans up: podman's rootless netns as a Lua library and CLI.
  ]],
  license = "Apache-2.0",
}
dependencies = {
  "lua >= 5.4",
  "lua-cjson",
  "argparse",
}
external_dependencies = {
  -- headers only: libmount itself is loaded on first use (csrc/mount.c)
  LIBMOUNT = { header = "libmount/libmount.h" },
}
build = {
  type = "builtin",
  modules = {
    rootlessnetns = {
      sources = {
        "csrc/core.c", "csrc/util.c", "csrc/fd.c", "csrc/ns.c", "csrc/netns.c",
        "csrc/mount.c", "csrc/spawn.c", "csrc/lock.c", "csrc/proc.c", "csrc/fs.c",
        "csrc/idmap.c", "csrc/holder.c", "csrc/title.c", "csrc/sock.c", "csrc/forward.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "$(LIBMOUNT_INCDIR)" },
    },
    ["rootlessnetns.backends"] = "lua/rootlessnetns/backends.lua",
    ["rootlessnetns.backend.pasta"] = "lua/rootlessnetns/backend/pasta.lua",
    ["rootlessnetns.backend.slirp4netns"] = "lua/rootlessnetns/backend/slirp4netns.lua",
    ["rootlessnetns.child"] = "lua/rootlessnetns/child.lua",
    ["rootlessnetns.cli"] = "lua/rootlessnetns/cli.lua",
    ["rootlessnetns.cli.commands"] = "lua/rootlessnetns/cli/commands.lua",
    ["rootlessnetns.cli.exit"] = "lua/rootlessnetns/cli/exit.lua",
    ["rootlessnetns.cli.output"] = "lua/rootlessnetns/cli/output.lua",
    ["rootlessnetns.cli.complete"] = "lua/rootlessnetns/cli/complete.lua",
    ["rootlessnetns.cli.run"] = "lua/rootlessnetns/cli/run.lua",
    ["rootlessnetns.cli.counted"] = "lua/rootlessnetns/cli/counted.lua",
    ["rootlessnetns.cli.report"] = "lua/rootlessnetns/cli/report.lua",
    ["rootlessnetns.cli.cleanup"] = "lua/rootlessnetns/cli/cleanup.lua",
    ["rootlessnetns.cli.doctor"] = "lua/rootlessnetns/cli/doctor.lua",
    ["rootlessnetns.cli.netns"] = "lua/rootlessnetns/cli/netns.lua",
    ["rootlessnetns.cli.network"] = "lua/rootlessnetns/cli/network.lua",
    ["rootlessnetns.cli.port"] = "lua/rootlessnetns/cli/port.lua",
    ["rootlessnetns.cli.lab"] = "lua/rootlessnetns/cli/lab.lua",
    ["rootlessnetns.config"] = "lua/rootlessnetns/config.lua",
    ["rootlessnetns.daemon"] = "lua/rootlessnetns/daemon.lua",
    ["rootlessnetns.doctor"] = "lua/rootlessnetns/doctor.lua",
    ["rootlessnetns.holder"] = "lua/rootlessnetns/holder.lua",
    ["rootlessnetns.log"] = "lua/rootlessnetns/log.lua",
    ["rootlessnetns.mounts"] = "lua/rootlessnetns/mounts.lua",
    ["rootlessnetns.netns"] = "lua/rootlessnetns/netns.lua",
    ["rootlessnetns.probe"] = "lua/rootlessnetns/probe.lua",
    ["rootlessnetns.lab"] = "lua/rootlessnetns/lab.lua",
    ["rootlessnetns.lab.connections"] = "lua/rootlessnetns/lab/connections.lua",
    ["rootlessnetns.lab.hosts"] = "lua/rootlessnetns/lab/hosts.lua",
    ["rootlessnetns.lab.networks"] = "lua/rootlessnetns/lab/networks.lua",
    ["rootlessnetns.lab.shaping"] = "lua/rootlessnetns/lab/shaping.lua",
    ["rootlessnetns.lab.names"] = "lua/rootlessnetns/lab/names.lua",
    ["rootlessnetns.lab.text"] = "lua/rootlessnetns/lab/text.lua",
    ["rootlessnetns.lab.topology"] = "lua/rootlessnetns/lab/topology.lua",
    ["rootlessnetns.lab.apply"] = "lua/rootlessnetns/lab/apply.lua",
    ["rootlessnetns.addrpool"] = "lua/rootlessnetns/addrpool.lua",
    ["rootlessnetns.procs"] = "lua/rootlessnetns/procs.lua",
    ["rootlessnetns.resolvconf"] = "lua/rootlessnetns/resolvconf.lua",
    ["rootlessnetns.state"] = "lua/rootlessnetns/state.lua",
    ["rootlessnetns.session"] = "lua/rootlessnetns/session.lua",
    ["rootlessnetns.instance"] = "lua/rootlessnetns/instance.lua",
    ["rootlessnetns.refs"] = "lua/rootlessnetns/refs.lua",
    ["rootlessnetns.inside"] = "lua/rootlessnetns/inside.lua",
    ["rootlessnetns.worker"] = "lua/rootlessnetns/worker.lua",
    ["rootlessnetns.warm"] = "lua/rootlessnetns/warm.lua",
    ["rootlessnetns.ports"] = "lua/rootlessnetns/ports.lua",
    ["rootlessnetns.prepared"] = "lua/rootlessnetns/prepared.lua",
    ["rootlessnetns.reaper"] = "lua/rootlessnetns/reaper.lua",
  },
  install = {
    bin = { rootlessnetns = "bin/rootlessnetns" },
  },
  copy_directories = { "doc", "docs" },
}
test = {
  type = "busted",
}
