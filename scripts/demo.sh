#!/usr/bin/env bash
# make demo: the whole airlock mission on loopback, from nothing.
# Everything lives in a temporary directory that is removed on exit (set
# KEEP=1 to keep it); every process started here is stopped on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/bin
W=$(mktemp -d "${TMPDIR:-/tmp}/airlock-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "files kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'
[[ -t 1 ]] || { bold= dim= off=; }
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
run()  { printf '%s$ %s%s\n' "$dim" "${*/#$B\//}" "$off"; "$@"; }
# refused EXPECTED CMD...: runs CMD, which must fail with exit EXPECTED.
refused() {
  local want=$1; shift
  printf '%s$ %s%s\n' "$dim" "${*/#$B\//}" "$off"
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

step "The admin writes a download key for the cluster's inventory and carries it out"
cat >"$W/inventory.json" <<'INV'
{"nodes":[{"name":"n1","installed":{"base":"3.3.2","product":"21.1.0"}},
          {"name":"n2","installed":{"base":"3.3.2","product":"21.1.0"}},
          {"name":"n3","installed":{"base":"3.3.2","product":"21.1.0"}}]}
INV
run "$B/airlock" key new --out "$M/download.key" --inventory "$W/inventory.json"

step "On the internet host, the courier exchanges the key and writes a signed bundle"
run "$B/airlock-fetch" keygen --name "Jane Courier" --out "$F/courier"
run "$B/airlock-fetch" exchange --server "http://127.0.0.1:$SP" --vendor-key "$V/vendor.pub.asc" --key "$M/download.key"
run "$B/airlock-fetch" bundle --server "http://127.0.0.1:$SP" --vendor-key "$V/vendor.pub.asc" --key "$M/download.key" \
    --sign-key "$F/courier.key" --out "$M/update.airlock" --no-progress
run tar --zstd -tvf "$M/update.airlock"
echo "(the same key again is granted nothing new: each package is delivered once)"

step "Back inside: trust the courier, verify the bundle, refuse a tampered copy, import, refuse a replay"
run "$B/airlock" trust add --role courier "$F/courier.pub.asc"
run "$B/airlock" verify "$M/update.airlock"
cp "$M/update.airlock" "$W/tampered.airlock"
sz=$(stat -c %s "$W/tampered.airlock")
printf '\xff' | dd of="$W/tampered.airlock" bs=1 seek=$((sz / 2)) conv=notrunc status=none
refused 3 "$B/airlock" import "$W/tampered.airlock"
run "$B/airlock" import "$M/update.airlock" --no-progress
refused 4 "$B/airlock" import "$M/update.airlock"
run "$B/airlock" list
run "$B/airlock" check
run "$B/airlock" audit --verify

step "Done"
echo "vendor store: $V   repository: $R   media: $M"
echo "(run with KEEP=1 to keep these files)"
