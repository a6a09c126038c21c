# Optional engines. The mock engines (src/engines/mock.c) are always built.
# An engine that needs a library is listed in ENGINE_OPTIONAL and built only
# when pkg-config finds the library; otherwise the build says so and goes on
# without it (ASR_ENGINE=<name> then stops start-up with "not built in").
# Each built engine adds its source, its flags and -DASRD_ENGINE_<NAME>,
# which enables its line in src/engines/registry.c.
ENGINE_OPTIONAL := pocketsphinx

# pocketsphinx (Debian: libpocketsphinx-dev, libsphinxbase-dev; the model is
# pocketsphinx-en-us). Its headers are included as system headers: they do
# not build warning-free under -Wextra -Werror.
PS_PKGS := pocketsphinx sphinxbase
ifeq ($(shell pkg-config --exists $(PS_PKGS) 2>/dev/null && echo yes),yes)
  ENGINE_SRC    += src/engines/pocketsphinx.c
  ENGINE_CFLAGS += $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PS_PKGS))) -DASRD_ENGINE_POCKETSPHINX
  ENGINE_LIBS   += $(shell pkg-config --libs $(PS_PKGS))
else
  $(info engines: pocketsphinx left out: pkg-config finds no $(PS_PKGS) (apt-get install libpocketsphinx-dev libsphinxbase-dev))
endif
