/* config.json, including quantization_config: a config that parses must write back
 * (hf_config_to_json) to a text that parses to the same model shape. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fuzz.h"
#include "io/hf_config.h"

int fuzz_config(const uint8_t *data, size_t n) {
    hf_config c;
    if (hf_config_parse(&c, (const char *)data, n, "config.json") != 0) {
        FUZZ_ASSERT(gptq_last_error()[0], "failure without a message");
        return 0;
    }
    FUZZ_ASSERT(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.n_heads > 0 && c.vocab_size > 0, "non-positive size");
    FUZZ_ASSERT(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "bad kv heads");
    FUZZ_ASSERT(c.head_dim > 0 && c.head_dim % 2 == 0, "bad head_dim");
    FUZZ_ASSERT(c.n_eos >= 0 && c.n_eos <= HF_MAX_EOS, "bad eos count");
    if (c.quant.present) {
        FUZZ_ASSERT(c.quant.bits == 2 || c.quant.bits == 3 || c.quant.bits == 4 || c.quant.bits == 8, "bits %d", c.quant.bits);
        FUZZ_ASSERT(c.quant.group_size == -1 || c.quant.group_size > 0, "group %d", c.quant.group_size);
        for (int i = 0; i < c.quant.n_rules; i++) FUZZ_ASSERT(c.quant.rules[i].pattern && c.quant.rules[i].code, "bad rule");
        /* the per-module settings the "dynamic" rules give must be settings the loader can use */
        static const char *const modules[] = {"model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj", "lm_head"};
        for (int i = 0; i < 3; i++) {
            hf_quant_module qm;
            if (!hf_quant_module_settings(&c.quant, modules[i], &qm)) continue; /* kept in float */
            FUZZ_ASSERT(qm.bits == 2 || qm.bits == 3 || qm.bits == 4 || qm.bits == 8, "%s: bits %d", modules[i], qm.bits);
            FUZZ_ASSERT(qm.group_size == -1 || qm.group_size > 0, "%s: group %d", modules[i], qm.group_size);
        }
    }
    char *text = hf_config_to_json(&c);
    FUZZ_ASSERT(text != NULL, "hf_config_to_json failed");
    hf_config back;
    int rc = hf_config_parse(&back, text, strlen(text), "config.json (written back)");
    FUZZ_ASSERT(rc == 0, "written config does not read back: %s\n%s", gptq_last_error(), text);
    FUZZ_ASSERT(back.dim == c.dim && back.hidden_dim == c.hidden_dim && back.n_layers == c.n_layers &&
                    back.n_heads == c.n_heads && back.n_kv_heads == c.n_kv_heads && back.head_dim == c.head_dim &&
                    back.vocab_size == c.vocab_size && back.rope_type == c.rope_type && back.n_eos == c.n_eos,
                "written config reads back differently:\n%s", text);
    hf_config_free(&back);
    free(text);
    hf_config_free(&c);
    return 0;
}
