"""Pack what `benchmarks/encode_gpu.py` needs for a run on a lent GPU machine.

That machine has its own Python (3.12, with torch, transformers and tokenizers), reaches no
package registry and receives at most 64 MiB with a call: the packaged model (87 MB of float32
weights) and the MovieLens texts are not there. This writes `.device_kit/` (git-ignored):

- `model/`: the default model with its weights stored as float16 (45 MB). `run.sh` turns them
  back into float32 before use, so on the device the model is all-MiniLM-L6-v2 with weights
  rounded to float16 (a relative change of about 5e-4): the same speed, and the fp32 reference
  that fidelity is measured against is that model too;
- `data/`: MovieLens movies.csv and tags.csv, read by the run (never committed);
- `whl/`: sentence-transformers at the version semrec pins (pure Python);
- `run.sh`: installs the wheel into /tmp/site, restores the weights, runs the benchmark and
  writes its JSON to $OUT.

Usage, here:        python benchmarks/device_kit.py
then on the device: bash .device_kit/run.sh [encode_gpu.py arguments]   (carry .device_kit)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: Packages the device's Python lacks or has at another version (pure-Python wheels).
WHEELS = ("sentence-transformers==6.2.0",)
#: What one device call may carry, in all (the working tree travels too).
CARRY_LIMIT = 64 * 2**20

RUN_SH = r"""#!/usr/bin/env bash
# Run on the GPU machine from the repository root: bash .device_kit/run.sh [encode_gpu.py args]
set -euo pipefail
KIT="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$KIT"/whl/*.whl
export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
"$PY" - "$KIT/model" /tmp/semrec-model <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, dst, dirs_exist_ok=True)
weights = load_file(src / "model.safetensors")
save_file({k: v.float() for k, v in weights.items()}, str(dst / "model.safetensors"))
PY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch, transformers, sentence_transformers as st; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'st', st.__version__)"
"$PY" benchmarks/encode_gpu.py --model /tmp/semrec-model --data "$KIT/data" \
    --out "$OUT/encode_gpu.json" "$@" 2>&1 | tee "$OUT/encode_gpu.log"
"""


def build(kit: Path, data: Path) -> int:
    import torch
    from safetensors.torch import load_file, save_file

    from semrec.encoders.base import resolve_model

    if kit.exists():
        shutil.rmtree(kit)
    _, source = resolve_model(None)
    shutil.copytree(
        source, kit / "model", ignore=shutil.ignore_patterns("model.safetensors", "README.md")
    )
    weights = load_file(str(Path(source) / "model.safetensors"))
    save_file(
        {k: v.to(torch.float16) for k, v in weights.items()},
        str(kit / "model" / "model.safetensors"),
    )
    (kit / "data").mkdir()
    for name in ("movies.csv", "tags.csv"):
        shutil.copyfile(data / name, kit / "data" / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "-d",
            str(kit / "whl"),
            *WHEELS,
        ],
        check=True,
    )
    (kit / "run.sh").write_text(RUN_SH)
    return sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())


def main() -> None:
    from encode import DATA

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kit", type=Path, default=ROOT / ".device_kit")
    ap.add_argument("--data", type=Path, default=DATA, help="MovieLens ml-latest-small folder")
    args = ap.parse_args()
    size = build(args.kit, args.data)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tree = sum((ROOT / f).stat().st_size for f in listed.split("\0") if f and (ROOT / f).is_file())
    print(
        f"{args.kit}: {size / 2**20:.1f} MiB; with the working tree {(size + tree) / 2**20:.1f} "
        f"MiB of the {CARRY_LIMIT // 2**20} MiB a device call carries"
    )
    if size + tree > CARRY_LIMIT:
        sys.exit("too large to carry")


if __name__ == "__main__":
    main()
