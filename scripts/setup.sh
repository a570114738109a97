#!/usr/bin/env bash
# Installs what mailscan needs from Debian's packages, only what is missing (safe to run twice).
set -euo pipefail
pkgs=(cmake g++ ninja-build pkg-config openssl
      libcaf-dev librocksdb-dev libboost-dev libssl-dev libfmt-dev catch2
      libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libre2-dev libspdlog-dev libhowardhinnant-date-dev
      dovecot-imapd dovecot-pop3d clang libclang-rt-14-dev ccache chromium zlib1g-dev postfix
      libgoogle-perftools-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  # Keep the system-wide dovecot and postfix from starting: tests run private instances on loopback.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d; policy_created=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ $policy_created -eq 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
fi
