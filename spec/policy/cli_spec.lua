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

  it("leaves everything else to the full parser", function()
    assert.is_nil(cli.quick_parse { "run", "--help" })
    assert.is_nil(cli.quick_parse { "--version", "run" })
    assert.is_nil(cli.quick_parse { "--backend=a", "--backend=b", "run" })
    assert.is_nil(cli.quick_parse { "setup" })
    assert.is_nil(cli.quick_parse { "--bogus=1", "run" })
  end)
end)
