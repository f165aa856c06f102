--- The detached helpers of ours that outlive the command that starts
-- them (the mount keeper, the port forwarders), both sides of one
-- handshake.
--
-- The starter runs the helper with core.detached, records its identity
-- ("pid starttime") at once, so that from then on a cleanup, or the
-- starter's death, ends it, and waits (a signal ends the wait) for the
-- helper's status file: a first line "ok" or "error MESSAGE", then lines
-- for the starter.  The helper lives while the record names it: it waits
-- (bounded) for the record to be written, then checks it now and then.
local core = require "rootlessnetns"
local state = require "rootlessnetns.state"

local M = {}

M.READY_TIMEOUT_MS = 5000

--- Starter side: run `opts.code` (a Lua chunk) detached as `opts.title`,
-- with the strings `opts.args`; record it at `opts.record`; wait for
-- `opts.status`.  Words for the messages: `opts.doing` ("preparing the
-- mount namespace"), `opts.failed` ("prepare the mount namespace"),
-- `opts.silent` (when it says nothing), `opts.gone` (when it ends at
-- once).  On failure the helper may still run: the caller removes it, as
-- it would any of its own.
-- @tparam Netns ns whose signals end the wait
-- @tparam table opts
-- @treturn[1] table {pid, starttime}
-- @treturn[1] table the lines after its verdict
-- @return[2] nil, message, the signal that ended the wait (if one did)
function M.start(ns, opts)
  core.unlink(opts.status)
  local pid, err = core.detached(opts.title, opts.code, table.unpack(opts.args))
  if not pid then return nil, err end
  local st = core.starttime(pid)
  local ok, werr = false, opts.gone
  if st then ok, werr = state.write_identity(opts.record, pid, st) end
  if not ok then
    if st then core.kill(pid, st, core.SIGKILL) end
    return nil, werr
  end
  local deadline = core.clock() + M.READY_TIMEOUT_MS / 1000
  local said, sig
  repeat
    said = core.readfile(opts.status, 1 << 20)
    if said or not core.alive(pid, st) then break end
    -- (a signal ends this wait as every other)
    if ns.signals then sig = ns.signals:wait(1) else core.sleep(1) end
  until sig or core.clock() > deadline
  core.unlink(opts.status)
  if sig then return nil, ("interrupted by signal %d while %s"):format(sig, opts.doing), sig end
  local verdict, rest = (said or ""):match("^([^\n]*)\n?(.*)$")
  if verdict ~= "ok" then
    return nil, opts.failed .. ": " .. (verdict and verdict ~= "" and verdict:gsub("^error ", "") or opts.silent)
  end
  local lines = {}
  for line in (rest or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return { pid = pid, starttime = st }, lines
end

--- Helper side: this process's record text ("pid starttime\n").
function M.me()
  local pid = core.getpid()
  return ("%d %d\n"):format(pid, (core.starttime(pid)))
end

--- Helper side: say @ok (or the error @err) and @lines in @status.
function M.say(status, ok, err, lines)
  local text = (ok and "ok\n" or ("error " .. tostring(err) .. "\n")) .. table.concat(lines or {}, "\n")
  core.writefile(status, text, tonumber("600", 8))
end

--- Helper side: wait (bounded) until @record names @me, as the starter
-- writes it once our pid is known.
function M.await_record(record, me)
  local deadline = core.clock() + M.READY_TIMEOUT_MS / 1000
  while core.readfile(record, 64) ~= me and core.clock() < deadline do core.sleep(10) end
end

--- Helper side: does @record still name @me?
function M.named(record, me)
  return core.readfile(record, 64) == me
end

return M
