-- The README runs as printed: every shell transcript in it (a fenced
-- block whose first line starts with "$ ") is run here, command by
-- command, as the user reading it would, and its output compared with
-- the printed one by shape.
--
-- Shape: numbers within words (addresses, times, counts in a list, the
-- uid in /run/user/N), pids, ports after an address and IPv6 addresses
-- stand for any, runs of
-- blanks for any; everything else must be as printed, a bare number (an
-- exit status) included.  A line "..." stands for any number of lines.  The
-- `doctor` output depends on the host: its check names must be printed in
-- order.  A fenced block that names a file under ~ (its first line is a
-- comment `-- ~/PATH` or `# ~/PATH`, or the line before it ends in
-- "`~/PATH`:") is that file for the transcripts after it in the same
-- section: "~/.config/rootlessnetns/config.lua" is the config.  A
-- transcript that needs a program that is not installed (a path under
-- /usr/lib it or its files name, or `podman`) is pending.
-- Each transcript gets a fresh XDG_RUNTIME_DIR and HOME; traffic goes
-- only to loopback and to the namespaces the transcripts make.
local core = require "rootlessnetns"
local helper = require "helper"

local userns_it = helper.userns_it(it, pending)

--- The file a fenced block is: from its first line, or the line before it.
local function file_of(body, before)
  local path = (body[1] or ""):match("^%-%- (~/%S+)") or (body[1] or ""):match("^# (~/%S+)")
  return path or (before or ""):match("`(~/[^`]+)`:$")
end

