-- An extra bind mount inside the namespace: a host directory shows up
-- read-only as /srv for every command run inside.
--
--   SHARED_DIR=$HOME/shared rootlessnetns --config examples/extra-bind-mount.lua run -- ls /srv
return {
  mounts = function(plan)
    -- add before the last entry, the one that replaces /run
    table.insert(plan, #plan, {
      name = "shared",
      source = os.getenv("SHARED_DIR") or ((os.getenv("HOME") or "") .. "/shared"),
      target = "/srv",
      options = "bind,ro",
    })
    return plan
  end,
}
