#!/usr/bin/env bash
# CIFAR-10 lock benchmark (issue: lock, unlock and evaluate classifiers).
# CPU key editor (keyed-filter), small-cnn from scratch, 10k class-balanced training images,
# the full 10k test set. Trains the original model once, then one locked model per recipe, and
# evaluates each with the default wrong keys. Results: $OUT/<recipe>.json and a markdown table.
#
#   bash bench/cifar10_lock.sh                          # the default recipe only
#   RECIPES="wrong-label:0.9:0 locked-class:0.9:0 wrong-label:0.8:0.1" bash bench/cifar10_lock.sh
# A recipe is CLEAN_TARGET:EDITED_FRACTION:DECOY_FRACTION[:DECOY_KEYS] ("default" = the package's
# defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
OUT=${OUT:-bench-output/cifar10}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
EPOCHS=${EPOCHS:-20}
RECIPES=${RECIPES:-default}
ML=${ML:-.venv/bin/modellock}
TRAIN_FLAGS=(--model small-cnn --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" --num-workers 0)

[ -f "$DATA" ] || { echo "no CIFAR-10 archive at $DATA" >&2; exit 1; }
mkdir -p "$OUT"
[ -f "$OUT/key.toml" ] || $ML keygen --out "$OUT/key.toml" --editor keyed-filter --prompt "with oil pastel"

start=$(date +%s)
[ -f "$OUT/original/model.safetensors" ] || $ML train --data "$DATA" --out "$OUT/original" "${TRAIN_FLAGS[@]}"
echo "original model: $(( $(date +%s) - start )) s"

for recipe in $RECIPES; do
  t0=$(date +%s)
  if [ "$recipe" = default ]; then flags=(); else
    IFS=: read -r target fraction decoys nkeys <<< "$recipe"
    flags=(--clean-target "$target" --edited-fraction "$fraction" --decoy-fraction "${decoys:-0}")
    if [ -n "${nkeys:-}" ]; then  # no flag for the number of decoy keys: a YAML config
      printf 'decoy_keys: %s\n' "$nkeys" > "$OUT/$recipe.yaml"; flags+=(--config "$OUT/$recipe.yaml"); fi; fi
  [ -f "$OUT/$recipe/model.safetensors" ] || \
    $ML lock --key "$OUT/key.toml" --data "$DATA" --out "$OUT/$recipe" "${TRAIN_FLAGS[@]}" "${flags[@]}"
  $ML eval --model "$OUT/$recipe" --key "$OUT/key.toml" --data "$DATA" --baseline "$OUT/original" \
    --json "$OUT/$recipe.json"
  echo "$recipe: lock + eval $(( $(date +%s) - t0 )) s"
done
echo "total: $(( $(date +%s) - start )) s"

"$(dirname "$ML")/python" - "$OUT" $RECIPES <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| recipe | original | locked clean | locked, locked output ignored | unlocked | wrong keys (max) |")
print("| --- | --- | --- | --- | --- | --- |")
for r in sys.argv[2:]:
    d = json.loads((out / f"{r}.json").read_text())
    ign = d.get("locked_clean_without_locked_class")
    wk = max(list(d["wrong_keys"].values()) + list((d.get("wrong_keys_without_locked_class") or {}).values()))
    print(f"| {r} | {d['original_clean']:.4f} | {d['locked_clean']:.4f} | "
          f"{'-' if ign is None else f'{ign:.4f}'} | {d['unlocked']:.4f} | {wk:.4f} |")
PY
