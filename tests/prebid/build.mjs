// Bundles entry.js (Prebid.js core + prebidServerBidAdapter, both from the prebid.js npm
// package) into one browser script: `node build.mjs [outfile]` (default dist/prebid.js).
import { build } from 'esbuild';

await build({
  entryPoints: ['entry.js'],
  bundle: true,
  format: 'iife',
  target: 'es2019',
  outfile: process.argv[2] || 'dist/prebid.js',
  logLevel: 'warning',
});
