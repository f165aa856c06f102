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
