--- How the CLI prints: JSON (lists stay lists), aligned rows, pids.
local cjson = require "cjson.safe"

local M = {}

--- Print @value as one line of JSON (lists marked by json_list stay
-- lists; use json_lists for those).
function M.json(value)
  io.stdout:write(cjson.encode(value), "\n")
end

-- cjson 2.1 encodes an empty table as {}; lists in our JSON are lists.
local EMPTY_LIST = "\1empty-list\1"

--- Mark @t as a list for M.json_lists, even when empty.
function M.json_list(t)
  if #t == 0 then return EMPTY_LIST end
  return t
end

--- M.json, with the lists marked by json_list printed as [].
function M.json_lists(value)
  local text = cjson.encode(value):gsub('"\\u0001empty%-list\\u0001"', "[]")
  io.stdout:write(text, "\n")
end

--- A copy of @value for JSON: each key that @shape names and @value
-- lacks is JSON's null (the Lua API says nothing for what is missing;
-- a JSON reader gets every key).  @shape: key -> true, or a shape.
function M.with_nulls(value, shape)
  local out = {}
  for k, v in pairs(value) do out[k] = v end
  for k, sub in pairs(shape) do
    if out[k] == nil then
      out[k] = cjson.null
    elseif type(sub) == "table" and type(out[k]) == "table" then
      out[k] = M.with_nulls(out[k], sub)
    end
  end
  return out
end

--- A list as "a, b", or "-" when empty.
function M.list(v)
  if type(v) ~= "table" or #v == 0 then return "-" end
  return table.concat(v, ", ")
end

--- Rows of cells in aligned columns, under @header when there is one.
function M.table(header, rows)
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

--- Aligned rows without a header (the `status` and `info` reports).
function M.rows(rows) M.table(nil, rows) end

--- A pid, "-" when there is none, marked when it is dead.
function M.pid(pid, alive)
  if pid == nil or pid == cjson.null then return "-" end
  return ("%d%s"):format(pid, alive == false and " (dead)" or "")
end

return M
