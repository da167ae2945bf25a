#!/usr/bin/env bash
# Fails when swift-format would change a file (when swift-format is available).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! swift format --version >/dev/null 2>&1; then
    echo "swift-format not available; skipping"
    exit 0
fi
swift format lint --strict --recursive Sources Tests Benchmarks Migrations Package.swift
