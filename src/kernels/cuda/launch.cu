// The programmatic-dependent-launch switch of cu_launch (cu_common.cuh).
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"

namespace {
int pdl = -1;  // -1: not settled yet (GPTQ_CUDA_PDL=0 turns it off)
}

bool cu_pdl_on() {
    if (pdl < 0) {
        const char *e = getenv("GPTQ_CUDA_PDL");
        pdl = !(e && strcmp(e, "0") == 0);
    }
    return pdl != 0;
}

int cu_carveout() {
    static int c = -2;
    if (c == -2) {
        const char *e = getenv("GPTQ_CUDA_CARVEOUT");
        c = e && *e && atoi(e) >= 0 && atoi(e) <= 100 ? atoi(e) : -1;
    }
    return c;
}

extern "C" void cuk_set_pdl(int on) { pdl = on != 0; }

extern "C" void cuk_trace_bind(void *buf) {
    trace_bind_model(buf), trace_bind_frag(buf), trace_bind_attn_o(buf), trace_bind_dense(buf);
}
