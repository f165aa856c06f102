--- Backend resolution: a name, a module name or a table with start().
--
-- `auto` picks pasta when it is a release with --map-guest-addr
-- (2024-08 or later), else slirp4netns when installed, else the older
-- pasta.  Why not always pasta: the pasta that Debian 12 ships
-- (0.0~git20230309) stalls TCP from the namespace to the host after about
-- a second, while slirp4netns at MTU 65520 sustains gigabits; see the
-- README's backend section for the measurements.
local M = {}

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
  if type(mod) ~= "table" or type(mod.start) ~= "function" then
    return nil, ("backend module %q must return a table with a start function"):format(modname)
  end
  mod.name = mod.name or b
  return mod
end

return M
