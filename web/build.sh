#!/usr/bin/env bash
# Install the pinned browser dependencies (package-lock.json) and copy them into the served
# static files. Nothing is fetched at run time and no third-party code is committed:
# src/townhall/web/static/vendor/ is git-ignored and rebuilt by this script (`make` calls it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vendor="$here/../src/townhall/web/static/vendor"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
mkdir -p "$vendor"
install -m 0644 node_modules/hls.js/dist/hls.min.mjs "$vendor/hls.min.mjs"
install -m 0644 node_modules/hls.js/LICENSE "$vendor/hls.js.LICENSE"
echo "vendored hls.js $(node -p 'require("./node_modules/hls.js/package.json").version') into $vendor"
