#!/usr/bin/env python3
"""Reference GPTQ / RTN / GPTQ-v1 packing in torch, and the fixtures the C unit tests
(tests/unit/test_quant.c) compare against.

Written from the GPTQ paper (Frantar et al. 2022) and the published description of the
reference implementation's `fasterquant` and `Quantizer`; it follows their structure step
by step, in fp32 like the reference, with the two choices the C code documents
(src/quant/quantizer.h, src/quant/gptq.h):
  * scales are rounded to fp16 before the zero point and the codes are computed;
  * the upper Cholesky factor of H^-1 is computed in float64 (then rounded to fp32);
    here by the plain route (cholesky, cholesky_inverse, cholesky(upper=True)) so it also
    checks the C code's reversal trick;
  * act-order ties are broken by ascending column index (stable sort).
Optional: v1_zero clamps asym zero points to >= 1 (GPTQ v1 checkpoint).

Usage: python3 tests/reference/gptq_reference.py [--out tests/fixtures]
writes quant_gptq.bin and quant_pack.bin (formats: see write_gptq_fixture / write_pack_fixture).
"""
import argparse
import os
import struct

import numpy as np
import torch


def fp16_scale(s):
    h = s.half().float()
    h = torch.where(h == 0, torch.full_like(h, 2.0 ** -24), h)
    h = torch.where(torch.isinf(h), torch.full_like(h, 65504.0), h)
    return h


