/* tokenizer.json decoders: how token strings are turned back into text.
 *
 * Decoding maps ids to their token strings (added tokens included) and runs them through
 * the decoder chain exactly as `tokenizers` does: ByteLevel (printable characters back to
 * bytes, lossy UTF-8), Replace, ByteFallback (<0xNN> runs back to bytes, one U+FFFD per
 * byte if they are not valid UTF-8), Fuse, Strip, Metaspace, Sequence. */
#ifndef GPTQ_TEXT_DECODE_H
#define GPTQ_TEXT_DECODE_H

#include <cjson/cJSON.h>

#include "text/textbuf.h"

typedef struct tok_decoder tok_decoder;

int decoder_parse(const cJSON *j, const char *path, tok_decoder **out);
void decoder_free(tok_decoder *d);
/* transformers' LlamaTokenizer chain: Replace("▁", " "), ByteFallback, Fuse, [Strip(" ", 1, 0)]. */
tok_decoder *decoder_llama(int strip);
/* Runs the chain over `n` tokens (modified in place; the list may shrink, *n updated) and
 * appends the joined result to out.  Without a decoder, tokens are joined with spaces. */
void decoder_run(const tok_decoder *d, tok_buf *tokens, int *n, tok_buf *out);

#endif
