#!/usr/bin/env bash
# Create .venv with the pinned host stack (see docs/install.md). Idempotent: a second run only checks the stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
CACHE=${DLA_PLUGINS_CACHE:-$HOME/.cache/dla-plugins}
D2_WHEEL=sal_detectron2-0.7.2-cp310-none-any.whl
D2_SHA256=491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561
PIP_PINS=(torch==2.14.1 torchvision==0.29.1 timm==1.0.31 "numpy<2" "setuptools<80" wheel ninja psutil
  fvcore==0.1.5.post20221221 "iopath>=0.1.7,<0.1.10" pycocotools mmengine==0.10.7 ftfy regex
  pytest pytest-timeout pytest-xdist==3.8.0 hypothesis safetensors tqdm matplotlib onnx onnxruntime openvino==2026.4.1 ruff
  scipy==1.15.3
  gdown==6.5.1
  pyedgeeval==0.2.8)  # the boundary extra (an sdist: Cython + a C++ compiler, ~45 s on 2 cores)

stamp_key() { cat scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1; }
log() { printf '\n[setup] %s\n' "$*"; }

if [[ -f $VENV/.setup-stamp && "$(cat $VENV/.setup-stamp)" == "$(stamp_key)" ]] \
  && $VENV/bin/python -c "import torch, torchvision, timm, detectron2, mmcv.ops, mmseg, dla_plugins" 2>/dev/null; then
  echo "[setup] .venv is up to date"
  exit 0
fi

[[ -x $VENV/bin/python ]] || { log "creating $VENV"; $PY -m venv $VENV; }
PIP=($VENV/bin/python -m pip install --disable-pip-version-check -q)
mkdir -p "$CACHE"

log "torch, torchvision, timm, fvcore, mmengine, test tools"
"${PIP[@]}" "${PIP_PINS[@]}"

log "detectron2 (sal-detectron2 0.7.2, pure-Python use)"
d2_dir=$CACHE/detectron2
if [[ ! -f $d2_dir/$D2_WHEEL ]]; then
  mkdir -p "$d2_dir"
  $VENV/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 --platform any \
    sal-detectron2==0.7.2 -d "$d2_dir"
fi
echo "$D2_SHA256  $d2_dir/$D2_WHEEL" | sha256sum -c --quiet - || { echo "[setup] detectron2 wheel sha256 mismatch" >&2; exit 1; }
cp "$d2_dir/$D2_WHEEL" "$d2_dir/sal_detectron2-0.7.2-py3-none-any.whl"
"${PIP[@]}" "$d2_dir/sal_detectron2-0.7.2-py3-none-any.whl"

log "mmcv 2.1.0 with compiled ops (cached wheel, else built from the sdist with -std=c++20)"
tv=$($VENV/bin/python -c "import torch; print(torch.__version__.split('+')[0])")
mmcv_dir=$CACHE/mmcv-2.1.0-torch$tv-$($VENV/bin/python -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
if ! ls "$mmcv_dir"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
  build=$(mktemp -d)
  $VENV/bin/python -m pip download -q --no-deps --no-binary=:all: mmcv==2.1.0 -d "$build"
  tar -xzf "$build"/mmcv-2.1.0.tar.gz -C "$build"
  grep -q -- "-std=c++17" "$build/mmcv-2.1.0/setup.py" || { echo "[setup] mmcv setup.py changed: no -std=c++17" >&2; exit 1; }
  sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-2.1.0/setup.py"
  log "building mmcv (5-10 minutes on 2 cores)"
  (cd "$build/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} FORCE_CUDA=0 CUDA_VISIBLE_DEVICES="" \
    "$OLDPWD/$VENV/bin/python" -m pip wheel -q --no-build-isolation --no-deps . -w "$build/dist")
  mkdir -p "$mmcv_dir" && cp "$build"/dist/mmcv-2.1.0-*.whl "$mmcv_dir/"
  rm -rf "$build"
fi
"${PIP[@]}" --no-deps "$mmcv_dir"/mmcv-2.1.0-*.whl
"${PIP[@]}" mmsegmentation==1.2.2

log "dla-plugins (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e .

log "checking the stack"
$VENV/bin/python -m pip check
$VENV/bin/python - <<'PY'
import detectron2, mmcv, mmcv.ops, mmengine, mmseg, timm, torch, torchvision
import dla_plugins
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| timm", timm.__version__,
      "| detectron2", detectron2.__version__, "| mmcv", mmcv.__version__, "| mmengine", mmengine.__version__,
      "| mmseg", mmseg.__version__)
PY
stamp_key > $VENV/.setup-stamp
log "done"
