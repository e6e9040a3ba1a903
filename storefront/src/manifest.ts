// The persisted query manifest of the production build, loaded (as a chunk of its own)
// only by the production build: `npm run manifest` writes it, `npm run build` runs that
// first. The dev server never loads this module, so it runs without a manifest.
export { default } from "../persisted-query-manifest.json";
