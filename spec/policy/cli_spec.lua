local cli = require "rootlessnetns.cli"

describe("command line splitting", function()
  it("takes run's command at its first word or after --", function()
    assert.same({ { "run" }, { "ip", "-j", "addr" } }, { cli.split { "run", "ip", "-j", "addr" } })
    assert.same({ { "--backend=pasta", "run" }, { "-x" } }, { cli.split { "--backend", "pasta", "run", "--", "-x" } })
    assert.same({ { "run", "--help" } }, { cli.split { "run", "--help" } })
  end)

  it("takes setup's and teardown's command only after --", function()
    assert.same({ { "setup", "--nets=3" }, { "true" } }, { cli.split { "setup", "--nets", "3", "--", "true" } })
    assert.same({ { "teardown" } }, { cli.split { "teardown" } })
  end)

  it("keeps option values apart from the command", function()
    assert.same({ { "--config=run", "run" }, { "x" } }, { cli.split { "--config", "run", "run", "x" } })
    assert.same({ { "setup", "--nets=-1" } }, { cli.split { "setup", "--nets", "-1" } })
  end)
end)

describe("the parser-free path of run", function()
  it("takes global options and run alone", function()
    assert.same({ command = "run", backend = "pasta", config = "/c.lua" },
      cli.quick_parse { "--backend=pasta", "--config=/c.lua", "run" })
    assert.same({ command = "run" }, cli.quick_parse { "run" })
  end)

  it("takes every command with its own options", function()
    assert.same({ command = "setup", nets = "1" }, cli.quick_parse { "setup" })
    assert.same({ command = "teardown", nets = "3" }, cli.quick_parse { "teardown", "--nets=3" })
    assert.same({ command = "status", json = true }, cli.quick_parse { "status", "--json" })
    assert.same({ command = "info" }, cli.quick_parse { "info" })
    assert.same({ command = "cleanup", log_level = "debug" }, cli.quick_parse { "--log-level=debug", "cleanup" })
  end)

  it("leaves everything else to the full parser", function()
    assert.is_nil(cli.quick_parse { "run", "--help" })
    assert.is_nil(cli.quick_parse { "--version", "run" })
    assert.is_nil(cli.quick_parse { "--backend=a", "--backend=b", "run" })
    assert.is_nil(cli.quick_parse { "--bogus=1", "run" })
    assert.is_nil(cli.quick_parse { "status", "--nets=1" })
    assert.is_nil(cli.quick_parse { "setup", "--nets" })
    assert.is_nil(cli.quick_parse { "info", "--json=yes" })
    assert.is_nil(cli.quick_parse { "setup", "status" })
    assert.is_nil(cli.quick_parse { "frobnicate" })
    assert.is_nil(cli.quick_parse {})
  end)

  it("takes `netns exec NAME` without the parser, other netns commands with it", function()
    assert.same({ command = "netns", netns_command = "exec", name = "web", backend = "pasta" },
      cli.quick_parse { "--backend=pasta", "netns", "exec", "web" })
    assert.is_nil(cli.quick_parse { "netns", "exec", "--help" })
    assert.is_nil(cli.quick_parse { "--bogus=1", "netns", "exec", "web" })
    assert.is_nil(cli.quick_parse { "netns", "list" })
  end)
end)

describe("netns command lines", function()
  it("start exec's command after NAME, at `--` or the first word", function()
    assert.same({ { "netns", "exec", "web" }, { "ip", "-br", "addr" } },
      { cli.split { "netns", "exec", "web", "ip", "-br", "addr" } })
    assert.same({ { "netns", "exec", "web" }, { "-x" } }, { cli.split { "netns", "exec", "web", "--", "-x" } })
    assert.same({ { "netns", "exec", "-h" } }, { cli.split { "netns", "exec", "-h" } })
  end)

  it("keep other netns commands whole", function()
    assert.same({ { "netns", "connect", "web", "--ip=10.89.0.9" } },
      { cli.split { "netns", "connect", "web", "--ip", "10.89.0.9" } })
    assert.same({ { "netns", "del", "web", "--force" } }, { cli.split { "netns", "del", "web", "--force" } })
  end)
end)

