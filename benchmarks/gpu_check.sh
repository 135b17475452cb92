#!/usr/bin/env bash
# The one-GPU check: about 5-8 minutes on one GPU, every step under its own time limit (480 s
# in all), one report. Runs where there is no network (a cluster's GPU node) with that
# machine's own Python and torch.
#
#   bash benchmarks/gpu_check.sh [--wheels DIR] [--cpu-dry-run] [--out DIR]
#
#   --wheels DIR    wheels for what the node's Python lacks (make gpu-wheels on a networked
#                   machine): only missing packages are installed from it, offline
#   --cpu-dry-run   every step on the CPU at small sizes: checks the script and its report
#                   end to end on any machine in a few minutes
#   --out DIR       the report folder (default gpu_check_out): gpu_check.json, gpu_check.txt,
#                   logs/
#
# The Python is $PYTHON, else .venv/bin/python if there, else python3. Nothing is installed
# into it: jtsm itself (with its built-in plugins package jtsm_plugins, the jtsm command and,
# where a compiler is, its C kernels) and any missing package go into a temporary folder put
# on PYTHONPATH for the check, removed at the end. The steps and the report:
# benchmarks/gpu_check.py; docs: docs/gpus.md, "Checking a GPU machine".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

WHEELS="" DRY="" OUT=gpu_check_out INSTALL_ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
    --cpu-dry-run) DRY=1; shift ;;
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --install-into) INSTALL_ONLY=${2:?}; shift 2 ;;  # internal: the install step, timed
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$WHEELS" ]; then
  [ -d "$WHEELS" ] || { echo "gpu_check.sh: --wheels $WHEELS: no such folder" >&2; exit 2; }
  WHEELS=$(cd "$WHEELS" && pwd)
fi
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1

# jtsm's runtime requirements (pyproject.toml), as "module:pip package". opencv-contrib is not
# needed by the check (OpenCV's core is); pycocotools and pyspng are optional for it: jtsm
# runs without them and says which function needs one.
REQUIRED="torch:torch torchvision:torchvision numpy:numpy cv2:opencv-python-headless \
skimage:scikit-image click:click rich:rich pluggy:pluggy scipy:scipy"
OPTIONAL="pycocotools:pycocotools pyspng:pyspng"

importable() { "$PY" -c "import $1" >/dev/null 2>&1; }

# ---- the install step (run as a child, under its time limit) -------------------------------
if [ -n "$INSTALL_ONLY" ]; then
  T=$INSTALL_ONLY
  export PYTHONPATH="$T${PYTHONPATH:+:$PYTHONPATH}"
  pipi() { "$PY" -m pip install --quiet --no-index --no-deps --no-cache-dir \
             --disable-pip-version-check "$@"; }
  installed="" missing="" status=passed
  have_pip=""; "$PY" -m pip --version >/dev/null 2>&1 && have_pip=1
  for pair in $REQUIRED $OPTIONAL; do
    mod=${pair%%:*} pkg=${pair#*:}
    importable "$mod" && continue
    if [ -n "$WHEELS" ] && [ -n "$have_pip" ] && pipi --find-links "$WHEELS" --target "$T" "$pkg" \
        && importable "$mod"; then
      installed="$installed $pkg"
    else
      missing="$missing $pkg"
      case " $REQUIRED " in *" $pair "*) status=failed ;; esac
    fi
  done
  # jtsm itself: a wheel built here (C kernels compiled where a compiler is) into the folder;
  # it needs setuptools >= 77 (from the node, else from --wheels)
  mode=source-tree
  if [ -n "$have_pip" ]; then
    st_ok() { "$PY" -c "import setuptools, sys; \
sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" >/dev/null 2>&1; }
    if ! st_ok && [ -n "$WHEELS" ]; then
      pipi --find-links "$WHEELS" --target "$T/.build-tools" "setuptools>=77" >/dev/null 2>&1 \
        && export PYTHONPATH="$T/.build-tools:$PYTHONPATH"
    fi
    if st_ok && pipi --no-build-isolation --target "$T" . ; then
      mode=wheel
    fi
  fi
  if [ "$mode" = source-tree ]; then
    # no pip or no setuptools: the checkout itself, pure Python (the C kernels' fallbacks)
    ln -sfn "$ROOT/plugins" "$T/jtsm_plugins"
    mkdir -p "$T/bin"
    printf '#!/bin/sh\nexec "%s" -c "from jtsm_cli.main import cli; cli(prog_name=\\"jtsm\\")" "$@"\n' \
      "$("$PY" -c 'import sys; print(sys.executable)')" > "$T/bin/jtsm"
    chmod +x "$T/bin/jtsm"
    echo "$ROOT" > "$T/.source-tree"
  fi
  PATH="$T/bin:$PATH"
  [ "$mode" = source-tree ] && export PYTHONPATH="$PYTHONPATH:$ROOT"
  (cd / && "$PY" -c "import jtsm, jtsm_cli, jtsm_plugins") || status=failed
  jtsm --help >/dev/null || status=failed
  printf '{"status": "%s", "mode": "%s", "installed": "%s", "missing": "%s"}\n' \
    "$status" "$mode" "${installed# }" "${missing# }" > "$T/.install.json"
  [ "$status" = passed ]
  exit $?
fi

# ---- the check -----------------------------------------------------------------------------
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/jtsm_gpu_check.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
LIMIT=$(sed -n 's/^INSTALL_TIMEOUT = \([0-9][0-9]*\).*/\1/p' benchmarks/gpu_check.py)
echo "== install (limit ${LIMIT}s): jtsm and what $PY lacks, into $T"
t0=$(date +%s.%N)
timeout "$LIMIT" bash "$0" --install-into "$T" ${WHEELS:+--wheels "$WHEELS"} \
  > "$OUT/install.log" 2>&1
rc=$?
wall=$(echo "$(date +%s.%N) $t0" | awk '{printf "%.1f", $1 - $2}')
if [ -f "$T/.install.json" ]; then
  rec=$(cat "$T/.install.json")
else
  rec='{"status": "failed", "mode": "", "installed": "", "missing": ""}'
fi
[ $rc = 124 ] && rec='{"status": "timeout", "mode": "", "installed": "", "missing": ""}'
echo "${rec%\}}, \"wall_s\": $wall, \"timeout_s\": $LIMIT, \"rc\": $rc, \"log\": \"install.log\"}" \
  > "$OUT/install.json"
cat "$OUT/install.json"
export PYTHONPATH="$T${PYTHONPATH:+:$PYTHONPATH}"
[ -f "$T/.source-tree" ] && export PYTHONPATH="$PYTHONPATH:$ROOT"
export PATH="$T/bin:$PATH"
if [ $rc != 0 ]; then
  tail -n 5 "$OUT/install.log" >&2
  echo "gpu_check.sh: the install step failed (see $OUT/install.log)" >&2
fi
"$PY" benchmarks/gpu_check.py --out "$OUT" --install-json "$OUT/install.json" ${DRY:+--cpu-dry-run}
