--- The rootlessnetns command line.  The only place that turns errors into
-- stderr text and exit statuses:
--   125  an error of ours (usage included)
--   126  the command could not be executed
--   127  the command was not found
--   N    the command's own status; 128+N when it was killed by signal N
local core = require "rootlessnetns"
local cjson = require "cjson.safe"
local log = require "rootlessnetns.log"

local M = {}

M.EXIT_OURS, M.EXIT_CANNOT_EXEC, M.EXIT_NOT_FOUND = 125, 126, 127

local COMMANDS_WITH_TAIL = { run = true, setup = true, teardown = true, ["netns exec"] = true }

local function die(msg)
  io.stderr:write("rootlessnetns: ", msg, "\n")
  return M.EXIT_OURS
end

local function build_parser()
  local argparse = require "argparse"
  local parser = argparse("rootlessnetns",
    "A persistent rootless network namespace: run commands inside it, set it up, tear it down.")
    :epilog("Exit status: 125 for our errors, 126/127 when the command cannot be run or found,\n"
      .. "else the command's own (128+N on signal N). See rootlessnetns(1).")
  parser:option("--config", "Read the configuration from FILE.", nil):argname("FILE")
  parser:option("--backend", "Backend: auto, pasta, slirp4netns or a Lua module.", nil):argname("NAME")
  parser:option("--log-level", "error, warn, info or debug.", nil):argname("LEVEL")
  parser:flag("--version", "Print the version and exit.")
  parser:command_target("command")
  parser:require_command(false)

  local run = parser:command("run", "Run CMD inside (default: $SHELL); the exit status is CMD's.")
  run:usage("Usage: rootlessnetns run [-h] [--] [CMD [ARG...]]")
  local setup = parser:command("setup", "Create if needed, run CMD inside, count N more users.")
  setup:option("--nets", "How many users to count.", "1"):argname("N")
  setup:usage("Usage: rootlessnetns setup [-h] [--nets N] [-- CMD [ARG...]]")
  local teardown = parser:command("teardown", "Run CMD inside, count N fewer users, clean up at zero.")
  teardown:option("--nets", "How many users to uncount.", "1"):argname("N")
  teardown:usage("Usage: rootlessnetns teardown [-h] [--nets N] [-- CMD [ARG...]]")
  parser:command("info", "Addresses, DNS forwarders, map-guest addresses, backend and pids.")
    :flag("--json", "Print JSON.")
  parser:command("status", "Is it up; holder, backend and references; paths.")
    :flag("--json", "Print JSON.")
  parser:command("cleanup", "Remove the namespace whatever the count; stop the holder (named namespaces go too).")
  parser:command("doctor", "Check this host: user namespaces, subordinate ids, helpers, /dev/net/tun, backends.")
    :flag("--json", "Print JSON.")

  local named = parser:command("netns", "Named namespaces (a rootless `ip netns`) and their lab network.")
  named:command_target("netns_command")
  local add = named:command("add", "Create a namespace (a random netns-<uuid> without NAME); print its name.")
  add:argument("name", "Its name."):args("?")
  add:flag("--json", "Print JSON.")
  named:command("list", "The namespaces: state, address, processes inside."):flag("--json", "Print JSON.")
  local exec = named:command("exec", "Run CMD inside NAME (default: $SHELL); the exit status is CMD's.")
  exec:argument("name", "The namespace.")
  exec:usage("Usage: rootlessnetns netns exec [-h] NAME [--] [CMD [ARG...]]")
  local del = named:command("del", "Delete a namespace (disconnected first).")
  del:argument("name", "The namespace.")
  del:flag("--force", "Kill the processes still inside first.")
  del:flag("--json", "Print JSON.")
  local connect = named:command("connect", "Plug NAME into the bridge in the rootless netns.")
  connect:argument("name", "The namespace.")
  connect:option("--ip", "Its address (default: the next free one).", nil):argname("ADDR[/PREFIX]")
  connect:flag("--json", "Print JSON.")
  local disconnect = named:command("disconnect", "Unplug NAME; its address and reference go.")
  disconnect:argument("name", "The namespace.")
  disconnect:flag("--json", "Print JSON.")
  return parser
end

