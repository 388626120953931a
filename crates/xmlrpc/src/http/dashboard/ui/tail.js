// One process's log, followed like `tail -f`: the page reads /logtail/<name>/<channel>
// as the daemon streams it, and appends each chunk as it arrives.
"use strict";

(function () {
  const { base, $, setLive, showMessage } = vigil;
  // The most text kept on the page; older lines go first.
  const MAX_CHARS = 512 * 1024;

  const params = new URLSearchParams(window.location.search);
  const name = params.get("processname") || "";
  const channel = params.get("channel") === "stderr" ? "stderr" : "stdout";
  let reader = null;

  function append(text) {
    const log = $("log");
    const follow = $("follow").checked;
    log.append(document.createTextNode(text));
    if (log.textContent.length > MAX_CHARS) {
      const kept = log.textContent.slice(-MAX_CHARS);
      const cut = kept.indexOf("\n");
      log.textContent = cut >= 0 ? kept.slice(cut + 1) : kept;
    }
    if (follow) log.scrollTop = log.scrollHeight;
  }

  async function follow() {
    const url = base + "/logtail/" + encodeURIComponent(name) + "/" + channel;
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin" });
    } catch (error) {
      setLive("down", "disconnected");
      showMessage("cannot reach the daemon: " + error, false);
      return;
    }
    if (!response.ok) {
      setLive("down", "no log");
      showMessage(response.status === 404
        ? name + " has no " + channel + " log file (or no such process)"
        : "HTTP " + response.status, false);
      return;
    }
    setLive("live", "following");
    reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        break;
      }
      if (chunk.done) break;
      append(decoder.decode(chunk.value, { stream: true }));
    }
    setLive("down", "ended");
  }

  async function clearLog() {
    const response = await fetch(base + "/ui/action/clearlog/" + encodeURIComponent(name), {
      method: "POST",
      credentials: "same-origin",
    });
    if (response.ok) {
      const reply = await response.json();
      showMessage(reply.message, reply.ok);
    } else {
      showMessage("HTTP " + response.status, false);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.title = name + " " + channel + " · Vigil";
    $("title").textContent = name + " · " + channel;
    for (const which of ["stdout", "stderr"]) {
      const link = $(which);
      link.href = "/tail.html?processname=" + encodeURIComponent(name) + (which === "stderr" ? "&channel=stderr" : "");
      link.classList.toggle("current", which === channel);
    }
    $("clear").addEventListener("click", clearLog);
    $("follow").addEventListener("change", () => {
      if ($("follow").checked) $("log").scrollTop = $("log").scrollHeight;
    });
    if (!name) {
      showMessage("no process named: open this page from the process table", false);
      setLive("down", "no process");
      return;
    }
    follow();
  });
})();
