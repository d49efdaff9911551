#!/usr/bin/env bash
# One check of text_gym on a GPU machine, writing every result into one folder:
#   (a) the CUDA-marked tests (tests/test_cuda.py: the rollout and the env on cuda give
#       the CPU's greedy tokens and rewards; the KV cache stays on the device);
#   (b) the rollout benchmark on cuda: text_gym against model.generate with SmolLM2 at
#       batch 8 to 256, and the overhead-bound row (tiny word-vocabulary model, 64 slots);
#   (c) a slice of the learning benchmark (its --slice preset, a few minutes of SFT then
#       GRPO).
# Under 8 minutes on an H100. Without CUDA, or with --cpu, it runs the same steps on CPU
# at tiny sizes (tiny model, small batches, --smoke's SFT and GRPO on one seed) in about a minute, so CI keeps it
# working (tests/test_gpu_check.py).
#
# Usage: benchmarks/gpu_check.sh [--cpu] [OUT_DIR]
#   OUT_DIR: the argument, else $OUT, else benchmarks/results/gpu/.
#   PYTHON: the interpreter (default: python).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
mode=auto
out=""
for arg in "$@"; do
  case "$arg" in
    --cpu) mode=cpu ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg (usage: benchmarks/gpu_check.sh [--cpu] [OUT_DIR])" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-${OUT:-benchmarks/results/gpu}}
if [[ $mode == auto ]]; then
  if "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then mode=cuda; else mode=cpu; fi
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/gpu_check.log"
: >"$log"

step() {  # step NAME COMMAND...: run it, its output to the terminal and the log, timed
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log"
  echo "== $name: done in $((SECONDS - start)) s" | tee -a "$log"
}

echo "gpu_check: mode $mode, writing to $out" | tee -a "$log"
"$PYTHON" -c 'import platform, torch; print("torch", torch.__version__, "|", platform.machine(), "|",
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")' | tee -a "$log"

# (a) the CUDA-marked tests (skipped, with their reason, without CUDA)
step tests "$PYTHON" -m pytest -q -rs -o addopts="" -m cuda tests/test_cuda.py --junitxml="$out/cuda_tests.xml"

# (b) the rollout benchmark
if [[ $mode == cuda ]]; then
  step rollout "$PYTHON" benchmarks/rollout_throughput.py --device cuda --models smollm2 \
    --batch 8 16 32 64 128 256 --new-tokens 64 --repeats 2 --rounds 2 --no-slow-baselines --out "$out"
else
  step rollout "$PYTHON" benchmarks/rollout_throughput.py --device cpu --models tiny --batch 2 4 --new-tokens 4 \
    --repeats 1 --rounds 1 --overhead-batch 4 --overhead-new-tokens 4 --overhead-rounds 1 --threads 1 --out "$out"
fi

# (c) a slice of the learning benchmark (--smoke writes no files: its table goes to the log and a .md)
if [[ $mode == cuda ]]; then
  step learning "$PYTHON" benchmarks/learning.py --slice --runs-dir "$out/runs" --out "$out"
else  # the slice's steps (SFT, then GRPO from it) on the smoke preset's tiny sizes, one seed
  step learning "$PYTHON" benchmarks/learning.py --smoke --seeds 1 --methods sft,grpo --runs-dir "$out/runs" --out "$out"
  sed -n '/^== learning: /,$p' "$log" | grep '^|' >"$out/learning_smoke.md"
fi

echo "gpu_check: all steps passed ($SECONDS s); files in $out:" | tee -a "$log"
ls -1 "$out" | tee -a "$log"
