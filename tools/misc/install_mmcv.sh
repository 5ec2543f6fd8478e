#!/usr/bin/env bash
# Install mmcv 2.1.0 with its compiled ops into the environment of the python given as $1.
#  1. a prebuilt wheel from OpenMMLab's index for the installed torch / CUDA (the index `mim
#     install` uses: download.openmmlab.com/mmcv/dist/<cpu|cuXYZ>/torch<X.Y>/index.html);
#     seconds, where the index has a wheel for this torch and pip can reach it;
#  2. otherwise a compile from source (13 min on an idle 2-core machine, about an hour on a
#     loaded one; pip caches the built wheel, so it happens once per machine).
set -euo pipefail
PY=${1:-python}
INDEX=$("$PY" -c "import torch; v = torch.__version__.split('+')[0].split('.'); \
cu = torch.version.cuda; tag = 'cu' + cu.replace('.', '') if cu else 'cpu'; \
print(f'https://download.openmmlab.com/mmcv/dist/{tag}/torch{v[0]}.{v[1]}/index.html')")
echo "[install] mmcv 2.1.0: trying a prebuilt wheel from $INDEX"
start=$(date +%s)
if "$PY" -m pip install -q --only-binary mmcv --timeout 15 --retries 1 -f "$INDEX" "mmcv==2.1.0"; then
  echo "[install] mmcv 2.1.0 prebuilt wheel installed in $(( $(date +%s) - start )) s"
  exit 0
fi
echo "[install] no prebuilt mmcv 2.1.0 wheel for this torch/CUDA (or the index is unreachable):"
echo "[install] compiling mmcv 2.1.0 from source with its ops (13 min on 2 idle cores, up to an"
echo "[install] hour on a loaded machine; pip caches the wheel for the next install)"
start=$(date +%s)
"$PY" -m pip install --no-build-isolation "mmcv==2.1.0"
echo "[install] mmcv 2.1.0 compiled and installed in $(( $(date +%s) - start )) s"
