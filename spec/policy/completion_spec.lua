-- Bash completion, as a user gets it: plain bash (no bash-completion
-- package), our script sourced, candidates from the command table.
local core = require "rootlessnetns"
local helper = require "helper"
local commands = require "rootlessnetns.cli.commands"
local complete = require "rootlessnetns.cli.complete"

local have_bash = core.access("/bin/bash", "x")

--- COMPREPLY for the command line @line (completing its last word; a
-- line ending in a space completes a new, empty word); @before is a
-- script sourced first (a stand-in for the bash-completion package).
local function bash_complete(line, xdg, before)
  local dir = helper.tmpdir()
  helper.write(dir .. "/rootlessnetns", ("#!/bin/sh\nexec lua5.4 %s \"$@\"\n"):format(helper.CLI), tonumber("755", 8))
  helper.write(dir .. "/drive.sh", table.concat({
    "set -u",
    before and ("source " .. before) or "",
    "source " .. helper.ROOT .. "/contrib/bash-completion/rootlessnetns",
    "read -r -a COMP_WORDS <<< \"$LINE\"",
    "case $LINE in *' ') COMP_WORDS+=('') ;; esac",
    "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))",
    "_rootlessnetns",
    "printf '%s\\n' \"${COMPREPLY[@]}\"",
  }, "\n") .. "\n")
  local out = assert(core.open(dir .. "/out", "w"))
  local proc = assert(core.spawn { argv = { "/bin/bash", "--norc", "--noprofile", dir .. "/drive.sh" },
    env = { PATH = dir .. ":" .. os.getenv("PATH"), LINE = line, HOME = os.getenv("HOME"),
      XDG_RUNTIME_DIR = xdg or os.getenv("XDG_RUNTIME_DIR") },
    fds = { [0] = false, [1] = out, [2] = false } })
  out:close()
  assert.same({ "exited", 0 }, { proc:wait(30000) })
  local words = {}
  for w in (helper.read(dir .. "/out") or ""):gmatch("[^\n]+") do words[#words + 1] = w end
  table.sort(words)
  return words
end

describe("bash completion", function()
  after_each(function() helper.cleanup_dirs() end)

  local bash_it = have_bash and it or pending

  bash_it("completes commands, subcommands and option values without bash-completion", function()
    assert.same({ "netns", "network" }, bash_complete("rootlessnetns net"))
    assert.same({ "netns" }, bash_complete("rootlessnetns netn"))
    assert.same({ "del", "disconnect" }, bash_complete("rootlessnetns netns d"))
    assert.same({ "slirp4netns" }, bash_complete("rootlessnetns --backend s"))
    assert.same({ "--nets" }, bash_complete("rootlessnetns setup --n"))
    assert.same({ "debug" }, bash_complete("rootlessnetns --log-level d"))
  end)

  bash_it("completes a command to run, after `--` and at run's first word", function()
    assert.is_truthy(table.concat(bash_complete("rootlessnetns run -- ech"), " "):find("echo", 1, true))
    assert.is_truthy(table.concat(bash_complete("rootlessnetns run ech"), " "):find("echo", 1, true))
  end)
end)

describe("bash completion of names", function()
  local fx = helper.state_fixture(before_each, after_each)
  local userns_it = helper.userns_it(it, pending)

  userns_it("offers the named namespaces where a NAME goes", function()
    if not have_bash then return pending("needs bash") end
    assert.equal(0, (helper.cli({ "netns", "add", "web" }, fx.env)))
    assert.same({ "web" }, bash_complete("rootlessnetns netns del w", fx.xdg))
    assert.same({ "web" }, bash_complete("rootlessnetns netns exec ", fx.xdg))
    assert.same({}, bash_complete("rootlessnetns netns add ", fx.xdg))
  end)
end)

describe("the completion table", function()
  it("offers every declared command and subcommand", function()
    local _, top = complete.candidates({ "" })
    local want_top, subs = {}, 0
    for _, c in ipairs(commands.COMMANDS) do
      want_top[#want_top + 1] = c.name
      if c.commands then
        local want_sub = {}
        for _, s in ipairs(c.commands) do want_sub[#want_sub + 1] = s.name end
        assert.same(want_sub, select(2, complete.candidates({ c.name, "" })), c.name)
        subs = subs + 1
      end
    end
    assert.same(want_top, top)
    assert.is_true(subs >= 2)
  end)

  it("knows where a command to run starts", function()
    assert.equal("command 2", (complete.candidates { "run", "ls" }))
    assert.equal("command 4", (complete.candidates { "netns", "exec", "web", "" }))
    assert.equal("command 5", (complete.candidates { "setup", "--nets", "2", "--", "" }))
    assert.equal("none", (complete.candidates { "status", "x" }))
  end)
end)

describe("completion of help and aliases", function()
  it("offers commands, then subcommands, after help", function()
    local _, words = complete.candidates { "help", "" }
    assert.is_truthy(table.concat(words, " "):find("netns", 1, true))
    assert.same({ "add", "list", "rm" }, select(2, complete.candidates { "help", "port", "" }))
    assert.same({}, select(2, complete.candidates { "help", "port", "add", "" }))
  end)

  it("completes after an alias as after its command", function()
    assert.same({ "--force", "--json", "--help" }, select(2, complete.candidates { "netns", "delete", "--" }))
  end)
end)

describe("bash completion of the command to run", function()
  after_each(function() helper.cleanup_dirs() end)
  local bash_it = have_bash and it or pending

  --- Does completing @line offer @want (among others)?
  local function offers(line, want)
    local words = bash_complete(line)
    for _, w in ipairs(words) do
      if w == want then return true end
    end
    error(("`%s` offered %s, not %s"):format(line, table.concat(words, " "), want))
  end

  bash_it("completes it from PATH after `--` of run, setup, teardown and netns exec NAME", function()
    for _, line in ipairs { "rootlessnetns run -- ech", "rootlessnetns setup -- ech",
      "rootlessnetns setup --nets 2 -- ech", "rootlessnetns teardown -- ech",
      "rootlessnetns --backend pasta run -- ech", "rootlessnetns netns exec web -- ech",
      "rootlessnetns netns exec web ech" } do
      assert.is_true(offers(line, "echo"))
    end
  end)

  bash_it("completes the command's arguments as file names", function()
    assert.is_true(offers("rootlessnetns run -- cat /et", "/etc"))
    assert.is_true(offers("rootlessnetns netns exec web -- ls /et", "/etc"))
  end)

  bash_it("hands the command to bash-completion's _command_offset where it is loaded", function()
    local dir = helper.tmpdir()
    helper.write(dir .. "/offset.sh", '_command_offset() { COMPREPLY=("offset:$1"); }\n')
    assert.same({ "offset:3" }, bash_complete("rootlessnetns run -- ipt", nil, dir .. "/offset.sh"))
    assert.same({ "offset:5" }, bash_complete("rootlessnetns netns exec web -- ipt", nil, dir .. "/offset.sh"))
    assert.same({ "offset:4" }, bash_complete("rootlessnetns netns exec web ipt", nil, dir .. "/offset.sh"))
  end)

  bash_it("offers nothing after `--` of a command that runs none", function()
    assert.same({}, bash_complete("rootlessnetns status -- ech"))
  end)
end)
