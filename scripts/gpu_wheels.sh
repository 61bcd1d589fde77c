#!/usr/bin/env bash
# `make gpu-wheels`: download, on a machine with the package registry, the Python 3.12 wheels that the lent GPU image
# lacks (it has torch, torchvision, numpy, opencv, matplotlib, scipy, pyyaml, tabulate, regex, rich, tqdm, ... but
# no registry) into the git-ignored .whl/, plus the mmcv 2.1.0 sdist to build there. See docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && PY=${PYTHON:-.venv/bin/python}
DEST=${GPU_WHEELS:-.whl}
CACHE=${DLA_PLUGINS_CACHE:-$HOME/.cache/dla-plugins}
D2_WHEEL=sal_detectron2-0.7.2-cp310-none-any.whl
D2_SHA256=491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561
# Binary wheels for CPython 3.12 on x86-64 Linux (pure-Python ones are tagged py3-none-any).
WHEELS=(timm==1.0.31 mmengine==0.10.7 mmsegmentation==1.2.2 "iopath>=0.1.7,<0.1.10" yacs termcolor
  "omegaconf>=2.1,<2.4" hydra-core pycocotools addict yapf platformdirs prettytable wcwidth ftfy)
# Pure-Python packages published as sdists only: built into py3-none-any wheels here.
SDIST_ONLY=(fvcore==0.1.5.post20221221 antlr4-python3-runtime==4.9.3)
PIP=("$PY" -m pip --disable-pip-version-check -q)
TARGET=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform any)

rm -rf "$DEST" && mkdir -p "$DEST"
echo "[gpu-wheels] wheels for CPython 3.12"
"${PIP[@]}" download --no-deps --only-binary=:all: "${TARGET[@]}" -d "$DEST" "${WHEELS[@]}"

echo "[gpu-wheels] pure-Python sdists built into wheels: ${SDIST_ONLY[*]}"
"${PIP[@]}" wheel --no-deps -w "$DEST" "${SDIST_ONLY[@]}"

echo "[gpu-wheels] detectron2 (sal-detectron2 0.7.2, sha256-checked, re-tagged py3-none-any)"
d2_dir=$CACHE/detectron2
if [[ ! -f $d2_dir/$D2_WHEEL ]]; then
  mkdir -p "$d2_dir"
  "${PIP[@]}" download --no-deps --only-binary=:all: --python-version 3.10 --platform any sal-detectron2==0.7.2 \
    -d "$d2_dir"
fi
echo "$D2_SHA256  $d2_dir/$D2_WHEEL" | sha256sum -c --quiet - || { echo "[gpu-wheels] detectron2 sha256 mismatch" >&2; exit 1; }
cp "$d2_dir/$D2_WHEEL" "$DEST/sal_detectron2-0.7.2-py3-none-any.whl"

echo "[gpu-wheels] mmcv 2.1.0 sdist (built on the GPU machine by scripts/gpu_run.sh) + setuptools<80 for that build"
"${PIP[@]}" download --no-deps --no-binary=:all: -d "$DEST" mmcv==2.1.0
# mmcv's setup.py imports pkg_resources, which setuptools >= 81 no longer has: the build gets its own setuptools
"${PIP[@]}" download --no-deps --only-binary=:all: "${TARGET[@]}" -d "$DEST/build" "setuptools<80"

total=$(du -sb "$DEST" | cut -f1)
(( total < 64 * 1024 * 1024 )) || { echo "[gpu-wheels] $DEST is $total bytes: over the 64 MiB the device tool carries" >&2; exit 1; }
(cd "$DEST" && find . -type f | sort)
echo "[gpu-wheels] $(find "$DEST" -type f | wc -l) files, $(du -sh "$DEST" | cut -f1) in $DEST"
