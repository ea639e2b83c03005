#!/usr/bin/env bash
# Installs everything gptq needs on Debian 12 (run as root, or with sudo available) and
# builds it into build/.  Safe to run again: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config git python3 python3-numpy
      libopenblas-openmp-dev liblapacke-dev libcjson-dev libpcre2-dev libutf8proc-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The tests run the `python3` first on PATH.  Where that is not Debian's (pyenv, a venv),
# python3-numpy does not reach it: numpy from PyPI then.
if ! python3 -c 'import numpy' 2>/dev/null; then
  echo "setup: numpy for $(command -v python3) from PyPI" >&2
  python3 -m pip install -q numpy || { echo "setup: cannot install numpy for $(command -v python3)" >&2; exit 1; }
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
