# asrd build. One entry point:
#   make            release build (build/release/asrd) and tools
#   make run        install missing Debian packages, build, start on defaults
#   make test       install, build, unit + integration, then again under ASan+UBSan,
#                   then every fuzz target for 10 s (mk/fuzz.mk)
#   make fuzz | valgrind    longer fuzzing (FUZZ_SECONDS=N); the integration suite under memcheck
#   make unit | integration | asan-test
#   SANITIZER=address,undefined make ...   (any -fsanitize= list; build dir follows)
CC        ?= cc
PKGS      := libuv jansson libsodium hiredis sndfile soxr nettle libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lwslay \
              -lwebrtc_audio_processing -lstdc++ -lm -lpthread
WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS_BASE := -std=gnu11 -g -DASRD_VERSION=\"0.1.0\" $(WARN) -Isrc $(PKG_CFLAGS)

ifdef SANITIZER
  BUILD   ?= build/san
  OPT     := -O1 -fno-omit-frame-pointer -fsanitize=$(SANITIZER) -fno-sanitize-recover=all
  LDSAN   := -fsanitize=$(SANITIZER)
else
  BUILD   ?= build/release
  OPT     := -O2
  LDSAN   :=
endif
CFLAGS    := $(CFLAGS_BASE) $(OPT) $(EXTRA_CFLAGS)
LDFLAGS   := $(LDSAN) $(EXTRA_LDFLAGS)

LIB_SRC   := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ   := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC  := $(wildcard tools/*.c)
TOOL_BIN  := $(TOOL_SRC:tools/%.c=$(BUILD)/%)

.PHONY: all deps run test unit integration asan-test clean
all: $(BUILD)/asrd $(UNIT_BIN) $(TOOL_BIN)

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libasrd.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/asrd: src/main.c $(BUILD)/libasrd.a
	$(CC) $(CFLAGS) $< $(BUILD)/libasrd.a $(LDFLAGS) $(PKG_LIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/test.h $(BUILD)/libasrd.a | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests/unit $< $(BUILD)/libasrd.a $(LDFLAGS) $(PKG_LIBS) -o $@

$(BUILD)/%: tools/%.c $(BUILD)/libasrd.a
	$(CC) $(CFLAGS) $< $(BUILD)/libasrd.a $(LDFLAGS) $(PKG_LIBS) -o $@

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

run: deps
	@$(MAKE) --no-print-directory all
	exec $(BUILD)/asrd

unit: all
	tests/unit/run.sh $(BUILD)/tests

integration: all
	ASRD_BIN=$(BUILD)/asrd tests/integration/run.sh

asan-test:
	@$(MAKE) --no-print-directory SANITIZER=address,undefined BUILD=build/asan unit integration

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory asan-test
	@$(MAKE) --no-print-directory fuzz-ci
	@echo "make test: all suites passed"

clean:
	rm -rf build

# Optional parts (fuzzing, valgrind, ...) each in their own file.
-include $(wildcard mk/*.mk)
