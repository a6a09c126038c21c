# libFuzzer targets (tests/fuzz/fuzz_*.c), docs/FUZZING.md describes them.
#   make fuzz                  build every target into build/fuzz/, run each
#                              FUZZ_SECONDS (default 60) on a scratch copy of
#                              its corpus; non-zero exit on any crash/leak/timeout
#   make fuzz-ci               the same, 10 s per target
#   make fuzz-build            build only
#   make fuzz FUZZ_TARGETS="http ws" FUZZ_SECONDS=600    a subset
# The fuzz build compiles src/*/*.c itself with clang and the sanitizers (not
# the gcc-built libasrd.a), so the server code is instrumented for coverage.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -DASRD_VERSION=\"0.1.0\" $(FUZZ_SAN) -Isrc $(PKG_CFLAGS) $(ENGINE_CFLAGS)
# src/ gets the project's warnings without -Werror (clang warns about things
# gcc does not, and a fuzz build should not stop on them); the harnesses
# are built with -Werror.
FUZZ_SRC_WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter
FUZZ_WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter

FUZZ_LIB_OBJ := $(LIB_SRC:src/%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_HELPERS := $(filter-out tests/fuzz/fuzz_%.c,$(wildcard tests/fuzz/*.c))
FUZZ_HELPER_OBJ := $(FUZZ_HELPERS:tests/fuzz/%.c=$(FUZZ_BUILD)/obj/fuzzh_%.o)
FUZZ_ALL     := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_BIN     := $(FUZZ_ALL:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-ci fuzz-build
fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC_WARN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/obj/fuzzh_%.o: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(wildcard src/*/*.h) | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_WARN) -Itests/fuzz -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libasrd-fuzz.a: $(FUZZ_LIB_OBJ) $(FUZZ_HELPER_OBJ)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) $(FUZZ_BUILD)/libasrd-fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_WARN) -Itests/fuzz -fsanitize=fuzzer $< \
	    $(FUZZ_BUILD)/libasrd-fuzz.a $(LIBS) -o $@

$(FUZZ_BUILD)/obj:
	mkdir -p $@
