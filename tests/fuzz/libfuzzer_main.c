/* libFuzzer entry point for one target, chosen at compile time (-DFUZZ_ENTRY=fuzz_NAME). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) { return FUZZ_ENTRY(data, n); }
