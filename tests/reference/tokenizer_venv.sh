#!/bin/sh
# Runs tests/reference/tokenizer_ref.py under a virtual environment holding the
# pinned reference library (HF tokenizers), creating it on first use:
#   tokenizer_venv.sh VENV_DIR [tokenizer_ref.py arguments...]
# If the venv cannot be made or pip cannot install (offline), the script runs
# with the system python3: the SentencePiece checks need nothing else, and the
# BPE checks exit 77 (skipped) with a message saying so.
set -u
venv="$1"; shift
here=$(dirname "$0")
pins="tokenizers==0.20.3"

py=/usr/bin/python3
[ -x "$py" ] || py=python3
(
  flock 9
  # A failed attempt is not repeated for 10 minutes (one test run), so that
  # offline the six reference tests do not each wait for pip to time out.
  recent_fail=$(find "$venv.failed" -mmin -10 2>/dev/null)
  if [ ! -f "$venv/.ok" ] && [ -z "$recent_fail" ]; then
    rm -rf "$venv"
    if "$py" -m venv "$venv" >/dev/null 2>&1 &&
       "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 15 --retries 1 \
         $pins >"$venv.log" 2>&1; then
      touch "$venv/.ok"
      rm -f "$venv.failed"
    else
      touch "$venv.failed"
    fi
  fi
  [ -f "$venv/.ok" ] || echo "tokenizer_venv: cannot install $pins (offline?), see $venv.log" >&2
) 9>"$venv.lock"
[ -f "$venv/.ok" ] && py="$venv/bin/python"
exec "$py" "$here/tokenizer_ref.py" "$@"
