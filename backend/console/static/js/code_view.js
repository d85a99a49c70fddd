// Code with syntax highlighting (highlight.js) and unified diffs between rounds (jsdiff).

import hljs from "../vendor/highlight/core.min.js";
import bash from "../vendor/highlight/languages/bash.min.js";
import ini from "../vendor/highlight/languages/ini.min.js";
import json from "../vendor/highlight/languages/json.min.js";
import markdown from "../vendor/highlight/languages/markdown.min.js";
import plaintext from "../vendor/highlight/languages/plaintext.min.js";
import python from "../vendor/highlight/languages/python.min.js";
import { h } from "./dom.js";

for (const [name, grammar] of Object.entries({ bash, ini, json, markdown, plaintext, python })) hljs.registerLanguage(name, grammar);

const LANGUAGES = { py: "python", json: "json", md: "markdown", toml: "ini", cfg: "ini", ini: "ini", sh: "bash", txt: "plaintext" };

export function languageOf(name) {
  return LANGUAGES[name.split(".").pop().toLowerCase()] || "plaintext";
}

export function codeBlock(text, name) {
  const language = languageOf(name);
  const code = h("code", { class: `hljs language-${language}` });
  // highlight.js escapes the source and adds only its own <span class> markup.
  code.innerHTML = hljs.highlight(text, { language, ignoreIllegals: true }).value;
  return h("pre", { class: "code", tabindex: 0, "aria-label": `Contents of ${name}` }, code);
}

// A unified diff of one file between two rounds; added and removed lines are marked for
// screen readers too, not by colour alone.
export function diffBlock(name, before, after) {
  const patch = globalThis.Diff.structuredPatch(name, name, before ?? "", after ?? "", "", "", { context: 3 });
  const lines = [];
  for (const hunk of patch.hunks) {
    lines.push(h("span", { class: "diff-hunk" }, `@@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@`));
    for (const line of hunk.lines) {
      const kind = line[0] === "+" ? "diff-add" : line[0] === "-" ? "diff-del" : "diff-ctx";
      const label = line[0] === "+" ? "added: " : line[0] === "-" ? "removed: " : "";
      lines.push(h("span", { class: kind }, h("span", { class: "visually-hidden" }, label), line));
    }
  }
  const state = before === undefined ? "new file" : after === undefined ? "removed" : patch.hunks.length ? "changed" : "unchanged";
  return h(
    "figure",
    { class: "diff", dataset: { file: name, state } },
    h("figcaption", {}, h("code", {}, name), ` (${state})`),
    patch.hunks.length ? h("pre", { class: "diff-lines", tabindex: 0 }, lines) : null,
  );
}