--- The transcripts: {title, files = {[~/PATH] = text}, steps = {{cmd, expect = {lines}}}}.
local function transcripts(text)
  local out, section, files = {}, "README", {}
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local i = 1
  while i <= #lines do
    local line = lines[i]
    local heading = line:match("^#+%s+(.*)$")
    if heading then
      section, files = heading, {}
    end
    local lang = line:match("^```(%w*)$")
    if lang then
      local before = i > 2 and lines[i - 1] == "" and lines[i - 2] or lines[i - 1]
      local body = {}
      i = i + 1
      while i <= #lines and lines[i] ~= "```" do
        body[#body + 1] = lines[i]
        i = i + 1
      end
      local path = lang ~= "" and file_of(body, before)
      if path then
        local copy = { [path] = table.concat(body, "\n") .. "\n" }
        for k, v in pairs(files) do copy[k] = copy[k] or v end
        files = copy
      elseif lang == "" and body[1] and body[1]:match("^%$ ") then
        local t = { title = ("%s, transcript %d"):format(section, #out + 1), files = files, steps = {} }
        for _, l in ipairs(body) do
          local cmd = l:match("^%$ (.*)$")
          if cmd then
            t.steps[#t.steps + 1] = { cmd = cmd, expect = {} }
          else
            local step = t.steps[#t.steps]
            step.expect[#step.expect + 1] = l
          end
        end
        out[#out + 1] = t
      end
    end
    i = i + 1
  end
  return out
end

--- The programs @t needs that are not installed: paths under /usr/lib
-- that its commands and its files name, and podman when a command runs it.
local function missing_programs(t)
  local texts = {}
  for _, step in ipairs(t.steps) do texts[#texts + 1] = step.cmd end
  for _, text in pairs(t.files) do texts[#texts + 1] = text end
  local missing, seen = {}, {}
  for _, text in ipairs(texts) do
    for path in text:gmatch("/usr/lib/[%w/._-]+") do
      if not seen[path] and not core.lstat(path) then missing[#missing + 1] = path end
      seen[path] = true
    end
  end
  local podman = false
  for _, step in ipairs(t.steps) do podman = podman or step.cmd:match("^podman ") or step.cmd:match(" podman ") end
  if podman then
    local found = false
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do found = found or core.access(dir .. "/podman", "x") end
    if not found then missing[#missing + 1] = "podman" end
  end
  return missing
end

--- Write @t's files under @home (their directories made as needed).
local function write_files(t, home)
  for path, text in pairs(t.files) do
    local full = home .. path:sub(2)
    local dir = home
    for part in path:sub(3):gmatch("([^/]+)/") do
      dir = dir .. "/" .. part
      if not core.lstat(dir) then assert(core.mkdir(dir, tonumber("700", 8))) end
    end
    helper.write(full, text)
  end
end

-- the words a pid follows: `pid 123`, `holder 123 (own)`
local PID_BEFORE = { pid = true, holder = true }

local function shape(line)
  local words, previous = {}, nil
  for word in line:gmatch("%S+") do
    -- a bare number is literal (an exit status, a count), but a pid is
    -- any, and so is a port after an address (the kernel picks it)
    local after_address = previous and previous:match("^%d+%.%d+%.%d+%.%d+$")
    previous = word
    if not word:match("^%d+$") or PID_BEFORE[words[#words]] or after_address then
      -- IPv6 addresses (with a prefix length or not) stand for any
      word = word:gsub("[%x]*:[%x:]*:[%x:]*", "<ip6>")
      word = word:gsub("%d+", "9")
    end
    words[#words + 1] = word
  end
  return table.concat(words, " ")
end

local function lines_of(text)
  local out = {}
  for l in text:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- Does @got (lines) have the shape of @want (lines, "..." for any)?
local function matches(want, got)
  local function from(wi, gi)
    if wi > #want then return gi > #got end
    if want[wi] == "..." then
      for g = gi, #got + 1 do
        if from(wi + 1, g) then return true end
      end
      return false
    end
    return gi <= #got and shape(want[wi]) == shape(got[gi]) and from(wi + 1, gi + 1)
  end
  return from(1, 1)
end

-- doctor: the names of the checks, in order (their results are the host's)
local function doctor_names(lines)
  local names = {}
  for _, l in ipairs(lines) do
    local status, name = l:match("^(%a+)%s%s+(.-)%s%s+")
    if status == "ok" or status == "warn" or status == "fail" then names[#names + 1] = name end
  end
  return names
end

describe("the README's transcripts", function()
  local readme = assert(helper.read(helper.ROOT .. "/README.md"))
  local all = transcripts(readme)

  it("are found", function()
    assert.is_true(#all >= 5, "only " .. #all .. " transcripts in README.md")
  end)

  for _, t in ipairs(all) do
    local missing = missing_programs(t)
    local run_it = #missing == 0 and userns_it
      or function(name) pending(name .. " (not installed: " .. table.concat(missing, ", ") .. ")") end
    run_it(t.title .. " runs as printed", function()
      local xdg, home, bin = helper.runtime_dir(), helper.tmpdir(), helper.tmpdir()
      helper.write(bin .. "/rootlessnetns", ('#!/bin/sh\nexec lua5.4 "%s" "$@"\n'):format(helper.CLI),
        tonumber("755", 8))
      write_files(t, home)
      local env = { PATH = bin .. ":" .. os.getenv("PATH"), HOME = home, USER = os.getenv("USER"),
        SHELL = "/bin/sh", LANG = "C.UTF-8", XDG_RUNTIME_DIR = xdg }
      -- one terminal: what a background command prints shows up among the
      -- output of the command during which it printed
      local term = helper.tmpdir() .. "/terminal"
      helper.write(term, "")
      local seen = 0
      local background = {}
      finally(function()
        for _, b in ipairs(background) do
          -- SIGTERM: a CLI passes it to its command, which SIGKILL would orphan
          if not b.done then
            b.proc:kill(core.SIGTERM)
            if not b.proc:wait(5000) then
              b.proc:kill(core.SIGKILL)
              b.proc:wait()
            end
          end
        end
        helper.cli({ "cleanup" }, { XDG_RUNTIME_DIR = xdg, HOME = home })
        -- a podman pause process a transcript started
        local pause = math.tointeger(tonumber((helper.read(xdg .. "/libpod/tmp/pause.pid") or ""):match("%d+") or ""))
        local st = pause and core.starttime(pause)
        if st then core.kill(pause, st, core.SIGKILL) end
        helper.cleanup_dirs()
      end)
      for _, step in ipairs(t.steps) do
        -- `cmd &  # comment`: started and left running, as a shell does
        local cmd = step.cmd:gsub("%s+#[^'\"]*$", "")
        local bg = cmd:match("^(.-)%s*&$")
        local out = assert(core.open(term, "a"))
        local proc = assert(core.spawn { argv = { "sh", "-c", bg and ("exec " .. bg) or cmd }, env = env,
          fds = { [0] = false, [1] = out, [2] = out } })
        out:close()
        if bg then
          background[#background + 1] = { proc = proc }
          -- let a listener get to listening before the next command
          core.sleep(500)
        else
          local how = proc:wait(120000)
          if not how then
            proc:kill(core.SIGKILL)
            proc:wait()
            error(("`%s` timed out"):format(step.cmd))
          end
          -- a background command that was answered gets to print and end
          for _, b in ipairs(background) do
            if not b.done then b.done = b.proc:wait(1000) ~= nil end
          end
          local text = assert(helper.read(term))
          local got = lines_of((text:sub(seen + 1):gsub(xdg:gsub("%p", "%%%0"), "/run/user/1001")))
          seen = #text
          if step.cmd:match("^rootlessnetns doctor") then
            assert.same(doctor_names(step.expect), doctor_names(got), "`" .. step.cmd .. "`")
          else
            assert(matches(step.expect, got), ("`%s` printed:\n%s\nthe README shows:\n%s"):format(step.cmd,
              table.concat(got, "\n"), table.concat(step.expect, "\n")))
          end
        end
      end
    end)
  end
end)
