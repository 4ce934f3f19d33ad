/* supportbot: the operator desk's ticket page, live. Vanilla JS, no build step, no dependencies.

Stable selectors (browser tests rely on them; docs/operator-desk.md lists them too):
  #desk                     the page root; data-poll-url, data-after (last message id) ...
  #thread                   the conversation, oldest first; its rows:
    .msg[data-id]           a message (data-id = Message id; data-side = customer|bot|operator|system;
                            data-source = user|faq|local_llm|api_llm|operator|system|smalltalk)
    .msg .delivery          delivery state of an outgoing message: text Pending|Sending|Sent|Failed
                            (translated), data-state = pending|sending|sent|failed (never translated)
    .event[data-id]         a status change / hand-over / take (data-status = the new status)
    .note[data-id]          an internal note (never sent to the customer)
  #ticket-status (data-status), #ticket-assignee, #ticket-waiting   the header, updated live
  #take #release #resolve #close #reopen                            status buttons (hidden when n/a)
  #ticket_form #reply-text #reply-send #reply-token #reply-error     the reply box
  #canned (the picker), #canned-hint, #canned-data (JSON)           canned replies
  #note-form #note-text #note-add #note-error                       internal notes
  #live-status                                                      live-update problems

Keys: Ctrl+Enter (or Cmd+Enter) sends the reply or adds the note; "/shortcut" then Tab inserts a
canned reply; Alt+/ focuses the canned-reply picker.
*/
(function () {
  "use strict";
  const desk = document.getElementById("desk");
  if (!desk) return;
  const thread = document.getElementById("thread");
  const live = document.getElementById("live-status");
  const cursors = {
    message: Number(desk.dataset.after) || 0,
    change: Number(desk.dataset.afterChange) || 0,
    note: Number(desk.dataset.afterNote) || 0,
  };
  const interval = Number(desk.dataset.pollInterval) || 2000;
  const title = document.title;
  let failures = 0;
  let unseen = 0;  // customer messages that arrived while the tab was in the background

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { unseen = 0; document.title = title; }
  });

  function csrfToken() {
    const input = document.querySelector("[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }

  function addItem(item) {
    if (thread.querySelector('[data-key="' + item.key + '"]')) return false;
    const template = document.createElement("template");
    template.innerHTML = item.html.trim();
    const node = template.content.firstElementChild;
    if (!node) return false;
    const empty = thread.querySelector(".desk-empty");
    if (empty) empty.remove();
    // In time order: a row that arrives late (a status change after the reply the page sent
    // itself) goes where a reload would put it.
    const ts = Number(node.dataset.ts) || Infinity;
    let before = null;
    for (let row = thread.lastElementChild; row; row = row.previousElementSibling) {
      if (!(Number(row.dataset.ts) > ts)) break;
      before = row;
    }
    thread.insertBefore(node, before);
    if (item.id > (cursors[item.kind] || 0)) cursors[item.kind] = item.id;
    return true;
  }

  function updateDeliveries(deliveries) {
    for (const d of deliveries) {
      const row = thread.querySelector('.msg[data-id="' + d.id + '"]');
      const el = row && row.querySelector(".delivery");
      if (!el || (el.dataset.state === d.state && el.textContent === d.label)) continue;
      el.dataset.state = d.state;
      el.textContent = d.label;
      const notes = row.querySelector(".delivery-notes");
      if (notes) {
        notes.textContent = "";
        for (const text of d.notes) {
          const span = document.createElement("span");
          span.className = "help";
          span.textContent = text;
          notes.appendChild(span);
        }
      }
    }
  }

  function updateTicket(t) {
    const status = document.getElementById("ticket-status");
    if (status) { status.textContent = t.status_label; status.dataset.status = t.status; }
    const assignee = document.getElementById("ticket-assignee");
    if (assignee) assignee.textContent = t.assignee_text;
    const waiting = document.getElementById("ticket-waiting");
    if (waiting) { waiting.textContent = t.waiting_text; waiting.classList.toggle("desk-overdue", t.overdue); }
    for (const name of ["take", "release", "resolve", "close", "reopen"]) {
      const button = document.getElementById(name);
      if (button) button.hidden = !t.actions.includes(name);
    }
  }

  function pollUrl() {
    const params = new URLSearchParams({
      after: cursors.message, after_change: cursors.change, after_note: cursors.note,
    });
    return desk.dataset.pollUrl + "?" + params.toString();
  }

  async function poll() {
    try {
      const response = await fetch(pollUrl(), {
        headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
      });
      const type = response.headers.get("Content-Type") || "";
      if (!type.includes("application/json")) {
        throw new Error(desk.dataset.msgSignedOut);
      }
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
      const stick = nearBottom();
      let added = false;
      for (const item of data.items) {
        if (addItem(item)) {
          added = true;
          if (document.hidden && item.html.includes('data-side="customer"')) unseen += 1;
        }
      }
      if (unseen) document.title = "(" + unseen + ") " + title;
      updateDeliveries(data.deliveries);
      updateTicket(data.ticket);
      if (added && stick) window.scrollTo(0, document.documentElement.scrollHeight);
      failures = 0;
      live.textContent = "";
    } catch (error) {
      failures += 1;
      live.textContent = desk.dataset.msgPaused + " (" + error.message + ")";
    }
    const wait = interval * Math.min(2 ** failures, 15) * (document.hidden ? 3 : 1);
    window.setTimeout(poll, wait);
  }

  async function post(form, output) {
    const response = await fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
    let data;
    try { data = await response.json(); } catch (e) { data = { error: response.status + " " + response.statusText }; }
    if (!response.ok) { output.textContent = data.error || response.statusText; return null; }
    output.textContent = "";
    return data;
  }

  // -- the reply box ------------------------------------------------------------------------
  const replyForm = document.getElementById("ticket_form");
  if (replyForm) {
    const text = document.getElementById("reply-text");
    const send = document.getElementById("reply-send");
    const token = document.getElementById("reply-token");
    const error = document.getElementById("reply-error");
    let sending = false;

    async function sendReply() {
      if (sending) return;  // the server's token is the real guard; this spares a request
      sending = true;
      send.disabled = true;
      try {
        const data = await post(replyForm, error);
        if (data) {
          addItem({ kind: "message", id: data.id, key: data.key, html: data.html });
          text.value = "";
          token.value = data.next_token;  // a new reply gets a new token
          window.scrollTo(0, document.documentElement.scrollHeight);
        }
      } catch (e) {
        // The same token stays: sending again cannot deliver the reply twice.
        error.textContent = desk.dataset.msgReplyNetwork;
      } finally {
        sending = false;
        send.disabled = false;
      }
    }

    replyForm.addEventListener("submit", function (event) { event.preventDefault(); sendReply(); });
    text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); sendReply(); }
    });
    setUpCanned(text);

    thread.addEventListener("click", function (event) {
      const button = event.target.closest(".use-draft");
      if (!button) return;
      text.value = button.dataset.text;
      text.focus();
    });
  }

  // -- canned replies -------------------------------------------------------------------------
  function setUpCanned(text) {
    const dataNode = document.getElementById("canned-data");
    const canned = dataNode ? JSON.parse(dataNode.textContent) : [];
    const picker = document.getElementById("canned");
    const hint = document.getElementById("canned-hint");

    function typedShortcut() {
      const before = text.value.slice(0, text.selectionStart);
      const match = before.match(/(^|\s)\/([\w-]*)$/);
      return match ? match[2] : null;
    }

    function matches(prefix) {
      return canned.filter(function (c) { return c.shortcut.startsWith(prefix); });
    }

    function insert(reply) {
      const typed = typedShortcut();
      const end = text.selectionEnd;
      const start = typed === null ? text.selectionStart : text.selectionStart - typed.length - 1;
      text.setRangeText(reply.text, start, end, "end");
      hint.hidden = true;
      text.focus();
    }

    text.addEventListener("input", function () {
      const typed = typedShortcut();
      const found = typed === null ? [] : matches(typed).slice(0, 8);
      hint.hidden = found.length === 0;
      hint.textContent = "";
      for (const c of found) {
        const line = document.createElement("div");
        const b = document.createElement("b");
        b.textContent = "/" + c.shortcut;
        line.appendChild(b);
        line.appendChild(document.createTextNode(" — " + c.title + " (Tab)"));
        hint.appendChild(line);
      }
    });

    text.addEventListener("keydown", function (event) {
      if (event.altKey && (event.key === "/" || event.code === "Slash")) {
        event.preventDefault();
        picker.focus();
        try { picker.showPicker(); } catch (e) { /* older browsers: focused is enough */ }
        return;
      }
      if (event.key !== "Tab" || event.shiftKey) return;
      const typed = typedShortcut();
      if (typed === null) return;
      const exact = canned.find(function (c) { return c.shortcut === typed; });
      const found = exact ? [exact] : matches(typed);
      if (found.length === 1) { event.preventDefault(); insert(found[0]); }
    });

    picker.addEventListener("change", function () {
      const reply = canned.find(function (c) { return c.shortcut === picker.value; });
      picker.value = "";
      if (reply) insert(reply);
    });
  }

  // -- internal notes ---------------------------------------------------------------------------
  const noteForm = document.getElementById("note-form");
  if (noteForm) {
    const noteText = document.getElementById("note-text");
    const noteError = document.getElementById("note-error");
    async function addNote() {
      try {
        const data = await post(noteForm, noteError);
        if (data) {
          addItem({ kind: "note", id: data.id, key: data.key, html: data.html });
          noteText.value = "";
        }
      } catch (e) {
        noteError.textContent = desk.dataset.msgNoteNetwork;
      }
    }
    noteForm.addEventListener("submit", function (event) { event.preventDefault(); addNote(); });
    noteText.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); addNote(); }
    });
  }

  // Newest at the bottom, above the reply box: open the page there.
  window.scrollTo(0, document.documentElement.scrollHeight);
  window.setTimeout(poll, interval);
})();
