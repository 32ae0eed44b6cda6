# Shared by scripts/run and scripts/test: the project's virtualenv, made once and kept in step
# with pyproject.toml and constraints.txt (pinned versions).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${THREADVIEW_VENV:-$ROOT/.venv}
PY=$VENV/bin/python

ensure_venv() {
  local stamp=$VENV/.threadview-stamp want
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)
  [[ -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
  echo "[setup] installing Python dependencies into $VENV" >&2
  [[ -x $PY ]] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
  echo "$want" >"$stamp"
}
