--- What a backend binary can do, probed once per binary and remembered.
--
-- Probing runs the binary (`--help`), which costs a process per cold
-- start; the answer only changes when the binary does, so it is kept in
-- `<state dir>/probes.json` keyed by path, inode, size and mtime.
local core = require "rootlessnetns"
local state = require "rootlessnetns.state"

local M = {}

local memo = {}

local function identity(path)
  local st = core.stat(path)
  return st and ("%d:%d:%d"):format(st.ino, st.size, st.mtime)
end

--- The cached answer of @probe(path) for @kind ("slirp4netns-features", ...).
-- The answer is kept per binary identity (inode, size, mtime), so an
-- upgraded binary is probed again.
-- @tparam string|nil base state directory (nil: remember in memory only)
-- @tparam string kind what is asked, names the answer in the cache
-- @tparam string path the binary probed
-- @tparam function probe path -> JSON-able value, or nil, message
function M.cached(base, kind, path, probe)
  local id = identity(path)
  local key = kind .. " " .. path
  local hit = memo[key]
  if hit and hit.id == id then return hit.value end
  local file = base and (base .. "/probes.json")
  local all = file and state.read_json(file) or {}
  hit = all[key]
  if type(hit) == "table" and hit.id == id and hit.value ~= nil then
    memo[key] = hit
    return hit.value
  end
  local value, err = probe(path)
  if value == nil then return nil, err end
  memo[key] = { id = id, value = value }
  if file and id then
    all[key] = memo[key]
    state.write_json(file, all) -- best effort: a cache
  end
  return value
end

return M
