#!/usr/bin/env bash
# Install the system packages the test suite needs (Debian/Ubuntu, run as root).
#   slurmctld slurmd slurm-client munge : tests/test_cluster.py starts a real one-node SLURM
#   chromium                            : the report tests render HTML to PDF/PNG
# Idempotent: does nothing when every package is already installed; otherwise runs
# `apt-get update` once and installs the missing ones without recommended extras.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge chromium)

if [[ $(id -u) -ne 0 ]]; then
    echo "install-system.sh: must run as root (apt-get install); current uid is $(id -u)" >&2
    exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-system.sh: all of ${packages[*]} already installed"
    exit 0
fi

echo "install-system.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
