// Builds the console into dist/ (committed and embedded in the binary):
// one minified bundle of console/main.ts and its imports, the stylesheet
// and the page. The output depends only on the inputs, so `make
// check-generate` can tell when dist/ is stale.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const here = new URL(".", import.meta.url).pathname;
const dist = here + "dist/";
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [here + "console/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  outfile: dist + "app.js",
  legalComments: "none",
  logLevel: "warning",
});
await build({
  entryPoints: [here + "console/style.css"],
  bundle: true,
  minify: true,
  outfile: dist + "app.css",
  logLevel: "warning",
});
await copyFile(here + "console/index.html", dist + "index.html");
