// The run page's panels, each a function of the run (GET /runs/{id}) and its events.

import { apiUrl, credentials, download, request } from "./api.js";
import { codeBlock, diffBlock } from "./code_view.js";
import { formatBytes, formatCost, formatDateTime, formatSeconds, formatTime, formatTokens, h } from "./dom.js";
import { finishedPhases, latestUsage, reviewsOf, rounds, sandboxResults } from "./run_history.js";
import { showError } from "./shell.js";

export const ROLE_NAMES = { mike: "Mike", alex: "Alex", bob: "Bob", charlie: "Charlie", human: "Human" };
const REPORT_ARTIFACTS = new Set(["plan.json", "review.md", "sandbox-report.json"]);
const TEST_FILE = /(^|\/)(test_[^/]*\.py|conftest\.py)$/;

// Timeline

function describe(event) {
  const data = event.data;
  switch (event.type) {
    case "run.created": return ["system", `Run ${data.number} created`];
    case "run.status": return ["system", `Status ${data.previous ?? "–"} → ${data.status}${data.outcome ? ` (${data.outcome})` : ""}`];
    case "run.phase": return ["system", data.state === "started" ? `Phase ${data.phase} started${data.round ? ` (after revision ${data.round})` : ""}` : `Phase ${data.phase} finished in ${formatSeconds(data.seconds)}`];
    case "run.plan_ready": return ["mike", `Plan ready: ${data.plan?.summary ?? ""}`];
    case "run.approval_required": return ["system", `Waiting for approval (until ${formatDateTime(data.expires_at)})`];
    case "run.approved": return ["human", data.automatic ? "Plan approved automatically" : `Plan approved${data.comment ? `: ${data.comment}` : ""}`];
    case "run.rejected": return ["human", `Plan rejected${data.feedback ? `: ${data.feedback}` : ""}${data.replan ? " (re-planning)" : ""}`];
    case "artifact.created": return ["system", `File ${data.name} (${formatBytes(data.size)})`];
    case "sandbox.result": return ["system", `Tests ${data.report?.status}: ${data.report?.passed ?? 0} passed, ${data.report?.failed ?? 0} failed, ${data.report?.errors ?? 0} errors`];
    case "run.usage": return ["system", `Usage so far: ${formatTokens(data.total?.total_tokens)} tokens, ${formatCost(data.total?.cost_usd)}`];
    case "run.log": return ["system", data.message ?? JSON.stringify(data)];
    case "run.completed": return ["system", `Run completed${data.outcome ? ` (${data.outcome})` : ""}`];
    case "run.failed": return ["system", `Run failed: ${data.error?.message ?? data.error?.code ?? ""}`];
    case "run.cancelled": return ["system", "Run cancelled"];
    case "run.expired": return ["system", "The plan was not approved in time: run expired"];
    default: return ["system", event.type];
  }
}

export function timelineItem(event) {
  if (event.type === "agent.message") {
    const { role, action, content, llm } = event.data;
    const lines = content.split("\n");
    // The summary line is the first line of prose, not a code fence.
    const headline = lines.find((line) => /[A-Za-z0-9]/.test(line) && !line.startsWith("```")) ?? "";
    const cost = llm ? `${formatTokens(llm.prompt_tokens)} + ${formatTokens(llm.completion_tokens)} tokens · ${llm.cost_known === false ? "cost unknown" : formatCost(llm.cost_usd)} · ${llm.model}${llm.cache === "hit" ? " · cached" : ""}` : "";
    return h(
      "li",
      { class: `event event-message role-${role}`, dataset: { seq: event.seq, type: event.type } },
      h("time", { datetime: event.created_at }, formatTime(event.created_at)),
      h("div", { class: "event-body" },
        h("div", { class: "event-head" }, h("strong", {}, ROLE_NAMES[role] || role), ` ${action}`, cost ? h("span", { class: "muted usage-note" }, cost) : null),
        h("details", {}, h("summary", {}, headline.slice(0, 160) || "(empty)", lines.length > 1 ? ` … (${lines.length} lines)` : ""), h("pre", { class: "message" }, content)),
      ),
    );
  }
  const [who, text] = describe(event);
  return h(
    "li",
    { class: `event event-${event.type.replace(".", "-")} role-${who}`, dataset: { seq: event.seq, type: event.type } },
    h("time", { datetime: event.created_at }, formatTime(event.created_at)),
    h("div", { class: "event-body" }, who !== "system" ? h("strong", {}, `${ROLE_NAMES[who] || who} `) : null, text),
  );
}

