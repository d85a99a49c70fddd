// The console's shell: service status (demo banner, whether keys are needed), sign-in, the
// error notice and the hash routes (#/runs, #/runs/<id>, #/tasks, #/tasks/new, #/tasks/<id>/edit).

import { credentials, getJson } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { RunPage } from "./run_page.js";
import { RunsPage } from "./runs_page.js";
import { TaskForm, TasksPage } from "./tasks_page.js";
import { clearNotice, showError } from "./shell.js";

const main = document.getElementById("main");
const identity = document.getElementById("identity");
const demoBanner = document.getElementById("demo-banner");

const consoleState = { keysRequired: false, current: null, identity: null };

function routeFor(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "runs" && parts[1]) return () => new RunPage(parts[1]);
  if (parts[0] === "tasks" && parts[1] === "new") return () => new TaskForm(null);
  if (parts[0] === "tasks" && parts[1] && parts[2] === "edit") return () => new TaskForm(parts[1]);
  if (parts[0] === "tasks") return () => new TasksPage();
  return () => new RunsPage();
}

function route() {
  consoleState.current?.dispose?.();
  consoleState.current = null;
  clearNotice();
  if (consoleState.keysRequired && !credentials.key) {
    showSignIn();
    return;
  }
  const section = (location.hash.replace(/^#\/?/, "").split("/")[0]) || "runs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = routeFor(location.hash)();
  consoleState.current = view;
  replaceChildren(main, view.element);
  view.start?.().catch(showError);
}

function showIdentity() {
  if (!consoleState.keysRequired) {
    replaceChildren(identity, h("span", { class: "muted" }, "Open access (no API keys)"));
    return;
  }
  if (!credentials.key) {
    identity.replaceChildren();
    return;
  }
  const who = consoleState.identity;
  replaceChildren(
    identity,
    h("span", { "data-testid": "signed-in" }, who ? `Signed in as ${who.name}${who.admin ? " (admin: sees everyone's work)" : ""}` : "Signed in"),
    h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"),
  );
}

function signOut() {
  credentials.key = null;
  consoleState.identity = null;
  showIdentity();
  route();
}

function showSignIn(message = "") {
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true });
  const error = h("p", { class: "form-error", role: "alert" }, message);
  const form = h(
    "form",
    { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "This service needs an API key. It is kept in this browser tab only (session storage) and sent with every request."),
    h("label", { for: "api-key" }, "API key"),
    input,
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    credentials.key = input.value.trim();
    try {
      consoleState.identity = await getJson("whoami");
    } catch (problem) {
      credentials.key = null;
      error.textContent = problem.status === 401 ? "That API key is not valid. Check it and try again." : problem.message;
      input.focus();
      return;
    }
    showIdentity();
    route();
  });
  identity.replaceChildren();
  replaceChildren(main, form);
  input.focus();
}

async function start() {
  try {
    const status = await getJson("health/status");
    consoleState.keysRequired = status.auth?.mode === "api_keys";
    if (status.llm?.demo) {
      demoBanner.textContent =
        "Demo mode: the offline demo model answers every call (no LLM provider is configured). Plans, code and reviews are canned examples and cost nothing.";
      demoBanner.hidden = false;
    }
  } catch (error) {
    showError(error);
  }
  window.addEventListener("console:unauthorized", () => {
    // While signing in there is no view yet: the sign-in form reports the refused key itself.
    if (!consoleState.keysRequired || !consoleState.current) return;
    credentials.key = null;
    consoleState.current?.dispose?.();
    consoleState.current = null;
    showSignIn("The API key was refused (it is not valid, or no longer configured). Sign in again.");
  });
  window.addEventListener("hashchange", route);
  if (consoleState.keysRequired && credentials.key) {
    consoleState.identity = await getJson("whoami").catch(() => null);
  }
  showIdentity();
  route();
}

start();
