// Prints the gzipped size (zlib level 9) of the built JavaScript and CSS in dist/ and
// fails when it is over the budget: `node scripts/size.mjs` after `vite build`.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET_KB = 150;
const dist = new URL("../dist/", import.meta.url).pathname;

function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (/\.(m?js|css)$/.test(entry.name)) yield path;
  }
}

let bytes = 0;
for (const file of files(dist)) bytes += gzipSync(readFileSync(file), { level: 9 }).length;
const kb = bytes / 1024;
console.log(`storefront bundle: ${kb.toFixed(1)} KB gzipped (budget ${BUDGET_KB} KB)`);
if (kb > BUDGET_KB) process.exit(1);
