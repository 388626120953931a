// The process table, kept current by the daemon's event stream (/ui/events): the page
// never asks on a timer. Its only timer moves the uptime figures between events.
"use strict";

(function () {
  const { base, $, setLive, showMessage } = vigil;

  let facts = null; // the last `facts` event
  let clockSkew = 0; // daemon clock minus ours, in seconds
  const lastCpu = new Map(); // namespec -> [cpu seconds, time in ms], for CPU %
  let filterText = "";

  const RUNNING_STATES = new Set(["STARTING", "RUNNING", "BACKOFF", "STOPPING"]);

  function namespec(p) {
    return p.group === p.name ? p.name : p.group + ":" + p.name;
  }

  function formatUptime(seconds) {
    if (seconds < 0) seconds = 0;
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = Math.floor(seconds % 60);
    const hms = h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
    return d > 0 ? d + "d " + hms : hms;
  }

  function formatBytes(bytes) {
    if (bytes === null || bytes === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
  }

  function formatCpuTime(seconds) {
    if (seconds < 60) return seconds.toFixed(2) + " s";
    const m = Math.floor(seconds / 60);
    return m + "m " + String(Math.floor(seconds % 60)).padStart(2, "0") + "s";
  }

  function cpuSeconds(usage) {
    return (usage.cpu_user_us + usage.cpu_system_us) / 1e6;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function healthCell(p) {
    const cell = el("td", { className: "health" });
    if (p.waiting_for && p.waiting_for.length > 0) {
      cell.append(el("span", { className: "waiting" }, "waiting for " + p.waiting_for.join(", ")));
    } else if (p.health) {
      const status = p.health.status;
      const span = el("span", { className: "health-" + status }, status === "unknown" ? "unknown" : status);
      if (p.health.reason) span.title = p.health.reason;
      cell.append(span);
    } else {
      cell.append(el("span", { className: "quiet" }, "—"));
    }
    return cell;
  }

  function button(label, verb, name, enabled) {
    const b = el("button", { type: "button", "data-action": verb, "data-name": name }, label);
    b.disabled = !enabled;
    return b;
  }

  function row(p) {
    const name = namespec(p);
    const tr = el("tr", { id: "row-" + name, "data-name": name, "data-state": p.statename });
    const stateCell = el("td");
    stateCell.append(el("span", { className: "state", "data-state": p.statename }, p.statename));
    tr.append(stateCell);
    tr.append(el("td", { className: "group" }, p.group));
    tr.append(el("td", { className: "name" }, p.name));
    tr.append(el("td", { className: "desc", title: p.description }, p.description));
    tr.append(el("td", { className: "num pid" }, p.pid ? String(p.pid) : "—"));
    tr.append(el("td", { className: "num uptime", "data-start": p.statename === "RUNNING" && p.start ? p.start : "" }, "—"));
    tr.append(healthCell(p));
    tr.append(el("td", { className: "num cpu" }, "—"));
    tr.append(el("td", { className: "num rss" }, "—"));
    tr.append(el("td", { className: "num restarts" }, String(p.restarts)));
    const actions = el("td", { className: "actions" });
    const running = RUNNING_STATES.has(p.statename);
    actions.append(button("Start", "start", name, !running));
    actions.append(button("Stop", "stop", name, running));
    actions.append(button("Restart", "restart", name, true));
    actions.append(button("Clear log", "clearlog", name, true));
    const tail = el("a", { className: "button", href: "/tail.html?processname=" + encodeURIComponent(name), target: "_blank", rel: "noopener" }, "Tail");
    actions.append(tail);
    tr.append(actions);
    setUsage(tr, name, p.usage ? [cpuSeconds(p.usage), p.usage.rss_bytes] : null);
    return tr;
  }

  function setUsage(tr, name, usage) {
    const cpu = tr.querySelector(".cpu");
    const rss = tr.querySelector(".rss");
    if (!usage) {
      cpu.textContent = "—";
      cpu.title = "";
      rss.textContent = "—";
      lastCpu.delete(name);
      return;
    }
    const [seconds, bytes] = usage;
    const now = performance.now();
    const previous = lastCpu.get(name);
    if (previous && now > previous[1] && seconds >= previous[0]) {
      const percent = ((seconds - previous[0]) / ((now - previous[1]) / 1000)) * 100;
      cpu.textContent = percent.toFixed(1) + "%";
    } else {
      cpu.textContent = formatCpuTime(seconds);
    }
    cpu.title = "CPU time " + formatCpuTime(seconds);
    lastCpu.set(name, [seconds, now]);
    rss.textContent = formatBytes(bytes);
  }

  function tickUptimes() {
    const now = Date.now() / 1000 + clockSkew;
    for (const cell of document.querySelectorAll("td.uptime, #daemon-uptime")) {
      const start = Number(cell.dataset.start);
      cell.textContent = start ? formatUptime(now - start) : "—";
    }
  }

  function render() {
    if (!facts) return;
    const d = facts.daemon;
    $("daemon").textContent = "vigild " + d.version + " · pid " + d.pid + " · up ";
    $("daemon").append(el("span", { id: "daemon-uptime", "data-start": d.started }, ""),
      " · config generation " + d.config_generation);
    const counts = new Map();
    for (const p of facts.processes) counts.set(p.statename, (counts.get(p.statename) || 0) + 1);
    const summary = $("summary");
    summary.replaceChildren(el("span", { className: "chip" }, facts.processes.length + " processes"));
    for (const [state, count] of [...counts.entries()].sort()) {
      summary.append(el("span", { className: "chip state", "data-state": state }, count + " " + state));
    }
    const rows = $("rows");
    const fragment = document.createDocumentFragment();
    let shown = 0;
    for (const p of facts.processes) {
      const name = namespec(p).toLowerCase();
      if (filterText && !name.includes(filterText) && !p.statename.toLowerCase().includes(filterText)) continue;
      fragment.append(row(p));
      shown += 1;
    }
    rows.replaceChildren(fragment);
    $("empty").hidden = shown > 0;
    tickUptimes();
  }

  function onFacts(event) {
    facts = JSON.parse(event.data);
    clockSkew = facts.daemon.now - Date.now() / 1000;
    setLive("live", "live");
    render();
  }

  function onUsage(event) {
    const data = JSON.parse(event.data);
    clockSkew = data.now - Date.now() / 1000;
    for (const [name, usage] of Object.entries(data.usage)) {
      const tr = document.getElementById("row-" + name);
      if (tr) setUsage(tr, name, usage);
    }
    setLive("live", "live");
  }

  async function post(path) {
    const response = await fetch(base + "/ui/action/" + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
    });
    if (response.status === 401) throw new Error("not authorized (401): reload the page to log in");
    if (response.status === 403) throw new Error("refused (403)");
    const type = response.headers.get("content-type") || "";
    if (!type.startsWith("application/json")) throw new Error("HTTP " + response.status);
    return response.json();
  }

  async function act(path) {
    try {
      const reply = await post(path);
      showMessage(reply.message, reply.ok);
      return reply;
    } catch (error) {
      showMessage(String(error.message || error), false);
      return null;
    }
  }

  function describeStep(step) {
    const parts = [];
    if (step.stopped.length) parts.push("stop " + step.stopped.join(", "));
    if (step.changed_in_place.length) parts.push("change in place " + step.changed_in_place.join(", "));
    if (step.started.length) parts.push("start " + step.started.join(", "));
    const verb = { added: "add group", removed: "remove group", updated: "update group" }[step.action] || step.action;
    let text = verb + " " + step.group + (parts.length ? ": " + parts.join("; ") : "");
    if (step.error) text += " (" + step.error + ")";
    return text;
  }

  let planId = null;

  function showPlan(reply) {
    planId = reply.id;
    const list = $("plan-steps");
    list.replaceChildren();
    for (const group of reply.unknown_groups) list.append(el("li", {}, "no such group: " + group));
    for (const step of reply.steps) list.append(el("li", {}, describeStep(step)));
    const nothing = reply.steps.length === 0;
    $("plan-summary").textContent = nothing
      ? "Nothing to change: the configuration file matches what is running."
      : "Re-reading the configuration would make these changes (nothing is applied yet):";
    $("plan-apply").disabled = nothing;
    const dialog = $("plan");
    if (!dialog.open) dialog.showModal();
  }

  async function planUpdate() {
    try {
      const reply = await post("plan");
      if (reply.steps) showPlan(reply);
      else showMessage(reply.message, false);
    } catch (error) {
      showMessage(String(error.message || error), false);
    }
  }

  async function applyUpdate() {
    const reply = await act("update/" + encodeURIComponent(planId));
    if (reply && reply.steps && reply.dry_run) showPlan(reply);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("rows").addEventListener("click", (event) => {
      const target = event.target.closest("button[data-action]");
      if (!target) return;
      target.disabled = true;
      act(target.dataset.action + "/" + encodeURIComponent(target.dataset.name));
    });
    $("restartall").addEventListener("click", () => act("restartall"));
    $("stopall").addEventListener("click", () => act("stopall"));
    $("update").addEventListener("click", planUpdate);
    $("plan").addEventListener("close", () => {
      if ($("plan").returnValue === "apply") applyUpdate();
    });
    $("filter").addEventListener("input", (event) => {
      filterText = event.target.value.trim().toLowerCase();
      render();
    });

    const events = new EventSource(base + "/ui/events");
    events.addEventListener("facts", onFacts);
    events.addEventListener("usage", onUsage);
    events.addEventListener("gone", (event) => {
      setLive("down", JSON.parse(event.data).message);
    });
    events.addEventListener("error", () => {
      setLive(events.readyState === EventSource.CLOSED ? "down" : "connecting",
        events.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting");
    });
    setInterval(tickUptimes, 1000);
  });
})();
