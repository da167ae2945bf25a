#!/usr/bin/env bash
# Builds the DocC catalog against Echo's symbol graph; fails on any DocC warning (an unresolved
# ``Symbol`` link, a broken article reference).
set -euo pipefail
cd "$(dirname "$0")/.."
graphs="$(mktemp -d)"
echo_graphs="$(mktemp -d)"
output="$(mktemp -d)"
trap 'rm -rf "$graphs" "$echo_graphs" "$output"' EXIT
swift build --target Echo -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$graphs"
cp "$graphs"/Echo.symbols.json "$graphs"/Echo@*.symbols.json "$echo_graphs"/ 2>/dev/null || cp "$graphs"/Echo.symbols.json "$echo_graphs"/
docc convert Sources/Echo/Echo.docc --additional-symbol-graph-dir "$echo_graphs" --output-dir "$output" \
    --fallback-display-name Echo --fallback-bundle-identifier echo --warnings-as-errors
echo "DocC catalog: no warnings"
