// What every view shares: the error notice and navigation.

import { ApiError } from "./api.js";
import { h, replaceChildren } from "./dom.js";

const notice = document.getElementById("notice");

// Problems are shown from their problem+json title and detail.
export function showError(error) {
  const text = error instanceof ApiError ? error.message : `Something went wrong: ${error.message || error}`;
  replaceChildren(
    notice,
    h("span", { "data-testid": "error-text" }, text),
    h("button", { type: "button", class: "link", onclick: clearNotice }, "Dismiss"),
  );
  notice.hidden = false;
}

export function clearNotice() {
  notice.hidden = true;
  notice.replaceChildren();
}

export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}