// Plan

export function planPanel(run, events) {
  // The plan shown and its version number come from the same events: a refresh of the run can
  // bring a re-drafted plan before the stream has delivered its run.plan_ready.
  const drafts = events.filter((event) => event.type === "run.plan_ready");
  const plan = drafts.at(-1)?.data.plan ?? run.plan;
  if (!plan) return h("p", { class: "muted" }, "Mike is still drafting the plan.");
  const done = finishedPhases(events);
  const finishedFor = { alex: done.has("coding"), bob: done.has("testing"), charlie: done.has("reviewing") && run.status === "completed" };
  const plans = drafts.length;
  return h(
    "div",
    { class: "plan", "data-testid": "plan" },
    h("p", { class: "plan-summary" }, h("span", { class: "badge complexity", title: "Complexity" }, `Complexity ${plan.complexity ?? run.complexity ?? "?"}`), " ", plan.summary ?? ""),
    plans > 1 ? h("p", { class: "muted" }, `Version ${plans} of the plan (re-planned after feedback).`) : null,
    h("h3", {}, "Steps"),
    h(
      "ul",
      { class: "checklist" },
      (plan.steps || []).map((step, index) =>
        h(
          "li",
          {},
          h("input", { type: "checkbox", disabled: true, checked: Boolean(finishedFor[step.assignee]), id: `step-${index}`, "aria-label": finishedFor[step.assignee] ? "done" : "not done yet" }),
          h("div", {}, h("strong", {}, step.title), step.assignee ? h("span", { class: "badge role" }, ROLE_NAMES[step.assignee] || step.assignee) : null, step.detail ? h("p", { class: "muted" }, step.detail) : null),
        ),
      ),
    ),
    plan.acceptance_criteria?.length ? [h("h3", {}, "Acceptance criteria"), h("ul", { class: "criteria" }, plan.acceptance_criteria.map((item) => h("li", {}, item)))] : null,
  );
}

// Files

function fileKind(run, name) {
  if (REPORT_ARTIFACTS.has(name)) return "reports";
  if (run.result?.tests?.includes(name)) return "tests";
  if (run.result?.files?.includes(name)) return "code";
  return TEST_FILE.test(name) ? "tests" : "code";
}

function tree(artifacts, choose, selectedName) {
  const root = { dirs: new Map(), files: [] };
  for (const artifact of artifacts) {
    const parts = artifact.name.split("/");
    let node = root;
    for (const part of parts.slice(0, -1)) {
      if (!node.dirs.has(part)) node.dirs.set(part, { dirs: new Map(), files: [] });
      node = node.dirs.get(part);
    }
    node.files.push({ artifact, label: parts.at(-1) });
  }
  const render = (node) =>
    h(
      "ul",
      { role: "group" },
      [...node.dirs].map(([name, child]) => h("li", {}, h("span", { class: "dir" }, `${name}/`), render(child))),
      node.files.map(({ artifact, label }) =>
        h("li", {}, h("button", { type: "button", class: "file", dataset: { name: artifact.name }, "aria-current": String(artifact.name === selectedName), onclick: () => choose(artifact) }, label, h("span", { class: "muted" }, ` ${formatBytes(artifact.size)}`))),
      ),
    );
  return render(root);
}

export class FilesPanel {
  constructor(runId) {
    this.runId = runId;
    this.selected = null;
    this.contents = new Map(); // sha256 -> text
    this.viewer = h("div", { class: "file-viewer", "aria-live": "polite" }, h("p", { class: "muted" }, "Choose a file to read it."));
    this.navigation = h("nav", { class: "file-tree", "aria-label": "Files" });
    this.element = h("div", { class: "files" }, this.navigation, this.viewer);
  }

  render(run) {
    this.run = run;
    const groups = { code: [], tests: [], reports: [] };
    for (const artifact of run.artifacts) groups[fileKind(run, artifact.name)].push(artifact);
    const titles = { code: "Code", tests: "Tests", reports: "Reports" };
    this.navigation.replaceChildren(
      ...Object.entries(groups).filter(([, items]) => items.length).map(([kind, items]) => h("section", { dataset: { kind } }, h("h3", {}, titles[kind]), tree(items, (artifact) => this.show(artifact).catch(showError), this.selected?.name))),
    );
    if (!run.artifacts.length) this.navigation.append(h("p", { class: "muted" }, "No files yet."));
    const current = this.selected && run.artifacts.find((artifact) => artifact.name === this.selected.name);
    const first = run.artifacts.find((artifact) => fileKind(run, artifact.name) === "code");
    if (current && current.sha256 !== this.selected.sha256) this.show(current).catch(showError);
    else if (!this.selected && first) this.show(first).catch(showError);
  }

