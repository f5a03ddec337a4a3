#!/usr/bin/env bash
# Checks what 'make install' lays out, in temporary directories: every file
# and its mode, manuals and completions equal to what the built programs
# generate, the systemd units pointing at PREFIX/bin and keeping their
# sandbox, bash completion working against the installed programs. The
# units are also checked by 'systemd-analyze verify' when it is installed.
# 'make test' runs it after 'make build'.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
programs=(airlock airlock-fetch airlock-server airlock-node)
units=(airlock-server.service airlock-node.service)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "test-install: $*" >&2
  exit 1
}

# mode FILE PERM: FILE exists with permission bits PERM.
mode() {
  [[ -f $1 ]] || fail "$1 not installed"
  local got
  got=$(stat -c %a "$1")
  [[ $got == "$2" ]] || fail "$1 has mode $got, want $2"
}

# check DESTDIR PREFIX: what 'make install DESTDIR=DESTDIR PREFIX=PREFIX'
# must lay out.
check() {
  local root=$1 prefix=$2 p u d dir=$1$2
  local want=()
  for p in "${programs[@]}"; do
    want+=("$dir/bin/$p" "$dir/share/man/man1/$p.1" "$dir/share/bash-completion/completions/$p"
      "$dir/share/zsh/site-functions/_$p")
  done
  for u in "${units[@]}"; do want+=("$dir/lib/systemd/system/$u"); done
  diff <(printf '%s\n' "${want[@]}" | sort) <(find "${root:-$prefix}" -type f | sort) >&2 ||
    fail "make install DESTDIR=$root PREFIX=$prefix: unexpected files (< missing, > extra)"

  for p in "${programs[@]}"; do
    mode "$dir/bin/$p" 755
    cmp -s "bin/$p" "$dir/bin/$p" || fail "$dir/bin/$p is not bin/$p"
    mode "$dir/share/man/man1/$p.1" 644
    cmp -s <("bin/$p" __docs man) "$dir/share/man/man1/$p.1" || fail "$dir/share/man/man1/$p.1 is not '$p __docs man'"
    grep -qx "\.TH \"\?$p\"\? 1" "$dir/share/man/man1/$p.1" || fail "$p.1 has no '.TH $p 1' line"
    mode "$dir/share/bash-completion/completions/$p" 644
    grep -q -- "-F _${p//-/_}_complete $p\$" "$dir/share/bash-completion/completions/$p" ||
      fail "bash completion of $p does not complete $p"
    bash -n "$dir/share/bash-completion/completions/$p" || fail "bash completion of $p: syntax error"
    mode "$dir/share/zsh/site-functions/_$p" 644
    [[ $(head -n1 "$dir/share/zsh/site-functions/_$p") == "#compdef $p" ]] ||
      fail "zsh completion of $p does not start with '#compdef $p'"
    if command -v zsh >/dev/null; then
      zsh -n "$dir/share/zsh/site-functions/_$p" || fail "zsh completion of $p: syntax error"
    fi
  done

  for u in "${units[@]}"; do
    local f=$dir/lib/systemd/system/$u name=${u%.service}
    mode "$f" 644
    grep -qx "ExecStart=$prefix/bin/$name serve --dir /var/lib/$name .*" "$f" ||
      fail "$f: ExecStart does not run $prefix/bin/$name serve --dir /var/lib/$name"
    for d in "StateDirectory=$name" ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
      NoNewPrivileges=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" CapabilityBoundingSet= \
      SystemCallFilter=@system-service RestrictNamespaces=yes LockPersonality=yes MemoryDenyWriteExecute=yes \
      KillSignal=SIGTERM Restart=on-failure 'TimeoutStopSec=[0-9]+s' 'UMask=00[27]7' \
      '\[Install\]' WantedBy=multi-user.target; do
      grep -Eqx "$d" "$f" || fail "$f lacks the line $d"
    done
  done
  grep -qx DynamicUser=yes "$dir/lib/systemd/system/airlock-server.service" || fail "airlock-server.service: no DynamicUser=yes"
  grep -qx User=airlock-node "$dir/lib/systemd/system/airlock-node.service" || fail "airlock-node.service: no User=airlock-node"
}

$MAKE --no-print-directory install PREFIX="$tmp/usr" >/dev/null
check "" "$tmp/usr"
$MAKE --no-print-directory install DESTDIR="$tmp/stage" PREFIX=/opt/airlock >/dev/null
check "$tmp/stage" /opt/airlock

# The installed bash completion, sourced as bash-completion would, asks the
# installed program for its commands and flags.
for t in "airlock-server pub|publish" "airlock-node serve --log-f|--log-format" "airlock-fetch ke|keygen"; do
  line=${t%|*} want=${t#*|}
  read -ra words <<<"$line"
  got=$(PATH="$tmp/usr/bin:$PATH" bash --norc --noprofile -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    "_${1//-/_}_complete"
    printf "%s\n" "${COMPREPLY[@]}"' bash "$tmp/usr/share/bash-completion/completions/${words[0]}" "${words[@]}")
  grep -qx -- "$want" <<<"$got" || fail "bash completion of '$line' gave '$got', want $want"
done

# systemd's own parser, when it is installed: unknown keys and bad values
# are only warnings, so any output fails. The units name $tmp/usr/bin,
# where the programs are.
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify --man=no "$tmp/usr/lib/systemd/system/"*.service 2>&1) ||
    fail "systemd-analyze verify: $out"
  [[ -z $out ]] || fail "systemd-analyze verify warns: $out"
else
  echo "test-install: systemd-analyze not installed (apt-get install systemd): units checked by grep only" >&2
fi
echo "test-install: ok"
