# Optional engines. The mock (src/engines/mock.c) is always built. An engine
# that needs a library is listed in ENGINE_OPTIONAL and built only when
# pkg-config finds the library; otherwise the build says so and goes on
# without it (ASR_ENGINE=<name> then stops start-up with "not built in").
# Each built engine adds its source, its flags and -DASRD_ENGINE_<NAME>,
# which enables its line in src/engines/registry.c.
ENGINE_OPTIONAL :=
