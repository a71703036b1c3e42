#!/usr/bin/env bash
# Checks the AsyncAPI document: the one the code generates (order-api
# asyncapi) must equal docs/asyncapi.json, and it must pass the AsyncAPI
# project's parser and the example check of scripts/check_asyncapi.mjs.
# Installs the parser from npm once (into .run/asyncapi-tools).
# With --write, rewrites docs/asyncapi.json from the code first.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

tools="$ROOT/.run/asyncapi-tools"
if [ ! -f "$tools/node_modules/@asyncapi/parser/package.json" ] || [ ! -f "$tools/node_modules/ajv-formats/package.json" ]; then
    log "Installing @asyncapi/parser from npm (once, into $tools)"
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-audit --no-fund --loglevel=error \
        @asyncapi/parser@3.6.6 ajv@8.20.0 ajv-formats@3.0.1 >/dev/null
fi

generated="$ROOT/.run/asyncapi.generated.json"
cargo run --quiet --locked -p order-api -- asyncapi > "$generated"
if [ "${1:-}" = "--write" ]; then
    cp "$generated" "$ROOT/docs/asyncapi.json"
fi
if ! diff -q "$ROOT/docs/asyncapi.json" "$generated" >/dev/null; then
    echo "docs/asyncapi.json differs from what the code generates; run ./scripts/check-asyncapi.sh --write" >&2
    diff -u "$ROOT/docs/asyncapi.json" "$generated" | head -40 >&2
    exit 1
fi
cp "$ROOT/scripts/check_asyncapi.mjs" "$tools/check_asyncapi.mjs"
node "$tools/check_asyncapi.mjs" "$generated"
