-- make bench: latency and throughput figures, measured side by side with
-- their floors in one run.  It prints; it asserts nothing.
--
--   lua5.4 tools/bench.lua [ROUNDS] [CLI]   (from the tree root, unprivileged)
--
-- CLI is the command to measure (default: the installed-style one that
-- tools/bench.sh puts under a scratch prefix; else bin/rootlessnetns).
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local core = require "rootlessnetns"
local cjson = require "cjson.safe"

local ROUNDS = tonumber(arg[1]) or 30
local CLI = arg[2] and { arg[2] } or { "lua5.4", "bin/rootlessnetns" }

local xdg = ("%s/bench-%d"):format(os.getenv("XDG_RUNTIME_DIR") or "/tmp", core.getpid())
assert(core.mkdir(xdg, tonumber("700", 8)))
local env = {}
for _, k in ipairs { "PATH", "HOME", "USER" } do env[k] = os.getenv(k) end
env.XDG_RUNTIME_DIR = xdg

local function argv(...)
  local a = {}
  for _, x in ipairs(CLI) do a[#a + 1] = x end
  for _, x in ipairs { ... } do a[#a + 1] = x end
  return a
end

local function run(cmd, quiet)
  local p = assert(core.spawn { argv = cmd, env = env, fds = { [0] = false, [1] = false, [2] = quiet and false or nil } })
  local how, code = p:wait()
  return how == "exited" and code == 0
end

local function time_once(cmd, before)
  if before then before() end
  local t0 = core.clock()
  local ok = run(cmd, true)
  local dt = (core.clock() - t0) * 1000
  return ok and dt or nil
end

local function stats(samples)
  table.sort(samples)
  local n = #samples
  if n == 0 then return nil end
  local med = n % 2 == 1 and samples[(n + 1) // 2] or (samples[n // 2] + samples[n // 2 + 1]) / 2
  return { median = med, min = samples[1], max = samples[n], n = n }
end

local function measure(cmd, rounds, before)
  local s = {}
  for _ = 1, rounds do
    local dt = time_once(cmd, before)
    if dt then s[#s + 1] = dt end
  end
  return stats(s)
end

local rows = {}
local function row(name, st, floor)
  rows[#rows + 1] = { name = name, st = st, floor = floor }
end

local function rss_kb(pid, field)
  local text = core.readfile(("/proc/%d/status"):format(pid), 65536) or ""
  return tonumber(text:match((field or "VmRSS") .. ":%s+(%d+)"))
end

-- floors
local t_true = measure({ "/bin/true" }, ROUNDS)
row("/bin/true", t_true)
local t_lua = measure({ "lua5.4", "-e", "os.exit(0)" }, ROUNDS)
row("lua5.4 -e 'os.exit(0)'", t_lua)

for _, backend in ipairs { "slirp4netns", "pasta" } do
  -- cold: nothing at all, then netns + backend with the holder kept
  local cold_all = measure(argv("--backend", backend, "setup"), math.max(5, ROUNDS // 3), function()
    run(argv("cleanup"), true)
  end)
  local cold_ns = measure(argv("--backend", backend, "setup"), math.max(5, ROUNDS // 3), function()
    run(argv("teardown", "--nets", "1000"), true)
  end)
  row(backend .. ": cold setup (no holder, no netns)", cold_all)
  row(backend .. ": setup with the holder warm (netns + backend)", cold_ns)
end

-- warm run against the nsenter floor into the same namespaces
run(argv("--backend", "slirp4netns", "setup"), true)
local sleeper = assert(core.spawn { argv = argv("run", "--", "sleep", "600"), env = env, fds = { [0] = false } })
local target
for _ = 1, 200 do
  core.sleep(10)
  local st = core.readfile(("/proc/%d/task/%d/children"):format(sleeper:pid(), sleeper:pid()), 4096)
  target = st and tonumber(st:match("%d+"))
  if target then break end
end
local t_nsenter = target
  and measure({ "nsenter", "-U", "-m", "-n", "--preserve-credentials", "-t", tostring(target), "true" }, ROUNDS)
row("nsenter -U -m -n --preserve-credentials -t RUN true (floor)", t_nsenter)
local t_warm = measure(argv("run", "--", "true"), ROUNDS)
row("rootlessnetns run -- true (warm)", t_warm, t_nsenter)

-- memory
local cli_peak = rss_kb(sleeper:pid(), "VmHWM")
local status = cjson.decode(select(1, (function()
  local r, w = core.pipe()
  local p = core.spawn { argv = argv("status", "--json"), env = env, fds = { [1] = w } }
  w:close()
  local out = r:readall(10000)
  r:close()
  p:wait()
  return out
end)()) or "{}") or {}
sleeper:kill(core.SIGTERM)
sleeper:wait()

-- parallel runs
local N = 64
local t0 = core.clock()
local procs = {}
for i = 1, N do
  procs[i] = core.spawn { argv = argv("run", "--", "true"), env = env, fds = { [0] = false, [1] = false } }
end
local ok = 0
for i = 1, N do
  local how, code = procs[i]:wait()
  if how == "exited" and code == 0 then ok = ok + 1 end
end
local parallel = core.clock() - t0

local holder_rss = status.holder and tonumber(status.holder.pid) and rss_kb(status.holder.pid)
local backend_rss = status.backend and tonumber(status.backend.pid) and rss_kb(status.backend.pid)
run(argv("cleanup"), true)
core.rmtree(xdg)

print(("%-58s %9s %9s %9s %7s"):format("measurement (ms)", "median", "min", "max", "ratio"))
for _, r in ipairs(rows) do
  if r.st then
    local ratio = r.floor and ("%.2fx"):format(r.st.median / r.floor.median) or ""
    print(("%-58s %9.2f %9.2f %9.2f %7s"):format(r.name, r.st.median, r.st.min, r.st.max, ratio))
  else
    print(("%-58s %9s"):format(r.name, "n/a"))
  end
end
print(("%-58s %9.0f runs/s (%d of %d ok)"):format(("%d parallel `run -- true`, warm"):format(N), N / parallel, ok, N))
print(("%-58s %9s kB"):format("peak RSS of the CLI during run", tostring(cli_peak)))
print(("%-58s %9s kB"):format("RSS of the holder", tostring(holder_rss)))
print(("%-58s %9s kB"):format("RSS of the backend (slirp4netns)", tostring(backend_rss)))
