#!/usr/bin/env bash
# Checks the parts of ./scripts/run.sh that a newcomer trips over, without a
# release build: the broker it starts is the process in its pid file (so
# `run.sh stop` stops it), a caller that pipes the script's output is not
# held open by the broker, `status` tells the truth, and the token command
# it prints works in a fresh shell. Uses its own run directory and port.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

ensure_tansu
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'RUN_DIR=$dir ./scripts/run.sh stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
fail() { printf 'check-run: %s\n' "$*" >&2; exit 1; }

# The broker started through a pipe: the pipe must close when the script ends.
started=$(date +%s)
RUN_DIR=$dir KAFKA_PORT=$port timeout 60 bash -c \
  'source scripts/lib.sh; start_tansu 2>&1 | cat >/dev/null' ||
  fail "starting the broker through a pipe did not return within 60 s"
[ $(( $(date +%s) - started )) -lt 45 ] || fail "the pipe stayed open after the broker started"
pid=$(cat "$dir/tansu.pid")
[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tansu ] ||
  fail "tansu.pid holds $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo gone)), not the broker"

RUN_DIR=$dir ./scripts/run.sh status | grep -q '^tansu: running' || fail "status does not show the broker"
RUN_DIR=$dir ./scripts/run.sh stop >/dev/null 2>&1
! kill -0 "$pid" 2>/dev/null || fail "run.sh stop left the broker (pid $pid) running"
! port_open "$port" || fail "run.sh stop left port $port open"
RUN_DIR=$dir ./scripts/run.sh status | grep -q '^tansu: stopped' || fail "status after stop"

# The printed token command, in a fresh shell without the scripts' variables.
if [ -x target/release/order-api ]; then
  env -i PATH="$PATH" HOME="$HOME" ./scripts/run.sh token alice | grep -Eq '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' ||
    fail "./scripts/run.sh token alice does not print a token in a fresh shell"
fi
echo "check-run: run.sh start/stop/status of the broker and the token command work"
