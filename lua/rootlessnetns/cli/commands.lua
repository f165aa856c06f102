--- Every command of the CLI, declared once.  The full parser (argparse),
-- the fast path that needs no parser, the split of a command line into
-- our words and the command to run inside, `--help`, and the bash
-- completion are all derived from this table; each command's handler is
-- its own module, rootlessnetns.cli.<handler>, loaded only when it runs.
--
-- A command: name, summary, usage (when argparse's would be wrong: a
-- command to run follows), options, args (positional: name, help, count
-- "?" when optional, complete), tail ("command": the command to run
-- starts at `--` or at the first word after the args; "after--": only
-- after `--`), fast (the fast path parses it), commands (subcommands),
-- aliases (other names it answers to, as `ip netns` spells them), handler
-- (none: the CLI itself answers it).
--
-- An option: flag, short (its one-letter alias), help, value (its argname when it takes one), default,
-- count ("*": repeatable, a list), key (the result's field; default: the
-- flag's name with `_`), complete (a list of words, or "files").
local M = {}

local JSON = { flag = "--json", help = "Print JSON." }
local NAME = { name = "name", help = "The namespace.", complete = "netns" }
local NETWORK = { flag = "--network", help = "The network (default: `default`).", value = "NET" }
local PUBLISH = { flag = "--publish", help = "Publish a port: [HOSTIP:]HOSTPORT[:PORT][/tcp|/udp] (repeatable).",
  value = "SPEC", count = "*" }
local PORT_NETNS = { flag = "--netns", help = "A named namespace's ports (default: the rootless netns's).",
  value = "NAME", complete = "netns" }
local FILE = { name = "file", help = "The topology: a Lua file returning networks and nodes.", complete = "files" }
local SPEC = { name = "spec", help = "[HOSTIP:]HOSTPORT[:PORT][/tcp|/udp]; HOSTIP is 127.0.0.1 unless given.",
  count = "+" }

M.GLOBAL_OPTIONS = {
  { flag = "--config", help = "Read the configuration from FILE.", value = "FILE", complete = "files" },
  { flag = "--backend", help = "Backend: auto, pasta, slirp4netns or a Lua module.", value = "NAME",
    complete = { "auto", "pasta", "slirp4netns" } },
  { flag = "--log-level", help = "error, warn, info or debug.", value = "LEVEL",
    complete = { "error", "warn", "info", "debug" } },
  { flag = "--version", short = "-V", help = "Print the version and exit." },
}

M.COMMANDS = {
  { name = "run", summary = "Run CMD inside (default: $SHELL); the exit status is CMD's.",
    usage = "Usage: rootlessnetns run [-h] [--] [CMD [ARG...]]", tail = "command", fast = true, handler = "run" },
  { name = "setup", summary = "Create if needed, run CMD inside, count N more users.",
    usage = "Usage: rootlessnetns setup [-h] [--nets N] [--publish SPEC]... [-- CMD [ARG...]]", tail = "after--",
    fast = true,
    options = { { flag = "--nets", help = "How many users to count.", value = "N", default = "1" }, PUBLISH },
    handler = "counted" },
  { name = "teardown", summary = "Run CMD inside, count N fewer users, clean up at zero.",
    usage = "Usage: rootlessnetns teardown [-h] [--nets N] [-- CMD [ARG...]]", tail = "after--", fast = true,
    options = { { flag = "--nets", help = "How many users to uncount.", value = "N", default = "1" } },
    handler = "counted" },
  { name = "info", summary = "Addresses, DNS forwarders, map-guest addresses, backend and pids.",
    options = { JSON }, fast = true, handler = "report" },
  { name = "status", summary = "Is it up; holder, backend and references; paths.",
    options = { JSON }, fast = true, handler = "report" },
  { name = "cleanup", summary = "Remove the namespace whatever the count; stop the holder (named namespaces go too).",
    fast = true, handler = "cleanup" },
  { name = "doctor", summary = "Check this host: user namespaces, subordinate ids, helpers, /dev/net/tun, backends.",
    options = { JSON }, fast = true, handler = "doctor" },
  { name = "netns", summary = "Named namespaces (a rootless `ip netns`) and their lab network.", handler = "netns",
    commands = {
      { name = "add", summary = "Create a namespace (a random netns-<uuid> without NAME); print its name.",
        args = { { name = "name", help = "Its name.", count = "?" } }, options = { JSON } },
      { name = "list", aliases = { "ls" }, summary = "The namespaces: state, address, processes inside.",
        options = { JSON } },
      { name = "exec", summary = "Run CMD inside NAME (default: $SHELL); the exit status is CMD's.",
        usage = "Usage: rootlessnetns netns exec [-h] NAME [--] [CMD [ARG...]]", args = { NAME },
        tail = "command", fast = true },
      { name = "del", aliases = { "delete" }, summary = "Delete a namespace (disconnected first).", args = { NAME },
        options = { { flag = "--force", help = "Kill the processes still inside first." }, JSON } },
      { name = "connect", summary = "Plug NAME into a network (default: `default`) in the rootless netns.",
        args = { NAME },
        options = { NETWORK,
          { flag = "--ip", help = "Its address (default: the next free one).", value = "ADDR[/PREFIX]" },
          { flag = "--ip6", help = "Its IPv6 address (default: the IPv4 host number in the /64).", value = "ADDR" },
          { flag = "--default-route", help = "Route out through this network (default: the first with a way out)." },
          { flag = "--no-default-route", help = "Never route out through this network." },
          { flag = "--rate", help = "Shape the link to RATE each way (tbf), e.g. 10mbit.", value = "RATE" },
          { flag = "--delay", help = "Delay each way (netem), e.g. 20ms.", value = "TIME" },
          { flag = "--jitter", help = "Jitter around --delay (netem).", value = "TIME" },
          { flag = "--loss", help = "Lose this share of packets (netem), e.g. 1%.", value = "PERCENT" },
          PUBLISH, JSON } },
      { name = "disconnect", summary = "Unplug NAME (from every network, or --network's); its addresses and "
        .. "references go.", args = { NAME },
        options = { NETWORK, JSON } },
    } },
  { name = "network", summary = "The lab's networks: bridges in the rootless netns (IPv4 and IPv6).",
    handler = "network",
    commands = {
      { name = "create", summary = "Make a network (subnets: the next free /24, a ULA /64).",
        args = { { name = "name", help = "Its name." } },
        options = {
          { flag = "--subnet", help = "Its IPv4 subnet.", value = "CIDR" },
          { flag = "--subnet6", help = "Its IPv6 /64.", value = "CIDR" },
          { flag = "--internal", help = "No way out: its namespaces reach each other only." },
          JSON } },
      { name = "list", summary = "The networks and the namespaces on each.", options = { JSON } },
      { name = "rm", summary = "Remove a network (refused while namespaces are on it).",
        args = { { name = "name", help = "The network.", complete = "network" } },
        options = { { flag = "--force", help = "Disconnect its namespaces first." }, JSON } },
    } },
  { name = "port", summary = "Published ports: a host address forwarded to a port inside.", handler = "port",
    commands = {
      { name = "add", summary = "Publish ports (the server inside sees the client's address).",
        args = { SPEC }, options = { PORT_NETNS, JSON } },
      { name = "list", summary = "The published ports and their connections.", options = { PORT_NETNS, JSON } },
      { name = "rm", summary = "Stop publishing ports (other connections go on).", args = { SPEC },
        options = { PORT_NETNS } },
    } },
  { name = "lab", summary = "A topology file of networks and namespaces, made, compared and removed.",
    handler = "lab",
    commands = {
      { name = "up", summary = "Make what FILE describes; change only what differs from what is live.",
        args = { FILE }, options = { JSON } },
      { name = "down", summary = "Remove what `lab up FILE` made, and nothing else.", args = { FILE },
        options = { JSON } },
      { name = "status", summary = "Each node and network of FILE: up to date, missing or differs.",
        args = { FILE }, options = { JSON, { flag = "--dot", help = "Print the topology as Graphviz DOT." } } },
    } },
  { name = "help", summary = "Show the help of COMMAND [SUBCOMMAND], or of every command.",
    args = { { name = "topic", help = "A command, and one of its subcommands.", count = "*",
      complete = "commands" } } },
}

--- The result field of option @o.
function M.key(o)
  return o.key or o.flag:gsub("^%-%-", ""):gsub("-", "_")
end

--- Is @c declared as @name, or has it @name as an alias?
local function named(c, name)
  if c.name == name then return true end
  for _, a in ipairs(c.aliases or {}) do
    if a == name then return true end
  end
  return false
end

--- The command (or, with @sub, subcommand) declared as @name (or an
-- alias of it).
function M.find(name, sub)
  for _, c in ipairs(M.COMMANDS) do
    if named(c, name) then
      if sub == nil then return c end
      for _, s in ipairs(c.commands or {}) do
        if named(s, sub) then return s end
      end
      return nil
    end
  end
  return nil
end

--- Every option flag that takes a value, anywhere.
function M.value_flags()
  local flags = {}
  local function add(options)
    for _, o in ipairs(options or {}) do
      if o.value then flags[o.flag] = true end
    end
  end
  add(M.GLOBAL_OPTIONS)
  for _, c in ipairs(M.COMMANDS) do
    add(c.options)
    for _, s in ipairs(c.commands or {}) do add(s.options) end
  end
  return flags
end

return M
