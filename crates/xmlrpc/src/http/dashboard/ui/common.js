// What both dashboard pages share: where requests go, the connection indicator and
// the message line.
"use strict";

const vigil = (function () {
  // Requests go to the origin, never relative to the page's URL: a page opened with
  // credentials in its address must not put them in a request URL (fetch refuses it).
  const base = window.location.origin;
  const $ = (id) => document.getElementById(id);
  let messageTimer = null;

  // The indicator in the top bar: "live", "connecting" or "down", and its words.
  function setLive(state, text) {
    $("live").dataset.live = state;
    $("live-text").textContent = text;
  }

  // A success fades after a while; an error stays until the next message.
  function showMessage(text, ok) {
    const box = $("message");
    box.textContent = text;
    box.classList.toggle("error", !ok);
    box.hidden = false;
    clearTimeout(messageTimer);
    if (ok) messageTimer = setTimeout(() => { box.hidden = true; }, 8000);
  }

  return { base, $, setLive, showMessage };
})();
