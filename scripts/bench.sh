#!/usr/bin/env bash
# make bench: airlock's bundle pipeline side by side with the shell pipeline
# an administrator would otherwise run, on the same data in the same run,
# then the Go benchmarks. Prints Markdown tables (BENCHMARKS.md-ready).
#
#   BENCH_MB=256 ./scripts/bench.sh     # payload size (default 256 MiB)
#   BENCH_DIR=/var/tmp ./scripts/bench.sh  # where the data goes (default: a temp dir)
#   GO_BENCH=0 ./scripts/bench.sh           # skip the Go benchmarks
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
tool = json.loads(out[-1]) if out and out[-1].startswith("{") else None
# benchtool times only its operation (not key generation, nor the vendor's
# hashing of the packages); everything else is timed from the outside.
print(json.dumps({"seconds": tool["seconds"] if tool else el,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
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


# --- vendor side: download throughput and end-to-end fetch ---------------
# The peer web server is stock nginx serving the same files (installed from
# Debian's packages when missing and we are root; skipped otherwise).
if ! command -v nginx >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "installing nginx for the download comparison..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null 2>&1 || true
fi
make -s build >&2
B=$PWD/bin
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$W"' EXIT
V=$W/vendor R=$W/repo
"$B/airlock-server" init --dir "$V" --name "Bench Vendor" >/dev/null
i=0; inv='{"nodes":[{"name":"n1","installed":{}}]}'
for f in "$W"/data/*; do i=$((i+1))
  "$B/airlock-server" publish --dir "$V" --name "pkg$i" --kind base --version 1.0.0 "$f" >/dev/null 2>&1; done
AIRLOCK_REPO=$R "$B/airlock" init --site bench >/dev/null
"$B/airlock-server" site add --dir "$V" --name bench --key "$R/site.pub.asc" >/dev/null
echo "$inv" >"$W/inv.json"
AIRLOCK_REPO=$R "$B/airlock" key new --out "$W/download.key" --inventory "$W/inv.json" >/dev/null
"$B/airlock-fetch" keygen --name "Bench Courier" --out "$W/courier" >/dev/null
SP=$(freeport); "$B/airlock-server" serve --dir "$V" --listen 127.0.0.1:$SP >"$W/server.log" 2>&1 & pids+=($!)
waitport "$SP"
"$B/airlock-fetch" exchange --server http://127.0.0.1:$SP --vendor-key "$V/vendor.pub.asc" --key "$W/download.key" --json >"$W/ex.json"
first=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["downloads"][0]["url"])' "$W/ex.json")
big=$(ls "$W"/data/* | head -1)
dl_ours=$(measure "curl -sf -o /dev/null '$first'")
dl_peer=null
if command -v nginx >/dev/null; then
  NP=$(freeport)
  cat >"$W/nginx.conf" <<NGX
daemon off; worker_processes 1; pid $W/nginx.pid; error_log $W/nginx.err;
events {}
http { access_log off; sendfile on; client_body_temp_path $W; proxy_temp_path $W; fastcgi_temp_path $W; uwsgi_temp_path $W; scgi_temp_path $W;
  server { listen 127.0.0.1:$NP; root $W/data; } }
NGX
  nginx -c "$W/nginx.conf" -p "$W" & pids+=($!)
  waitport "$NP" && dl_peer=$(measure "curl -sf -o /dev/null http://127.0.0.1:$NP/$(basename "$big")")
fi
fetch_ours=$(measure "'$B/airlock-fetch' bundle --server http://127.0.0.1:$SP --vendor-key '$V/vendor.pub.asc' --key '$W/download.key' --sign-key '$W/courier.key' --out '$W/fetched.airlock' --no-progress >/dev/null 2>&1")
fetch_peer=null
if [[ $dl_peer != null ]]; then
  fetch_peer=$(measure "mkdir -p '$W/dl' && cd '$W/dl' && ls '$W/data' | xargs -P4 -I{} curl -sf -o {} http://127.0.0.1:$NP/{} && tar -cf - . | zstd -3 -T0 -q | tee '$W/peer-fetch.tar.zst' | gpg --batch --yes --detach-sign -o '$W/peer-fetch.sig'")
fi

# --- restricted side: distribute to 3 nodes vs sequential curl -T ----------
# Six node agents: airlock distribute stages every package on three of them,
# curl -T uploads the same files (with the entitlement each needs) to the
# other three, one after the other, as an administrator's script would.
AIRLOCK_REPO=$R "$B/airlock" trust add --role vendor "$V/vendor.pub.asc" >/dev/null
AIRLOCK_REPO=$R "$B/airlock" trust add --role courier "$W/courier.pub.asc" >/dev/null
AIRLOCK_REPO=$R "$B/airlock" import "$W/fetched.airlock" --no-progress >/dev/null 2>&1
tar --zstd -xOf "$W/fetched.airlock" entitlement.asc >"$W/entitlement.asc"
declare -A NPORT
for i in 1 2 3 4 5 6; do
  "$B/airlock-node" init --dir "$W/node$i" --name "b$i" --role traffic --region eu >"$W/node$i.init"
  "$B/airlock-node" trust --dir "$W/node$i" "$V/vendor.pub.asc" >/dev/null
  NPORT[$i]=$(freeport)
  "$B/airlock-node" serve --dir "$W/node$i" --listen 127.0.0.1:${NPORT[$i]} >"$W/node$i.log" 2>&1 & pids+=($!)
done
for i in 1 2 3 4 5 6; do waitport "${NPORT[$i]}"; done
for i in 1 2 3; do
  fp=$(grep -Eo '([0-9A-F]{2}:){31}[0-9A-F]{2}' "$W/node$i.init" | head -1)
  AIRLOCK_REPO=$R "$B/airlock" node add "b$i" --url https://127.0.0.1:${NPORT[$i]} --token-file "$W/node$i/token" --fingerprint "$fp" >/dev/null
done
dist_ours=$(AIRLOCK_REPO=$R measure "'$B/airlock' distribute --no-progress >/dev/null 2>&1")
: >"$W/curl.sh"
for i in 4 5 6; do
  tok=$(cat "$W/node$i/token")
  for f in "$W"/data/*; do
    sha=$(sha256sum "$f" | cut -c1-64)
    echo "curl -sfk -o /dev/null -X PUT -H 'Authorization: Bearer $tok' --data-binary @'$W/entitlement.asc' https://127.0.0.1:${NPORT[$i]}/v1/staged/$sha/entitlement" >>"$W/curl.sh"
    echo "curl -sfk -o /dev/null -T '$f' -H 'Authorization: Bearer $tok' -H 'X-Airlock-Offset: 0' https://127.0.0.1:${NPORT[$i]}/v1/staged/$sha" >>"$W/curl.sh"
  done
done
dist_peer=$(measure "set -e; . '$W/curl.sh'")
python3 - "$bytes" "$ours_w" "$peer_w" "$ours_v" "$peer_v" "$ours_i" "$(stat -c %s "$big")" "$dl_ours" "$dl_peer" "$fetch_ours" "$fetch_peer" "$dist_ours" "$dist_peer" <<'PY'
import json, sys, os, platform
n = int(sys.argv[1]); ow, pw, ov, pv, oi = (json.loads(a) for a in sys.argv[2:7])
one = int(sys.argv[7]); dlo, dlp, fo, fp, do, dp = (json.loads(a) for a in sys.argv[8:14])
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
def row2(name, o, p, peer, size):
    om = size / o["seconds"] / 1e6
    if p is None:
        print(f"| {name} | {om:.0f} | {o['maxrss_kib']/1024:.0f} | - | - | - | {peer} (not installed) |"); return
    pm = size / p["seconds"] / 1e6
    print(f"| {name} | {om:.0f} | {o['maxrss_kib']/1024:.0f} | {pm:.0f} | {p['maxrss_kib']/1024:.0f} | {om/pm:.2f}× | `{peer}` |")
print(f"\n### Vendor side, on loopback\n")
print("| operation | airlock MB/s | airlock peak RSS MiB | peer MB/s | peer peak RSS MiB | ratio | peer |")
print("|---|---:|---:|---:|---:|---:|---|")
row2(f"download one package ({one/2**20:.0f} MiB)", dlo, dlp, "curl from nginx (sendfile)", one)
row2("airlock-fetch bundle, end to end", fo, fp, "curl ×4 from nginx; tar | zstd -3 -T0 | gpg --detach-sign", n)
print(f"\n### Restricted side, on loopback\n")
print("| operation | airlock MB/s | airlock peak RSS MiB | peer MB/s | peer peak RSS MiB | ratio | peer |")
print("|---|---:|---:|---:|---:|---:|---|")
row2("distribute to 3 nodes (bytes sent)", do, dp, "curl -T of each file to each node, one after the other", 3 * n)
print("\nPeak RSS is the largest process of each side: for downloads that is curl, not the server;")
print("for distribute, the airlock process (the node agents are not counted on either side).")
PY

[[ ${GO_BENCH:-1} == 1 ]] || exit 0
echo
echo "### Go benchmarks"
echo
echo '```'
AIRLOCK_BENCH_MB=${GO_BENCH_MB:-64} go test -run=NONE -bench='^Benchmark[^E]' -benchtime=${GO_BENCHTIME:-2x} -benchmem ./... 2>&1 | grep -E '^(Benchmark|FAIL|pkg:)' || true
# Latency percentiles need many exchanges: 50 concurrent clients, 300 keys.
go test -run=NONE -bench=BenchmarkExchange -benchtime=300x ./server 2>&1 | grep -E '^(Benchmark|FAIL|pkg:)' || true
echo '```'