--- Split argv into what the parser sees and the command to run inside:
-- run's command starts at `--` or at its first non-option word, so does
-- `netns exec NAME`'s after NAME; setup's and teardown's only after `--`.
function M.split(args)
  local head, tail = {}, nil
  local i, sub = 1, nil
  local words = 0 -- non-option words after `netns exec`
  local takes_value = { ["--config"] = true, ["--backend"] = true, ["--log-level"] = true, ["--nets"] = true,
    ["--ip"] = true }
  while i <= #args do
    local a = args[i]
    local option = a:sub(1, 1) == "-"
    if sub == "netns exec" and not option then words = words + 1 end
    if tail then
      tail[#tail + 1] = a
    elseif a == "--" and sub then
      tail = {}
    elseif (sub == "run" or words == 2) and not option then
      tail = { a }
    elseif sub == "netns" and a == "exec" then
      sub = "netns exec"
      head[#head + 1] = a
    elseif takes_value[a] and args[i + 1] then
      -- joined, so a value such as "-1" is not taken for an option
      i = i + 1
      head[#head + 1] = a .. "=" .. args[i]
    else
      head[#head + 1] = a
      if not sub and a:sub(1, 1) ~= "-" then sub = a end
    end
    i = i + 1
  end
  return head, tail
end

local function status_code(how, code)
  if how == "signaled" then return 128 + code end
  return code
end

--- Why an operation failed, as an exit status: an interrupted wait is the
-- signal's 128+N and says nothing more (as a shell's ^C); a command that
-- could not run is 126/127; anything else ours, 125.
local function command_failure(msg, code, stage, signo)
  if stage == "signal" then return 128 + (math.tointeger(signo) or 0) end
  if stage == "exec" then
    io.stderr:write("rootlessnetns: ", msg, "\n")
    return code == core.errno.ENOENT and M.EXIT_NOT_FOUND or M.EXIT_CANNOT_EXEC
  end
  return die(msg)
end

local function print_json(value)
  io.stdout:write(cjson.encode(value), "\n")
end

local function list(v)
  if type(v) ~= "table" or #v == 0 then return "-" end
  return table.concat(v, ", ")
end

--- Rows of cells in aligned columns, under @header when there is one.
local function print_table(header, rows)
  local all = header and { header, table.unpack(rows) } or rows
  local widths = {}
  for _, r in ipairs(all) do
    for i, cell in ipairs(r) do widths[i] = math.max(widths[i] or 0, #cell) end
  end
  for _, r in ipairs(all) do
    local cells = {}
    for i, cell in ipairs(r) do
      cells[i] = i < #r and ("%-" .. widths[i] .. "s"):format(cell) or cell
    end
    io.stdout:write(table.concat(cells, "  "), "\n")
  end
end

local function print_rows(rows) print_table(nil, rows) end

local function pid_text(pid, alive)
  if pid == nil or pid == cjson.null then return "-" end
  return ("%d%s"):format(pid, alive == false and " (dead)" or "")
end

local function parse_nets(text)
  local n = math.tointeger(tonumber(text))
  if not n or not tostring(text):match("^%d+$") or n < 1 or n > 65535 then
    return nil, ("--nets: expected an integer from 1 to 65535, got %q"):format(tostring(text))
  end
  return n
end

local handlers = {}

--- Run @tail (default: $SHELL) with @runner(cmd, opts), forwarding the
-- signals a user sends to us; the exit status is the command's.
local function run_command(tail, getenv, runner)
  local cmd = tail
  if not cmd or #cmd == 0 then
    local shell = getenv("SHELL")
    if not shell or shell == "" then return die("no command given and $SHELL is not set") end
    cmd = { shell }
  end
  local how, code, ecode, stage, signo = runner(cmd)
  if not how then return command_failure(code, ecode, stage, signo) end
  return status_code(how, code)
end

function handlers.run(ns, _, tail, getenv)
  return run_command(tail, getenv, function(cmd) return ns:run(cmd, { signals = ns.signals }) end)
end

local function nets_command(method)
  return function(ns, opts, tail)
    local n, err = parse_nets(opts.nets)
    if not n then return die(err) end
    local ok, msg, code, stage, how, status = ns[method](ns, n, tail)
    if ok then return 0 end
    if stage == "command" then
      io.stderr:write("rootlessnetns: ", method, ": ", msg, "\n")
      return how and status_code(how, status) or M.EXIT_OURS
    end
    return command_failure(msg, code, stage, how)
  end
end
handlers.setup = nets_command("setup")
handlers.teardown = nets_command("teardown")

function handlers.info(ns, opts)
  local info, err, code, stage, signo = ns:info()
  if not info then return command_failure(err, code, stage, signo) end
  if opts.json then
    print_json(info)
  else
    print_rows {
      { "backend", ("%s (pid %s)"):format(tostring(info.backend), pid_text(info.backend_pid)) },
      { "addresses", list(info.IPAddresses) },
      { "dns forwarders", list(info.DnsForwardIps) },
      { "map-guest addresses", list(info.MapGuestIps) },
      { "holder", "pid " .. pid_text(info.holder_pid) },
      { "references", ("nets %d, runs %d, connections %d"):format(info.refs.nets, info.refs.runs,
        info.refs.connections) },
    }
  end
  return 0
end

function handlers.status(ns, opts)
  local st, err, code, stage, signo = ns:status()
  if not st then return command_failure(err, code, stage, signo) end
  if opts.json then
    print_json(st)
  else
    local backend = st.backend.name ~= cjson.null and st.backend.name or "-"
    print_rows {
      { "state", st.up and "up" or "down" },
      { "netns", st.netns and st.pin or "-" },
      { "backend", ("%s (pid %s)"):format(backend, pid_text(st.backend.pid, st.backend.alive)) },
      { "holder", "pid " .. pid_text(st.holder.pid, st.holder.alive) },
      { "references", ("nets %d, runs %d, connections %d"):format(st.refs.nets, st.refs.runs,
        st.refs.connections) },
      { "state dir", st.state_dir },
    }
  end
  return 0
end

function handlers.cleanup(ns)
  local ok, err, code, stage, signo = ns:cleanup { holder = true }
  if not ok then return command_failure(err, code, stage, signo) end
  return 0
end

function handlers.doctor(_, opts, _, getenv)
  local doctor = require "rootlessnetns.doctor"
  local results = doctor.run { getenv = getenv }
  if opts.json then
    print_json { checks = results, ok = not doctor.failed(results) }
  else
    for _, r in ipairs(results) do
      io.stdout:write(("%-4s  %-28s %s\n"):format(r.status, r.name, r.detail or ""))
      if r.fix and r.status ~= "ok" then io.stdout:write(("      %-28s fix: %s\n"):format("", r.fix)) end
    end
  end
  return doctor.failed(results) and 1 or 0
end

-- cjson 2.1 encodes an empty table as {}; lists in our JSON are lists.
local EMPTY_LIST = "\1empty-list\1"
local function json_list(t)
  if #t == 0 then return EMPTY_LIST end
  return t
end

local function print_json_lists(value)
  local text = cjson.encode(value):gsub('"\\u0001empty%-list\\u0001"', "[]")
  io.stdout:write(text, "\n")
end

local netns_handlers = {}

function netns_handlers.add(l, opts)
  local name, path, code, stage, signo = l:add(opts.name)
  if not name then return command_failure(path, code, stage, signo) end
  if opts.json then print_json { name = name, path = path } else io.stdout:write(name, "\n") end
  return 0
end

function netns_handlers.list(l, opts)
  local entries, err, code, stage, signo = l:list()
  if not entries then return command_failure(err, code, stage, signo) end
  if opts.json then
    for _, e in ipairs(entries) do e.pids = json_list(e.pids) end
    print_json_lists(json_list(entries))
    return 0
  end
  local rows = {}
  for _, e in ipairs(entries) do
    rows[#rows + 1] = { e.name, e.live and "live" or "stale",
      e.address ~= cjson.null and e.address or "-", #e.pids > 0 and table.concat(e.pids, ",") or "-" }
  end
  print_table({ "NAME", "STATE", "ADDRESS", "PROCESSES" }, rows)
  return 0
end

function netns_handlers.exec(l, opts, tail, getenv)
  return run_command(tail, getenv, function(cmd) return l:exec(opts.name, cmd, { signals = l.ns.signals }) end)
end

function netns_handlers.del(l, opts)
  local ok, err, code, stage, signo = l:del(opts.name, { force = opts.force })
  if not ok then return command_failure(err, code, stage, signo) end
  if opts.json then print_json { name = opts.name, deleted = true } end
  return 0
end

function netns_handlers.connect(l, opts)
  local lease, err, code, stage, signo = l:connect(opts.name, { ip = opts.ip })
  if not lease then return command_failure(err, code, stage, signo) end
  if opts.json then
    print_json(lease)
  else
    io.stdout:write(("%s: %s/%d on %s (gateway %s)\n"):format(lease.name, lease.address, lease.prefix,
      lease.bridge, lease.gateway))
  end
  return 0
end

function netns_handlers.disconnect(l, opts)
  local ok, err, code, stage, signo = l:disconnect(opts.name)
  if not ok then return command_failure(err, code, stage, signo) end
  if opts.json then print_json { name = opts.name, connected = false } end
  return 0
end

function handlers.netns(ns, opts, tail, getenv)
  local handler = netns_handlers[opts.netns_command]
  if not handler then
    io.stdout:write(build_parser():get_help(), "\n")
    return M.EXIT_OURS
  end
  local l = require("rootlessnetns.lab").new(ns)
  return handler(l, opts, tail, getenv)
end

--- A well-formed everyday command line needs no parser, so argparse
-- (1.7 ms to load) stays off the hot paths: global options, a command,
-- and that command's own options.  Help, version and anything unusual
-- (or wrong) return nil and go to the full parser, which explains.
local GLOBAL_OPTIONS = { ["--config"] = "config", ["--backend"] = "backend", ["--log-level"] = "log_level" }
local COMMAND_OPTIONS = {
  run = {}, cleanup = {}, doctor = { ["--json"] = "json" },
  setup = { ["--nets"] = "nets" }, teardown = { ["--nets"] = "nets" },
  info = { ["--json"] = "json" }, status = { ["--json"] = "json" },
}
function M.quick_parse(head)
  local opts, command = {}, nil
  -- `netns exec NAME`: the one netns command that labs run in loops
  local n = #head
  if n >= 3 and head[n - 2] == "netns" and head[n - 1] == "exec" and head[n]:sub(1, 1) ~= "-" then
    -- the global options before it, checked as if before a plain command
    local globals = table.move(head, 1, n - 3, 1, {})
    globals[#globals + 1] = "cleanup"
    opts = M.quick_parse(globals)
    if not opts then return nil end
    opts.command, opts.netns_command, opts.name = "netns", "exec", head[n]
    return opts
  end
  for _, word in ipairs(head) do
    local name, value = word:match("^(%-%-[%w-]+)=(.*)$")
    local key
    if command then
      key = COMMAND_OPTIONS[command][name or word]
      local takes_value = key == "nets"
      if not key or takes_value ~= (name ~= nil) then return nil end
      value = value or true
    elseif name then
      key = GLOBAL_OPTIONS[name]
    elseif COMMAND_OPTIONS[word] then
      command = word
    end
    if key then
      if opts[key] ~= nil then return nil end
      opts[key] = value
    elseif word ~= command then
      return nil
    end
  end
  if not command then return nil end
  opts.command = command
  if COMMAND_OPTIONS[command]["--nets"] and opts.nets == nil then opts.nets = "1" end
  return opts
end

local function main(args, getenv)
  -- Blocked from the start, before anything can wait: a signal then ends
  -- every wait (lock, backend start) or reaches the command we run, and
  -- lua5.4's own SIGINT hook ("interrupted!") never fires in our code.
  local signals <close> = core.block_signals { core.SIGINT, core.SIGTERM, core.SIGHUP }
  local head, tail = M.split(args)
  local opts = M.quick_parse(head)
  if not opts then
    local ok
    ok, opts = build_parser():pparse(head)
    if not ok then
      return die(tostring(opts):gsub("%s*\n%s*", "; ") .. " (see rootlessnetns --help)")
    end
  end
  if opts.version then
    io.stdout:write("rootlessnetns ", core._VERSION, "\n")
    return 0
  end
  if not opts.command then
    io.stdout:write(build_parser():get_help(), "\n")
    return M.EXIT_OURS
  end
  local full = opts.netns_command and ("netns " .. opts.netns_command) or opts.command
  if tail and not COMMANDS_WITH_TAIL[full] then
    return die(("`%s` takes no command"):format(full))
  end
  local level = opts.log_level or getenv("ROOTLESSNETNS_LOG_LEVEL")
  if level then
    local lok, lerr = log.set_level(level)
    if not lok then return die(lerr) end
  end
  -- the CLI exits (or execs) when the command is done: it may join in-process
  local nsopts = { getenv = getenv, config = opts.config, signals = signals, in_process = true }
  if opts.backend then nsopts.backend = opts.backend end
  if not opts.config then
    local path, explicit = require("rootlessnetns.config").locate(nil, getenv)
    if path and not explicit then nsopts.config = path end
  end
  local netns = require "rootlessnetns.netns"
  local ns, err = netns.new(nsopts)
  if not ns then return die(err) end
  if not opts.log_level and ns.cfg.log_level then log.set_level(ns.cfg.log_level) end
  return handlers[opts.command](ns, opts, tail, getenv)
end

--- Entry point: never raises, never prints a traceback (unless debugging).
-- @treturn int exit status
function M.main(args, getenv)
  getenv = getenv or os.getenv
  local ok, code = xpcall(main, function(e)
    if log.enabled("debug") then return debug.traceback(tostring(e), 2) end
    return tostring(e)
  end, args, getenv)
  if not ok then return die("internal error: " .. tostring(code)) end
  io.stdout:flush()
  return code
end

return M
