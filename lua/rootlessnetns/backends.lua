--- Backend resolution: a name, a module name or a table with start().
--
-- `auto` picks pasta when it is a release with --map-guest-addr
-- (2024-08 or later), else slirp4netns when installed, else the older
-- pasta.  Why not always pasta: the pasta that Debian 12 ships
-- (0.0~git20230309) stalls TCP from the namespace to the host after about
-- a second, while slirp4netns at MTU 65520 sustains gigabits; see the
-- README's backend section for the measurements.
local M = {}

--- The backend contract.  A backend is a table (or a Lua module returning
-- one); of its keys, these mean something to us:
--
--   name              string; defaults to the module name ("custom" for a table)
--   start(ctx)        required.  Start the network for the netns pinned at
--                     ctx.paths.pin.  Returns a table:
--                       pid, starttime   the process to watch (pid = false: none)
--                       argv             its command line, for the record
--                       nameservers      list of addresses for resolv.conf
--                       ipv6             boolean: does the netns get IPv6
--                       info             {IPAddresses, DnsForwardIps, MapGuestIps}
--                     or nil, message[, signal number when ctx.signals ended its wait]
--   alive(rec, ctx)   optional: still working?  (default: rec's pid and start
--                     time are alive).  When not, the backend is restarted.
--   stop(rec, ctx)    optional: at cleanup, before its process is signalled
--   info(rec, ctx)    optional: fresher addresses for `info`
--
-- ctx: cfg, paths, core, log, signals, in_netns(pin, fn).  rec is what
-- backend.json records: name, pid, starttime, argv (or noprocess = true).
-- A backend's errors, raised or returned, are failures to start: the pin
-- is removed and nothing looks usable.
M.CONTRACT = {
  { key = "name", type = "string" },
  { key = "start", type = "function", required = true },
  { key = "alive", type = "function" },
  { key = "stop", type = "function" },
  { key = "info", type = "function" },
}

--- Check a backend table against the contract.
-- @param b the backend: anything but a table is refused
-- @tparam[opt] string what names it in the message
-- @treturn[1] table the backend
-- @return[2] nil, message naming the key
function M.validate(b, what)
  if type(b) ~= "table" then
    return nil, ("%s must be a table with a start function, not a %s"):format(what, type(b))
  end
  for _, c in ipairs(M.CONTRACT) do
    local v = b[c.key]
    if (v ~= nil or c.required) and type(v) ~= c.type then
      return nil, ("%s`%s` must be a %s, not %s"):format(what and (what .. ": ") or "", c.key, c.type,
        v == nil and "missing" or ("a " .. type(v)))
    end
  end
  return b
end

local function list_of_strings(v)
  if type(v) ~= "table" then return false end
  for i, x in pairs(v) do
    if math.type(i) ~= "integer" or type(x) ~= "string" then return false end
  end
  return true
end

--- Check what start() returned (after a successful start).
-- @treturn[1] table @res
-- @return[2] nil, message
function M.check_started(name, res)
  if type(res) ~= "table" then
    return nil, ("backend %s: start returned a %s, not a table"):format(name, type(res))
  end
  if res.pid ~= false and not (math.type(res.pid) == "integer" and res.pid > 0
      and math.type(res.starttime) == "integer") then
    return nil, ("backend %s returned no pid/starttime (pid = false: no process)"):format(name)
  end
  if res.nameservers ~= nil and not list_of_strings(res.nameservers) then
    return nil, ("backend %s: `nameservers` must be a list of strings"):format(name)
  end
  if res.ipv6 ~= nil and type(res.ipv6) ~= "boolean" then
    return nil, ("backend %s: `ipv6` must be a boolean"):format(name)
  end
  if res.info ~= nil and type(res.info) ~= "table" then
    return nil, ("backend %s: `info` must be a table"):format(name)
  end
  return res
end

--- Lines of a backend's output that never say why it failed.
M.OUTPUT_NOISE = { "^WARNING:", "^[Ww]arning:", "syslog", "^child failed%(%d+%)$" }

local function escaped(line)
  return (line:gsub("[%c\127]", function(c) return ("\\x%02x"):format(c:byte()) end))
end

--- What a backend's output says about its failure, in one line: its
-- first line that is not noise (or its last line), control characters
-- escaped, at most 240 characters.  The whole of it is for the debug log.
function M.summary(output)
  local lines = {}
  for line in tostring(output or ""):gsub("\r", "\n"):gmatch("[^\n]+") do
    line = escaped(line:match("^%s*(.-)%s*$"))
    if line ~= "" then lines[#lines + 1] = line end
  end
  local chosen = lines[#lines] or ""
  for _, line in ipairs(lines) do
    local noise = false
    for _, pattern in ipairs(M.OUTPUT_NOISE) do
      if line:find(pattern) then noise = true break end
    end
    if not noise then chosen = line break end
  end
  if #chosen > 240 then chosen = chosen:sub(1, 237) .. "..." end
  return chosen
end

M.BUILTIN = { pasta = "rootlessnetns.backend.pasta", slirp4netns = "rootlessnetns.backend.slirp4netns" }

local function names()
  return "auto, pasta, slirp4netns, or a Lua module name"
end

--- Resolve cfg.backend to a backend table.
-- @treturn[1] table backend
-- @return[2] nil, message
function M.resolve(cfg, base)
  local b = cfg.backend
  if type(b) == "table" then
    local ok, err = M.validate(b, "backend table")
    if not ok then return nil, err end
    b.name = b.name or "custom"
    return b
  end
  if b == "auto" then
    local pasta = require(M.BUILTIN.pasta)
    local slirp = require(M.BUILTIN.slirp4netns)
    local ppath = pasta.binary(cfg)
    if ppath and pasta.modern(ppath, base) then return pasta end
    if slirp.binary(cfg) then return slirp end
    if ppath then return pasta end
    return nil, "no backend found: install passt (pasta) or slirp4netns (apt-get install passt slirp4netns)"
  end
  local modname = M.BUILTIN[b] or b
  if not M.BUILTIN[b] and not b:match("^[%w_]+[%w_.]*$") then
    return nil, ("unknown backend %q (valid: %s)"):format(b, names())
  end
  local ok, mod = pcall(require, modname)
  if not ok then
    if not M.BUILTIN[b] and tostring(mod):find("module '" .. modname .. "' not found", 1, true) then
      return nil, ("unknown backend %q (valid: %s)"):format(b, names())
    end
    return nil, ("backend %q: %s"):format(b, tostring(mod))
  end
  local valid, verr = M.validate(mod, ("backend module %q"):format(modname))
  if not valid then return nil, verr end
  mod.name = mod.name or b
  return mod
end

return M
