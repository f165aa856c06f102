local core = require "rootlessnetns"
local helper = require "helper"
local cjson = require "cjson.safe"

-- Everything here runs in the host network namespace: the socket maker is
-- a forked child on the other end of a socketpair, as it would be after
-- joining the target namespace; servers are loopback listeners.

local E = core.errno
local BLOCK = 65536

-- the payload of large transfers: block k is k (8 bytes) and then a fixed
-- pseudo-random run, so a lost, repeated or reordered block shows
local base do
  local t = {}
  local x = 12345
  for i = 1, BLOCK do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char(x % 251)
  end
  base = table.concat(t)
end
local function block(k) return string.pack(">I8", k) .. base:sub(9) end

local children = {}

-- fork @fn; the child never returns into busted
local function child(fn)
  io.stdout:flush()
  io.stderr:flush()
  local pid = assert(core.fork())
  if pid == 0 then
    local ok, err = pcall(fn)
    if not ok then io.stderr:write("child: ", tostring(err), "\n") end
    core._exit(ok and 0 or 1)
  end
  local proc = assert(core.process(pid))
  children[#children + 1] = proc
  return proc
end

local function stop_children()
  for i = #children, 1, -1 do
    local p = children[i]
    p:kill(core.SIGKILL)
    p:wait(5000)
    p:close()
  end
  children = {}
end

-- the maker: returns this side's end of the socketpair
local function start_maker()
  local mine, theirs = assert(core.socketpair())
  local proc = child(function()
    mine:close()
    assert(core.socket_maker(theirs))
  end)
  theirs:close()
  return mine, proc
end

-- A buffered reader over a stream Fd.
local function reader(fd)
  local buf = ""
  local r = {}
  function r.line()
    while not buf:find("\n", 1, true) do
      local d = assert(fd:read(65536, 10000))
      if d == "" then return nil end
      buf = buf .. d
    end
    local line, rest = buf:match("^([^\n]*)\n(.*)$")
    buf = rest
    return line
  end
  function r.chunk()
    if buf ~= "" then
      local d = buf
      buf = ""
      return d
    end
    return assert(fd:read(65536, 10000))
  end
  return r
end

-- Receive @n blocks from @r and check each; true when all arrived intact
-- (and, with @eof, nothing after them).
local function check_blocks(r, n, eof)
  local pending, k = "", 0
  while k < n do
    local d = r.chunk()
    if d == "" then return false, "short by " .. (n - k) .. " blocks" end
    pending = pending .. d
    while #pending >= BLOCK do
      if pending:sub(1, BLOCK) ~= block(k) then return false, "block " .. k .. " differs" end
      pending = pending:sub(BLOCK + 1)
      k = k + 1
    end
  end
  return pending == "" and (not eof or r.chunk() == ""), "trailing bytes"
end

local function send_blocks(fd, n)
  for k = 0, n - 1 do assert(fd:write(block(k))) end
end

-- A TCP server in a child, one connection at a time.  The client's first
-- line says what it wants: "peer" (the address accept() saw), "echo"
-- (everything back until end of file), "sink N" (N blocks checked, then
-- "ok"), "source N" (N blocks, then end of file).
local function tcp_server(ip)
  local lfd, port = assert(core.inet_listen("tcp", ip, 0))
  child(function()
    while true do
      local c, peer, peer_port = assert(core.accept(lfd))
      local r = reader(c)
      local cmd = r.line() or ""
      if cmd == "peer" then
        c:write(("%s %d\n"):format(peer, peer_port))
      elseif cmd == "echo" then
        while true do
          local d = r.chunk()
          if d == "" then break end
          assert(c:write(d))
        end
      elseif cmd:match("^sink") then
        local ok, why = check_blocks(r, tonumber(cmd:match("%d+")))
        c:write(ok and "ok\n" or why .. "\n")
      elseif cmd:match("^source") then
        send_blocks(c, tonumber(cmd:match("%d+")))
      end
      c:close()
    end
  end)
  lfd:close()
  return port
end

-- A UDP server in a child: each datagram comes back as "ADDR PORT|data".
local function udp_server(ip)
  local fd, port = assert(core.inet_listen("udp", ip, 0))
  child(function()
    while true do
      local d, peer, peer_port = assert(core.recvfrom(fd))
      assert(core.sendto(fd, ("%s %d|%s"):format(peer, peer_port, d), peer, peer_port))
    end
  end)
  fd:close()
  return port
end

-- A forwarder in a child, driven over a control socket: run() wakes up
-- when a command arrives, as the forwarder process of the Lua side does.
local function start_forwarder(maker)
  local ctl, theirs = assert(core.socketpair())
  child(function()
    ctl:close()
    local fw = assert(core.forwarder(maker))
    maker:close()
    while true do
      local how = assert(fw:run(theirs))
      assert(how == "wake")
      local text = theirs:recv()
      if not text then break end
      local cmd = cjson.decode(text)
      local res
      if cmd.op == "add" then
        local ok, port_or_msg, code = fw:add(cmd.arg)
        res = { ok = ok, port = ok and port_or_msg or nil, msg = not ok and port_or_msg or nil, code = code }
      elseif cmd.op == "remove" then
        local ok, msg, code = fw:remove(cmd.arg)
        res = { ok = ok, msg = msg, code = code }
      elseif cmd.op == "list" then
        local byid = {}
        for _, f in ipairs(fw:list()) do byid[f.id] = f end
        res = { list = byid }
      end
      assert(theirs:write(cjson.encode(res)))
    end
    fw:close()
  end)
  theirs:close()
  maker:close()
  local f = {}
  function f.call(op, arg)
    assert(ctl:write(cjson.encode { op = op, arg = arg }))
    local text = assert(ctl:recv(10000))
    return cjson.decode(text)
  end
  function f.add(spec)
    local res = f.call("add", spec)
    assert(res.ok, res.msg)
    return res.port
  end
  function f.stats(id) return f.call("list").list[id] end
  return f
end

local function connect(port, ip, src)
  return assert(core.inet_connect("tcp", ip or "127.0.0.1", port, src))
end

-- Ask a "peer" of the server through @port; returns its address, port.
local function peer_via(port, ip, src)
  local c = connect(port, ip, src)
  assert(c:write("peer\n"))
  local line = reader(c).line()
  c:close()
  local addr, p = assert(line, "no answer"):match("^(%S+) (%d+)$")
  return addr, tonumber(p)
end

local function echo_open(port, ip)
  local c = connect(port, ip)
  assert(c:write("echo\n"))
  return c
end

local function echo_once(c, text)
  assert(c:write(text))
  local got = ""
  while #got < #text do
    local d = assert(c:read(65536, 5000))
    if d == "" then break end
    got = got .. d
  end
  return got
end

-- Is some socket listening on TCP @port (IPv4 or IPv6)?
local function listening(port)
  local hex = (":%04X "):format(port)
  for _, table_ in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local text = core.readfile(table_, 1 << 22) or ""
    for line in text:gmatch("[^\n]+") do
      local localaddr, state = line:match("^%s*%d+: (%S+) %S+ (%x%x)")
      if localaddr and (localaddr .. " "):find(hex, 1, true) and state == "0A" then return true end
    end
  end
  return false
end

describe("the port forwarder", function()
  after_each(stop_children)

  describe("over TCP", function()
    it("carries a round trip over IPv4 and over IPv6", function()
      local port4 = tcp_server("127.0.0.1")
      local port6 = tcp_server("::1")
      local f = start_forwarder(start_maker())
      local via4 = f.add { id = "v4", proto = "tcp", host_ip = "127.0.0.1", host_port = 0, inside_port = port4 }
      local via6 = f.add { id = "v6", proto = "tcp", host_ip = "::1", host_port = 0, inside_port = port6 }
      local c = echo_open(via4)
      assert.equal("hello over IPv4", echo_once(c, "hello over IPv4"))
      c:close()
      c = echo_open(via6, "::1")
      assert.equal("hello over IPv6", echo_once(c, "hello over IPv6"))
      c:close()
      assert.equal("::1", (peer_via(via6, "::1")))
      assert.equal(1, f.stats("v4").accepted)
      assert.equal(2, f.stats("v6").accepted)
    end)

    it("keeps the client's address: the server sees who connected", function()
      local port = tcp_server("127.0.0.1")
      local f = start_forwarder(start_maker())
      local via = f.add { id = "web", proto = "tcp", host_ip = "127.0.0.1", host_port = 0, inside_port = port }
      assert.equal("127.0.0.2", (peer_via(via, "127.0.0.1", "127.0.0.2")))
      assert.equal("127.0.0.3", (peer_via(via, "127.0.0.1", "127.0.0.3")))
      local s = f.stats("web")
      assert.equal(2, s.source_kept)
      assert.equal(0, s.source_lost)
      assert.equal(2, s.accepted)
    end)

    it("takes IPv4 clients on :: and reaches an IPv4 inside address for them", function()
      local port = tcp_server("127.0.0.1")
      local f = start_forwarder(start_maker())
      local via = f.add { id = "dual", proto = "tcp", host_ip = "::", host_port = 0, inside_port = port }
      -- an IPv4-mapped client (::ffff:127.0.0.2) is bound as 127.0.0.2
      assert.equal("127.0.0.2", (peer_via(via, "127.0.0.1", "127.0.0.2")))
      assert.equal(1, f.stats("dual").source_kept)
    end)

    it("moves 64 MiB intact in each direction", function()
      local port = tcp_server("127.0.0.1")
      local f = start_forwarder(start_maker())
      local via = f.add { id = "bulk", proto = "tcp", host_ip = "127.0.0.1", host_port = 0, inside_port = port }
      local n = 1024
      local c = connect(via)
      assert(c:write(("sink %d\n"):format(n)))
      send_blocks(c, n)
      assert.equal("ok", reader(c).line())
      c:close()
      c = connect(via)
      assert(c:write(("source %d\n"):format(n)))
      assert.is_true(check_blocks(reader(c), n, true))
      c:close()
    end)

    it("passes a half-close on: the server still answers after the client's end of file", function()
      local port = tcp_server("127.0.0.1")
      local f = start_forwarder(start_maker())
      local via = f.add { id = "half", proto = "tcp", host_ip = "127.0.0.1", host_port = 0, inside_port = port }
      local c = echo_open(via)
      assert(c:write("last words"))
      assert(c:shutdown("w"))
      -- the server echoes only after it saw end of file, then closes
      assert.equal("last words", c:readall(5000))
      c:close()
      assert.is_true(helper.eventually(function() return f.stats("half").connections == 0 end, 5))
    end)

    it("resets the client when the inside port refuses, and counts it", function()
      local lfd, dead_port = assert(core.inet_listen("tcp", "127.0.0.1", 0))
      lfd:close()
      local f = start_forwarder(start_maker())
      local via = f.add { id = "dead", proto = "tcp", host_ip = "127.0.0.1", host_port = 0, inside_port = dead_port }
      local c = connect(via)
      local d, _, code = c:read(100, 5000)
      assert.is_true(d == "" or code == E.ECONNRESET)
      c:close()
      local s = f.stats("dead")
      assert.equal(1, s.failed)
      assert.equal(0, s.connections)
    end)

    it("remove() closes the host port at once and cuts no established connection", function()
      local port_a = tcp_server("127.0.0.1")
      local port_b = tcp_server("127.0.0.1")
      local f = start_forwarder(start_maker())
      local via_a = f.add { id = "a", proto = "tcp", host_ip = "127.0.0.1", host_port = 0, inside_port = port_a }
      local via_b = f.add { id = "b", proto = "tcp", host_ip = "127.0.0.1", host_port = 0, inside_port = port_b }
      local ca, cb = echo_open(via_a), echo_open(via_b)
      assert.equal("a1", echo_once(ca, "a1"))
      assert.equal("b1", echo_once(cb, "b1"))
      assert.is_true(f.call("remove", "a").ok)
      local refused, _, code = core.inet_connect("tcp", "127.0.0.1", via_a)
      assert.is_nil(refused)
      assert.equal(E.ECONNREFUSED, code)
      assert.is_false(listening(via_a))
      -- the other forward's connection, and (as documented) the removed
      -- forward's own established one, go on
      assert.equal("b2", echo_once(cb, "b2"))
      assert.equal("a2", echo_once(ca, "a2"))
      assert.is_nil(f.stats("a"))
      assert.equal(1, f.stats("b").connections)
      ca:close()
      cb:close()
    end)
  end)

  describe("over UDP", function()
    it("keeps clients apart, keeps their addresses and forgets idle flows", function()
      local port = udp_server("127.0.0.1")
      local f = start_forwarder(start_maker())
      local via = f.add { id = "dns", proto = "udp", host_ip = "127.0.0.1", host_port = 0, inside_port = port,
                          udp_idle_ms = 200 }
      local a = assert(core.inet_connect("udp", "127.0.0.1", via))
      local b = assert(core.inet_connect("udp", "127.0.0.1", via, "127.0.0.2"))
      local function ask(fd, text)
        assert(fd:write(text))
        local d = assert(core.recvfrom(fd, 5000))
        return d:match("^(%S+) %d+|(.*)$")
      end
      for i = 1, 3 do
        local peer_a, got_a = ask(a, "from a " .. i)
        local peer_b, got_b = ask(b, "from b " .. i)
        assert.equal("from a " .. i, got_a)
        assert.equal("from b " .. i, got_b)
        assert.equal("127.0.0.1", peer_a)
        assert.equal("127.0.0.2", peer_b)
      end
      local s = f.stats("dns")
      assert.equal(2, s.connections)
      assert.equal(2, s.accepted)
      assert.equal(2, s.source_kept)
      assert.is_true(helper.eventually(function() return f.stats("dns").connections == 0 end, 5))
      -- an expired flow comes back as a new one
      assert.equal("again", select(2, ask(a, "again")))
      assert.equal(3, f.stats("dns").accepted)
      a:close()
      b:close()
    end)

    it("keeps the first datagrams of a new flow while its socket is made", function()
      local port = udp_server("127.0.0.1")
      local f = start_forwarder(start_maker())
      local via = f.add { id = "burst", proto = "udp", host_ip = "127.0.0.1", host_port = 0, inside_port = port }
      local a = assert(core.inet_connect("udp", "127.0.0.1", via))
      for i = 1, 3 do assert(a:write("d" .. i)) end
      local got = {}
      for _ = 1, 3 do
        local d = assert(core.recvfrom(a, 5000))
        got[#got + 1] = d:match("|(.*)$")
      end
      table.sort(got)
      assert.same({ "d1", "d2", "d3" }, got)
      a:close()
    end)
  end)

  describe("errors", function()
    local fw, maker
    before_each(function()
      maker = start_maker()
      fw = assert(core.forwarder(maker))
    end)
    after_each(function()
      fw:close()
      maker:close()
    end)

    local function spec(id, port, extra)
      local s = { id = id, proto = "tcp", host_ip = "127.0.0.1", host_port = port or 0, inside_port = 9 }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end

    it("refuse a duplicate id with EEXIST", function()
      assert(fw:add(spec("x")))
      local ok, msg, code = fw:add(spec("x"))
      assert.is_nil(ok)
      assert.matches("x", msg)
      assert.equal(E.EEXIST, code)
      assert.equal(1, #fw:list())
    end)

    it("name the address of a port in use, with EADDRINUSE, and leave nothing behind", function()
      local lfd, port = assert(core.inet_listen("tcp", "127.0.0.1", 0))
      local before = helper.fd_count()
      local ok, msg, code = fw:add(spec("busy", port))
      assert.is_nil(ok)
      assert.equal(("bind 127.0.0.1:%d/tcp: Address already in use"):format(port), msg)
      assert.equal(E.EADDRINUSE, code)
      assert.equal(before, helper.fd_count())
      assert.equal(0, #fw:list())
      -- the id is free for the next try
      assert(fw:add(spec("busy")))
      lfd:close()
    end)

    it("refuse an unknown id with ENOENT and a malformed address with EINVAL", function()
      local ok, _, code = fw:remove("nope")
      assert.is_nil(ok)
      assert.equal(E.ENOENT, code)
      for _, bad in ipairs { "127.0.0.300", "localhost", "::1::2", "" } do
        local ok2, msg2, code2 = fw:add(spec("bad", 0, { host_ip = bad }))
        assert.is_nil(ok2)
        assert.matches("address", msg2)
        assert.equal(E.EINVAL, code2)
      end
      local ok3, _, code3 = fw:add(spec("bad", 0, { inside_ip = "10.0.0.x" }))
      assert.is_nil(ok3)
      assert.equal(E.EINVAL, code3)
      assert.has_error(function() fw:add { id = "t", proto = "sctp", host_ip = "127.0.0.1", host_port = 1 } end)
      assert.has_error(function() fw:add(spec("t", 70000)) end)
    end)

    it("run() ends with EPIPE when the socket maker is gone", function()
      stop_children()
      local t0 = core.clock()
      local ok, msg, code = fw:run(nil, 5000)
      assert.is_nil(ok)
      assert.equal("the socket maker is gone: Broken pipe", msg)
      assert.equal(E.EPIPE, code)
      assert.is_true(core.clock() - t0 < 4)
    end)

    it("run() returns on a wake fd, a timeout and a signal", function()
      local r, w = core.pipe()
      assert.equal("timeout", fw:run(r, 20))
      assert.equal("timeout", fw:run(nil, 0))
      assert(w:write("x"))
      assert.equal("wake", fw:run(r, 5000))
      assert.equal("wake", fw:run(r:fileno()))
      r:close()
      w:close()
      local sigs = assert(core.block_signals { core.SIGUSR1 })
      local me = core.getpid()
      local starttime = assert(core.starttime(me))
      assert(core.kill(me, starttime, core.SIGUSR1))
      local how, signo = fw:run(nil, 5000, sigs)
      assert.equal("signal", how)
      assert.equal(core.SIGUSR1, signo)
      assert.equal("timeout", fw:run(nil, 10, sigs))
      sigs:close()
    end)
  end)

  it("close() leaves no listening socket and no descriptor, live connections included", function()
    local maker = start_maker()
    local lfd, server_port = assert(core.inet_listen("tcp", "127.0.0.1", 0))
    collectgarbage()
    local before = helper.fd_count()
    local fw = assert(core.forwarder(maker))
    local _, tport = assert(fw:add { id = "t", proto = "tcp", host_ip = "127.0.0.1", host_port = 0,
                                     inside_port = server_port })
    local _, tport6 = assert(fw:add { id = "t6", proto = "tcp", host_ip = "::", host_port = 0,
                                      inside_port = server_port })
    local _, uport = assert(fw:add { id = "u", proto = "udp", host_ip = "127.0.0.1", host_port = 0,
                                     inside_port = server_port })
    assert.is_true(listening(tport))
    assert.is_true(listening(tport6))
    -- a connection the forwarder relays (the kernel completes both
    -- handshakes into the backlogs; run() does the rest)
    local c = connect(tport)
    local u = assert(core.inet_connect("udp", "127.0.0.1", uport))
    assert(u:write("x"))
    assert(fw:run(nil, 200))
    local s = assert(core.accept(lfd, 1000))
    assert(c:write("ping"))
    assert(fw:run(nil, 100))
    assert.equal("ping", s:read(10, 1000))
    local n = 0
    for _, fwd in ipairs(fw:list()) do n = n + fwd.connections end
    assert.equal(2, n)
    assert.matches("Forwarder %(3 forwards, 2 connections%)", tostring(fw))
    assert.is_true(fw:close())
    assert.is_true(fw:close())
    assert.equal("Forwarder (closed)", tostring(fw))
    assert.has_error(function() fw:list() end, "attempt to use a closed forwarder")
    assert.is_false(listening(tport))
    assert.is_false(listening(tport6))
    -- the relayed connection went with it
    assert.equal("", s:read(10, 1000))
    c:close()
    s:close()
    u:close()
    assert.equal(before, helper.fd_count())
    lfd:close()
    maker:close()
  end)
end)

describe("unix sockets and records", function()
  it("socketpair() carries one record per write, and recv() reports end of file", function()
    local a, b = assert(core.socketpair())
    assert.is_true(core.cloexec(a))
    assert(a:write("one"))
    assert(a:write("two"))
    assert.equal("one", b:recv(1000))
    assert.equal("two", b:recv(1000))
    local v, _, code = b:recv(20)
    assert.is_nil(v)
    assert.equal(E.ETIMEDOUT, code)
    a:close()
    assert.is_nil(b:recv(1000))
    b:close()
  end)

  it("accept's timeout counts from the start of the wait, not from a signal that interrupts it", function()
    -- (lua5.4 catches the first SIGINT while it runs a chunk: an EINTR in
    -- the poll, and a wait that started over there would last 1 s + 1.5 s)
    local script = ('package.cpath = %q; local core = require "rootlessnetns"; '
      .. 'local l = assert(core.inet_listen("tcp", "127.0.0.1", 0)); io.write("ready\\n"); io.flush(); '
      .. 'core.accept(l, 1500)'):format(package.cpath)
    local r, w = assert(core.pipe())
    local proc = assert(core.spawn { argv = { "lua5.4", "-e", script }, fds = { [1] = w, [2] = false } })
    w:close()
    assert.equal("ready\n", r:read(64, 10000))
    r:close()
    local t0 = core.clock()
    core.sleep(1000)
    proc:kill(core.SIGINT)
    local ended = proc:wait(5000)
    local elapsed = core.clock() - t0
    if not ended then
      proc:kill(core.SIGKILL)
      proc:wait()
    end
    assert(ended and elapsed < 2.1, ("a 1.5 s wait lasted %.1f s, interrupted at 1 s"):format(elapsed))
  end)

  it("unix_listen/unix_connect/accept work below a directory whatever its path length", function()
    local dir = helper.tmpdir()
    local long = dir .. "/" .. ("d"):rep(100)
    assert(core.mkdir(long, tonumber("700", 8)))
    local dfd = assert(core.open(long, "dir"))
    local l = assert(core.unix_listen(dfd, "ctl"))
    assert.is_true(core.cloexec(l))
    assert(core.lstat(long .. "/ctl"))
    local v, _, code = core.accept(l, 20)
    assert.is_nil(v)
    assert.equal(E.ETIMEDOUT, code)
    local c = assert(core.unix_connect(dfd, "ctl"))
    local s = assert(core.accept(l, 1000))
    assert(c:write("status"))
    assert.equal("status", s:recv(1000))
    assert(s:write("ok"))
    assert.equal("ok", c:recv(1000))
    c:close()
    s:close()
    l:close()
    local none, _, code2 = core.unix_connect(dfd, "ctl")
    assert.is_nil(none)
    assert.equal(E.ECONNREFUSED, code2)
    dfd:close()
    helper.cleanup_dirs()
  end)
end)
