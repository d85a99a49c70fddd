// Tasks: a searchable, filterable, paged list; create, edit and delete; start a run.

import { getJson, request } from "./api.js";
import { formatDateTime, h, replaceChildren, statusBadge } from "./dom.js";
import { clearNotice, navigate, showError } from "./shell.js";

const PAGE_SIZE = 20;
const TASK_STATUSES = ["pending", "queued", "planning", "awaiting_approval", "running", "completed", "failed", "cancelled", "rejected", "expired"];
const ROLES = [
  ["mike", "Mike (plans)"],
  ["alex", "Alex (codes)"],
  ["bob", "Bob (tests)"],
  ["charlie", "Charlie (reviews)"],
];

export async function startRun(taskId) {
  const { data: run } = await request("runs/", { method: "POST", body: { task_id: taskId } });
  navigate(`#/runs/${run.id}`);
}

export class TasksPage {
  constructor() {
    this.offset = 0;
    this.search = h("input", { id: "task-search", type: "search", placeholder: "Title or description", maxlength: 200 });
    this.status = h("select", { id: "task-status" }, h("option", { value: "" }, "Any status"), TASK_STATUSES.map((s) => h("option", { value: s }, s.replaceAll("_", " "))));
    this.rows = h("tbody");
    this.summary = h("p", { class: "muted", "aria-live": "polite" });
    this.previous = h("button", { type: "button", onclick: () => this.page(-1) }, "Previous");
    this.next = h("button", { type: "button", onclick: () => this.page(1) }, "Next");
    let typing;
    this.search.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.reload(0), 250);
    });
    this.status.addEventListener("change", () => this.reload(0));
    this.element = h(
      "section",
      { "aria-labelledby": "tasks-title" },
      h("div", { class: "page-head" }, h("h1", { id: "tasks-title" }, "Tasks"), h("a", { class: "button primary", href: "#/tasks/new" }, "New task")),
      h(
        "div",
        { class: "filters" },
        h("label", { for: "task-search" }, "Search"),
        this.search,
        h("label", { for: "task-status" }, "Status"),
        this.status,
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "tasks-table" },
          h("thead", {}, h("tr", {}, ["Task", "Status", "Runs", "Updated", "Actions"].map((name) => h("th", { scope: "col" }, name)))),
          this.rows,
        ),
      ),
      h("div", { class: "pager" }, this.previous, this.summary, this.next),
    );
  }

  async start() {
    await this.reload(0);
  }

  page(step) {
    this.reload(Math.max(0, this.offset + step * PAGE_SIZE)).catch(showError);
  }

  async reload(offset) {
    this.offset = offset;
    const page = await getJson("tasks/", { limit: PAGE_SIZE, offset, q: this.search.value.trim(), status: this.status.value });
    replaceChildren(this.rows, page.items.map((task) => this.row(task)));
    if (!page.items.length) {
      const filtered = this.search.value.trim() || this.status.value;
      const empty = page.total ? "No tasks on this page." : filtered ? "No tasks match the search." : "No tasks yet: create one with New task.";
      this.rows.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, empty)));
    }
    const last = Math.min(page.total, offset + page.items.length);
    this.summary.textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "";
    this.previous.disabled = offset === 0;
    this.next.disabled = last >= page.total;
  }

  row(task) {
    const remove = h("button", { type: "button", class: "danger" }, "Delete");
    remove.addEventListener("click", async () => {
      if (remove.dataset.confirm !== "yes") {
        remove.dataset.confirm = "yes";
        remove.textContent = "Confirm delete";
        return;
      }
      try {
        await request(`tasks/${task.id}`, { method: "DELETE", headers: { "If-Match": `"${task.version}"` } });
        await this.reload(this.offset);
      } catch (error) {
        showError(error);
      }
    });
    const lastRun = task.last_run_id ? h("a", { href: `#/runs/${task.last_run_id}` }, "latest run") : null;
    return h(
      "tr",
      { dataset: { taskId: task.id } },
      h("td", {}, h("strong", {}, task.title), task.description ? h("div", { class: "muted clamp" }, task.description) : null),
      h("td", {}, statusBadge(task.status)),
      h("td", {}, `${task.total_runs} (${task.successful_runs} ok, ${task.failed_runs} failed) `, lastRun),
      h("td", {}, formatDateTime(task.updated_at)),
      h(
        "td",
        { class: "actions" },
        h("button", { type: "button", class: "primary", onclick: () => startRun(task.id).catch(showError) }, "Start run"),
        h("a", { class: "button", href: `#/tasks/${task.id}/edit` }, "Edit"),
        remove,
      ),
    );
  }
}

