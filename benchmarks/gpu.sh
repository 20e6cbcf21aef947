#!/usr/bin/env bash
# One prepared GPU session: the GPU-marked tests, the benchmarks on CUDA, and (with
# TRAIN_MODELS=1) training the bundled models; SCHEDULES=1 and LBFGS_POLICY=1 add the schedule
# and L-BFGS comparisons (a minute or two each). Run from the repository root on a CUDA machine:
#   STYLIZE_SHARED=path/to/shared/data OUT=results/ BUDGET_S=480 bash benchmarks/gpu.sh
# The steps run most important first, each under a time cap; once BUDGET_S seconds are spent the
# rest are skipped (a lent GPU has minutes, and what is printed must come back). The log is
# also written to $OUT/gpu.log.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
OUT=${OUT:-gpu-results}
DATA=${STYLIZE_SHARED:-../shared/data}
export STYLIZE_SHARED="$DATA"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-3600} ))

# step CAP COMMAND...: run COMMAND for at most CAP seconds, or less if the budget is nearly spent
# (SIGINT first, so that a script stops where it is; the trainer then writes its checkpoint).
step() {
  local cap=$1 left start
  shift
  left=$(( DEADLINE - $(date +%s) ))
  if (( left < 15 )); then echo "=== skipped, out of time: $*"; return 1; fi
  (( cap > left )) && cap=$left
  echo "=== $* (at most ${cap} s)"
  start=$(date +%s)
  timeout -k 10 -s INT "$cap" "$@"
  local rc=$?
  echo "--- exit $rc after $(( $(date +%s) - start )) s"
  return $rc
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step 180 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py -rs
step 180 python3 benchmarks/gpu_report.py --device cuda
step 90 python3 benchmarks/profile_train.py --device cuda --steps 20
# The command line as a user runs it, on the GPU it picks by itself: the README's sample run, a
# bundled model on a photo, and a short training run (the images come back in $OUT).
step 120 bash -c "python3 -m stylize info && \
  time python3 -m stylize run samples/chelsea.jpg samples/swirls.jpg -o $OUT/run.png --quiet && \
  time python3 -m stylize run $DATA/content/tubingen.jpg --model starry_night -o $OUT/fast.png --quiet && \
  time python3 -m stylize train $DATA/styles/the_scream.jpg -d $DATA/photos -o $OUT/short.pt --steps 200 --quiet"
step 90 python3 benchmarks/precision.py --device cuda --repeats 10
step 120 python3 benchmarks/levers.py --device cuda --repeats 10
step 150 python3 benchmarks/iterative.py --device cuda --content "$DATA/content/tubingen.jpg" \
  --style "$DATA/styles/starry_night.jpg" --schedules "${ITERATIVE_SCHEDULES:-}"
step 90 python3 benchmarks/fast.py --device cuda --repeats 20 ${FAST_COMPILE:+--compile}
step 60 python3 benchmarks/profile_step.py --device cuda --rows 15
step 120 python3 benchmarks/train_memory.py --device cuda  # the fit check's estimate against a GPU's peaks
step 60 python3 benchmarks/flow.py --device cuda --sizes 256,512 --repeats 5  # video frames' two flows
[ "${TILES:-1}" = 1 ] && step 120 python3 benchmarks/tiles.py --device cuda --size 2048 --tiles 1024,512
[ "${LBFGS_POLICY:-0}" = 1 ] && step 180 python3 benchmarks/lbfgs_policy.py --device cuda
[ "${LEVERS_COMPILE:-0}" = 1 ] && step 180 python3 benchmarks/levers.py --device cuda --repeats 10 --compile
[ "${SCHEDULES:-0}" = 1 ] && step 300 python3 benchmarks/schedules.py --device cuda
if [ "${TRAIN_MODELS:-0}" = 1 ]; then
  for spec in ${MODELS:-starry_night:5 the_scream:5 shipwreck:5}; do
    style=${spec%%:*}; weight=${spec##*:}
    start=$(date +%s)
    # SIGINT on time-out: the trainer then writes a resumable checkpoint.
    step "${TRAIN_TIMEOUT:-120}" python3 -m stylize train "$DATA/styles/$style.jpg" -d "$DATA/photos" \
      -o "$OUT/${style}_sw${weight}.pt" --style-weight "$weight" --steps "${STEPS:-3000}" --quiet \
      --width 16 --blocks 3 --shuffle 2 \
      --checkpoint-every 500 --overwrite
    rc=$?
    echo "trained $style sw=$weight in $(( $(date +%s) - start )) s (exit $rc)"
    python3 - "$OUT/${style}_sw${weight}" <<'PY'
import sys
from pathlib import Path
from stylize.modelfile import load_model, save_model
stem = Path(sys.argv[1])
model, ckpt = stem.with_suffix(".pt"), stem.with_name(stem.name + ".ckpt.pt")
if not model.exists() and ckpt.exists():  # stopped early: keep the weights, drop optimiser state
    loaded = load_model(ckpt)
    save_model(model, loaded.network.eval(), loaded.meta)
    print("kept checkpoint at step", loaded.meta.get("steps"))
ckpt.unlink(missing_ok=True)
PY
    python3 benchmarks/model_quality.py "$style" "$OUT/${style}_sw${weight}.pt" --save "$OUT/quality"
    python3 benchmarks/model_quality.py "$style" "$OUT/${style}_sw${weight}.pt" --train-layers
  done
  python3 - "$OUT" "$DATA" <<'PY'
import sys
from pathlib import Path
from PIL import Image
import torch
from stylize.imageio import load_image, resize, fit_long_side, to_pil
from stylize.modelfile import load_model
from stylize.transformer import stylize_image
out, data = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for model in sorted(out.glob("*.pt")):
    net = load_model(model).network.cuda()
    cells = []
    for name in ("tubingen", "golden_gate"):
        img = load_image(data / "content" / f"{name}.jpg").rgb
        img = resize(img, fit_long_side(*img.shape[-2:], 512))
        cells.append(to_pil(stylize_image(net, img, torch.device("cuda"))))
    rows.append((model.stem, cells))
w, h = 512, 384
sheet = Image.new("RGB", (2 * w, h * len(rows)), "white")
for r, (label, cells) in enumerate(rows):
    for c, cell in enumerate(cells):
        sheet.paste(cell.resize((w, h)), (c * w, r * h))
    print("row", r, label)
sheet.save(out / "models_sheet.jpg", quality=85)
PY
fi
