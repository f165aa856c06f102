--- Logging: one line per event on stderr, prefixed with the program name.
-- The CLI sets the level; library users may replace `sink`.
local M = {}

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4 }
M.LEVELS = LEVELS
M.level = LEVELS.warn

local LABEL = { "error", "warning", "info", "debug" }

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

function M.warn(fmt, ...) emit(2, fmt, ...) end
function M.info(fmt, ...) emit(3, fmt, ...) end
function M.debug(fmt, ...) emit(4, fmt, ...) end

function M.enabled(name)
  return LEVELS[name] <= M.level
end

return M
