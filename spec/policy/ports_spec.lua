local ports = require "rootlessnetns.ports"

describe("a port spec", function()
  local function spec(text)
    local p, err = ports.parse(text)
    return p and p.spec or nil, err
  end

  it("defaults to 127.0.0.1, the same port inside and tcp", function()
    assert.equal("127.0.0.1:8080:8080/tcp", spec("8080"))
    assert.equal("127.0.0.1:8080:80/tcp", spec("8080:80"))
    assert.equal("127.0.0.1:5353:53/udp", spec("5353:53/udp"))
  end)

  it("takes an IPv4 host address, and an IPv6 one in brackets", function()
    assert.equal("0.0.0.0:8080:80/tcp", spec("0.0.0.0:8080:80"))
    assert.equal("127.0.0.2:8080:8080/tcp", spec("127.0.0.2:8080"))
    assert.equal("[::1]:8080:80/tcp", spec("[::1]:8080:80"))
    assert.equal("[::]:8080:8080/udp", spec("[::]:8080/udp"))
    local p = ports.parse("[::1]:8080:80")
    assert.same({ id = "[::1]:8080/tcp", spec = "[::1]:8080:80/tcp", proto = "tcp", host_ip = "::1",
      host_port = 8080, inside_port = 80 }, p)
  end)

  it("says what is wrong with a malformed one", function()
    for text, why in pairs {
      [""] = "a port spec is",
      ["80/sctp"] = "protocol `sctp` is not tcp or udp",
      ["0"] = "host port `0` is not a port",
      ["65536"] = "host port `65536` is not a port",
      ["8080:"] = "port `` is not a port",
      ["http"] = "host port `http` is not a port",
      ["1.2.3:80"] = "`1.2.3` is not an IPv4 address",
      ["300.1.1.1:80:80"] = "`300.1.1.1` is not an IPv4 address",
      ["::1:8080:80"] = "an IPv6 address goes in brackets",
      ["[zz]:80"] = "`zz` is not an IPv6 address",
      ["[:::::]:80"] = "`:::::` is not an IPv6 address",
      ["[::1]8080"] = "is followed by `:HOSTPORT`",
      ["8080:80:90:100"] = "an IPv6 address goes in brackets",
    } do
      local p, err, code = ports.parse(text)
      assert.is_nil(p, text)
      assert.matches(why, err, 1, true)
      assert.equal(require("rootlessnetns").errno.EINVAL, code)
    end
  end)

  it("reads the host's lowest unprivileged port, 1024 when it cannot", function()
    local dir = require("helper").tmpdir()
    local core = require "rootlessnetns"
    assert(core.writefile(dir .. "/start", "80\n", tonumber("600", 8)))
    assert.equal(80, ports.unprivileged_start(dir .. "/start"))
    assert.equal(1024, ports.unprivileged_start(dir .. "/missing"))
    require("helper").cleanup_dirs()
  end)
end)
