-- An extra bind mount inside the namespace: the host's /srv/shared shows up
-- read-only as /mnt/shared for every command run inside.
--
--   rootlessnetns --config examples/extra-bind-mount.lua run -- ls /mnt/shared
return {
  mounts = function(plan)
    -- /run is replaced last, so add before that entry
    table.insert(plan, #plan, {
      name = "shared",
      source = os.getenv("SHARED_DIR") or "/srv/shared",
      target = "/mnt/shared",
      options = "bind,ro",
    })
    return plan
  end,
}