describe("the CLI's habits", function()
  local core = require "rootlessnetns"
  local helper = require "helper"
  local commands = require "rootlessnetns.cli.commands"
  local function cli_run(args) return helper.cli(args, { XDG_RUNTIME_DIR = helper.tmpdir() }) end
  after_each(function() helper.cleanup_dirs() end)

  it("says in one line that its modules are missing or damaged, never with a traceback", function()
    local tree = helper.tmpdir()
    assert(core.mkdir(tree .. "/bin", tonumber("755", 8)))
    helper.write(tree .. "/bin/rootlessnetns", helper.read(helper.CLI))
    local function cli_in_tree(args)
      return helper.cli(args, { XDG_RUNTIME_DIR = helper.tmpdir() }, { cli = tree .. "/bin/rootlessnetns" })
    end
    for _, case in ipairs { { { "run", "--", "true" }, 125 }, { { "status" }, 125 } } do
      local code, out, err = cli_in_tree(case[1])
      assert.equal(case[2], code)
      assert.equal("", out)
      assert.matches("^rootlessnetns: cannot load its modules %(a partial install%?%): module "
        .. "'rootlessnetns%.cli' not found\n$", err)
    end
    -- the module and the sources there, warm.lua damaged: the warm path
    -- steps aside and the full CLI, which needs it too, says so
    assert(os.execute(("cp -r %q %q && cp -r %q %q"):format(helper.ROOT .. "/lua", tree .. "/lua",
      helper.ROOT .. "/build", tree .. "/build")))
    helper.write(tree .. "/lua/rootlessnetns/warm.lua", "this is not Lua\n")
    local code, _, err = cli_in_tree { "run", "--", "true" }
    assert.equal(125, code)
    assert.matches("^rootlessnetns: cannot load its modules %(a partial install%?%): [^\n]*warm%.lua[^\n]*\n$", err)
  end)

  it("prints the version with -V and --version", function()
    local version = require("rootlessnetns")._VERSION
    for _, flag in ipairs { "-V", "--version" } do
      local code, out = cli_run { flag }
      assert.equal(0, code)
      assert.equal("rootlessnetns " .. version .. "\n", out)
    end
  end)

  it("has `help [COMMAND [SUBCOMMAND]]`, the same as --help", function()
    for _, words in ipairs { {}, { "run" }, { "netns" }, { "netns", "exec" }, { "port", "add" } } do
      local code, out = cli_run { "help", table.unpack(words) }
      local with_flag = table.move(words, 1, #words, 1, {})
      with_flag[#with_flag + 1] = "--help"
      local code2, out2 = cli_run(with_flag)
      assert.equal(0, code, table.concat(words, " "))
      assert.equal(0, code2)
      assert.equal(out2, out, table.concat(words, " "))
    end
    local code, _, err = cli_run { "help", "frob" }
    assert.equal(125, code)
    assert.equal("rootlessnetns: unknown command `frob` (see rootlessnetns --help)\n", err)
    code, _, err = cli_run { "help", "netns", "frob" }
    assert.equal(125, code)
    assert.equal("rootlessnetns: unknown command `netns frob` (see rootlessnetns netns --help)\n", err)
  end)

  it("knows `netns delete` and `netns ls`, as `ip netns` spells them", function()
    assert.equal("del", commands.find("netns", "delete").name)
    assert.equal("list", commands.find("netns", "ls").name)
    assert.same({ { "netns", "delete", "web", "--force" } }, { cli.split { "netns", "delete", "web", "--force" } })
    local code, out = cli_run { "netns", "delete", "--help" }
    assert.equal(0, code)
    assert.matches("^Usage: rootlessnetns netns del ", out)
    local _, err
    code, _, err = cli_run { "netns", "ls", "--bogus" }
    assert.equal(125, code)
    assert.equal("rootlessnetns: unknown option '--bogus' (see rootlessnetns netns list --help)\n", err)
  end)

  it("points an error to the --help of the command it is in", function()
    local cases = {
      { { "netns", "del" }, "missing argument 'name' (see rootlessnetns netns del --help)" },
      { { "netns", "connect", "web", "--ip" },
        "option '--ip' requires an argument (see rootlessnetns netns connect --help)" },
      { { "status", "--bogus" }, "unknown option '--bogus' (see rootlessnetns status --help)" },
      { { "--config", "netns", "port", "frob" }, "unknown command 'frob' (see rootlessnetns port --help)" },
      { { "frob" }, "unknown command 'frob' (see rootlessnetns --help)" },
    }
    for _, c in ipairs(cases) do
      local code, _, err = cli_run(c[1])
      assert.equal(125, code)
      assert.equal("rootlessnetns: " .. c[2] .. "\n", err)
    end
  end)

  it("says that setup's and teardown's command follows `--`", function()
    local code, _, err = cli_run { "setup", "ip", "a" }
    assert.equal(125, code)
    assert.equal("rootlessnetns: too many arguments: `setup` runs a command only after `--`, as in "
      .. "`rootlessnetns setup -- ip a` (see rootlessnetns setup --help)\n", err)
    code, _, err = cli_run { "teardown", "--nets", "2", "true" }
    assert.equal(125, code)
    assert.matches("as in `rootlessnetns teardown %-%- true`", err)
    code, _, err = cli_run { "status", "x" }
    assert.equal(125, code)
    assert.equal("rootlessnetns: too many arguments (see rootlessnetns status --help)\n", err)
  end)
end)
