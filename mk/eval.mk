# tools/asr-eval: the bare pocketsphinx decoder and probes (the reference
# for accuracy and speed in docs/BENCHMARKS.md) and the word error rate
# tool. Built with the project's flags when pocketsphinx is (mk/engines.mk);
# test_wer.py runs with the unit tests.
ifneq ($(filter src/engines/pocketsphinx.c,$(ENGINE_SRC)),)
EVAL_BIN := $(BUILD)/ps_decode $(BUILD)/ps_probe
all: $(EVAL_BIN)
$(BUILD)/ps_%: tools/asr-eval/ps_%.c tools/asr-eval/eval_util.c tools/asr-eval/eval_util.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(filter %.c,$^) -o $@ $(LDFLAGS) $(ENGINE_LIBS) $(shell pkg-config --libs sndfile) -lm -lpthread
endif

.PHONY: eval-test
eval-test:
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tools/asr-eval/test_wer.py
unit: eval-test
