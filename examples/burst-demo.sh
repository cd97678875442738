#!/usr/bin/env bash
# skyctl's main job on the embedded sandbox federation, step by step:
#   home (OpenStack, local, 8 instances), cc (OpenNebula, remote, cost 1), sara (OpenStack, remote, cost 2).
# 1. start the sandbox; 2. fill part of home; 3. plan and launch a group bigger than what is
# left at home: it overflows to the cheapest remote site, contextualised (cloud-init on
# OpenStack, CONTEXT on OpenNebula) with your SSH key; 4. free home and run one bursting tick:
# burst nodes move home, make-before-break. The sandbox keeps running afterwards: try
# `skyctl ps`, `skyctl exec demo -- hostname`, and `skyctl sandbox down` when done.
set -euo pipefail
say() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; "$@"; }

say skyctl sandbox up
# Start from a clean sky when the demo runs again.
skyctl delete demo pinned --yes >/dev/null 2>&1 || true

say skyctl sites
say skyctl launch pinned --count 5 --site home --image alma9 --size small
say skyctl plan demo --count 6 --image alma9 --size small
say skyctl launch demo --count 6 --image alma9 --size small --context base --wait
say skyctl ps
say skyctl burst status
say skyctl delete pinned --yes
say skyctl burst run
say skyctl ps demo
echo "
The sandbox is still running: try 'skyctl ps', 'skyctl exec demo -- hostname' or
'skyctl context render base --for opennebula'; stop it with 'skyctl sandbox down'." >&2
