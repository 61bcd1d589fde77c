#!/usr/bin/env bash
# On the lent CUDA machine (Python 3.12, torch + torchvision + timm, nvcc, no package registry), from the repository
# root with .whl/ carried over (`make gpu-wheels` beforehand, elsewhere):
#   1. installs .whl/*.whl into .gpu-site/ (git-ignored; --no-index, nothing is fetched), first on PYTHONPATH;
#   2. builds mmcv 2.1.0 from its sdist there (CPU ops by default, ~2 min on 16 cores: mmseg imports mmcv.ops but this
#      project's mmseg path runs no mmcv kernel; MMCV_CUDA=1 builds the CUDA ops too, for TORCH_CUDA_ARCH_LIST, 9.0 by
#      default). If the build fails, the mmseg step of gpu-check reports itself skipped and the rest runs;
#   3. runs `python3 -m benchmarks.gpu_check --device cuda "$@"`, and copies its results (and the updated
#      docs/benchmarks.md) into $OUT when that is set (the device tool brings $OUT back).
# A check longer than one command allows can be split: `gpu_run.sh --skip dcn,timm,d2,mmseg`, then
# `gpu_run.sh --merge --skip bench` (the second keeps the first's bench results from output/gpu_check/results.json).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${GPU_SITE:-$PWD/.gpu-site}
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}

ls .whl/*.whl >/dev/null 2>&1 || { echo "[gpu-run] no .whl/*.whl: run 'make gpu-wheels' on a machine with the registry" >&2; exit 2; }
if [[ ! -f $SITE/.installed ]] || [[ .whl -nt $SITE/.installed ]]; then
  echo "[gpu-run] installing $(ls .whl/*.whl | wc -l) wheels into $SITE"
  $PY -m pip install -q --disable-pip-version-check --no-index --no-deps --upgrade --target "$SITE" .whl/*.whl \
    || { echo "[gpu-run] wheel install failed" >&2; exit 2; }
  touch "$SITE/.installed"
fi

if ! $PY -c "import mmcv.ops" 2>/dev/null; then
  if [[ -f .whl/mmcv-2.1.0.tar.gz ]]; then
    build=$(mktemp -d)
    tar -xzf .whl/mmcv-2.1.0.tar.gz -C "$build"
    sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-2.1.0/setup.py"  # torch >= 2.10 headers need C++20
    echo "[gpu-run] building mmcv 2.1.0 ($([[ ${MMCV_CUDA:-0} == 1 ]] && echo 'CUDA + CPU ops' || echo 'CPU ops'))"
    if [[ ${MMCV_CUDA:-0} == 1 ]]; then
      gpu_env=(FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0})
    else
      gpu_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
    fi
    build_site=$SITE-build  # setuptools<80 (mmcv's setup.py needs pkg_resources), for this build only
    [[ -d $build_site ]] || $PY -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$build_site" \
      .whl/build/*.whl
    (cd "$build/mmcv-2.1.0" && env PYTHONPATH="$build_site:$PYTHONPATH" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${gpu_env[@]}" \
      $PY -m pip wheel -q --disable-pip-version-check --no-index --no-build-isolation --no-deps . -w "$build/dist") \
      > "$build/build.log" 2>&1 \
      && $PY -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$SITE" "$build"/dist/mmcv-*.whl \
      || { echo "[gpu-run] mmcv build failed (log tail below): gpu-check will skip the mmseg step" >&2; tail -20 "$build/build.log" >&2; }
  else
    echo "[gpu-run] no .whl/mmcv-2.1.0.tar.gz: gpu-check will skip the mmseg step" >&2
  fi
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -m benchmarks.gpu_check --device cuda "$@"
rc=$?
if [[ -n ${OUT:-} ]]; then
  mkdir -p "$OUT"
  cp -r output/gpu_check "$OUT/" 2>/dev/null || true
  rm -rf "$OUT"/gpu_check/timm/shapes "$OUT"/gpu_check/mmseg/cityscapes "$OUT"/gpu_check/d2/shapes \
    "$OUT"/gpu_check/*/out "$OUT"/gpu_check/*/run/*.pth "$OUT"/gpu_check/d2/*.pth  # data and checkpoints stay there
  cp docs/benchmarks.md "$OUT/" 2>/dev/null || true
fi
exit $rc