  async show(artifact) {
    this.selected = artifact;
    for (const button of this.navigation.querySelectorAll("button.file")) {
      button.setAttribute("aria-current", button.dataset.name === artifact.name ? "true" : "false");
    }
    if (!this.contents.has(artifact.sha256)) {
      const { data } = await request(`runs/${this.runId}/artifacts/${artifact.name.split("/").map(encodeURIComponent).join("/")}`, { accept: "*/*" });
      this.contents.set(artifact.sha256, data instanceof Blob ? await data.text() : JSON.stringify(data, null, 2));
    }
    if (this.selected !== artifact) return;
    this.viewer.replaceChildren(
      h("div", { class: "file-head" }, h("code", {}, artifact.name), h("span", { class: "muted" }, ` ${artifact.media_type}, ${formatBytes(artifact.size)} `), rawLink(this.runId, artifact.name)),
      codeBlock(this.contents.get(artifact.sha256), artifact.name),
    );
  }
}

// A link to the raw artifact; with a key it downloads through fetch, as a link cannot send headers.
export function rawLink(runId, name) {
  const path = `runs/${runId}/artifacts/${name.split("/").map(encodeURIComponent).join("/")}`;
  return h("a", {
    href: apiUrl(path).pathname,
    target: "_blank",
    rel: "noopener",
    class: "raw-link",
    onclick: (event) => {
      if (!credentials.key) return;
      event.preventDefault();
      download(path).catch(showError);
    },
  }, "raw");
}

// Revisions: what the reviewer asked for next to what changed.

// The files that differ between two versions, as diffs.
function filesDiff(before, after, what) {
  const old = new Map(before.map((file) => [file.path, file.content]));
  const fresh = new Map(after.map((file) => [file.path, file.content]));
  const changed = [...new Set([...old.keys(), ...fresh.keys()])].filter((name) => old.get(name) !== fresh.get(name));
  if (!changed.length) return h("p", { class: "muted" }, `The ${what} did not change in this round.`);
  return changed.map((name) => diffBlock(name, old.get(name), fresh.get(name)));
}

export function revisionsPanel(run, events) {
  const versions = rounds(events);
  if (versions.length < 2) {
    return h("p", { class: "muted", "data-testid": "no-revisions" }, versions.length ? "No revision round: the reviewer's first verdict stood." : "Charlie has not reviewed yet.");
  }
  return h(
    "div",
    { class: "revisions" },
    versions.slice(1).map((version) => {
      const previous = versions[version.round - 1];
      const asked = previous.review;
      return h(
        "section",
        { class: "revision", dataset: { round: version.round } },
        h("h3", {}, `Revision ${version.round}`, version.review ? `: what round ${version.round + 1} changed` : " (in progress)"),
        h(
          "div",
          { class: "revision-grid" },
          h(
            "aside",
            { class: "asked" },
            h("h4", {}, "What the reviewer asked for"),
            asked ? h("ul", {}, (asked.notes.length ? asked.notes : [asked.text]).map((note) => h("li", {}, note))) : h("p", { class: "muted" }, "No review recorded."),
          ),
          h(
            "div",
            { class: "changed" },
            h("h4", {}, "What changed in the code"),
            filesDiff(previous.code, version.code, "code"),
            h("h4", {}, "What changed in the tests"),
            filesDiff(previous.tests, version.tests, "tests"),
          ),
        ),
      );
    }),
  );
}

// Tests

export function testsPanel(run, events) {
  const results = sandboxResults(events);
  if (!results.length) return h("p", { class: "muted" }, "The tests have not run yet.");
  return h("div", { class: "tests" }, results.reverse().map((report, index) => sandboxReport(report, results.length - index, index === 0)));
}

// Isolation as the sandbox reports it: a backend name (older reports: a list of measures) and
// what it isolated.
function isolationText(report) {
  const name = Array.isArray(report.isolation) ? report.isolation.join(", ") : report.isolation || "none";
  const details = report.isolated && typeof report.isolated === "object"
    ? Object.entries(report.isolated).map(([key, value]) => `${key.replaceAll("_", " ")}: ${value === true ? "yes" : value === false ? "no" : value}`)
    : [];
  return { name, details };
}

