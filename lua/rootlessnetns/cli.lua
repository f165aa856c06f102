--- The rootlessnetns command line: split a command line, parse it (the
-- fast path, or argparse), dispatch to the command's handler.  The
-- commands are declared once, in rootlessnetns.cli.commands; the exit
-- statuses live in rootlessnetns.cli.exit.
local core = require "rootlessnetns"
local commands = require "rootlessnetns.cli.commands"
local exit = require "rootlessnetns.cli.exit"
local log = require "rootlessnetns.log"

local M = {}

M.EXIT_OURS, M.EXIT_CANNOT_EXEC, M.EXIT_NOT_FOUND = exit.OURS, exit.CANNOT_EXEC, exit.NOT_FOUND

local function add_options(p, options)
  for _, o in ipairs(options or {}) do
    if o.value then
      local opt = p:option(o.flag, o.help, o.default):argname(o.value)
      if o.count then opt:count(o.count) end
    else
      p:flag(o.short and (o.short .. " " .. o.flag) or o.flag, o.help)
    end
  end
end

--- Add command @c under @parent; its parser, and its subcommands', go
-- into @by_name under their names ("netns", "netns exec").
local function add_command(parent, c, by_name, prefix)
  local p = parent:command(table.concat({ c.name, table.unpack(c.aliases or {}) }, " "), c.summary)
  by_name[prefix .. c.name] = p
  if c.usage then p:usage(c.usage) end
  for _, a in ipairs(c.args or {}) do
    local arg = p:argument(a.name, a.help)
    if a.count then arg:args(a.count) end
  end
  add_options(p, c.options)
  if c.commands then
    p:command_target(c.name .. "_command")
    for _, s in ipairs(c.commands) do add_command(p, s, by_name, c.name .. " ") end
  end
  return p
end

--- The full parser, and the parser of each command by name ("netns",
-- "netns exec").
local function build_parser()
  local argparse = require "argparse"
  local parser = argparse("rootlessnetns",
    "A persistent rootless network namespace: run commands inside it, set it up, tear it down.")
    :epilog("Exit status: 125 for our errors, 126/127 when the command cannot be run or found,\n"
      .. "else the command's own (128+N on signal N). See rootlessnetns(1).")
  add_options(parser, commands.GLOBAL_OPTIONS)
  parser:command_target("command")
  parser:require_command(false)
  local by_name = {}
  for _, c in ipairs(commands.COMMANDS) do add_command(parser, c, by_name, "") end
  return parser, by_name
end

