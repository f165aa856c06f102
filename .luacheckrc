-- luacheck: lua/ bin/ examples/ are plain Lua 5.4; spec/ adds busted.
std = "lua54"
max_line_length = 132
files["spec/"] = { std = "+busted" }
files["bin/rootlessnetns"] = { std = "lua54" }
