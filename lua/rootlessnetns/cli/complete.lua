--- `rootlessnetns __complete WORD...`: what the bash completion offers
-- for the last WORD (the one being typed), from the command table.
-- Prints a kind, then the candidates, one per line:
--   words        the candidates follow
--   files        complete a file name
--   command N    a command to run starts at word N (COMP_WORDS' index)
--   none         nothing to offer
local commands = require "rootlessnetns.cli.commands"

local M = {}

local function option_words(options, out)
  for _, o in ipairs(options or {}) do out[#out + 1] = o.flag end
  return out
end

local function find_option(decl, flag)
  for _, o in ipairs(decl and (decl.options or {}) or commands.GLOBAL_OPTIONS) do
    if o.flag == flag then return o end
  end
  if decl then return find_option(nil, flag) end
  return nil
end

--- The names of the named namespaces (nothing when they cannot be read).
local function namespace_names(getenv)
  local ns = require("rootlessnetns.netns").new { getenv = getenv, in_process = true }
  local l = ns and require("rootlessnetns.lab").new(ns)
  local entries = l and l:list() or {}
  local names = {}
  for _, e in ipairs(entries) do names[#names + 1] = e.name end
  return names
end

--- What to offer for the last of @words.
-- @treturn string kind
-- @treturn table candidates (for kind "words")
function M.candidates(words, getenv)
  local decl, positional, value_of = nil, 0, nil
  local n = #words
  for i = 1, n - 1 do
    local w = words[i]
    if value_of then
      value_of = nil
    elseif w == "--" and decl and decl.tail then
      return "command " .. (i + 1), {}
    elseif w:sub(1, 1) == "-" then
      local o = find_option(decl, w)
      if o and o.value then value_of = o end
    elseif not decl then
      decl = commands.find(w)
      if not decl then return "none", {} end
    elseif decl.commands then
      decl = commands.find(decl.name, w)
      if not decl then return "none", {} end
    elseif decl.tail == "command" and positional >= #(decl.args or {}) then
      return "command " .. i, {}
    else
      positional = positional + 1
    end
  end
  local cur = words[n] or ""
  if value_of then
    if value_of.complete == "files" then return "files", {} end
    if type(value_of.complete) == "table" then return "words", value_of.complete end
    return "none", {}
  end
  if cur:sub(1, 1) == "-" then
    local out = option_words(decl and (decl.options or {}) or commands.GLOBAL_OPTIONS, {})
    out[#out + 1] = "--help"
    if decl and decl.tail then out[#out + 1] = "--" end
    return "words", out
  end
  if not decl or decl.commands then
    local out = {}
    for _, c in ipairs(decl and decl.commands or commands.COMMANDS) do out[#out + 1] = c.name end
    return "words", out
  end
  if decl.name == "help" then
    -- a command, then one of its subcommands
    local list = positional == 0 and commands.COMMANDS
      or positional == 1 and (commands.find(words[n - 1]) or {}).commands or {}
    local out = {}
    for _, c in ipairs(list) do out[#out + 1] = c.name end
    return "words", out
  end
  local arg = (decl.args or {})[positional + 1]
  if arg then
    if arg.complete == "netns" then return "words", namespace_names(getenv) end
    if arg.complete == "files" then return "files", {} end
    return "none", {}
  end
  if decl.tail == "command" then return "command " .. n, {} end
  return "none", {}
end

--- `rootlessnetns __complete WORD...`, what the bash completion calls:
-- prints the kind of candidates on the first line ("words", "command N",
-- "none", ...), then one candidate per line, so the shell script holds no
-- knowledge of the commands.
-- @tparam {string,...} words the command line so far, the last one being completed
-- @tparam function getenv os.getenv or a test's stand-in
-- @treturn int exit status 0
function M.main(words, getenv)
  local kind, list = M.candidates(words, getenv)
  io.stdout:write(kind, "\n")
  for _, w in ipairs(list) do io.stdout:write(w, "\n") end
  return 0
end

return M
