/* SHA-256 (FIPS 180-4), for fingerprints of token streams and files in tests and reports. */
#ifndef GPTQ_CORE_SHA256_H
#define GPTQ_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len; /* bytes fed so far */
    unsigned char block[64];
    size_t fill;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, unsigned char digest[32]);
/* One-shot digest as 64 lowercase hex digits plus NUL. */
void sha256_hex(const void *data, size_t n, char hex[65]);

#endif
