#!/usr/bin/env bash
# Tests of the Python package roomkit_media (bindings/python), run by scripts/test: builds the
# package with pip as a user would (maturin, release), in a venv of CPython >= 3.12 (roomkit's
# floor) with roomkit pinned, then runs its pytest suite under `python -X dev` with asyncio's
# debug mode (which raises on a loop call from a foreign thread). A missing Python >= 3.12 or a
# failed install FAILS the run: nothing here is skipped.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

find_python() {
  # The machine image carries several CPythons under pyenv (its default python3 is 3.11, and
  # pyenv's shims answer for versions that are not selected): each candidate must run and be
  # >= 3.12. 3.12 first, the version the package is tested with.
  local c roots=()
  command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)")
  roots+=("${PYENV_ROOT:-$HOME/.pyenv}" /root/.pyenv)
  for c in python3.12 "${roots[@]/%//versions/3.12*/bin/python3}" python3.13 \
    "${roots[@]/%//versions/3.1[3-9]*/bin/python3}" python3; do
    for c in $c; do  # expand the globs
      if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
        command -v "$c"
        return
      fi
    done
  done
  return 1
}

python="$(find_python)" || {
  echo "FAIL: no CPython >= 3.12 found (roomkit needs it): install one (pyenv install 3.12)" >&2
  exit 1
}
echo "== python binding: $("$python" --version) at $python"
venv="$root/target/py-venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# numpy: roomkit's voice pipeline imports it to measure the TTS audio it plays (the voice-turn test).
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  "roomkit[rtp,sip]==0.109.0" "numpy>=1.26,<2.5" "maturin>=1.5,<2" pytest
export PYO3_PYTHON="$venv/bin/python" PATH="$venv/bin:$PATH"
# Shares the root's target dir: the engine and its dependencies are not built twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

echo "== python binding: cargo fmt --check, clippy"
cargo fmt --manifest-path Cargo.toml -- --check
cargo clippy --manifest-path Cargo.toml --all-targets -- -D warnings

echo "== python binding: pip install ./bindings/python (maturin, release)"
start=$(date +%s)
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps .
echo "   built and installed in $(( $(date +%s) - start )) s"

echo "== python binding: pytest"
# From the tests folder, so the installed package is imported, not the source tree.
cd tests
PYTHONASYNCIODEBUG=1 "$venv/bin/python" -X dev -m pytest -q -p no:cacheprovider -p no:asyncio .
