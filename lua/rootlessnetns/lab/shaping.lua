--- Shaped links: a rate (tbf), and delay, jitter and loss (netem), on
-- both ends of a connection's veth pair, so each direction is shaped.
-- The option values are checked here (pure); which qdiscs this kernel
-- has is found by trying them on a namespace's loopback.
local core = require "rootlessnetns"

local errno = core.errno

local M = {}

local RATE_UNITS = { bit = 1, kbit = 1e3, mbit = 1e6, gbit = 1e9 }
local TIME_UNITS = { us = 1e-6, ms = 1e-3, s = 1 }

--- The kernel module each option needs.
M.MODULE = { rate = "sch_tbf", delay = "sch_netem", jitter = "sch_netem", loss = "sch_netem" }
M.OPTIONS = { "rate", "delay", "jitter", "loss" }

local function rate_bits(text)
  local n, unit = tostring(text):match("^(%d+%.?%d*)(%a+)$")
  local f = unit and RATE_UNITS[unit:lower()]
  n = tonumber(n)
  if not f or not n or n <= 0 then return nil end
  return n * f
end

local function seconds(text)
  local n, unit = tostring(text):match("^(%d+%.?%d*)(%a+)$")
  local f = unit and TIME_UNITS[unit]
  n = tonumber(n)
  if not f or not n then return nil end
  return n * f
end

--- Check the shaping options of @opts (rate, delay, jitter, loss).
-- @treturn[1] table|nil {rate, delay, jitter, loss} as given, nil for none
-- @return[2] nil, message, EINVAL
function M.check(opts)
  local out, any = {}, false
  if opts.rate ~= nil then
    local bits = rate_bits(opts.rate)
    if not bits or bits < 8000 then
      return nil, ("--rate `%s`: a rate such as 10mbit (bit, kbit, mbit, gbit; at least 8kbit)")
        :format(tostring(opts.rate)), errno.EINVAL
    end
    out.rate, any = opts.rate, true
  end
  for _, key in ipairs { "delay", "jitter" } do
    if opts[key] ~= nil then
      local s = seconds(opts[key])
      if not s or s > 60 then
        return nil, ("--%s `%s`: a time such as 20ms (us, ms, s; at most 60s)"):format(key, tostring(opts[key])),
          errno.EINVAL
      end
      out[key], any = opts[key], true
    end
  end
  if opts.jitter ~= nil and opts.delay == nil then
    return nil, "--jitter needs --delay (the jitter is around it)", errno.EINVAL
  end
  if opts.loss ~= nil then
    local p = tonumber((tostring(opts.loss):match("^(%d+%.?%d*)%%?$")))
    if not p or p > 100 then
      return nil, ("--loss `%s`: a percentage such as 1%% (0 to 100)"):format(tostring(opts.loss)), errno.EINVAL
    end
    out.loss, any = tostring(opts.loss):gsub("%%$", "") .. "%", true
  end
  return any and out or nil
end

--- Does @shape need netem (anything but a rate)?
function M.needs_netem(shape)
  return shape ~= nil and (shape.delay ~= nil or shape.loss ~= nil)
end

--- The `tc` arguments that shape @dev's egress as @shape: tbf for a rate
-- alone (its burst big enough for a GSO packet), netem otherwise (with
-- its own rate).
function M.tc_args(dev, shape)
  if not M.needs_netem(shape) then
    local bytes = rate_bits(shape.rate) / 8
    local burst = math.max(math.floor(bytes / 100), 262144)
    return { "qdisc", "replace", "dev", dev, "root", "tbf", "rate", shape.rate, "burst", tostring(burst),
      "latency", "100ms" }
  end
  local args = { "qdisc", "replace", "dev", dev, "root", "netem" }
  if shape.delay then
    args[#args + 1], args[#args + 2] = "delay", shape.delay
    if shape.jitter then args[#args + 1] = shape.jitter end
  end
  if shape.loss then args[#args + 1], args[#args + 2] = "loss", shape.loss end
  if shape.rate then args[#args + 1], args[#args + 2] = "rate", shape.rate end
  return args
end

-- A qdisc of each kind, to try on loopback.
local PROBES = {
  tbf = { "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "32k", "latency", "50ms" },
  htb = { "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb" },
  netem = { "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms" },
}

--- Which qdiscs this kernel has, tried on the loopback of the netns
-- pinned at (or open as) @netns; each is removed again.  @run(argv, netns)
-- runs `tc` there: true, or nil and its output.
-- @treturn table {tbf = bool, htb = bool, netem = bool}
function M.supported(run, netns)
  local out = {}
  for _, kind in ipairs { "tbf", "htb", "netem" } do
    out[kind] = run(PROBES[kind], netns) == true
    if out[kind] then run({ "qdisc", "del", "dev", "lo", "root" }, netns) end
  end
  return out
end

--- The refusal of an option whose qdisc this kernel lacks.
function M.missing(option)
  local module = M.MODULE[option]
  return ("--%s needs the kernel's %s qdisc (module %s), which this kernel does not have; "
    .. "`rootlessnetns doctor` lists what this host can shape"):format(option, module:gsub("^sch_", ""), module)
end

return M
