// One run, live: header and actions, the approval form, and the tabs (timeline, plan, files,
// revisions, tests, review, usage), all fed by the run's event stream.

import { download, getJson, request } from "./api.js";
import { elapsedSeconds, formatCost, formatDateTime, formatSeconds, h, replaceChildren, statusBadge } from "./dom.js";
import { FilesPanel, ROLE_NAMES, planPanel, reviewPanel, revisionsPanel, testsPanel, timelineItem, usagePanel } from "./run_panels.js";
import { RunStream, TERMINAL_STATUSES } from "./run_stream.js";
import { showError } from "./shell.js";

const TABS = [
  ["timeline", "Timeline"],
  ["plan", "Plan"],
  ["files", "Files"],
  ["revisions", "Revisions"],
  ["tests", "Tests"],
  ["review", "Review"],
  ["usage", "Usage"],
];
const STREAM_STATES = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", ended: "Finished" };
const REFRESHING_EVENTS = new Set(["run.status", "run.plan_ready", "run.approval_required", "run.approved", "run.rejected", "artifact.created", "sandbox.result", "run.completed", "run.failed", "run.cancelled", "run.expired"]);

export class RunPage {
  constructor(runId) {
    this.runId = runId;
    this.run = null;
    this.task = null;
    this.events = [];
    this.tab = "timeline";
    this.tabChosen = false;
    this.previews = new Map(); // role -> preview element while a model streams
    this.files = new FilesPanel(runId);
    this.stream = new RunStream(runId, {
      onEvent: (event) => this.apply(event),
      onDelta: (event) => this.preview(event),
      onState: (state, stream) => this.showStreamState(state, stream),
    });

    this.title = h("h1", { id: "run-title" }, "Run");
    this.status = h("span", { id: "run-status", "aria-live": "polite" });
    this.facts = h("p", { class: "facts", id: "run-facts" });
    this.streamState = h("span", { id: "stream-state", class: "stream-state", role: "status" });
    this.actions = h("div", { class: "run-actions" });
    this.approval = h("section", { id: "approval", class: "card approval", hidden: true, "aria-labelledby": "approval-title" });
    this.timeline = h("ol", { id: "timeline", class: "timeline", "aria-live": "off" });
    this.livePreviews = h("div", { class: "previews", "aria-live": "off" });
    this.tabButtons = TABS.map(([id, label]) =>
      h("button", { type: "button", role: "tab", id: `tab-${id}`, "aria-controls": "run-panel", "aria-selected": "false", onclick: () => this.select(id, true) }, label),
    );
    this.panel = h("div", { id: "run-panel", role: "tabpanel", tabindex: 0 });
    const tabList = h("div", { role: "tablist", class: "tabs", "aria-label": "Run details" }, this.tabButtons);
    tabList.addEventListener("keydown", (event) => this.arrowKeys(event));
    this.element = h(
      "article",
      { class: "run-page", "aria-labelledby": "run-title" },
      h("div", { class: "page-head" }, h("div", {}, this.title, h("div", { class: "status-line" }, this.status, " ", this.streamState)), this.actions),
      this.facts,
      this.approval,
      tabList,
      this.panel,
    );
    this.timelineView = h("div", {}, this.livePreviews, this.timeline);
  }

  async start() {
    this.run = await getJson(`runs/${this.runId}`);
    this.task = await getJson(`tasks/${this.run.task_id}`).catch(() => null);
    this.renderRun();
    this.select(this.run.status === "awaiting_approval" ? "plan" : "timeline", false);
    this.stream.open();
    this.clock = setInterval(() => this.renderFacts(), 1000);
  }

  dispose() {
    this.stream.close();
    clearInterval(this.clock);
    clearTimeout(this.refreshTimer);
  }

  // Events

  apply(event) {
    this.events.push(event);
    this.timeline.append(timelineItem(event));
    Object.assign(this.timeline.dataset, { lastSeq: this.stream.lastSeq, received: this.stream.received, duplicates: this.stream.duplicates });
    if (event.type === "agent.message") {
      // The whole message is in the timeline now: its live preview goes.
      this.previews.get(event.data.role)?.remove();
      this.previews.delete(event.data.role);
    }
    if (event.type === "run.status") {
      this.run.status = event.data.status;
      this.renderActions();
    }
    if (event.type === "run.phase" && event.data.state === "started" && event.data.phase !== "planning") this.run.phase = event.data.phase;
    if (REFRESHING_EVENTS.has(event.type)) this.scheduleRefresh();
    this.renderStatus();
    if (this.tab !== "timeline" && this.tab !== "files") this.renderPanel();
  }

  preview(event) {
    const { role, text } = event.data;
    this.streamState.dataset.deltas = Number(this.streamState.dataset.deltas || 0) + 1;
    let box = this.previews.get(role);
    if (!box) {
      box = h("div", { class: `preview role-${role}`, dataset: { role } }, h("strong", {}, `${ROLE_NAMES[role] || role} is writing…`), h("pre", { class: "message" }));
      this.previews.set(role, box);
      this.livePreviews.append(box);
    }
    box.querySelector("pre").append(text);
  }

