# Convenience targets over ./run (the build itself is meson). Each installs
# the Debian packages it needs when they are missing.
#   make            build bsodmon and the synthetic guest (build/)
#   make demo       the synthetic guest blue-screens; bsodmon reports it
#   make check      every test (what CI runs: .ci/run)
#   make fuzz       every libFuzzer harness for FUZZ_SECONDS (default 60)
#   make bench      the benchmarks (bench/)
FUZZ_SECONDS ?= 60

.PHONY: all build demo check fuzz bench
all build:
	./run build
demo:
	./run demo
check:
	./run check
fuzz:
	./run fuzz $(FUZZ_SECONDS)
bench:
	./run bench
