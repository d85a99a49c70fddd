// Recent runs with their live status: the list is read again every few seconds, so new runs and
// status changes appear without a reload.

import { getJson } from "./api.js";
import { elapsedSeconds, formatCost, formatSeconds, h, replaceChildren, statusBadge } from "./dom.js";
import { showError } from "./shell.js";

const REFRESH_MS = 2000;
const RUN_STATUSES = ["queued", "planning", "awaiting_approval", "running", "completed", "failed", "cancelled", "rejected", "expired"];

// Task titles by id, shared by the views of this tab.
const taskTitles = new Map();

export async function taskTitle(taskId) {
  if (!taskTitles.has(taskId)) {
    taskTitles.set(taskId, getJson(`tasks/${taskId}`).then((task) => task.title, () => "(task not visible)"));
  }
  return taskTitles.get(taskId);
}

export class RunsPage {
  constructor() {
    this.status = h("select", { id: "run-status" }, h("option", { value: "" }, "Any status"), RUN_STATUSES.map((s) => h("option", { value: s }, s.replaceAll("_", " "))));
    this.status.addEventListener("change", () => this.refresh().catch(showError));
    this.rows = h("tbody");
    this.updated = h("p", { class: "muted", "aria-live": "off" });
    this.element = h(
      "section",
      { "aria-labelledby": "runs-title" },
      h("div", { class: "page-head" }, h("h1", { id: "runs-title" }, "Runs"), h("a", { class: "button primary", href: "#/tasks/new" }, "New task")),
      h("div", { class: "filters" }, h("label", { for: "run-status" }, "Status"), this.status, this.updated),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "runs-table" },
          h("thead", {}, h("tr", {}, ["Run", "Task", "Status", "Phase", "Elapsed", "Cost"].map((name) => h("th", { scope: "col" }, name)))),
          this.rows,
        ),
      ),
    );
  }

  async start() {
    await this.refresh();
    this.timer = setInterval(() => this.refresh().catch(() => {}), REFRESH_MS);
  }

  dispose() {
    clearInterval(this.timer);
  }

  async refresh() {
    const page = await getJson("runs/", { limit: 50, status: this.status.value });
    const titles = await Promise.all(page.items.map((run) => taskTitle(run.task_id)));
    replaceChildren(
      this.rows,
      page.items.map((run, index) =>
        h(
          "tr",
          { dataset: { runId: run.id, status: run.status } },
          h("td", {}, h("a", { href: `#/runs/${run.id}` }, `Run ${run.number}`), run.label ? h("div", { class: "muted" }, run.label) : null),
          h("td", {}, titles[index]),
          h("td", {}, statusBadge(run.status)),
          h("td", {}, run.phase || "–"),
          h("td", {}, formatSeconds(elapsedSeconds(run))),
          h("td", {}, formatCost(run.usage?.total?.cost_usd ?? 0)),
        ),
      ),
    );
    if (!page.items.length) {
      this.rows.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs yet. Start one from Tasks.")));
    }
    this.updated.textContent = `${page.total} run(s), updated ${new Date().toLocaleTimeString()}`;
  }
}
