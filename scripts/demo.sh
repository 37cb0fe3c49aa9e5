#!/usr/bin/env bash
# Set up, build an index of the demo FAQ corpus (once), and query it with new paraphrases.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f demo-index/manifest.json ] || [ retrieval/demo/faq.csv -nt demo-index/manifest.json ]; then
  .venv/bin/twin build retrieval/demo/faq.csv --index demo-index --force
else
  echo "demo-index is up to date ($(.venv/bin/twin info --index demo-index --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["count"])') items); querying it" >&2
fi
.venv/bin/twin query --index demo-index -k 3 < retrieval/demo/queries.txt
