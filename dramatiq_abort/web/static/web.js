// The page of `dramatiq-abort web`: lists what the worker processes run,
// refreshed on its own, and sends aborts when the server allows them.
// Every text from the server is set as text, never parsed as HTML.
"use strict";

(function () {
  const config = JSON.parse(document.body.dataset.config);
  // How often, and how many times, the outcome of an abort sent is asked.
  const OUTCOME_POLL_MS = 1000;
  const OUTCOME_POLLS = 60;
  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#messages tbody");
  // One row per message id, kept across refreshes so that a button does
  // not vanish under the pointer.
  const rows = new Map();
  let listing = null;

  function start() {
    $("access").textContent = config.allowAbort ? "aborts allowed" : "read-only";
    if (config.allowAbort) {
      $("access").classList.add("write");
      $("controls").hidden = false;
      document.querySelector("th.action").hidden = false;
      $("mode").addEventListener("change", labelButtons);
      tbody.addEventListener("click", onStop);
      $("where").addEventListener("submit", onWhere);
    } else {
      // Not merely hidden: a read-only page has nothing to press.
      $("controls").remove();
      document.querySelector("th.action").remove();
      $("read-only").hidden = false;
    }
    refresh();
  }

  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Abort-Token": config.token },
      body: JSON.stringify(body),
    };
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error("the server does not answer: is dramatiq-abort web still running?");
    }
    let data;
    try {
      data = await response.json();
    } catch (e) {
      throw new Error(`the server answered ${response.status} without JSON`);
    }
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  // One listing at a time; the next one after the refresh period, or at
  // once when an outcome came in since the last one was asked.
  let timer = null;
  let asking = false;
  let again = false;

  async function refresh() {
    asking = true;
    try {
      show(await api("/api/messages"));
    } catch (e) {
      const status = $("status");
      status.textContent = `Listing failed: ${e.message}. Trying again in ${config.refresh} s.`;
      status.className = "warning";
    }
    asking = false;
    timer = setTimeout(refresh, again ? 0 : config.refresh * 1000);
    again = false;
  }

  function refreshSoon() {
    if (asking) {
      again = true;
    } else {
      clearTimeout(timer);
      timer = setTimeout(refresh, 0);
    }
  }

  function show(listed) {
    listing = listed;
    const status = $("status");
    let text = listed.expected === null
      ? `${listed.answered} worker process(es) answered; how many listen is unknown`
      : `${listed.answered} of ${listed.expected} worker processes answered`;
    const missing = listed.expected === null ? 0 : listed.expected - listed.answered;
    if (missing > 0) {
      text += `; ${missing} did not within ${listed.wait} s: what they run is not listed`;
    }
    status.textContent = `${text}. Listed at ${new Date().toLocaleTimeString()},`
      + ` again every ${config.refresh} s.`;
    status.className = missing > 0 ? "warning" : "";

    const workers = $("workers");
    workers.replaceChildren(...listed.workers.map((worker) => element("span", worker)));
    if (!listed.workers.length) workers.textContent = "none";

    const seen = new Set();
    for (const message of listed.messages) {
      seen.add(message.message_id);
      let row = rows.get(message.message_id);
      if (!row) {
        row = newRow(message);
        rows.set(message.message_id, row);
      }
      fill(row, message, listed.now);
      tbody.appendChild(row);  // in the listing's order
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.remove();
        rows.delete(id);
      }
    }
    $("empty").hidden = listed.messages.length > 0;
    if (config.allowAbort) {
      options("actors", listed.messages.map((message) => message.actor));
      options("queues", listed.messages.map((message) => message.queue));
    }
  }

  function newRow(message) {
    const row = document.createElement("tr");
    row.dataset.messageId = message.message_id;
    for (const name of ["id", "actor", "queue", "state", "worker", "abort"]) {
      row.appendChild(element("td", "", name));
    }
    if (config.allowAbort) {
      const button = element("button", "", "stop");
      button.type = "button";
      button.dataset.messageId = message.message_id;
      const cell = element("td", "", "action");
      cell.appendChild(button);
      row.appendChild(cell);
    }
    row.cells[0].textContent = message.message_id;
    row.cells[1].textContent = message.actor;
    row.cells[2].textContent = message.queue;
    row.cells[4].textContent = `${message.host}:${message.pid}`;
    return row;
  }

  function fill(row, message, now) {
    row.cells[3].textContent = state(message, now);
    row.cells[5].textContent = abortState(message);
    row.classList.toggle("requested", message.abort_requested);
    const button = row.querySelector("button.stop");
    if (button) labelButton(button);
  }

  // Every time point of the API is in seconds since the epoch.
  function state(message, now) {
    if (message.state === "running") return `running for ${duration(now - message.started_at)}`;
    if (message.state === "delayed" && message.eta !== null) {
      return `delayed, due in ${duration(message.eta - now)}`;
    }
    return "waiting for a thread";
  }

  function abortState(message) {
    if (!message.abort_requested) return "\u2013";
    let text = "requested: ";
    if (message.grace_left === null) text += "interrupting";
    else if (message.grace_left === "inf") text += "asked to stop";
    else text += `${Math.round(message.grace_left).toLocaleString()} ms of grace left`;
    return message.reason === null ? text : `${text} (reason: \u201c${message.reason}\u201d)`;
  }

  function duration(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function labelButtons() {
    for (const button of tbody.querySelectorAll("button.stop")) labelButton(button);
  }

  function labelButton(button) {
    if (button.disabled) return;
    button.textContent = $("mode").value === "cancel" ? "Cancel" : "Abort";
  }

  function reason() {
    const text = $("reason").value.trim();
    if (!text) {
      showError("Type a reason first: the workers log it and it is recorded with the outcome.");
      $("reason").focus();
    }
    return text;
  }

  async function onStop(event) {
    const button = event.target.closest("button.stop");
    if (!button || button.disabled) return;
    const why = reason();
    if (!why) return;
    const id = button.dataset.messageId;
    const mode = $("mode").value;
    const message = listing && listing.messages.find((m) => m.message_id === id);
    button.disabled = true;
    try {
      await api("/api/abort", { message_id: id, mode: mode, reason: why });
    } catch (e) {
      button.disabled = false;
      showError(`The ${mode} was not sent: ${e.message}`);
      return;
    }
    button.textContent = "Sent";
    hideError();
    logSent(`${mode} sent for ${id}${message ? ` (${message.actor})` : ""}`, why, [id]);
  }

  async function onWhere(event) {
    event.preventDefault();
    const actor = $("where-actor").value.trim() || null;
    const queue = $("where-queue").value.trim() || null;
    if (actor === null && queue === null) {
      showError("Give an actor or a queue (or both): a rule without either would stop every message.");
      return;
    }
    const why = reason();
    if (!why) return;
    const mode = $("mode").value;
    let rule;
    try {
      rule = await api("/api/abort-where", { actor: actor, queue: queue, mode: mode, reason: why });
    } catch (e) {
      showError(`The rule was not recorded: ${e.message}`);
      return;
    }
    hideError();
    const matched = (listing ? listing.messages : []).filter((message) =>
      (actor === null || message.actor === actor) && (queue === null || message.queue === queue));
    const what = [actor && `actor \u201c${actor}\u201d`, queue && `queue \u201c${queue}\u201d`]
      .filter(Boolean).join(" and ");
    logSent(`${mode} rule ${rule.rule_id} for the messages of ${what}; ${matched.length} listed`
      + " match", why, matched.map((message) => message.message_id));
  }

  function logSent(text, why, ids) {
    $("sent").hidden = false;
    const item = element("li", `${new Date().toLocaleTimeString()}: ${text}, reason \u201c${why}\u201d.`);
    const outcomes = document.createElement("ul");
    for (const id of ids) {
      const line = element("li", `${id}: `);
      line.dataset.messageId = id;
      const outcome = element("span", "waiting for its outcome\u2026", "outcome");
      line.appendChild(outcome);
      outcomes.appendChild(line);
      follow(id, outcome);
    }
    item.appendChild(outcomes);
    $("log").prepend(item);
  }

  async function follow(id, span) {
    for (let poll = 0; poll < OUTCOME_POLLS; poll++) {
      let reported;
      try {
        reported = await api(`/api/outcome?message_id=${encodeURIComponent(id)}`);
      } catch (e) {
        span.textContent = `unknown: ${e.message}`;
        return;
      }
      if (reported.outcome !== null) {
        span.dataset.outcome = reported.outcome;
        span.textContent = reported.outcome
          + (reported.reason === null ? "" : `, reason \u201c${reported.reason}\u201d`);
        refreshSoon();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, OUTCOME_POLL_MS));
    }
    span.textContent = "none reported yet: the message may not have started, or runs on";
  }

  function options(id, values) {
    $(id).replaceChildren(...[...new Set(values)].sort().map((value) => {
      const option = document.createElement("option");
      option.value = value;
      return option;
    }));
  }

  function element(tag, text, className) {
    const made = document.createElement(tag);
    made.textContent = text;
    if (className) made.className = className;
    return made;
  }

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
  }

  start();
})();