class Quantizer:
    """Per-row (per output channel) weight grid, as Quantizer.find_params(weight=True)."""

    def __init__(self, bits, sym, v1_zero=False):
        self.bits = bits
        self.maxq = torch.tensor(2 ** bits - 1, dtype=torch.float32)
        self.sym = sym
        self.v1_zero = v1_zero
        self.scale = None
        self.zero = None

    def find_params(self, x):
        x = x.float()
        tmp = torch.zeros(x.shape[0])
        xmin = torch.minimum(x.min(1)[0], tmp)
        xmax = torch.maximum(x.max(1)[0], tmp)
        if self.sym:
            xmax = torch.maximum(torch.abs(xmin), xmax)
            neg = xmin < 0
            xmin[neg] = -xmax[neg]
        both0 = (xmin == 0) & (xmax == 0)
        xmin[both0] = -1
        xmax[both0] = +1
        self.scale = fp16_scale((xmax - xmin) / self.maxq)
        if self.sym:
            self.zero = torch.full_like(self.scale, float((int(self.maxq) + 1) // 2))
        else:
            self.zero = torch.clamp(torch.round(-xmin / self.scale), 0, self.maxq)
            if self.v1_zero:
                self.zero = torch.clamp(self.zero, min=1)
        self.scale = self.scale.unsqueeze(1)
        self.zero = self.zero.unsqueeze(1)

    def ready(self):
        return self.scale is not None


def quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero), q


class GPTQ:
    def __init__(self, W):
        self.W = W.clone().float()
        self.rows, self.columns = W.shape
        self.H = torch.zeros((self.columns, self.columns))
        self.nsamples = 0

    def add_batch(self, inp, samples):
        """inp (rows, columns) token rows representing `samples` calibration samples."""
        self.H *= self.nsamples / (self.nsamples + samples)
        self.nsamples += samples
        inp = (2 / self.nsamples) ** 0.5 * inp.float()
        self.H += inp.t().matmul(inp)

    def fasterquant(self, quantizer, blocksize=128, percdamp=0.01, group_size=-1, actorder=False,
                    static_groups=False):
        W = self.W.clone()
        if not quantizer.ready():
            quantizer.find_params(W)  # whole-row grid: from W before dead columns are zeroed
        H = self.H.clone()
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0

        scale, zero = [], []
        now_idx = 1
        if static_groups and group_size != -1:
            groups = []
            for i in range(0, self.columns, group_size):
                qz = Quantizer(quantizer.bits, quantizer.sym, quantizer.v1_zero)
                qz.find_params(W[:, i:i + group_size])
                scale.append(qz.scale)
                zero.append(qz.zero)
                groups.append(qz)

        perm = torch.arange(self.columns)
        if actorder:
            perm = torch.sort(torch.diag(H), descending=True, stable=True).indices
            W = W[:, perm]
            H = H[perm][:, perm]
        invperm = torch.argsort(perm)

        Losses = torch.zeros_like(W)
        Q = torch.zeros_like(W)
        C = torch.zeros_like(W)  # integer codes

        # damping + upper Cholesky factor of H^-1, in float64
        H64 = H.double()
        mean_diag = torch.mean(torch.diag(H64))
        damp = float(percdamp)
        retries = 0
        while True:
            Hd = H64.clone()
            Hd[range(self.columns), range(self.columns)] += damp * mean_diag
            L, info = torch.linalg.cholesky_ex(Hd)
            if info == 0:
                break
            retries += 1
            if retries > 3:
                raise RuntimeError("Hessian not positive definite")
            damp = 0.01 if damp == 0 else damp * 10
        lam = float(damp * mean_diag)
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).float()

        for i1 in range(0, self.columns, blocksize):
            i2 = min(i1 + blocksize, self.columns)
            count = i2 - i1
            W1 = W[:, i1:i2].clone()
            Q1 = torch.zeros_like(W1)
            C1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            Losses1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            for i in range(count):
                w = W1[:, i]
                d = Hinv1[i, i]
                if group_size != -1:
                    if not static_groups:
                        if (i1 + i) % group_size == 0:
                            # reads W, which lacks the updates of earlier columns of this block
                            quantizer.find_params(W[:, (i1 + i):(i1 + i + group_size)])
                        if ((i1 + i) // group_size) - now_idx == -1:
                            scale.append(quantizer.scale)
                            zero.append(quantizer.zero)
                            now_idx += 1
                    else:
                        quantizer = groups[int(perm[i1 + i]) // group_size]
                q, c = quantize(w.unsqueeze(1), quantizer.scale, quantizer.zero, quantizer.maxq)
                q = q.flatten()
                Q1[:, i] = q
                C1[:, i] = c.flatten()
                Losses1[:, i] = (w - q) ** 2 / d ** 2
                err1 = (w - q) / d
                W1[:, i:] -= torch.outer(err1, Hinv1[i, i:])
                Err1[:, i] = err1
            Q[:, i1:i2] = Q1
            C[:, i1:i2] = C1
            Losses[:, i1:i2] = Losses1 / 2
            W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])

        gs = group_size if group_size != -1 else self.columns
        if static_groups and actorder:
            g_idx = perm // gs
        else:
            g_idx = torch.arange(self.columns) // gs
        Q = Q[:, invperm]
        C = C[:, invperm]
        g_idx = g_idx[invperm]
        if not scale:
            scale.append(quantizer.scale)
            zero.append(quantizer.zero)
        scale = torch.cat(scale, dim=1).t().contiguous()  # (groups, out)
        zero = torch.cat(zero, dim=1).t().contiguous()
        loss = float(Losses.double().sum())
        # tr(dW H dW^T) with dW against the dead-zeroed W, in float64 (H's dead rows are 0)
        Wz = self.W.clone()
        Wz[:, dead] = 0
        dW = (Wz - Q).double()
        err_sq = float(torch.sum((dW @ self.H.double()) * dW))
        return dict(wq=Q, codes=C.to(torch.uint8), scales=scale, zeros=zero.to(torch.int32),
                    g_idx=g_idx.to(torch.int32), loss=loss, err_sq=err_sq, retries=retries, lam=lam)


def rtn(W, bits, sym, group_size, v1_zero=False):
    out, inn = W.shape
    gs = group_size if group_size != -1 else inn
    qz = Quantizer(bits, sym, v1_zero)
    Q = torch.zeros_like(W)
    C = torch.zeros_like(W)
    scale, zero = [], []
    for c0 in range(0, inn, gs):
        qz.find_params(W[:, c0:c0 + gs])
        q, c = quantize(W[:, c0:c0 + gs], qz.scale, qz.zero, qz.maxq)
        Q[:, c0:c0 + gs] = q
        C[:, c0:c0 + gs] = c
        scale.append(qz.scale)
        zero.append(qz.zero)
    g_idx = torch.arange(inn) // gs
    return dict(wq=Q, codes=C.to(torch.uint8), scales=torch.cat(scale, 1).t().contiguous(),
                zeros=torch.cat(zero, 1).t().contiguous().to(torch.int32), g_idx=g_idx.to(torch.int32),
                loss=0.0, err_sq=0.0)


