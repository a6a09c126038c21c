# asrd build. One entry point:
#   make            release build (build/release/asrd) and tools
#   make run        install what running needs (Debian packages), build, start on defaults
#   make test       install what testing needs, build with gcc and clang, lint,
#                   unit + integration, both again under ASan+UBSan, then every
#                   fuzz target for 10 s (mk/fuzz.mk)
#   make fuzz | valgrind    longer fuzzing (FUZZ_SECONDS=N); the integration suite under memcheck
#   make unit | integration | asan-test | lint | clang-check
#   SANITIZER=address,undefined make ...   (any -fsanitize= list; build dir follows)
#
# src/ is layered by folder (docs/internals/architecture.md): base < core, net,
# store < engines < api < server. scripts/check-layers.sh fails the build on
# an include that points up a layer.
CC        ?= cc
PKGS      := libuv jansson libsodium hiredis sndfile soxr nettle libcrypto libcurl gmime-3.0 \
             libavformat libavcodec libswresample libavutil
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lwslay \
              -lwebrtc_audio_processing -lunistring -lstdc++ -lm -lpthread
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

# Engines are optional parts of the build (mk/engines.mk): each one whose
# library is present adds its source, flags and a registry define.
ENGINE_OPTIONAL :=
ENGINE_SRC      :=
ENGINE_CFLAGS   :=
ENGINE_LIBS     :=
-include mk/engines.mk

CFLAGS    := $(CFLAGS_BASE) $(ENGINE_CFLAGS) $(OPT) $(EXTRA_CFLAGS)
LDFLAGS   := $(LDSAN) $(EXTRA_LDFLAGS)
LIBS      := $(PKG_LIBS) $(ENGINE_LIBS)

SRC_DIRS  := base core net store engines api server
LIB_SRC   := $(filter-out src/server/main.c $(ENGINE_OPTIONAL:%=src/engines/%.c),\
               $(foreach d,$(SRC_DIRS),$(wildcard src/$(d)/*.c))) $(ENGINE_SRC)
LIB_OBJ   := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LOAD_SRC  := $(wildcard tools/asrd-load/*.c)
LOAD_OBJ  := $(LOAD_SRC:tools/asrd-load/%.c=$(BUILD)/obj/tools/asrd-load/%.o)
# Unit tests of the load tool's modules link its objects (all but main).
LOAD_TEST_OBJ := $(filter-out %/main.o,$(LOAD_OBJ))
LOAD_TESTS    := $(patsubst %,$(BUILD)/tests/%,test_loadstat test_speechstat test_srvmetrics)

.PHONY: all deps deps-test run test unit integration asan-test clang-check lint clean
all: $(BUILD)/asrd $(UNIT_BIN) $(BUILD)/asrd-load

deps:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

# -MMD: each object records the headers it read; the .d files are included
# below, so a header change rebuilds exactly what uses it.
$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/tools/asrd-load/%.o: tools/asrd-load/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools/asrd-load -MMD -MP -c $< -o $@

$(BUILD)/libasrd.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/asrd: $(BUILD)/obj/server/main.o $(BUILD)/libasrd.a
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/test.h $(BUILD)/libasrd.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -Itools/asrd-load -MMD -MP $< $(if $(filter $@,$(LOAD_TESTS)),$(LOAD_TEST_OBJ)) \
	    $(BUILD)/libasrd.a $(LDFLAGS) $(LIBS) -o $@

$(LOAD_TESTS): $(LOAD_TEST_OBJ)

$(BUILD)/asrd-load: $(LOAD_OBJ) $(BUILD)/libasrd.a
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LIBS) -o $@

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

run: deps
	@$(MAKE) --no-print-directory all
	exec $(BUILD)/asrd

unit: all
	tests/unit/run.sh $(BUILD)/tests

integration: all
	ASRD_BIN=$(BUILD)/asrd tests/integration/run.sh

asan-test:
	@$(MAKE) --no-print-directory SANITIZER=address,undefined BUILD=build/asan unit integration

# The same sources with clang and -Werror (gcc is the default compiler).
clang-check:
	@$(MAKE) --no-print-directory CC=clang BUILD=build/clang all

# Layers (scripts/check-layers.sh), banned calls and unchecked allocations (scripts/lint.py).
lint:
	@scripts/check-layers.sh
	@/usr/bin/python3 scripts/lint.py

test: deps-test
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory clang-check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory asan-test
	@$(MAKE) --no-print-directory fuzz-ci
	@echo "make test: all suites passed"

clean:
	rm -rf build

# Optional parts (fuzzing, valgrind, ...) each in their own file.
-include $(filter-out mk/engines.mk,$(wildcard mk/*.mk))

# clang-format (.clang-format) over FILES, by default the C files changed
# since the last commit (make format FILES=src/core/session.c).
FILES ?= $(shell git diff --name-only --diff-filter=AM HEAD -- '*.c' '*.h' 2>/dev/null)
.PHONY: format
format:
	@[ -z "$(FILES)" ] || clang-format -i $(FILES)
