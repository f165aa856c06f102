--- Logging: one line per event on stderr, prefixed with the program name.
-- The CLI sets the level; library users may replace `sink`.
local M = {}

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4 }
M.LEVELS = LEVELS
M.level = LEVELS.warn

local LABEL = { "error", "warning", "info", "debug" }

--- Where every line goes: stderr.  A program embedding the library may
-- replace it (a function of one string) to route our lines elsewhere.
function M.sink(line)
  io.stderr:write(line, "\n")
end

--- Set the level by name; returns nil, message for an unknown name.
function M.set_level(name)
  local n = LEVELS[name]
  if not n then
    local names = {}
    for k in pairs(LEVELS) do names[#names + 1] = k end
    table.sort(names)
    return nil, ("unknown log level %q (valid: %s)"):format(tostring(name), table.concat(names, ", "))
  end
  M.level = n
  return true
end

local function emit(n, fmt, ...)
  if n <= M.level then
    M.sink(("rootlessnetns: %s: " .. fmt):format(LABEL[n], ...))
  end
end

--- Log a warning (shown unless the level is "error").
-- @tparam string fmt a string.format format
function M.warn(fmt, ...) emit(2, fmt, ...) end
--- Log at level "info".
function M.info(fmt, ...) emit(3, fmt, ...) end
--- Log at level "debug": each step and its time.
function M.debug(fmt, ...) emit(4, fmt, ...) end

--- Is level @name shown?  Lets a caller skip work done only to be logged.
-- @tparam string name "error", "warn", "info" or "debug"
function M.enabled(name)
  return LEVELS[name] <= M.level
end

return M
