// Follows one run's Server-Sent Events. EventSource reconnects by itself after a drop and sends
// Last-Event-ID, so the server resumes after the last stored event; if the browser gives up
// (the server answered with an error), a new stream starts after the last seq seen. Stored
// events are applied once, in seq order; live token deltas (no id) only update previews.

import { eventStreamUrl, getJson } from "./api.js";

export const EVENT_TYPES = [
  "run.created", "run.status", "run.phase", "run.plan_ready", "run.approval_required", "run.approved",
  "run.rejected", "agent.message", "agent.delta", "artifact.created", "sandbox.result", "run.usage",
  "run.log", "run.completed", "run.failed", "run.cancelled", "run.expired",
];
const TERMINAL_TYPES = new Set(["run.completed", "run.failed", "run.cancelled", "run.rejected", "run.expired"]);
export const TERMINAL_STATUSES = new Set(["completed", "failed", "cancelled", "rejected", "expired"]);
const REOPEN_MS = 2000;

export function isTerminalEvent(event) {
  return TERMINAL_TYPES.has(event.type) && event.data?.status === event.type.slice("run.".length);
}

export class RunStream {
  constructor(runId, { onEvent, onDelta, onState }) {
    this.runId = runId;
    this.onEvent = onEvent;
    this.onDelta = onDelta;
    this.onState = onState;
    this.lastSeq = 0;
    this.received = 0;
    this.duplicates = 0;
    this.connections = 0;
    this.ended = false;
    this.source = null;
    this.reopenTimer = null;
  }

  open() {
    this.close();
    this.ended = false;
    this.state("connecting");
    const source = new EventSource(eventStreamUrl(this.runId, this.lastSeq));
    this.source = source;
    source.onopen = () => {
      this.connections += 1;
      this.state("live");
    };
    source.onerror = () => this.lost(source);
    const handle = (message) => this.handle(message);
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
  }

  handle(message) {
    const event = JSON.parse(message.data);
    if (event.type === "agent.delta") {
      this.onDelta(event);
      return;
    }
    if (event.seq <= this.lastSeq) {
      this.duplicates += 1;
      return;
    }
    this.lastSeq = event.seq;
    this.received += 1;
    this.onEvent(event);
    if (isTerminalEvent(event)) {
      this.ended = true;
      this.close();
      this.state("ended");
    }
  }

  async lost(source) {
    if (this.ended || source !== this.source) return;
    this.state("reconnecting");
    if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // The browser gave up: an error answer, or 204 once a finished run has nothing left to send.
    try {
      const run = await getJson(`runs/${this.runId}`);
      if (TERMINAL_STATUSES.has(run.status) && source === this.source) {
        this.ended = true;
        this.state("ended");
        return;
      }
    } catch {
      // Unreachable for now: try the stream again below.
    }
    if (source === this.source) this.reopenTimer = setTimeout(() => this.open(), REOPEN_MS);
  }

  state(name) {
    this.onState(name, this);
  }

  close() {
    clearTimeout(this.reopenTimer);
    this.source?.close();
    this.source = null;
  }
}
