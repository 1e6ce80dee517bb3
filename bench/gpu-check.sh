#!/usr/bin/env bash
# Issue 22's GPU bars in one run of at most 8 minutes on an NVIDIA H200 (or any GPU machine):
#   - the kernel bench at its GPU-sized shapes (matmul 1024^3-4096^3, conv 3x3 320->320 on 64x64
#     batch 2, group norm 2x320x64x64, and whatever attention shapes bench/kernels.ts has), each beside
#     tfjs-webgpu on the same adapter, outputs cross-checked before timing, % of the measured FMA peak,
#     and the kernel variant the autotuner chose (measured afresh: --retune);
#   - a training step (U-Net-like stack at 32x32, 64 channels, batch 16) beside tfjs;
#   - DDIM-50 sampling of the shipped models at batch 16 and 128 (GPU busy share by timestamp queries);
#   - every matmul tiling side by side, 4096^3 included.
# Then a summary of the bars: matmul 4096^3 >= 35% of peak and >= 2x tfjs; conv 320->320 >= 25% and
# >= 2x; attention L = 4096 forward >= 10% and >= 5x (once it is in the bench); letters DDIM step at
# batch 16 with the GPU busy >= 95% of the wall time.
#
# Two steps. Here, with the project's node_modules:   bash bench/gpu-check.sh --prepare
#   (bundles the benches into .cache/gpu-kit/, ~40 MiB: bench/gpu-kit.mjs says what is in it)
# On the GPU machine, from the repository root:         bash bench/gpu-check.sh
#   with the device tool: run(command: "bash bench/gpu-check.sh", carry: [".cache/gpu-kit"], timeout_s: 540)
# Writes gpu-check.log, gpu-check.json, matmul-variants.json and autotune.json to $OUT when set (the
# device tool brings those back), else to bench/h200/. Commit them under bench/h200/ and render the
# table: node scripts/run.mjs bench/table.ts bench/h200/gpu-check.json bench/h200/matmul-variants.json "MACHINE" --out bench/h200/README.md
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  exec node bench/gpu-kit.mjs
fi

KIT=.cache/gpu-kit
DEST=${OUT:-bench/h200}
mkdir -p "$DEST"
LOG=$DEST/gpu-check.log
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }
[ -f "$KIT/kernels.mjs" ] || { say "gpu-check: $KIT is missing: run 'bash bench/gpu-check.sh --prepare' where node_modules is, and carry .cache/gpu-kit"; exit 2; }

# Node: the machine's if it is 20 or newer, else the kit's.
NODE=$(command -v node || true)
if [ -z "$NODE" ] || [ "$("$NODE" -e 'console.log(+process.versions.node.split(".")[0] >= 20)')" != true ]; then
  NODE=/tmp/wgd-node/node
  mkdir -p /tmp/wgd-node && xz -dc "$KIT/node.xz" >"$NODE" && chmod +x "$NODE"
fi
# Dawn, and a Vulkan loader if the machine has none; NVIDIA's Vulkan driver where the loader does not find it.
DAWN=$KIT/node_modules/webgpu/dist/linux-x64/dawn.node
[ -f "$DAWN" ] || xz -dc "$DAWN.xz" >"$DAWN"
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then export LD_LIBRARY_PATH="$PWD/$KIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$ICD" ] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then export VK_DRIVER_FILES=$ICD; fi

say "gpu-check: $(date -u +%FT%TZ), kit: $(cat "$KIT/VERSION"), node $("$NODE" --version), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"

run() { # seconds, then the command; its output goes to the log as it comes
  local limit=$1; shift
  say "\$ $*"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || say "gpu-check: exit $rc (124: stopped at ${limit} s)"
}

T0=$(date +%s)
run 330 "$NODE" "$KIT/kernels.mjs" --json "$DEST/gpu-check.json" --autotune-cache "$DEST/autotune.json" --retune --reps 5 \
  --batch 16 --size 32 --channels 64 --steps 10 --rounds 3 --sample-batches 16,128 --sample-runs 3
run 110 "$NODE" "$KIT/matmul-variants.mjs" --large --json "$DEST/matmul-variants.json" --autotune-cache "$DEST/autotune.json"
say "gpu-check: $(( $(date +%s) - T0 )) s"

# The bars, read from the JSON.
[ -f "$DEST/gpu-check.json" ] && "$NODE" -e '
const b = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const pct = (r) => (100 * r.ours.gflops) / b.peakGflops;
const line = (name, r, minPct, minX) => {
  if (!r) return console.log(`${name}: not in this bench`);
  const x = r.tfjs ? r.tfjs.ms / r.ours.ms : null;
  const ok = pct(r) >= minPct && x !== null && x >= minX;
  console.log(`${name}: ${pct(r).toFixed(1)}% of peak (bar ${minPct}%), ${x === null ? "no tfjs" : x.toFixed(2) + "x tfjs"} (bar ${minX}x) [${r.variant ?? "?"}]: ${ok ? "MET" : "not met"}`);
};
console.log(`peak ${b.peakGflops.toFixed(0)} GFLOP/s; tuned: ${Object.entries(b.tuning ?? {}).map(([k, r]) => k + " " + r.choice).join(", ")}`);
line("matmul 4096^3", b.results.find((r) => r.kernel === "matmul" && r.shape.startsWith("4096x4096")), 35, 2);
line("conv 3x3 320->320 64x64", b.results.find((r) => r.kernel === "conv2d" && r.shape.includes("320->320")), 25, 2);
line("attention L=4096 forward", b.results.find((r) => /attention/.test(r.kernel) && /L(q)?=4096/.test(r.shape) && !/backward/.test(r.kernel)), 10, 5);
const s = (b.models?.sampling ?? []).find((s) => s.model.includes("letters") && s.batch === 16);
console.log(s ? `letters DDIM step, batch 16: GPU busy ${s.gpuBusyShare == null ? "?" : (100 * s.gpuBusyShare).toFixed(1) + "%"} of the wall time (bar 95%), ${s.dispatchesPerStep} dispatches/step: ${s.gpuBusyShare >= 0.95 ? "MET" : "not met"}` : "letters DDIM step: not measured");
' "$DEST/gpu-check.json" 2>&1 | tee -a "$LOG"
ls -la "$DEST" | tee -a "$LOG"
