#!/usr/bin/env python3
"""Convert a Hugging Face model directory that holds only pytorch_model.bin into
model.safetensors (what embedding-recycler loads). Needs torch and safetensors:

    pip install torch safetensors
    python3 scripts/convert-to-safetensors.py path/to/model-dir
"""
import os
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = sys.argv[1]
    src = os.path.join(d, "pytorch_model.bin")
    dst = os.path.join(d, "model.safetensors")
    if not os.path.exists(src):
        print(f"error: {src} does not exist", file=sys.stderr)
        return 1
    import torch
    from safetensors.torch import save_file

    state = torch.load(src, map_location="cpu", weights_only=True)
    # safetensors refuses shared storage: give every tensor its own contiguous copy
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    save_file(state, dst, metadata={"format": "pt"})
    print(f"wrote {dst} ({len(state)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
