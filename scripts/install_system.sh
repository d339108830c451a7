#!/usr/bin/env bash
# Debian packages for the DICOMweb/OHIF path: Orthanc with its DICOMweb plugin, chromium for the browser
# tests, HAProxy in front of several replicas (scripts/start_balancer.sh),
# tests, npm to fetch the viewer (when no npm is on the PATH). Installs only what is missing; uses sudo when not
# root. Skip with MEDICOSAM_SKIP_SYSTEM_PACKAGES=1.
set -euo pipefail
[ "${MEDICOSAM_SKIP_SYSTEM_PACKAGES:-0}" = 1 ] && exit 0
packages=(orthanc orthanc-dicomweb chromium haproxy)
command -v npm >/dev/null || packages+=(npm)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "install_system.sh: no apt-get; install ${missing[*]} by hand" >&2; exit 1; }
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
