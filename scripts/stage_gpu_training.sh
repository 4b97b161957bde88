#!/usr/bin/env bash
# Stage a physics-model training run for a lent GPU machine (which has torch but not nibabel or typer, and
# receives only the repository's working tree, at most 64 MiB of it).
#
#   scripts/stage_gpu_training.sh LABELMAP_DIR [RUN_DIR_TO_RESUME]
#
# Writes .gpu/ (git-ignored via .git/info/exclude): the training label maps (held-out maps left
# out), nibabel and typer wheels for the GPU machine's Python 3.12, and optionally a run's state.pt and
# losses.jsonl to resume. Then prints the command to run there (carry: [".gpu"]).
set -euo pipefail
cd "$(dirname "$0")/.."
maps=${1:?usage: $0 LABELMAP_DIR [RUN_DIR_TO_RESUME]}
resume=${2:-}
held_out='synthseg_training_seg_15|synthseg_training_seg_16|synthsr_brain5'

grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/lm .gpu/whl
for f in "$maps"/*.nii.gz; do
    [[ $(basename "$f") =~ $held_out ]] || cp "$f" .gpu/lm/
done
# nibabel, and typer with what it needs (the training runs through `tumsyn train`); pure-Python wheels
for pkg in nibabel typer click rich shellingham typing_extensions markdown-it-py mdurl pygments; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .gpu/whl "$pkg==$(python3 -c "import importlib.metadata as m; print(m.version('$pkg'))")"
done
if [[ -n $resume ]]; then
    mkdir -p .gpu/resume && cp "$resume/state.pt" "$resume/losses.jsonl" .gpu/resume/
fi
echo "staged: $(ls .gpu/lm | wc -l) label maps, $(du -sh .gpu | cut -f1) in .gpu/ (tracked tree: $(git ls-files -z | du -ch --files0-from=- | tail -1 | cut -f1)); the limit is 64 MiB together"
cp_resume=''
[[ -n $resume ]] && cp_resume='mkdir -p $OUT/run && cp .gpu/resume/* $OUT/run/; '
cat <<CMD
device command (carry [".gpu"]; leave ~60 s of budget for the start and ~40 s for worker start-up):
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:\$PWD || exit 3; ${cp_resume}set -o pipefail; PYTHONUNBUFFERED=1 python3 -m tumsyn_bids.cli.tools train --labelmaps .gpu/lm --out \$OUT/run --init bundled --resume --steps 100000 --time-budget 420 --patch-size 80 --batch-size 8 --no-progress 2>&1 | tee \$OUT/train.log
CMD
