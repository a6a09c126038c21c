# The integration suite with every server under valgrind memcheck.
#   make valgrind                          build (release: -O2 -g), run tests/integration
#   make valgrind VALGRIND_ARGS="-k hostile"   extra pytest arguments
# The harness (tests/integration/asrd_harness.py, ASRD_WRAPPER) starts each
# server as `$(VALGRIND_WRAPPER) asrd`, gives every process (the master and
# each forked worker) its own report next to the server's stderr, waits
# WRAP_SLOW (10) times longer for start and stop, and fails a test whose
# server report has an error or a definite leak. tests/valgrind.supp holds
# the only suppressions (third-party library leaks, each explained there).
# Tests that measure speed rather than behaviour can be left out with
# VALGRIND_DESELECT (a pytest -k expression of what to keep), e.g. on a slow or
# busy machine:
#   make valgrind VALGRIND_DESELECT="not test_200_concurrent_sessions and not test_loadtool \
#       and not test_balancer and not test_sigterm_with_idle_keepalive_connection"
# (200 real-time streams; the load tool's figures; balancer failover timings;
# SIGTERM-to-exit in < 5 s). By default nothing is left out: on the 2-core
# Debian 12 box all of them pass under valgrind, and they are the ones that
# drive the most code. test_hostile.py loosens its own upper time bounds under
# the wrapper and skips its freed-bodies RSS check (the leak check covers it).
VALGRIND         ?= valgrind
VALGRIND_WRAPPER ?= $(VALGRIND) --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
                    --errors-for-leak-kinds=definite --track-fds=no --num-callers=30 \
                    --suppressions=$(CURDIR)/tests/valgrind.supp
VALGRIND_DESELECT ?=
VALGRIND_ARGS    ?=

.PHONY: valgrind
valgrind:
ifdef SANITIZER
	$(error make valgrind runs the release build; unset SANITIZER)
endif
	@command -v $(VALGRIND) >/dev/null || { echo "make valgrind: $(VALGRIND) not found (apt-get install valgrind)" >&2; exit 1; }
	@$(MAKE) --no-print-directory all
	ASRD_BIN=$(BUILD)/asrd ASRD_WRAPPER="$(VALGRIND_WRAPPER)" \
	    tests/integration/run.sh $(if $(VALGRIND_DESELECT),-k "$(VALGRIND_DESELECT)") $(VALGRIND_ARGS)
