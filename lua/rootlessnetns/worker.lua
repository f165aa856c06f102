--- Forked workers: how the library does its work without touching the
-- process that calls it.
--
-- Joining the holder is a setns(2) of the user and mount namespaces, and
-- there is no way back: a long-lived program that joined once would be
-- stranded by anyone's `cleanup`.  So a method of a library handle runs in
-- a forked worker that joins, works and exits; only its results come
-- back.  The worker is a copy of the caller, so arguments need no
-- marshalling, and it inherits the caller's Signals: a signal the caller
-- receives is passed on to the worker, whose own waits (the lock, a
-- backend's start, a command it runs) then end or pass it on in turn.
--
-- The report is a Lua literal (`return n, v1, ..., vn`) written to a memfd:
-- it keeps integers integers (130 stays 130, not 130.0), has no size limit,
-- and no process the worker leaves behind can hold it open.
local core = require "rootlessnetns"
local cjson = require "cjson.safe"

local M = {}

local encode

local function encode_table(t, depth)
  if depth > 32 then error("a result nested deeper than 32 tables", 0) end
  local parts = {}
  for k, v in pairs(t) do
    parts[#parts + 1] = ("[%s]=%s"):format(encode(k, depth), encode(v, depth + 1))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function encode(v, depth)
  local kind = type(v)
  if kind == "nil" or kind == "boolean" then return tostring(v) end
  if kind == "number" or kind == "string" then return ("%q"):format(v) end
  if v == cjson.null then return "null" end
  if kind == "table" then return encode_table(v, depth or 0) end
  error(("a result cannot be a %s"):format(kind), 0)
end

--- The report of results @res (a table.pack), as a chunk to load.
function M.encode(res)
  local parts = { "return ", ("%d"):format(res.n) }
  for i = 1, res.n do parts[#parts + 1] = "," .. encode(res[i]) end
  return table.concat(parts)
end

--- The results of a report, as a table.pack.
function M.decode(text)
  local chunk, err = load(text, "=(worker report)", "t", { null = cjson.null })
  if not chunk then return nil, err end
  local ok, n_or_err = pcall(function() return table.pack(chunk()) end)
  if not ok then return nil, tostring(n_or_err) end
  local res = n_or_err
  local n = math.tointeger(res[1])
  if not n then return nil, "no count" end
  return table.pack(table.unpack(res, 2, n + 1))
end

local function child(report, fn, ...)
  local res = table.pack(pcall(fn, ...))
  if res[1] then
    res = table.pack(table.unpack(res, 2, res.n))
  else
    res = table.pack(nil, tostring(res[2]))
  end
  local ok, text = pcall(M.encode, res)
  if not ok then text = M.encode(table.pack(nil, tostring(text))) end
  report:write(text)
  io.stdout:flush()
  io.stderr:flush()
  core._exit(0)
end

--- Run `fn(...)` in a forked worker and return what it returned.  Results
-- are nil, booleans, numbers, strings, cjson.null and tables of those.
-- @tparam[opt] Signals signals passed on to the worker while it runs
-- @tparam function fn
-- @return what @fn returned; nil and the error when it raised one; nil,
--   message[, errno] when the worker could not run or died unreported
function M.call(signals, fn, ...)
  local report, merr, mcode = core.memfd()
  if not report then return nil, merr, mcode end
  -- (what is buffered would otherwise be written twice)
  io.stdout:flush()
  io.stderr:flush()
  local pid, ferr, fcode = core.fork()
  if not pid then
    report:close()
    return nil, ferr, fcode
  end
  if pid == 0 then child(report, fn, ...) end
  local proc = assert(core.process(pid))
  local how, status = proc:wait(nil, signals)
  local text = (report:rewind() and report:readall()) or ""
  report:close()
  if text == "" then
    return nil, ("rootlessnetns worker %s %s"):format(
      how == "signaled" and "killed by signal" or "exited with status", tostring(status))
  end
  local res, derr = M.decode(text)
  if not res then return nil, "rootlessnetns worker report: " .. derr end
  return table.unpack(res, 1, res.n)
end

--- Make each method @names of class @class run in a worker, unless the
-- handle (or the handle found by @handle_of) says it may join in-process.
-- In the worker the handle is marked so, and what the method calls on it
-- runs there directly.
function M.wrap(class, names, handle_of)
  handle_of = handle_of or function(self) return self end
  for _, name in ipairs(names) do
    local method = assert(class[name], name)
    class[name] = function(self, ...)
      local handle = handle_of(self)
      if handle.in_process then return method(self, ...) end
      -- a command's own signals (`opts.signals` of run and exec) are
      -- passed on too: the worker passes them on to the command
      local signals = handle.signals
      local last = select("#", ...) > 0 and select(select("#", ...), ...)
      if not signals and type(last) == "table" then signals = last.signals end
      return M.call(signals, function(...)
        handle.in_process = true
        local res = table.pack(pcall(method, self, ...))
        if not res[1] then return nil, "internal error: " .. tostring(res[2]) end
        return table.unpack(res, 2, res.n)
      end, ...)
    end
  end
end

return M
