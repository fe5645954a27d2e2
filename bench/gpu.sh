#!/usr/bin/env bash
# The GPU measurements of issue 21, in one script: at most about 8 minutes on one H200.
#
#   bash bench/gpu.sh                         # on the GPU machine, from the repository root
#   DEVICE=cpu SMALL=1 bash bench/gpu.sh      # the same steps at toy sizes on a CPU (checks the script)
#
# It prints:
#   1. `cldst bench --device cuda` for one run (the DST step against a dense step);
#   2. `cldst bench --pack R` at R = 8, 16 and 32 (packed, one after another; no processes on one GPU);
#   3. one CIFAR-100-shaped 5-task run (presets/cifar100-5task.yaml at 1 epoch per task) with its
#      training images/s, on the real data if data/ holds it, else on random tensors of its shape,
#      and on a GPU the memory probe of `cldst sweep --pack auto` for it (the R it would choose);
#   4. the projected time of each paper grid at that rate, and at the best packed rate.
# Nothing here has been run on a GPU yet (no GPU on the development VM): the GPU table in
# cldst/runner/estimate.py and the README still say "not measured".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-0}
OUT=${OUT:-bench/gpu-$(date -u +%Y%m%d-%H%M).txt}

if [ "$SMALL" = 1 ]; then
  BENCH_ARGS=(--width 0.125 --repeats 1 --steps 1 --no-loader); PACK_ARGS=(--width 0.125 --batch 8 --steps 1 --repeats 1)
  PACKS=(2 3); RUN_ARGS=(--width 0.125 --num_classes 10 --num_tasks 2 --num_classes_per_task 5 --batch_size 16); SYNTH=640
else
  BENCH_ARGS=(--steps 10 --repeats 5 --epoch-batches 32); PACK_ARGS=(--width 1.0 --batch 64 --steps 10 --repeats 3)
  PACKS=(8 16 32); RUN_ARGS=(); SYNTH=50000
fi

{
  echo "# bench/gpu.sh on $(hostname), $(date -u +%FT%TZ), device $DEVICE"
  $PY -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
  echo "## 1. one run: cldst bench --device $DEVICE"
  timeout 150 $PY -m cldst.cli bench --device "$DEVICE" "${BENCH_ARGS[@]}"
  for R in "${PACKS[@]}"; do
    echo "## 2. $R runs packed: cldst bench --pack $R --device $DEVICE"
    timeout 90 $PY -m cldst.cli bench --pack "$R" --device "$DEVICE" --archs resnet18 --no-processes "${PACK_ARGS[@]}" \
      || echo "(R = $R did not finish in time or did not fit)"
  done
  echo "## 3. one CIFAR-100-shaped 5-task run, 1 epoch per task"
  timeout 150 $PY - "$DEVICE" "$SYNTH" "${RUN_ARGS[@]}" <<'EOF'
import sys, time
import numpy as np
import torch
from cldst.config import ExperimentConfig, load_preset
from cldst.data import ImageSplit, load_benchmark
from cldst.method.learner import ContinualLearner

device, synth, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
values = {**load_preset("presets/cifar100-5task.yaml"), "epochs": 1, "device": device}
values.update({k.lstrip("-"): type(values.get(k.lstrip("-"), 0.0))(v) if k.lstrip("-") in values else
               (float(v) if "." in v else int(v)) for k, v in zip(extra[::2], extra[1::2])})
cfg = ExperimentConfig(**values)
try:
    data, source = load_benchmark(cfg), "CIFAR-100"
except Exception as e:  # no data here: random tensors of the real shape
    g = torch.Generator().manual_seed(0)
    n_test = max(synth // 5, cfg.num_classes)
    data = ImageSplit(torch.randint(0, 256, (synth, 3, 32, 32), dtype=torch.uint8, generator=g),
                      torch.arange(synth) % 100, torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
                      torch.arange(n_test) % 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
                      {"source": "synthetic"})
    source = f"random tensors of CIFAR-100's shape ({type(e).__name__}: no data)"
start = time.perf_counter()
metrics = ContinualLearner(cfg, data=data, progress=False).run()
print(f"{source}: {cfg.num_tasks} tasks × {cfg.epochs} epoch, {cfg.arch} width {cfg.width}, batch {cfg.batch_size}: "
      f"training {np.mean(metrics['images_per_s']):,.0f} images/s; {time.perf_counter() - start:.0f} s in all "
      f"(with evaluation and start-up)")
with open("/tmp/cldst-gpu-run-ips", "w") as f:
    f.write(str(np.mean(metrics["images_per_s"])))
if device.startswith("cuda"):  # what --pack auto would measure for this config (cldst/method/pack_memory.py)
    from cldst.method.pack_memory import CudaPeak, probe_pack_memory
    from cldst.runner.pack_probe import CAP
    dev = torch.device(device)
    memory = probe_pack_memory(cfg, data.to(dev), CudaPeak(dev))
    print(f"--pack auto's memory probe for this config: {memory.text()}: at most {memory.largest(CAP)} runs "
          f"per pack, one pack at a time (cap {CAP})")
EOF
  echo "## 4. projected time of each paper grid at the run's training images/s (training only)"
  $PY - <<'EOF'
from pathlib import Path
from cldst.runner.estimate import training_images
from cldst.runner.grids import load_grid
ips = float(Path("/tmp/cldst-gpu-run-ips").read_text())
for path in sorted(Path("grids").glob("paper-*.yaml")):
    grid = load_grid(path)
    images = sum(training_images(c) or 0 for c in grid.configs)
    print(f"{path.name}: {len(grid.configs)} runs, {images / 1e6:,.1f} M training images: "
          f"{images / ips / 3600:,.1f} h one run at a time at {ips:,.0f} images/s; "
          "packed: that ÷ the packed ratio of section 2 (the one-hour goal needs ~100,000 images/s for the 5-task grid)")
EOF
} 2>&1 | tee "$OUT"
echo "written to $OUT"
