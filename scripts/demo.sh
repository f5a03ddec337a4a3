#!/usr/bin/env bash
# make demo: the whole airlock mission on loopback, from nothing.
# The vendor's update server, the internet host, the restricted admin host
# and three node agents all run here on loopback. Everything lives in a
# temporary directory that is removed on exit (set KEEP=1 to keep it); every
# process started here is stopped on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/bin
W=$(mktemp -d "${TMPDIR:-/tmp}/airlock-demo.XXXXXX")
pids=()
cleanup() {
  trap - INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # A process started as the signal came may not be in pids yet: every
  # process of the demo names the work directory on its command line.
  pkill -f -- "$W" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "files kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
[[ -t 1 ]] || { bold= dim= off=; }
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
show() { # print a command as one would type it: single-quote what needs it
  local c= a re="[^A-Za-z0-9_./:=@%+,-]"
  for a in "$@"; do a=${a#"$B/"}; [[ $a =~ $re ]] && a="'${a//\'/\'\\\'\'}'"; c+="$a "; done
  printf '%s$ %s%s\n' "$dim" "${c% }" "$off"; }
run()  { show "$@"; "$@"; }
# refused EXPECTED CMD...: runs CMD, which must fail with exit EXPECTED.
refused() {
  local want=$1; shift
  show "$@"
  set +e; "$@"; local rc=$?; set -e
  [[ $rc == "$want" ]] || { echo "demo: expected exit $want, got $rc" >&2; exit 1; }
  echo "  -> refused with exit $rc, as it must be"
}
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { # wait up to 10 s for something to listen on 127.0.0.1:$1
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "demo: nothing listens on port $1" >&2; exit 1; }

V=$W/vendor R=$W/repo F=$W/internet-host M=$W/usb-stick
mkdir -p "$F" "$M" "$W/pkgs"
export AIRLOCK_REPO=$R

step "The vendor publishes four packages (base 3.4.0, product 22.1.0 and 23.1.0, license 1.1.0)"
mkpkg() { local d=$W/src/$1-$2; mkdir -p "$d"; echo "$1 $2" >"$d/VERSION"; head -c $((2<<20)) /dev/urandom >"$d/payload.bin"
  tar -C "$d" --zstd -cf "$W/pkgs/$1-$2.tar.zst" .; }
mkpkg base 3.4.0; mkpkg product 22.1.0; mkpkg product 23.1.0; mkpkg license 1.1.0
run "$B/airlock-server" init --dir "$V" --name "Acme Vendor"
run "$B/airlock-server" publish --dir "$V" --name base --kind base --version 3.4.0 --requires 'base >= 3.3.2' --reboot "$W/pkgs/base-3.4.0.tar.zst"
run "$B/airlock-server" publish --dir "$V" --name product --kind product --version 22.1.0 --requires 'base >= 3.4.0' --requires 'product >= 21.1.0' --settle 24h "$W/pkgs/product-22.1.0.tar.zst"
run "$B/airlock-server" publish --dir "$V" --name product --kind product --version 23.1.0 --requires 'product >= 22.1.0' --settle 24h "$W/pkgs/product-23.1.0.tar.zst"
run "$B/airlock-server" publish --dir "$V" --name license --kind license --version 1.1.0 --requires 'product >= 23.1.0' "$W/pkgs/license-1.1.0.tar.zst"

step "The restricted side creates its repository; the vendor registers the site's key"
run "$B/airlock" init --site plant-3
run "$B/airlock-server" site add --dir "$V" --name plant-3 --key "$R/site.pub.asc"
run "$B/airlock" trust add --role vendor "$V/vendor.pub.asc"
SP=$(freeport)
"$B/airlock-server" serve --dir "$V" --listen 127.0.0.1:"$SP" >"$W/server.log" 2>&1 & pids+=($!)
waitport "$SP"
echo "update server listening on 127.0.0.1:$SP"

step "Three appliances run the node agent: a failover pair (n1 primary, n2 backup) and a traffic node n3"
declare -A NP SP_SVC
for spec in n1:primary n2:backup n3:traffic; do
  n=${spec%%:*} role=${spec##*:} D=$W/node-$n
  "$B/airlock-node" init --dir "$D" --name "$n" --role "$role" --region eu --installed base=3.3.2 --installed product=21.1.0 >"$W/$n.init"
  "$B/airlock-node" trust --dir "$D" "$V/vendor.pub.asc" >/dev/null
  NP[$n]=$(freeport); SP_SVC[$n]=$(freeport)
  "$B/airlock-node" serve --dir "$D" --listen 127.0.0.1:"${NP[$n]}" --service-listen 127.0.0.1:"${SP_SVC[$n]}" >"$W/$n.log" 2>&1 & pids+=($!)
done
for n in n1 n2 n3; do
  waitport "${NP[$n]}"
  fp=$(grep -Eo '([0-9A-F]{2}:){31}[0-9A-F]{2}' "$W/$n.init" | head -1)
  run "$B/airlock" node add "$n" --url "https://127.0.0.1:${NP[$n]}" --token-file "$W/node-$n/token" --fingerprint "$fp"
done
run "$B/airlock" status

step "The admin writes a download key carrying the cluster's inventory and carries it out"
run "$B/airlock" key new --out "$M/download.key"

step "On the internet host, the courier exchanges the key and writes a signed bundle"
run "$B/airlock-fetch" keygen --name "Jane Courier" --out "$F/courier"
run "$B/airlock-fetch" exchange --server "http://127.0.0.1:$SP" --vendor-key "$V/vendor.pub.asc" --key "$M/download.key"
run "$B/airlock-fetch" bundle --server "http://127.0.0.1:$SP" --vendor-key "$V/vendor.pub.asc" --key "$M/download.key" \
    --sign-key "$F/courier.key" --out "$M/update.airlock" --no-progress
run tar --zstd -tvf "$M/update.airlock"

step "Back inside: trust the courier, verify the bundle, refuse a tampered copy, import, refuse a replay"
run "$B/airlock" trust add --role courier "$F/courier.pub.asc"
run "$B/airlock" verify "$M/update.airlock"
cp "$M/update.airlock" "$W/tampered.airlock"
sz=$(stat -c %s "$W/tampered.airlock")
printf '\xff' | dd of="$W/tampered.airlock" bs=1 seek=$((sz / 2)) conv=notrunc status=none
refused 3 "$B/airlock" import "$W/tampered.airlock"
run "$B/airlock" import "$M/update.airlock" --no-progress
refused 4 "$B/airlock" import "$M/update.airlock"
echo "A second download key is offered nothing: each package is delivered once."
run "$B/airlock" key new --out "$M/download2.key"
run "$B/airlock-fetch" exchange --server "http://127.0.0.1:$SP" --vendor-key "$V/vendor.pub.asc" --key "$M/download2.key"
run "$B/airlock" list
run "$B/airlock" check
run "$B/airlock" audit --verify

step "A client of the appliance service connects to n3 (it will move away when n3 stops accepting)"
# A client holds a connection to n3 and leaves 3 s after n3 starts
# refusing new connections (as clients move to another node).
python3 - "${SP_SVC[n3]}" "$W/client.ready" <<'PY' & pids+=($!)
import socket, sys, time
port = int(sys.argv[1])
c = socket.create_connection(("127.0.0.1", port)); print("  client: connected to n3:", c.recv(100).decode().strip(), flush=True)
open(sys.argv[2], "w").close()
while True:
    time.sleep(0.5)
    try:
        p = socket.create_connection(("127.0.0.1", port)); g = p.recv(100).decode(); p.close()
    except OSError:
        g = "closed"
    if "ok" not in g:
        print("  client: n3 refuses new connections (" + g.strip() + "); leaving in 3 s", flush=True)
        time.sleep(3); c.close(); print("  client: disconnected from n3", flush=True); break
PY
for _ in $(seq 100); do [[ -e $W/client.ready ]] && break; sleep 0.1; done

step "Plan the failover-async rollout: backup first, promote it, then the old primary, then the traffic node"
run "$B/airlock" plan --strategy failover-async

step "Distribute to the cluster: each package read once, uploaded to every node at once"
run "$B/airlock" distribute --no-progress

step "Install: n2 first, promote it, then n1; then n3 is drained and airlock waits for its client to leave"
run "$B/airlock" install --strategy failover-async --skip-settle --yes --no-progress
run "$B/airlock" status
run "$B/airlock" audit --verify

step "Done"
echo "vendor store: $V"
echo "repository:   $R"
echo "media:        $M"
echo "node agents:  $W/node-n1 $W/node-n2 $W/node-n3 (releases/, state.json)"
echo "(run with KEEP=1 to keep these files)"
