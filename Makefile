# lethe: top-level build.
#
#   make            build build/liblethe.a and build/lethe
#   make demo       set up (packages, models) and run the main job on sample photos
#   make test       set up and run every test (unit, parity, CLI, fuzz smoke, ASan+UBSan)
#   make check      the tests without the set-up step (for developers)
#   make san        build with ASan+UBSan into build-san/
#   make bench      benchmarks against face-api.js on tfjs (see bench/README.md)
#   make fuzz       build libFuzzer targets (clang) into build-fuzz/
#   make python     build/liblethe.so, the shared library the Python module loads
#
# Variables: BUILD (output folder), SAN=1 (sanitizers), CC, CFLAGS, LDFLAGS.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE -DLETHE_DEFAULT_MODELS='"$(abspath models)"'
STD     := -std=c11 -pthread -fvisibility=hidden
LIBS    := -lsqlite3 -ljpeg -lpng -lwebp -lsodium -lz -lm -lpthread
# The program only: lethe serve's HTTP server (libmicrohttpd-dev).
CLI_LIBS := -lmicrohttpd

ifeq ($(SAN),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mfma -mf16c

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC  := $(sort $(wildcard programs/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all lib cli tests benches tools demo test check san bench fuzz clean setup models ref tsan coverage python

all: lib cli tests benches tools

lib: $(BUILD)/liblethe.a
cli: $(BUILD)/lethe
tests: $(TEST_BIN) $(BUILD)/tests/fuzz_replay $(BUILD)/tests/scan
benches: $(BENCH_BIN)
tools: $(BUILD)/tools/make_template

$(BUILD)/liblethe.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# The shared library, for language bindings (python/lethe loads it): the
# same sources compiled again with -fPIC into $(BUILD)/pic/. With
# -fvisibility=hidden it exports only what lethe.h marks LETHE_API
# (python/tests/test_native.py compares `nm -D` with the header). Not in
# `all`: it compiles the whole library a second time (about 20 s of one
# core); `make python` builds it, and so does tests/run.sh.
PIC_OBJ := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
python: $(BUILD)/liblethe.so

$(BUILD)/liblethe.so: $(PIC_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,liblethe.so -Wl,-z,defs $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/pic/%_avx2.o: %_avx2.c
	@mkdir -p $(@D)
	$(CC) $(STD) -fPIC $(CPPFLAGS) $(CFLAGS) $(WARN) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/pic/%_avx512.o: %_avx512.c
	@mkdir -p $(@D)
	$(CC) $(STD) -fPIC $(CPPFLAGS) $(CFLAGS) $(WARN) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(STD) -fPIC $(CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c $< -o $@

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(@D)
	$(CC) $(STD) $(CPPFLAGS) $(CFLAGS) $(WARN) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(@D)
	$(CC) $(STD) $(CPPFLAGS) $(CFLAGS) $(WARN) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(STD) $(CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c $< -o $@

# The programs see the public header only, as SQLite's shell does: if one
# needs src/, the library lacks a function.
CLI_CPPFLAGS := -Iinclude -D_GNU_SOURCE
$(BUILD)/programs/%.o: programs/%.c
	@mkdir -p $(@D)
	$(CC) $(STD) $(CLI_CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c $< -o $@

$(BUILD)/lethe: $(CLI_OBJ) $(BUILD)/liblethe.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/liblethe.a $(LIBS) $(CLI_LIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/liblethe.a $(wildcard tests/*.h)
	@mkdir -p $(@D)
	$(CC) $(STD) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $< $(BUILD)/liblethe.a $(LIBS)

$(BUILD)/tests/scan: tests/scan.c
	@mkdir -p $(@D)
	$(CC) $(STD) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $<

# The replayer holds every target: the "http" one (tests/fuzz/http.c) is
# lethe serve itself, so it links the program's objects but its main.
FUZZ_PROG_OBJ := $(filter-out $(BUILD)/programs/lethe.o,$(CLI_OBJ))
$(BUILD)/tests/fuzz_replay: tests/fuzz/replay.c tests/fuzz/targets.c tests/fuzz/http.c $(FUZZ_PROG_OBJ) $(BUILD)/liblethe.a
	@mkdir -p $(@D)
	$(CC) $(STD) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ tests/fuzz/replay.c tests/fuzz/targets.c tests/fuzz/http.c $(FUZZ_PROG_OBJ) $(BUILD)/liblethe.a $(LIBS) $(CLI_LIBS)

$(BUILD)/bench/%: bench/%.c bench/bench_rng.h bench/lfw_embed.h $(BUILD)/liblethe.a
	@mkdir -p $(@D)
	$(CC) $(STD) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $< $(BUILD)/liblethe.a $(LIBS)

$(BUILD)/tools/%: tools/%.c $(BUILD)/liblethe.a
	@mkdir -p $(@D)
	$(CC) $(STD) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $< $(BUILD)/liblethe.a $(LIBS)

# --- set-up: system packages, model weights, reference harness ----------
setup:
	./scripts/setup.sh

models:
	./scripts/fetch-models.sh

# --- the two README commands --------------------------------------------
# Their builds use every core (as tests/run.sh's own builds do).
NPROC := $(shell nproc 2>/dev/null || echo 1)
demo: setup
	$(MAKE) -j$(NPROC) all
	./scripts/demo.sh

test: setup
	$(MAKE) check

check:
	$(MAKE) -j$(NPROC) all
	./tests/run.sh

san:
	$(MAKE) BUILD=build-san SAN=1 OPT=-O1 all

bench: all
	./bench/run.sh

fuzz:
	./tests/fuzz/build.sh

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(PIC_OBJ:.o=.d)

# --- ThreadSanitizer: the tests that run threads, built into build-tsan/ ---
# (gcc or clang; -O1 as TSan wants). tests/run.sh runs them in a full run.
TSAN_TESTS := test_nn test_index test_detect test_engine test_store test_analyze test_concurrency
tsan:
	$(MAKE) BUILD=build-tsan OPT=-O1 CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
	    LDFLAGS=-fsanitize=thread $(TSAN_TESTS:%=build-tsan/tests/%)

# --- coverage: gcc --coverage into build-cov/, the C and CLI tests (and the
# fuzz replays) run against it, a gcovr report of src/ (summary here, HTML in
# build-cov/coverage/) and of src/store/ and src/forget/. Not part of make test
# (about 17 minutes on 2 cores; the suites get longer timeouts there).
COV_FLAGS := -O1 -g --coverage -fprofile-update=atomic
GCOVR     := gcovr -r . --object-directory build-cov --exclude-unreachable-branches
coverage:
	@command -v gcovr >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y gcovr; } || \
	    { echo "coverage: gcovr is missing (apt-get install gcovr, as root)" >&2; exit 1; }
	$(MAKE) -j2 BUILD=build-cov CC=gcc OPT=-O1 CFLAGS="$(COV_FLAGS)" LDFLAGS=--coverage tests cli
	find build-cov -name '*.gcda' -delete
	rm -rf build-cov/coverage && mkdir -p build-cov/coverage
	BUILD=build-cov LETHE_TIMEOUT_UNIT=1800 LETHE_TIMEOUT_CLI=2400 ./tests/run.sh --fast; status=$$?; \
	echo; echo "== coverage of src/ (HTML: build-cov/coverage/index.html)"; \
	$(GCOVR) --filter 'src/' --html-details build-cov/coverage/index.html --print-summary build-cov; \
	for part in store forget; do \
	    echo "== coverage of src/$$part/"; \
	    $(GCOVR) --filter "src/$$part/" --print-summary -o /dev/null build-cov; \
	done; \
	exit $$status
