#!/bin/sh
# Copy the ECharts that package-lock.json pins into bot/static/vendor/echarts/, with its licences.
# To move to another version: npm install --save-exact echarts@X.Y.Z && sh bot/static/vendor/update-echarts.sh
set -eu
cd "$(dirname "$0")/../../.."
npm ci --no-audit --no-fund
out=bot/static/vendor/echarts
cp node_modules/echarts/dist/echarts.min.js node_modules/echarts/LICENSE node_modules/echarts/NOTICE "$out/"
cp node_modules/echarts/licenses/LICENSE-d3 "$out/LICENSE-d3"
cp node_modules/zrender/LICENSE "$out/LICENSE-zrender"
cp node_modules/tslib/LICENSE.txt "$out/LICENSE-tslib"
echo "bot/static/vendor/echarts: echarts $(node -p 'require("./node_modules/echarts/package.json").version')"
