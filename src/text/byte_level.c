/* The byte <-> printable code point table of byte-level BPE (see byte_level.h). */
#include "text/byte_level.h"

static int printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

uint32_t byte_level_char(unsigned char b) {
    if (printable(b)) return b;
    uint32_t k = 0; /* rank of b among the non-printable bytes */
    for (int i = 0; i < b; i++)
        if (!printable(i)) k++;
    return 256 + k;
}

int byte_level_byte(int32_t cp) {
    if (cp < 0) return -1;
    if (cp < 256) return printable(cp) ? cp : -1;
    int32_t k = cp - 256;
    for (int b = 0; b < 256; b++)
        if (!printable(b) && k-- == 0) return b;
    return -1;
}
