#!/usr/bin/env bash
# Fills npm's cache with everything an install of the packed ublk-ts needs (its dependencies,
# TypeScript and Node's types for the example), so that test/integration/package.test.ts can
# install the package in the VM, which has no network: `npm install --offline`. Run by setup.sh
# after the build (npm pack needs dist/); idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" >/dev/null
cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts ./ublk-ts-*.tgz typescript@~5.9.3 @types/node@^20.19.0 >/dev/null
echo "warm-package-cache: npm's cache holds what an offline install of ublk-ts needs" >&2
