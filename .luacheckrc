-- luacheck: lua/ bin/ examples/ tools/ are plain Lua 5.4; spec/ adds busted's
-- globals.  They are named here rather than through `std = "+busted"` so
-- that `luacheck --std lua54 ...` on the command line keeps them.
std = "lua54"
-- plain text, so logs and checks read the summary as written
color = false
max_line_length = 120
files["spec/"] = {
  read_globals = {
    "describe", "it", "pending", "before_each", "after_each", "setup", "teardown",
    "insulate", "expose", "spy", "stub", "mock", "finally",
    assert = { other_fields = true, fields = {} },
  },
}
