/* Preloaded into the fuzzing gate's runs (scripts/fuzz-smoke) so that a fixed -seed gives the
 * same run every time. Rust's hash maps take their keys from getrandom(2); with random keys a
 * table lays out differently in each process, the instrumented code behind it takes other
 * branches, and libFuzzer keeps other inputs and explores elsewhere. Fixed bytes instead. Never
 * part of the product: only the gate's fuzz processes load it. */
#include <stddef.h>
#include <sys/types.h>

ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
    static unsigned long long state = 0x9e3779b97f4a7c15ULL;
    unsigned char *out = buf;
    (void)flags;
    for (size_t i = 0; i < len; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out[i] = (unsigned char)state;
    }
    return (ssize_t)len;
}