// Create (taskId null) or edit a task: title, description and the team settings people change.
export class TaskForm {
  constructor(taskId) {
    this.taskId = taskId;
    this.task = null;
    const field = (id, label, input, hint) =>
      h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { class: "muted", id: `${id}-hint` }, hint) : null);
    this.inputs = {
      title: h("input", { id: "task-title", name: "title", required: true, maxlength: 200 }),
      description: h("textarea", { id: "task-description", name: "description", rows: 5, maxlength: 20000 }),
      autoApprove: h("input", { id: "task-auto-approve", type: "checkbox" }),
      streamDeltas: h("input", { id: "task-stream-deltas", type: "checkbox" }),
      revisions: h("input", { id: "task-revisions", type: "number", min: 0, max: 5, step: 1, inputmode: "numeric", "aria-describedby": "task-revisions-hint" }),
      budget: h("input", { id: "task-budget", type: "number", min: 0.01, max: 10000, step: 0.01, inputmode: "decimal", "aria-describedby": "task-budget-hint" }),
    };
    this.models = Object.fromEntries(ROLES.map(([role]) => [role, h("input", { id: `task-model-${role}`, maxlength: 200, placeholder: "service default" })]));
    this.error = h("p", { class: "form-error", role: "alert" });
    const heading = taskId ? "Edit task" : "New task";
    this.form = h(
      "form",
      { class: "card task-form", "aria-labelledby": "task-form-title" },
      h("h1", { id: "task-form-title" }, heading),
      field("task-title", "Title", this.inputs.title),
      field("task-description", "What should the team build?", this.inputs.description),
      h(
        "fieldset",
        {},
        h("legend", {}, "Team settings (empty means the service default)"),
        h("div", { class: "check" }, this.inputs.autoApprove, h("label", { for: "task-auto-approve" }, "Approve Mike's plan automatically")),
        h("div", { class: "check" }, this.inputs.streamDeltas, h("label", { for: "task-stream-deltas" }, "Stream live tokens while models write")),
        field("task-revisions", "Max revision rounds", this.inputs.revisions, "0 to 5 review/revise cycles"),
        field("task-budget", "Budget per run (USD)", this.inputs.budget, "The run stops before a call that would exceed it"),
      ),
      h("fieldset", {}, h("legend", {}, "Model per role"), ROLES.map(([role, label]) => field(`task-model-${role}`, label, this.models[role]))),
      this.error,
      h(
        "div",
        { class: "form-actions" },
        h("button", { type: "submit", class: "primary", value: "save" }, taskId ? "Save changes" : "Create task"),
        h("button", { type: "submit", value: "save-and-run" }, taskId ? "Save and start a run" : "Create and start a run"),
        h("a", { class: "button", href: "#/tasks" }, "Cancel"),
      ),
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save(event.submitter?.value === "save-and-run").catch((error) => {
        this.error.textContent = error.message;
      });
    });
    this.element = this.form;
  }

  async start() {
    if (!this.taskId) {
      this.inputs.title.focus();
      return;
    }
    this.task = await getJson(`tasks/${this.taskId}`);
    const config = this.task.config || {};
    this.inputs.title.value = this.task.title;
    this.inputs.description.value = this.task.description;
    this.inputs.autoApprove.checked = Boolean(config.auto_approve_plan);
    this.inputs.streamDeltas.checked = Boolean(config.stream_deltas);
    this.inputs.revisions.value = config.max_revision_rounds ?? "";
    this.inputs.budget.value = config.budget_usd ?? "";
    for (const [role] of ROLES) this.models[role].value = config.models?.[role] ?? "";
  }

  config() {
    const number = (input) => (input.value === "" ? null : Number(input.value));
    const models = Object.fromEntries(ROLES.map(([role]) => [role, this.models[role].value.trim()]).filter(([, model]) => model));
    return {
      auto_approve_plan: this.inputs.autoApprove.checked || null,
      stream_deltas: this.inputs.streamDeltas.checked || null,
      max_revision_rounds: number(this.inputs.revisions),
      budget_usd: number(this.inputs.budget),
      models: Object.keys(models).length ? models : null,
    };
  }

  async save(andRun) {
    this.error.textContent = "";
    const config = this.config();
    const fields = { title: this.inputs.title.value, description: this.inputs.description.value };
    let task;
    if (this.taskId) {
      // Settings left empty go back to the service default (null removes the key).
      ({ data: task } = await request(`tasks/${this.taskId}`, {
        method: "PATCH",
        body: { ...fields, config },
        headers: { "If-Match": `"${this.task.version}"` },
      }));
    } else {
      const stored = Object.fromEntries(Object.entries(config).filter(([, value]) => value !== null));
      ({ data: task } = await request("tasks/", { method: "POST", body: { ...fields, config: stored } }));
    }
    clearNotice();
    if (andRun) await startRun(task.id);
    else navigate("#/tasks");
  }
}
