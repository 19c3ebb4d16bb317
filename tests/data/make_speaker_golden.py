"""Writes tests/data/speaker_golden.json: numbers from the Python reference for the C# speaker encoder tests.

Not run by CI. It loads, without copying, the reference's speaker-encoder classes and mel_spectrogram from
Qwen3-TTS's modeling_qwen3_tts.py, and librosa's own mel filterbank functions from a librosa source checkout,
and runs them with PyTorch (checked with Debian's python3-torch 1.13 and python3-numpy 1.24):

    /usr/bin/python3 tests/data/make_speaker_golden.py REF_MODELING_PY LIBROSA_SRC_DIR > tests/data/speaker_golden.json

Weights are not random: parameter number p (in sorted state-dict order) gets, at flat index j,
sin(0.731 * j + 1.9 * p) / sqrt(fan_in) for a conv weight (fan_in = in_channels * kernel) and
0.1 * cos(0.37 * j + 1.3 * p) for a bias, so the C# test can rebuild them exactly.
"""
import ast
import json
import math
import sys
import types
import __future__

import numpy as np
import torch


def load_functions(path, names, extra_globals):
    """Compiles only the named top-level defs/classes of a source file (last definition wins, decorators dropped)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    picked = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            node.decorator_list = []
            picked[node.name] = node
    missing = set(names) - set(picked)
    if missing:
        raise SystemExit(f"{path}: missing {sorted(missing)}")
    module = ast.Module(body=[picked[n] for n in names], type_ignores=[])
    namespace = dict(extra_globals)
    exec(compile(module, path, "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True), namespace)
    return namespace


def main():
    ref_path, librosa_dir = sys.argv[1], sys.argv[2]
    lr = load_functions(f"{librosa_dir}/librosa/core/convert.py",
                        ["fft_frequencies", "hz_to_mel", "mel_to_hz", "mel_frequencies"], {"np": np, "cast": lambda _, v: v})
    lr = load_functions(f"{librosa_dir}/librosa/filters.py", ["mel"],
                        {**lr, "np": np, "util": None, "ParameterError": ValueError, "warnings": __import__("warnings")})
    ref = load_functions(ref_path, ["Res2NetBlock", "SqueezeExcitationBlock", "AttentiveStatisticsPooling", "TimeDelayNetBlock",
                                    "SqueezeExcitationRes2NetBlock", "Qwen3TTSSpeakerEncoder",
                                    "dynamic_range_compression_torch", "mel_spectrogram"],
                         {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "librosa_mel_fn": lr["mel"]})

    bank = lr["mel"](sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000, htk=False, norm="slaney", dtype=np.float32)
    nz = np.nonzero(bank)
    bank_entries = [[int(i), int(k), float(bank[i, k])] for i, k in zip(*nz)]

    # The C# test rebuilds these clips from the same formulas.
    n = np.arange(6000, dtype=np.float64)
    clips = np.stack([
        0.3 * np.sin(2 * np.pi * 220 * n / 24000) + 0.2 * np.sin(2 * np.pi * 1375 * n / 24000 + 0.5) + 0.05 * np.sin(n * n * 1e-5),
        0.4 * np.sin(2 * np.pi * 3100 * n / 24000) * np.cos(2 * np.pi * 3 * n / 24000) + 0.1 * np.sin(2 * np.pi * 90 * n / 24000),
    ]).astype(np.float32)
    mels = ref["mel_spectrogram"](torch.from_numpy(clips), n_fft=1024, num_mels=128, sampling_rate=24000,
                                  hop_size=256, win_size=1024, fmin=0, fmax=12000)  # [2, 128, 23]

    config = types.SimpleNamespace(mel_dim=128, enc_dim=64, enc_channels=[32, 32, 32, 32, 96], enc_kernel_sizes=[5, 3, 3, 3, 1],
                                   enc_dilations=[1, 2, 3, 4, 1], enc_attention_channels=16, enc_res2net_scale=8, enc_se_channels=16)
    encoder = ref["Qwen3TTSSpeakerEncoder"](config).eval()
    with torch.no_grad():
        for p, (name, param) in enumerate(sorted(encoder.state_dict().items())):
            j = np.arange(param.numel(), dtype=np.float64)
            if name.endswith(".bias"):
                values = 0.1 * np.cos(0.37 * j + 1.3 * p)
            else:
                values = np.sin(0.731 * j + 1.9 * p) / math.sqrt(param.shape[1] * param.shape[2])
            param.copy_(torch.from_numpy(values.astype(np.float32)).reshape(param.shape))
        embedding = encoder(mels.transpose(1, 2))

    # 9 significant digits round-trip float32 exactly.
    short = np.vectorize(lambda v: float("%.9g" % v), otypes=[object])
    json.dump({
        "filterbank_nonzero": [[i, k, float("%.9g" % v)] for i, k, v in bank_entries],
        "mels": short(mels.numpy()).tolist(),
        "embedding": short(embedding.numpy()).tolist(),
    }, sys.stdout, separators=(",", ":"))


main()