  showStreamState(state, stream) {
    this.streamState.textContent = STREAM_STATES[state] || state;
    this.streamState.dataset.state = state;
    this.streamState.dataset.connections = stream.connections;
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh().catch(showError), 150);
  }

  async refresh() {
    this.run = await getJson(`runs/${this.runId}`);
    // The plan comes forward when the run (as the API says now, not a replayed event) awaits approval.
    if (this.run.status === "awaiting_approval" && !this.tabChosen) this.tab = "plan";
    this.renderRun();
    this.select(this.tab, false);
  }

  // Rendering

  renderRun() {
    this.title.textContent = `${this.task?.title ?? "Task"} · run ${this.run.number}`;
    this.renderStatus();
    this.renderFacts();
    this.renderActions();
    this.renderApproval();
    this.renderPanel();
  }

  renderStatus() {
    replaceChildren(this.status, statusBadge(this.run.status), this.run.phase && !TERMINAL_STATUSES.has(this.run.status) ? h("span", { class: "phase" }, ` ${this.run.phase}`) : null);
  }

  renderFacts() {
    if (!this.run) return;
    const run = this.run;
    const cost = this.events.filter((event) => event.type === "run.usage").pop()?.data.total?.cost_usd ?? run.usage?.total?.cost_usd ?? 0;
    replaceChildren(
      this.facts,
      `Started ${formatDateTime(run.started_at || run.created_at)} · elapsed ${formatSeconds(elapsedSeconds(run))} · cost ${formatCost(cost)}`,
      run.complexity ? ` · complexity ${run.complexity}` : "",
      run.result?.outcome ? ` · outcome ${run.result.outcome}` : "",
      run.error ? h("span", { class: "error-text" }, ` · ${run.error.code}: ${run.error.message}`) : "",
    );
  }

  renderActions() {
    const buttons = [];
    if (!TERMINAL_STATUSES.has(this.run.status)) {
      buttons.push(h("button", { type: "button", class: "danger", id: "cancel-run", onclick: () => this.act("cancel") }, "Cancel run"));
    }
    buttons.push(
      h("button", { type: "button", id: "download-archive", onclick: () => download(`runs/${this.runId}/archive`).catch(showError) }, "Download all files"),
      h("button", { type: "button", id: "download-transcript", onclick: () => download(`runs/${this.runId}/logs`, { accept: "text/plain", filename: `run-${this.run.number}-transcript.txt` }).catch(showError) }, "Transcript"),
    );
    replaceChildren(this.actions, buttons);
  }

  renderApproval() {
    const waiting = this.run.status === "awaiting_approval";
    this.approval.hidden = !waiting;
    if (!waiting) {
      this.approval.replaceChildren();
      return;
    }
    if (this.approval.dataset.version === String(this.run.version)) return; // keep what is being typed
    this.approval.dataset.version = this.run.version;
    const comment = h("textarea", { id: "approve-comment", rows: 2, maxlength: 20000 });
    const feedback = h("textarea", { id: "reject-feedback", rows: 2, maxlength: 20000 });
    const replan = h("input", { id: "reject-replan", type: "checkbox", checked: true });
    const approveForm = h(
      "form",
      { class: "approve" },
      h("label", { for: "approve-comment" }, "Comment (optional)"),
      comment,
      h("button", { type: "submit", class: "primary", id: "approve-plan" }, "Approve plan"),
    );
    approveForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.act("approve", { comment: comment.value.trim() || null });
    });
    const rejectForm = h(
      "form",
      { class: "reject" },
      h("label", { for: "reject-feedback" }, "What should change?"),
      feedback,
      h("div", { class: "check" }, replan, h("label", { for: "reject-replan" }, "Draft a new plan with this feedback (otherwise the run ends as rejected)")),
      h("button", { type: "submit", class: "danger", id: "reject-plan" }, "Reject plan"),
    );
    rejectForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.act("reject", { feedback: feedback.value.trim() || null, replan: replan.checked });
    });
    const expires = this.run.approval_expires_at;
    replaceChildren(
      this.approval,
      h("h2", { id: "approval-title" }, "Mike's plan is waiting for your approval"),
      expires ? h("p", { id: "approval-expiry" }, `Approve or reject before ${formatDateTime(expires)}; after that the run expires.`) : null,
      h("div", { class: "approval-forms" }, approveForm, rejectForm),
    );
  }

  async act(verb, body) {
    try {
      const { data } = await request(`runs/${this.runId}/${verb}`, { method: "POST", body });
      this.run = data;
      this.renderRun();
    } catch (error) {
      showError(error);
    }
  }

  select(tab, chosen) {
    this.tab = tab;
    this.tabChosen ||= chosen;
    for (const button of this.tabButtons) {
      const selected = button.id === `tab-${tab}`;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
    }
    this.panel.setAttribute("aria-labelledby", `tab-${tab}`);
    this.renderPanel();
  }

  arrowKeys(event) {
    const index = TABS.findIndex(([id]) => id === this.tab);
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    const [next] = TABS[(index + step + TABS.length) % TABS.length];
    this.select(next, true);
    document.getElementById(`tab-${next}`).focus();
  }

  renderPanel() {
    if (!this.run) return;
    const views = {
      timeline: () => this.timelineView,
      plan: () => planPanel(this.run, this.events),
      files: () => {
        this.files.render(this.run);
        return this.files.element;
      },
      revisions: () => revisionsPanel(this.run, this.events),
      tests: () => testsPanel(this.run, this.events),
      review: () => reviewPanel(this.run, this.events),
      usage: () => usagePanel(this.run, this.events, this.task),
    };
    const view = views[this.tab]();
    if (this.panel.firstChild !== view) replaceChildren(this.panel, view);
  }
}