# ---- GPTQ v1 packing, the explicit per-bit-width loops of the published format ----

def pack_qweight(codes, bits):
    """codes (out, in) -> qweight (in*bits/32, out) uint32."""
    iw = codes.T.astype(np.uint32)  # (in, out)
    qw = np.zeros((iw.shape[0] // 32 * bits, iw.shape[1]), dtype=np.uint32)
    i = row = 0
    while row < qw.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                qw[row] |= iw[j] << (bits * (j - i))
            i += 32 // bits
            row += 1
        else:  # 3 bits: 32 values in 3 words
            for j in range(i, i + 10):
                qw[row] |= iw[j] << (3 * (j - i))
            i += 10
            qw[row] |= iw[i] << 30
            row += 1
            qw[row] |= (iw[i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qw[row] |= iw[j] << (3 * (j - i) + 1)
            i += 10
            qw[row] |= iw[i] << 31
            row += 1
            qw[row] |= (iw[i] >> 1) & 3
            i += 1
            for j in range(i, i + 10):
                qw[row] |= iw[j] << (3 * (j - i) + 2)
            i += 10
            row += 1
    return qw


def pack_qzeros(zeros, bits):
    """zeros (groups, out) real zero points -> qzeros (groups, out*bits/32) uint32 of zero-1."""
    z = ((zeros.astype(np.int64) - 1) & (2 ** bits - 1)).astype(np.uint32)
    return _pack_cols(z, bits)


def _pack_cols(z, bits):
    qz = np.zeros((z.shape[0], z.shape[1] // 32 * bits), dtype=np.uint32)
    i = col = 0
    while col < qz.shape[1]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                qz[:, col] |= z[:, j] << (bits * (j - i))
            i += 32 // bits
            col += 1
        else:
            for j in range(i, i + 10):
                qz[:, col] |= z[:, j] << (3 * (j - i))
            i += 10
            qz[:, col] |= z[:, i] << 30
            col += 1
            qz[:, col] |= (z[:, i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qz[:, col] |= z[:, j] << (3 * (j - i) + 1)
            i += 10
            qz[:, col] |= z[:, i] << 31
            col += 1
            qz[:, col] |= (z[:, i] >> 1) & 3
            i += 1
            for j in range(i, i + 10):
                qz[:, col] |= z[:, j] << (3 * (j - i) + 2)
            i += 10
            col += 1
    return qz


# ---- fixtures ----

def make_inputs(rng, out, inn, nrows, dead=()):
    mix = np.eye(inn) + 0.35 * rng.standard_normal((inn, inn)) / np.sqrt(inn)
    feat = np.exp(0.7 * rng.standard_normal(inn))  # uneven channel magnitudes, like real activations
    X = (rng.standard_normal((nrows, inn)) @ mix) * feat
    X[:, list(dead)] = 0
    H = 2.0 / nrows * (X.T @ X)
    H = ((H + H.T) / 2).astype(np.float32)
    W = (0.02 * rng.standard_normal((out, inn))).astype(np.float32)
    W[3, 10] = 0.15  # an outlier
    W[7, :] *= 4.0   # a row with a wider range
    return W, H


CASES = [
    # (input, method, bits, group, sym, act_order, static, block, damp)
    (0, "gptq", 4, 64, 1, 1, 0, 128, 0.01),
    (0, "gptq", 3, -1, 0, 0, 0, 128, 0.01),
    (0, "gptq", 2, 32, 0, 1, 1, 128, 0.01),
    (0, "gptq", 8, 128, 1, 0, 0, 128, 0.01),
    (1, "gptq", 4, 64, 0, 0, 0, 128, 0.01),
    (1, "gptq", 4, 48, 1, 1, 0, 32, 0.01),
    (1, "gptq", 3, 32, 0, 1, 1, 128, 0.1),
    (1, "rtn", 4, 64, 0, 0, 0, 0, 0.0),
    (0, "rtn", 3, -1, 1, 0, 0, 0, 0.0),
]


def write_gptq_fixture(path, inputs, results):
    """Little-endian.  "QGF1", i32 n_inputs, i32 n_cases;
    per input: i32 out, in; f32 W (out, in); f32 H (in, in);
    per case: i32 input, method (0 gptq, 1 rtn), bits, group, sym, act_order, static, block;
      f32 damp; i32 groups, retries; f64 loss, err_sq, lambda;
      u8 codes (out, in); f32 scales (groups, out); i32 zeros (groups, out); i32 g_idx (in)."""
    with open(path, "wb") as f:
        f.write(b"QGF1")
        f.write(struct.pack("<ii", len(inputs), len(results)))
        for W, H in inputs:
            f.write(struct.pack("<ii", *W.shape))
            f.write(W.astype("<f4").tobytes())
            f.write(H.astype("<f4").tobytes())
        for case, r in results:
            inp, method, bits, group, sym, act, static, block, damp = case
            groups = r["scales"].shape[0]
            f.write(struct.pack("<8i", inp, 0 if method == "gptq" else 1, bits, group, sym, act, static, block))
            f.write(struct.pack("<f", damp))
            f.write(struct.pack("<ii", groups, r.get("retries", 0)))
            f.write(struct.pack("<ddd", r["loss"], r["err_sq"], r.get("lam", 0.0)))
            f.write(r["codes"].numpy().astype(np.uint8).tobytes())
            f.write(r["scales"].numpy().astype("<f4").tobytes())
            f.write(r["zeros"].numpy().astype("<i4").tobytes())
            f.write(r["g_idx"].numpy().astype("<i4").tobytes())


def write_pack_fixture(path, rng):
    """"QPF1", i32 n; per entry: i32 bits, out, in, groups; u8 codes (out, in);
    i32 zeros (groups, out); u32 qweight (in*bits/32, out); u32 qzeros (groups, out*bits/32)."""
    entries = []
    for bits in (2, 3, 4, 8):
        out, inn, groups = 32, 64, 2
        maxq = 2 ** bits - 1
        codes = rng.integers(0, maxq + 1, size=(out, inn)).astype(np.uint8)
        zeros = rng.integers(1, maxq + 2, size=(groups, out)).astype(np.int32)  # 1..maxq+1
        entries.append((bits, out, inn, groups, codes, zeros, pack_qweight(codes, bits), pack_qzeros(zeros, bits)))
    with open(path, "wb") as f:
        f.write(b"QPF1")
        f.write(struct.pack("<i", len(entries)))
        for bits, out, inn, groups, codes, zeros, qw, qz in entries:
            f.write(struct.pack("<4i", bits, out, inn, groups))
            f.write(codes.tobytes())
            f.write(zeros.astype("<i4").tobytes())
            f.write(qw.astype("<u4").tobytes())
            f.write(qz.astype("<u4").tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(20240611)
    inputs = [make_inputs(rng, 64, 192, 256, dead=(5, 77)), make_inputs(rng, 48, 172, 128)]
    results = []
    for case in CASES:
        inp, method, bits, group, sym, act, static, block, damp = case
        W, H = inputs[inp]
        Wt = torch.from_numpy(W)
        if method == "gptq":
            g = GPTQ(Wt)
            g.H = torch.from_numpy(H).clone()
            g.nsamples = 1
            r = g.fasterquant(Quantizer(bits, sym), blocksize=block, percdamp=damp, group_size=group,
                              actorder=bool(act), static_groups=bool(static))
        else:
            r = rtn(Wt, bits, sym, group)
            dW = (Wt - r["wq"]).double()
            r["err_sq"] = float(torch.sum((dW @ torch.from_numpy(H).double()) * dW))
        # the dequantized weight is exactly scale * (code - zero) of the stored grid
        wq = r["scales"][r["g_idx"].long(), :].t() * (r["codes"].float() - r["zeros"][r["g_idx"].long(), :].t().float())
        assert torch.equal(wq, r["wq"]), case
        results.append((case, r))
        print(case, "loss %.6g err_sq %.6g" % (r["loss"], r["err_sq"]))
    write_gptq_fixture(os.path.join(args.out, "quant_gptq.bin"), inputs, results)
    write_pack_fixture(os.path.join(args.out, "quant_pack.bin"), rng)


if __name__ == "__main__":
    main()
