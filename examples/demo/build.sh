#!/usr/bin/env bash
# Kept for old instructions: every example component is built by
# examples/build.sh now (into examples/build/).
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build.sh" "$@"
