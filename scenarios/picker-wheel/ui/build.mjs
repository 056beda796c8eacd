// Builds the UI into dist/: index.html, app.js (the sources of SOURCES, in that order, in one
// strict-mode function) and style.css, with `?v=<hash>` of each asset's content in index.html.
//
// Deterministic: the output depends only on the sources' contents (line ends normalised to
// LF), never on the time, the machine or the directory, so two builds are byte-identical.
// dist/ is replaced whole: written to dist.tmp/ first, then renamed.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const SOURCES = ["api.js", "wheel.js", "app.js"];

const read = (name) => readFileSync(join(root, "src", name), "utf8").replace(/\r\n/g, "\n");
const hash = (text) => createHash("sha256").update(text).digest("hex").slice(0, 12);

const script =
  '(() => {\n"use strict";\n' +
  SOURCES.map((name) => `// ${name}\n${read(name)}`).join("\n") +
  "})();\n";
const style = read("style.css");
const page = read("index.html")
  .replace('src="app.js"', `src="app.js?v=${hash(script)}"`)
  .replace('href="style.css"', `href="style.css?v=${hash(style)}"`);
if (!page.includes("app.js?v=") || !page.includes("style.css?v=")) {
  throw new Error("src/index.html must load app.js and style.css");
}

const out = join(root, "dist");
const tmp = join(root, "dist.tmp");
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp);
writeFileSync(join(tmp, "index.html"), page);
writeFileSync(join(tmp, "app.js"), script);
writeFileSync(join(tmp, "style.css"), style);
rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
console.log(`built dist/: index.html, app.js (${script.length} bytes), style.css`);
