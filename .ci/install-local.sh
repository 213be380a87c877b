#!/usr/bin/env bash
# Install llmrec with the `local` extra (torch, transformers, trl, peft, accelerate, datasets) and `serve`
# (FastAPI + Uvicorn for `transformers serve` in the tests) into the
# active virtual environment, without CUDA: torch 2.13.0 first (its CPU build lies on this machine's disk;
# any other torch, asked for directly or by a dependency, pulls a CUDA build of several GB), then the
# extra, whose `torch>=2.4` the installed torch already satisfies. Fails if any nvidia-* package came in.
#
# In .ci/run, replace `pip install --quiet -e '.[dev]'` with `.ci/install-local.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e '.[dev,local,serve]'

cuda=$(python -m pip list --format=freeze 2>/dev/null | grep -i '^nvidia-' || true)
if [ -n "$cuda" ]; then
    echo "install-local: CUDA packages were installed (a torch other than the CPU build was pulled):" >&2
    echo "$cuda" >&2
    exit 1
fi
python -c "import torch, transformers, trl, peft; print('install-local: torch', torch.__version__, \
'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