--- Split argv into what the parser sees and the command to run inside:
-- for a command whose tail is "command" (run, netns exec) it starts at
-- `--` or at the first word after the command's own arguments; for
-- "after--" (setup, teardown) only after `--`.  An option's value is
-- joined to it (`--nets=3`), so a value such as "-1" is not taken for an
-- option.
function M.split(args)
  local value_flags = commands.value_flags()
  local head, tail = {}, nil
  local decl, positional = nil, 0
  local i = 1
  while i <= #args do
    local a = args[i]
    if tail then
      tail[#tail + 1] = a
    elseif a == "--" and decl then
      tail = {}
    elseif value_flags[a] and args[i + 1] then
      i = i + 1
      head[#head + 1] = a .. "=" .. args[i]
    elseif a:sub(1, 1) == "-" then
      head[#head + 1] = a
    elseif not decl then
      decl = commands.find(a) or { name = a }
      head[#head + 1] = a
    elseif decl.commands then
      decl = commands.find(decl.name, a) or { name = a }
      head[#head + 1] = a
    elseif decl.tail == "command" and positional >= #(decl.args or {}) then
      tail = { a }
    else
      positional = positional + 1
      head[#head + 1] = a
    end
    i = i + 1
  end
  return head, tail
end

--- Options of @options as a lookup by flag.
local function by_flag(options)
  local t = {}
  for _, o in ipairs(options or {}) do t[o.flag] = o end
  return t
end
local GLOBAL = by_flag(commands.GLOBAL_OPTIONS)

--- A well-formed everyday command line needs no parser, so argparse
-- (1.7 ms to load) stays off the hot paths: global options with values,
-- a command declared `fast` (or its fast subcommand), its arguments, and
-- that command's own options.  Help, version and anything unusual (or
-- wrong) return nil and go to the full parser, which explains.
function M.quick_parse(head)
  local opts, decl, parent = {}, nil, nil
  local options, positional = GLOBAL, 0
  for _, word in ipairs(head) do
    local flag, value = word:match("^(%-%-[%w-]+)=(.*)$")
    local o = options[flag or word]
    if o then
      -- a value option needs its value joined; a flag must have none
      if (o.value ~= nil) ~= (flag ~= nil) or (not decl and not o.value) then return nil end
      local key = commands.key(o)
      if opts[key] ~= nil then return nil end
      opts[key] = value or true
    elseif word:sub(1, 1) == "-" then
      return nil
    elseif not decl or decl.commands then
      local found = decl and commands.find(decl.name, word) or (not decl and commands.find(word))
      -- (a command with subcommands is only a step to its fast ones)
      if not found or not (found.fast or found.commands) then return nil end
      parent, decl, options = decl, found, by_flag(found.options)
    elseif positional < #(decl.args or {}) then
      positional = positional + 1
      opts[decl.args[positional].name] = word
    else
      return nil
    end
  end
  if not decl or decl.commands or positional < #(decl.args or {}) then return nil end
  for _, o in ipairs(decl.options or {}) do
    if o.default and opts[commands.key(o)] == nil then opts[commands.key(o)] = o.default end
  end
  if parent then
    opts.command, opts[parent.name .. "_command"] = parent.name, decl.name
  else
    opts.command = decl.name
  end
  return opts
end

--- The command a parsed line names, as declared: the command, its
-- subcommand (when it has them and one is named), and the words that
-- follow them that are not options.
-- @tparam table head our words, as M.split returns them
-- @treturn {table,...} the declarations, outermost first
-- @treturn {string,...} the other words
function M.command_of(head)
  local decls, rest = {}, {}
  for _, word in ipairs(head) do
    if word:sub(1, 1) ~= "-" then
      local decl = decls[#decls]
      local found
      if not decl then
        found = commands.find(word)
      elseif decl.commands and #decls == 1 then
        found = commands.find(decl.name, word)
      end
      if found then decls[#decls + 1] = found else rest[#rest + 1] = word end
      if not found and (not decl or decl.commands) then break end
    end
  end
  return decls, rest
end

--- A parser's error, with where to look: the failing command's --help,
-- and, for a command whose command to run follows `--`, that `--`.
local function usage_error(message, head)
  local decls, rest = M.command_of(head)
  local names = {}
  for _, d in ipairs(decls) do names[#names + 1] = d.name end
  local path = table.concat(names, " ")
  local decl = decls[#decls]
  if message == "too many arguments" and decl and decl.tail == "after--" and #rest > 0 then
    message = ("too many arguments: `%s` runs a command only after `--`, as in `rootlessnetns %s -- %s`")
      :format(path, path, table.concat(rest, " "))
  end
  return exit.die(("%s (see rootlessnetns %s--help)"):format(message, path ~= "" and path .. " " or ""))
end

--- `help [COMMAND [SUBCOMMAND]]`: that command's --help, on stdout.
local function help(topic)
  local parser, by_name = build_parser()
  if #topic == 0 then
    io.stdout:write(parser:get_help(), "\n")
    return 0
  end
  local decl = commands.find(topic[1])
  if not decl then return exit.die(("unknown command `%s` (see rootlessnetns --help)"):format(topic[1])) end
  local name = decl.name
  if topic[2] then
    local sub = decl.commands and commands.find(decl.name, topic[2])
    if not sub then
      return exit.die(("unknown command `%s %s` (see rootlessnetns %s --help)"):format(decl.name, topic[2], decl.name))
    end
    name = name .. " " .. sub.name
  end
  if topic[3] then return exit.die(("too many arguments (see rootlessnetns help --help)")) end
  io.stdout:write(by_name[name]:get_help(), "\n")
  return 0
end

local function main(args, getenv)
  if args[1] == "__complete" then
    return require("rootlessnetns.cli.complete").main(table.move(args, 2, #args, 1, {}), getenv)
  end
  -- Blocked from the start, before anything can wait: a signal then ends
  -- every wait (lock, backend start) or reaches the command we run, and
  -- lua5.4's own SIGINT hook ("interrupted!") never fires in our code.
  local signals <close> = core.block_signals { core.SIGINT, core.SIGTERM, core.SIGHUP }
  local head, tail = M.split(args)
  local opts = M.quick_parse(head)
  if not opts then
    local ok
    ok, opts = build_parser():pparse(head)
    if not ok then return usage_error((tostring(opts):gsub("%s*\n%s*", "; ")), head) end
  end
  if opts.version then
    io.stdout:write("rootlessnetns ", core._VERSION, "\n")
    return 0
  end
  if opts.command == "help" then
    if tail then return exit.die("`help` takes no command") end
    return help(opts.topic or {})
  end
  if not opts.command then
    io.stdout:write(build_parser():get_help(), "\n")
    return exit.OURS
  end
  local decl = commands.find(opts.command)
  local sub_name = decl.commands and opts[decl.name .. "_command"]
  if decl.commands and not sub_name then
    local _, by_name = build_parser()
    io.stdout:write(by_name[decl.name]:get_help(), "\n")
    return exit.OURS
  end
  local full = sub_name and (decl.name .. " " .. sub_name) or decl.name
  if tail and not (sub_name and commands.find(decl.name, sub_name) or decl).tail then
    return exit.die(("`%s` takes no command"):format(full))
  end
  local level = opts.log_level or getenv("ROOTLESSNETNS_LOG_LEVEL")
  if level then
    local lok, lerr = log.set_level(level)
    if not lok then return exit.die(lerr) end
  end
  -- the CLI exits when the command is done: it may join in-process
  local nsopts = { getenv = getenv, config = opts.config, signals = signals, in_process = true }
  if opts.backend then nsopts.backend = opts.backend end
  if not opts.config then
    local path, explicit = require("rootlessnetns.config").locate(nil, getenv)
    if path and not explicit then nsopts.config = path end
    -- a plain `run` (the default config, no option) is what a warm run
    -- stands for: it prepares for the next ones
    if decl.name == "run" and not opts.backend then nsopts.warm = { config = nsopts.config } end
  end
  local ns, err = require("rootlessnetns.netns").new(nsopts)
  if not ns then return exit.die(err) end
  if not opts.log_level and ns.cfg.log_level then log.set_level(ns.cfg.log_level) end
  return require("rootlessnetns.cli." .. decl.handler)(ns, opts, tail, getenv)
end

--- Entry point: never raises, never prints a traceback (unless debugging).
-- @treturn int exit status
function M.main(args, getenv)
  getenv = getenv or os.getenv
  local ok, code = xpcall(main, function(e)
    if log.enabled("debug") then return debug.traceback(tostring(e), 2) end
    -- (one line: a module's load error is several)
    local msg = tostring(e):gsub("%s*\n%s*", " ")
    if msg:match("^error loading module ") or msg:match("^module '[^']*' not found") then
      return "cannot load its modules (a partial install?): " .. msg
    end
    return "internal error: " .. msg
  end, args, getenv)
  if not ok then return exit.die(tostring(code)) end
  io.stdout:flush()
  return code
end

return M
