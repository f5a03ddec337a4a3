#!/usr/bin/env bash
# Installs the interoperability peers the tests use (gpg, zstd, GNU tar,
# sha256sum) when they are missing and we may install them (root, apt-get).
set -euo pipefail
missing=()
command -v gpg >/dev/null || missing+=(gnupg)
command -v zstd >/dev/null || missing+=(zstd)
command -v tar >/dev/null || missing+=(tar)
command -v sha256sum >/dev/null || missing+=(coreutils)
command -v python3 >/dev/null || missing+=(python3)
[[ ${#missing[@]} == 0 ]] && exit 0
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing tools: ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
