// Puts the persisted query manifest next to the build (dist/persisted-query-manifest.json),
// to deploy with the service: PERSISTED_QUERIES_MANIFEST=<path>, PERSISTED_QUERIES=require.
import { copyFileSync } from "node:fs";

copyFileSync(new URL("../persisted-query-manifest.json", import.meta.url), new URL("../dist/persisted-query-manifest.json", import.meta.url));
console.log("dist/persisted-query-manifest.json written");
