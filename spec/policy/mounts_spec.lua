local mounts = require "rootlessnetns.mounts"

-- A fake file system: path -> "file" | "dir" | {link = target}
local function fakefs(tree)
  return {
    lstat = function(path)
      local node = tree[path]
      if node == nil then return nil, "stat `" .. path .. "`: No such file or directory", 2 end
      if type(node) == "table" then return { type = "link" } end
      return { type = node == "dir" and "directory" or "file" }
    end,
    readlink = function(path) return tree[path].link end,
  }
end

describe("resolv.conf target resolution", function()
  it("leaves a plain file alone", function()
    local fs = fakefs { ["/etc"] = "dir", ["/etc/resolv.conf"] = "file" }
    assert.equal("/etc/resolv.conf", mounts.resolve_target("/etc/resolv.conf", fs))
  end)

  it("stops at the first target under /run (systemd-resolved's chain)", function()
    local fs = fakefs {
      ["/etc"] = "dir",
      ["/etc/resolv.conf"] = { link = "../run/systemd/resolve/stub-resolv.conf" },
    }
    assert.equal("/run/systemd/resolve/stub-resolv.conf", mounts.resolve_target("/etc/resolv.conf", fs))
  end)

  it("follows absolute links and /var/run -> /run", function()
    local fs = fakefs {
      ["/etc"] = "dir", ["/etc/resolv.conf"] = { link = "/var/run/nm/resolv.conf" },
      ["/var"] = "dir", ["/var/run"] = { link = "/run" },
    }
    assert.equal("/run/nm/resolv.conf", mounts.resolve_target("/etc/resolv.conf", fs))
  end)

  it("resolves a symlinked directory component (Debian's resolvconf)", function()
    local fs = fakefs {
      ["/etc"] = "dir", ["/etc/resolv.conf"] = { link = "resolvconf/run/resolv.conf" },
      ["/etc/resolvconf"] = "dir", ["/etc/resolvconf/run"] = { link = "/run/resolvconf" },
    }
    assert.equal("/run/resolvconf/resolv.conf", mounts.resolve_target("/etc/resolv.conf", fs))
  end)

  it("follows links that never reach /run to the end", function()
    local fs = fakefs {
      ["/etc"] = "dir", ["/etc/resolv.conf"] = { link = "/var/lib/r.conf" },
      ["/var"] = "dir", ["/var/lib"] = "dir", ["/var/lib/r.conf"] = "file",
    }
    assert.equal("/var/lib/r.conf", mounts.resolve_target("/etc/resolv.conf", fs))
  end)

  it("gives up on a loop after 255 links with ELOOP", function()
    local fs = fakefs { ["/etc"] = "dir", ["/etc/resolv.conf"] = { link = "/etc/resolv.conf" } }
    local t, msg, code = mounts.resolve_target("/etc/resolv.conf", fs)
    assert.is_nil(t)
    assert.matches("too many levels of symbolic links", msg)
    assert.equal(40, code)
  end)

  it("reports a dangling link", function()
    local fs = fakefs { ["/etc"] = "dir", ["/etc/resolv.conf"] = { link = "/nowhere/r" } }
    local t, msg, code = mounts.resolve_target("/etc/resolv.conf", fs)
    assert.is_nil(t)
    assert.matches("No such file", msg)
    assert.equal(2, code)
  end)
end)

describe("the default mount plan", function()
  local function names(plan)
    local out = {}
    for _, e in ipairs(plan) do out[#out + 1] = e.name end
    return out
  end

  it("follows podman's order", function()
    local plan = mounts.default_plan {
      dir = "/D", runtime_dir = "/run/user/1000", resolv_source = "/D/resolv.conf",
      resolv_target = "/run/systemd/resolve/stub-resolv.conf", systemd_run = true, cni = true,
      cni_target = "/var/lib/cni", selinux = true,
    }
    assert.same({ "runtime-dir", "systemd", "resolv-shield", "resolv.conf", "cni", "selinux-relabel", "run" },
      names(plan))
    assert.equal("/D/run/user/1000", plan[1].target)
    assert.equal("/D/run/systemd/resolve/stub-resolv.conf", plan[4].target)
    assert.equal("file", plan[4].create)
    assert.equal("tmpfs", plan[3].fstype)
    assert.same({ source = "/D/run", target = "/run" }, { source = plan[7].source, target = plan[7].target })
  end)

  it("binds a plain /etc/resolv.conf directly and skips what the host lacks", function()
    local plan = mounts.default_plan {
      dir = "/D", runtime_dir = "/tmp/x", resolv_source = "/D/resolv.conf", resolv_target = "/etc/resolv.conf",
    }
    assert.same({ "runtime-dir", "resolv.conf", "run" }, names(plan))
    assert.equal("/etc/resolv.conf", plan[2].target)
    assert.is_nil(plan[2].create)
  end)

  it("checks what a config hook returns", function()
    assert.is_nil((mounts.validate(nil)))
    local _, err = mounts.validate { { name = "x", target = "relative" } }
    assert.matches("absolute path", err)
    _, err = mounts.validate { { name = "x", target = "/a", options = 1 } }
    assert.matches("`options` must be a string", err)
    assert.is_table(mounts.validate { { name = "x", target = "/a" } })
  end)

  it("cleans paths lexically", function()
    assert.equal("/run/a", mounts.clean("/etc/../run/./a"))
    assert.equal("/", mounts.clean("/.."))
  end)
end)

describe("the cni entry", function()
  it("binds a private copy over the deepest existing ancestor", function()
    local plan = mounts.default_plan { dir = "/D", resolv_source = "/D/resolv.conf", resolv_target = "/etc/resolv.conf",
      cni = true, cni_target = "/var/lib" }
    local cni
    for _, e in ipairs(plan) do if e.name == "cni" then cni = e end end
    assert.same({ source = "/D/var/lib", target = "/var/lib", source_create = "dir", options = "bind" },
      { source = cni.source, target = cni.target, source_create = cni.source_create, options = cni.options })
  end)
end)
