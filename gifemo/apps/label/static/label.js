// gifemo labelling page: keyboard first, every answer committed before the page moves on.
"use strict";
(function () {
  const cfg = JSON.parse(document.getElementById("config").textContent);
  const $ = (id) => document.getElementById(id);
  const A = cfg.keys.actions, E = cfg.keys.emotions;
  const byKey = {};
  for (const [action, key] of Object.entries(A)) byKey[key] = { action };
  for (const [emotion, key] of Object.entries(E)) byKey[key] = { emotion };

  let items = [], current = null, busy = false, progress = [];
  let marks = { others: new Set(), cartoon: false, multi_scene: false };
  let pendingId = null; // reused when a POST fails, so a retry is never stored twice
  let selected = localStorage.getItem("gifemo.emotion") || "";

  function rid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const a = new Uint8Array(16);
    crypto.getRandomValues(a);
    return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function status(text, cls) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + (cls || "");
  }
  async function call(method, url, body) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(url, init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
    if (!r.ok) throw new Error((data && data.error) || ("HTTP " + r.status));
    return data;
  }

  // -- static parts -------------------------------------------------------------------------
  for (const btn of document.querySelectorAll("[data-action]")) {
    btn.querySelector("kbd").textContent = A[btn.dataset.action];
    btn.addEventListener("click", () => act(btn.dataset.action));
  }
  for (const btn of document.querySelectorAll("[data-flag]")) {
    btn.querySelector("kbd").textContent = A[btn.dataset.flag];
    btn.addEventListener("click", () => toggleFlag(btn.dataset.flag));
  }
  const others = $("others");
  for (const [emotion, key] of Object.entries(E)) {
    const b = document.createElement("button");
    b.id = "other-" + emotion;
    b.dataset.emotion = emotion;
    b.setAttribute("aria-pressed", "false");
    b.append(emotion + " ");
    const k = document.createElement("kbd");
    k.textContent = key;
    b.append(k);
    b.addEventListener("click", () => toggleOther(emotion));
    others.append(b);
  }
  const sel = $("emotion-select");
  for (const e of cfg.emotions) {
    const o = document.createElement("option");
    o.value = e;
    o.textContent = e;
    sel.append(o);
  }
  sel.value = cfg.emotions.includes(selected) ? selected : "";
  sel.addEventListener("change", () => {
    selected = sel.value;
    localStorage.setItem("gifemo.emotion", selected);
    sel.blur();
    load();
  });

  // -- rendering ----------------------------------------------------------------------------
  function renderMarks() {
    $("flag-cartoon").setAttribute("aria-pressed", String(marks.cartoon));
    $("flag-multi_scene").setAttribute("aria-pressed", String(marks.multi_scene));
    for (const b of others.children) {
      b.setAttribute("aria-pressed", String(marks.others.has(b.dataset.emotion)));
      b.disabled = !!current && b.dataset.emotion === current.emotion;
    }
  }
  function renderCounter() {
    const c = $("counter");
    if (!current) { c.textContent = ""; return; }
    const p = progress.find((x) => x.emotion === current.emotion);
    if (p) c.textContent = `${current.emotion}: ${p.positives} / ${p.n_p} consensus positives`;
  }
  function preload() {
    const box = $("preload");
    box.replaceChildren();
    for (const it of items.slice(1)) {
      const im = new Image();
      im.src = it.url;
      box.append(im);
    }
  }
  function show(preset) {
    current = items.length ? items[0] : null;
    const img = $("gif");
    if (!current) {
      $("question").textContent = "Nothing left for you here — thank you!";
      img.removeAttribute("src");
      img.dataset.gifId = "";
      $("gif-title").textContent = "";
      $("gif-tags").textContent = "";
      $("position").textContent = "";
      document.body.dataset.state = "empty";
      renderCounter();
      renderMarks();
      return;
    }
    const q = $("question");
    q.replaceChildren("Does this GIF show ");
    const b = document.createElement("b");
    b.textContent = current.emotion;
    q.append(b, "?");
    img.src = current.url;
    img.dataset.gifId = current.gif_id;
    $("gif-title").textContent = current.title || "";
    $("gif-tags").textContent = (current.tags || []).map((t) => "#" + t).join(" ");
    $("position").textContent = `rank ${current.position} · ranking v${current.ranking_version}`;
    marks = {
      others: new Set(preset ? preset.others : []),
      cartoon: preset ? !!preset.cartoon : false,
      multi_scene: preset ? !!preset.multi_scene : false,
    };
    document.body.dataset.state = "ready";
    renderMarks();
    renderCounter();
    preload();
  }

  // -- actions ------------------------------------------------------------------------------
  function toggleFlag(flag) {
    if (!current) return;
    marks[flag] = !marks[flag];
    renderMarks();
  }
  function toggleOther(emotion) {
    if (!current || emotion === current.emotion) return;
    if (marks.others.has(emotion)) marks.others.delete(emotion);
    else marks.others.add(emotion);
    renderMarks();
  }
  async function load() {
    document.body.dataset.state = "loading";
    try {
      const q = new URLSearchParams({ n: "4" });
      if (selected) q.set("emotion", selected);
      const r = await call("GET", "/api/next?" + q);
      items = r.items;
      progress = r.progress;
      show(null);
    } catch (e) {
      status("could not load: " + e.message, "error");
    }
  }
  async function answer(value) {
    if (!current || busy) return;
    busy = true;
    pendingId = pendingId || rid();
    status("saving…", "busy");
    try {
      const r = await call("POST", "/api/decisions", {
        emotion: current.emotion, gif_id: current.gif_id, answer: value,
        others: [...marks.others], cartoon: marks.cartoon, multi_scene: marks.multi_scene,
        request_id: pendingId, next_emotion: selected || null, n: 4,
      });
      pendingId = null;
      items = r.next;
      progress = r.progress;
      status(value === "skip" ? "skipped ✓" : "saved ✓", "ok");
      show(null);
    } catch (e) {
      status("not saved: " + e.message + " (press again to retry)", "error");
    } finally {
      busy = false;
    }
  }
  async function undo() {
    if (busy) return;
    busy = true;
    status("undoing…", "busy");
    try {
      const r = await call("POST", "/api/undo", { request_id: rid(), n: 4 });
      items = r.next;
      progress = r.progress;
      if (!r.undone) {
        status("nothing to undo", "");
      } else {
        status("undone ✓", "ok");
      }
      const u = r.undone;
      show(u && items.length && items[0].gif_id === u.gif_id && items[0].emotion === u.emotion ? u : null);
    } catch (e) {
      status("undo failed: " + e.message, "error");
    } finally {
      busy = false;
    }
  }
  function act(action) {
    if (action === "yes" || action === "no" || action === "skip") answer(action);
    else if (action === "undo") undo();
    else if (action === "cartoon" || action === "multi_scene") toggleFlag(action);
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    const hit = byKey[(ev.key || "").toLowerCase()];
    if (!hit) return;
    ev.preventDefault();
    if (hit.action) act(hit.action);
    else toggleOther(hit.emotion);
  });
  load();
})();