function sandboxReport(report, round, latest) {
  const counts = [["passed", report.passed], ["failed", report.failed], ["errors", report.errors], ["skipped", report.skipped]];
  const failing = Array.isArray(report.failures) ? report.failures : [];
  const isolation = isolationText(report);
  const body = [
    h("dl", { class: "counts" }, counts.map(([name, value]) => [h("dt", {}, name), h("dd", { class: `count-${name}` }, value ?? 0)])),
    h(
      "p",
      { class: "isolation" },
      `Isolation: ${isolation.name}`,
      report.duration_seconds !== undefined ? ` · ${formatSeconds(report.duration_seconds)}` : "",
      report.exit_code !== undefined && report.exit_code !== null ? ` · exit code ${report.exit_code}` : "",
      report.timed_out ? " · timed out" : "",
    ),
    isolation.details.length ? h("p", { class: "muted" }, isolation.details.join(" · ")) : null,
    report.reason ? h("p", {}, report.reason) : null,
    failing.length
      ? [
          h("h4", {}, "Failing tests"),
          failing.map((item) =>
            typeof item === "string"
              ? h("p", {}, item)
              : h("details", { class: "failure", open: true }, h("summary", {}, h("code", {}, item.test ?? item.name ?? "test")), item.output ? h("pre", { class: "output", tabindex: 0 }, item.output) : null),
          ),
        ]
      : null,
    report.output_tail ? [h("h4", {}, "Output"), h("pre", { class: "output", tabindex: 0 }, report.output_tail)] : null,
  ];
  const title = h("span", {}, `Round ${round}: `, h("span", { class: `badge test-${report.status}` }, report.status));
  return latest ? h("section", { class: "sandbox", dataset: { status: report.status } }, h("h3", {}, title), body) : h("details", { class: "sandbox" }, h("summary", {}, title), body);
}

// Review

export function reviewPanel(run, events) {
  const reviews = reviewsOf(events);
  if (!reviews.length) return h("p", { class: "muted" }, "Charlie has not reviewed yet.");
  return h(
    "ol",
    { class: "reviews" },
    reviews.map((review) =>
      h(
        "li",
        { dataset: { verdict: review.verdict || "" } },
        h("h3", {}, `Round ${review.round + 1}: `, h("span", { class: `badge verdict-${(review.verdict || "none").toLowerCase()}` }, review.verdict || "no verdict"), h("span", { class: "muted" }, ` by ${ROLE_NAMES[review.role] || review.role} at ${formatTime(review.at)}`)),
        review.notes.length ? h("ul", {}, review.notes.map((note) => h("li", {}, note))) : h("pre", { class: "message" }, review.text),
      ),
    ),
  );
}

// Usage

export function usagePanel(run, events, task) {
  const usage = latestUsage(events) || run.usage || {};
  const total = usage.total || {};
  const roles = Object.entries(usage.roles || {});
  const budget = run.overrides?.budget_usd ?? task?.config?.budget_usd ?? null;
  const row = (name, item) =>
    h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, formatTokens(item.prompt_tokens)), h("td", {}, formatTokens(item.completion_tokens)), h("td", {}, formatTokens(item.total_tokens)), h("td", {}, item.llm_calls ?? 0), h("td", {}, item.cost_known === false ? "unknown" : formatCost(item.cost_usd)));
  return h(
    "div",
    { class: "usage" },
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "usage-table" },
        h("thead", {}, h("tr", {}, ["Role", "Prompt", "Completion", "Total tokens", "Calls", "Cost"].map((name) => h("th", { scope: "col" }, name)))),
        h("tbody", {}, roles.map(([role, item]) => row(ROLE_NAMES[role] || role, item))),
        h("tfoot", {}, row("Total", total)),
      ),
    ),
    h(
      "p",
      { "data-testid": "budget" },
      budget === null ? "No budget set for this run." : `Budget ${formatCost(budget)}, left ${formatCost(Math.max(0, budget - (total.cost_usd || 0)))}.`,
      total.cache_hits ? ` Cache: ${total.cache_hits} hit(s), ${total.cache_misses ?? 0} miss(es).` : "",
    ),
    Object.keys(run.timings || {}).length
      ? h("p", { class: "muted" }, "Time per phase: ", Object.entries(run.timings).map(([phase, seconds]) => `${phase} ${formatSeconds(seconds)}`).join(", "))
      : null,
  );
}
