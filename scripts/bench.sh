#!/usr/bin/env bash
# make bench: airlock's bundle pipeline side by side with the shell pipeline
# an administrator would otherwise run, on the same data in the same run,
# then the Go benchmarks. Prints Markdown tables (BENCHMARKS.md-ready).
#
#   BENCH_MB=256 ./scripts/bench.sh     # payload size (default 256 MiB)
#   BENCH_DIR=/var/tmp ./scripts/bench.sh  # where the data goes (default: a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${BENCH_MB:-256}
W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/airlock-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
go build -o "$W/benchtool" ./internal/benchtool

# measure NAME CMD...: runs CMD under python's getrusage to report wall time
# and the peak RSS of the largest process it started (KiB), as JSON.
measure() {
  python3 - "$@" <<'PY'
import json, resource, subprocess, sys, time
t = time.monotonic()
r = subprocess.run(["bash", "-c", sys.argv[1]], stdout=subprocess.PIPE)
el = time.monotonic() - t
if r.returncode != 0:
    sys.exit("command failed: " + sys.argv[1])
out = r.stdout.decode().strip().splitlines()
print(json.dumps({"seconds": el, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "tool": json.loads(out[-1]) if out and out[-1].startswith("{") else None}))
PY
}

echo "generating ${MB} MiB of packages (half random, half compressible text)..." >&2
mkdir -p "$W/data"
n=8; per=$(( MB * 1024 * 1024 / n ))
for i in $(seq 1 $n); do
  if (( i % 2 )); then head -c "$per" /dev/urandom >"$W/data/pkg-$i.bin"
  else (set +o pipefail; seq $((i * 7000000)) 1000000000 | head -c "$per" >"$W/data/pkg-$i.txt"); fi
done
bytes=$(( per * n ))

export GNUPGHOME="$W/gnupg"; mkdir -m 700 "$GNUPGHOME"
gpg --batch --passphrase '' --quick-gen-key 'Bench Courier <bench@example.org>' ed25519 sign never 2>/dev/null

ours_w=$(measure "'$W/benchtool' write -out '$W/ours.airlock' -keys '$W/keys' '$W'/data/*")
peer_w=$(measure "tar -cf - -C '$W/data' . | zstd -3 -T0 -q | tee '$W/peer.tar.zst' | gpg --batch --yes --detach-sign -o '$W/peer.sig'")
ours_v=$(measure "'$W/benchtool' verify -keys '$W/keys' '$W/ours.airlock'")
peer_v=$(measure "gpg --batch --verify '$W/peer.sig' '$W/peer.tar.zst' 2>/dev/null && mkdir -p '$W/x' && zstd -d -q <'$W/peer.tar.zst' | tar -x -C '$W/x' && sha256sum '$W'/x/* >/dev/null && rm -rf '$W/x'")
ours_i=$(measure "'$W/benchtool' import -keys '$W/keys' -blobs '$W/blobs' '$W/ours.airlock'")

python3 - "$bytes" "$ours_w" "$peer_w" "$ours_v" "$peer_v" "$ours_i" <<'PY'
import json, sys, os, platform
n = int(sys.argv[1]); ow, pw, ov, pv, oi = (json.loads(a) for a in sys.argv[2:])
def mbps(r): return n / r["seconds"] / 1e6
def row(name, o, p, peer):
    print(f"| {name} | {mbps(o):.0f} | {o['maxrss_kib']/1024:.0f} | {mbps(p):.0f} | {p['maxrss_kib']/1024:.0f} | {mbps(o)/mbps(p):.2f}× | `{peer}` |")
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"\n### Bundle pipeline, {n/2**20:.0f} MiB of packages (half random, half text) — {os.cpu_count()} cores, {cpu}\n")
print("| operation | airlock MB/s | airlock peak RSS MiB | peer MB/s | peer peak RSS MiB | ratio | peer |")
print("|---|---:|---:|---:|---:|---:|---|")
row("write + sign", ow, pw, "tar | zstd -3 -T0 | gpg --detach-sign")
row("verify", ov, pv, "gpg --verify; zstd -d | tar -x; sha256sum")
row("import (verify into blob store)", oi, pv, "gpg --verify; zstd -d | tar -x; sha256sum")
PY

echo
echo "### Go benchmarks"
echo
echo '```'
AIRLOCK_BENCH_MB=${GO_BENCH_MB:-64} go test -run=NONE -bench=. -benchtime=${GO_BENCHTIME:-2x} -benchmem ./... 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)' || true
echo '```'
