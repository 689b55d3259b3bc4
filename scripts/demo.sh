#!/usr/bin/env bash
# make demo: run scripts/demo.py with Debian's python (grpcio, paho-mqtt).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/demo.py" "$@"
