# rootlessnetns — build, install, test.
#
#   make            build build/rootlessnetns.so
#   make demo       install missing packages, build, run the demo
#   make check      install missing packages, build, run every spec
#   make lint       luacheck, clang-tidy, cppcheck, gcc -fanalyzer
#   make sanitize   ASan+UBSan build running the primitive and namespace specs
#   make valgrind   the primitive specs under valgrind (leaks and fds)
#   make bench      latency/throughput figures (prints, never asserts)
#   make doc        the API reference (LDoc) in build/doc/index.html
#   make install    PREFIX, DESTDIR, LUA_LIBDIR, LUA_DIR, DOCDIR honoured; the
#                   reference, README, CHANGELOG and examples go to DOCDIR (built first
#                   when ldoc is installed)

LUA_VERSION ?= 5.4
LUA         ?= lua$(LUA_VERSION)
# The installed CLI names its interpreter by absolute path: no env(1) exec.
LUA_BIN     ?= $(shell command -v $(LUA) 2>/dev/null || echo /usr/bin/$(LUA))
# Installed modules are precompiled (line information kept): loading
# bytecode instead of parsing source takes a third of the time on every
# command.  So is the CLI itself, after its #! line (lua5.4 runs such a
# file as it runs a script): a warm run then never wakes the parser, 0.1
# ms of its 2.  PRECOMPILE=no installs the sources.
LUAC        ?= luac$(LUA_VERSION)
PRECOMPILE  ?= $(if $(shell command -v $(LUAC) 2>/dev/null),yes,no)
BUSTED      ?= $(LUA) /usr/bin/busted
PKG_CONFIG  ?= pkg-config

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
LUA_LIBDIR  ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_DIR     ?= $(PREFIX)/share/lua/$(LUA_VERSION)
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
DOCDIR      ?= $(PREFIX)/share/doc/rootlessnetns

LUA_CFLAGS   := $(shell $(PKG_CONFIG) --cflags lua$(LUA_VERSION) 2>/dev/null)
# libmount's headers only: the library is loaded on first use (csrc/mount.c)
MOUNT_CFLAGS := $(shell $(PKG_CONFIG) --cflags mount 2>/dev/null)

CC       ?= cc
OPTFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers -Wnull-dereference -Wvla
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fstack-clash-protection
CFLAGS   ?= $(OPTFLAGS)
ALL_CFLAGS  = -std=gnu11 -fPIC -fvisibility=hidden $(WARNINGS) $(HARDEN) $(LUA_CFLAGS) $(MOUNT_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = -shared -Wl,-z,relro,-z,now -Wl,--no-undefined-version $(LDFLAGS)
# Lua symbols resolve against the interpreter at load time: no -llua.

SRCS    := $(wildcard csrc/*.c)
BUILD   ?= build
OBJS    := $(SRCS:csrc/%.c=$(BUILD)/%.o)
MODULE  := $(BUILD)/rootlessnetns.so
LUA_SRC := $(shell find lua -name '*.lua' | sort)

.PHONY: all deps demo check check-unprivileged lint sanitize valgrind bench doc install uninstall clean

all: $(MODULE)

$(BUILD)/%.o: csrc/%.c csrc/rlns.h | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(OBJS)

$(BUILD):
	mkdir -p $@

# Installs the Debian packages the build, the specs and the demo need when
# run as root; otherwise prints the exact apt-get command and fails.
deps:
	@sh tools/deps.sh

demo: deps
	@$(MAKE) --no-print-directory -s all
	@sh tools/demo.sh

check: deps
	@$(MAKE) --no-print-directory -s all
	@sh tools/check.sh

lint: deps
	@sh tools/lint.sh

sanitize: deps
	@sh tools/sanitize.sh

valgrind: deps
	@$(MAKE) --no-print-directory -s all
	@sh tools/valgrind.sh

bench: deps
	@$(MAKE) --no-print-directory -s all
	@sh tools/bench.sh

# Not in the build directory's name space of objects: always rebuilt, so a
# changed doc comment is never hidden by an old page.
doc:
	@sh tools/doc.sh $(BUILD)/doc

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR) $(addprefix $(DESTDIR)$(LUA_DIR)/,$(patsubst lua/%,%,$(sort $(dir $(LUA_SRC))))) \
	    $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/rootlessnetns.so
	for f in $(LUA_SRC); do \
	    if [ "$(PRECOMPILE)" = yes ]; then $(LUAC) -o $(DESTDIR)$(LUA_DIR)/$${f#lua/} $$f; \
	    chmod 0644 $(DESTDIR)$(LUA_DIR)/$${f#lua/}; \
	    else install -m 0644 $$f $(DESTDIR)$(LUA_DIR)/$${f#lua/}; fi; done
	sed -e 's|@LUA_DIR@|$(LUA_DIR)|' -e 's|@LUA_LIBDIR@|$(LUA_LIBDIR)|' \
	    -e '1s|^#!.*|#!$(LUA_BIN)|' bin/rootlessnetns > $(DESTDIR)$(BINDIR)/rootlessnetns.tmp
	if [ "$(PRECOMPILE)" = yes ]; then { head -n 1 $(DESTDIR)$(BINDIR)/rootlessnetns.tmp && \
	    $(LUAC) -o - $(DESTDIR)$(BINDIR)/rootlessnetns.tmp; } > $(DESTDIR)$(BINDIR)/rootlessnetns; \
	    else cp $(DESTDIR)$(BINDIR)/rootlessnetns.tmp $(DESTDIR)$(BINDIR)/rootlessnetns; fi
	rm -f $(DESTDIR)$(BINDIR)/rootlessnetns.tmp
	chmod 0755 $(DESTDIR)$(BINDIR)/rootlessnetns
	install -m 0644 doc/rootlessnetns.1 $(DESTDIR)$(MANDIR)/man1/rootlessnetns.1
	install -m 0644 contrib/bash-completion/rootlessnetns $(DESTDIR)$(BASHCOMPDIR)/rootlessnetns
	install -d $(DESTDIR)$(DOCDIR)/examples
	install -m 0644 README.md CHANGELOG.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 examples/*.lua $(DESTDIR)$(DOCDIR)/examples/
	if [ ! -f $(BUILD)/doc/index.html ] && command -v ldoc >/dev/null 2>&1; then sh tools/doc.sh $(BUILD)/doc; fi
	if [ -f $(BUILD)/doc/index.html ]; then rm -rf $(DESTDIR)$(DOCDIR)/html && cp -R $(BUILD)/doc $(DESTDIR)$(DOCDIR)/html && \
	    find $(DESTDIR)$(DOCDIR)/html -type d -exec chmod 0755 {} + && \
	    find $(DESTDIR)$(DOCDIR)/html -type f -exec chmod 0644 {} +; \
	else echo "install: ldoc is not installed: the API reference is left out (apt-get install lua-ldoc lua-discount)"; fi

uninstall:
	rm -f $(DESTDIR)$(LUA_LIBDIR)/rootlessnetns.so $(DESTDIR)$(BINDIR)/rootlessnetns \
	    $(DESTDIR)$(MANDIR)/man1/rootlessnetns.1 $(DESTDIR)$(BASHCOMPDIR)/rootlessnetns
	rm -rf $(DESTDIR)$(LUA_DIR)/rootlessnetns $(DESTDIR)$(DOCDIR)

clean:
	rm -rf $(BUILD) build-sanitize
