"""Build a random-weight image model that stable-diffusion.cpp's ``sd-server`` loads and runs.

    python build_tiny_sd.py --out DIR

Writes DIR/sdxs-random.safetensors: the SDXS-512-DS architecture (SD 1.x's tiny UNet, one res block a
level, channel multipliers 1-2-4; the CLIP-L text encoder; the tiny autoencoder, TAESD, as its decoder),
441M parameters in float16 (883 MB), seeded random weights. The images mean nothing; the work per image is
the real network's, at whatever size and number of steps the server is asked for.

``sdxs_tensors.json`` beside this file holds each tensor's name and shape (PyTorch order). It was read from
sd-server itself (stable-diffusion-cpp-python 0.4.7's vendored tree): a file holding only the two tensors
its version detection reads made it name every tensor it missed, and a file holding those at a wrong shape
made it print the shape it expected for each. A build of another sd.cpp that wants other tensors says so at
load ("tensor ... not in model file"), and the manifest is read again the same way.

Needs only numpy and safetensors (no torch), like build_tiny_model.py.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

SEED = 20261207
MANIFEST = Path(__file__).with_name("sdxs_tensors.json")
MODEL_FILE = "sdxs-random.safetensors"


def weights(manifest: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Norms start at identity and biases at zero; every other tensor is N(0, 1/fan_in), so activations stay
    finite through the network's depth (float16 overflows otherwise, and the engine would draw NaNs)."""
    rng = np.random.default_rng(SEED)
    out: dict[str, np.ndarray] = {}
    for name, shape in sorted(manifest.items()):
        size = int(np.prod(shape))
        if name.endswith(".bias"):
            values = np.zeros(size, dtype=np.float32)
        elif len(shape) == 1 and "norm" in name:
            values = np.ones(size, dtype=np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else size
            values = rng.standard_normal(size, dtype=np.float32) / np.sqrt(fan_in)
        out[name] = values.astype(np.float16).reshape(shape)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    tensors = weights(json.loads(MANIFEST.read_text()))
    partial = out / (MODEL_FILE + ".tmp")
    save_file(tensors, str(partial))
    os.replace(partial, out / MODEL_FILE)  # a running engine never sees half a model
    params = sum(t.size for t in tensors.values())
    print(json.dumps({"tensors": len(tensors), "parameters": params, "file": str(out / MODEL_FILE)}))


if __name__ == "__main__":
    main()
