/* GPT-2's reversible mapping of the 256 byte values onto printable code points.
 *
 * Byte-level BPE vocabularies (GPT-2, Llama-3) are written in this alphabet: printable
 * bytes stand for themselves, the others (controls, space, 0x7F-0xA0, 0xAD) are moved to
 * U+0100 upwards in byte order, so that a space shows as "Ġ" and a newline as "Ċ". */
#ifndef GPTQ_TEXT_BYTE_LEVEL_H
#define GPTQ_TEXT_BYTE_LEVEL_H

#include <stdint.h>

/* The code point standing for byte b. */
uint32_t byte_level_char(unsigned char b);
/* The byte that code point cp stands for, or -1 if cp is not in the alphabet. */
int byte_level_byte(int32_t cp);

#endif
