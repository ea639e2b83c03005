/* ggml tensor types as GGUF files number them, with their block geometry.
 *
 * A row of ne0 elements of a block type is ne0 / block_size blocks of type_size bytes
 * each; ne0 must be a multiple of block_size.  The numbers are the file format's (ggml's
 * enum ggml_type) and never change; types we neither read nor write are absent here and
 * a file holding them is rejected by name. */
#ifndef GPTQ_IO_GGML_TYPES_H
#define GPTQ_IO_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGML_T_F32 = 0,
    GGML_T_F16 = 1,
    GGML_T_Q4_0 = 2,
    GGML_T_Q4_1 = 3,
    GGML_T_Q5_0 = 6,
    GGML_T_Q5_1 = 7,
    GGML_T_Q8_0 = 8,
    GGML_T_Q2_K = 10,
    GGML_T_Q3_K = 11,
    GGML_T_Q4_K = 12,
    GGML_T_Q5_K = 13,
    GGML_T_Q6_K = 14,
    GGML_T_BF16 = 30,
} ggml_type;

#define GGML_T_MAX 40 /* type ids below this are looked up in a table */

typedef struct {
    const char *name; /* "q4_0", as llama.cpp prints it */
    int block_size;   /* elements per block (1 for float types) */
    int type_size;    /* bytes per block */
} ggml_type_traits;

/* Traits of a type id, or NULL if the id is not one we handle. */
const ggml_type_traits *ggml_traits(uint32_t type);
/* "q4_0" -> GGML_T_Q4_0; -1 if unknown (case-insensitive). */
int ggml_type_parse(const char *name);
/* Bytes of a row of ne0 elements (ne0 % block_size == 0). */
size_t ggml_row_size(ggml_type t, int64_t ne0);

#endif
