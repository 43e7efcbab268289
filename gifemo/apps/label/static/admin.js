// gifemo admin page: adjudicate disagreements (policy "adjudicate").
"use strict";
for (const b of document.querySelectorAll("#disagreements button[data-answer]")) {
  b.addEventListener("click", async () => {
    const r = await fetch("/api/admin/adjudicate", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ emotion: b.dataset.emotion, gif_id: b.dataset.gif, answer: b.dataset.answer }),
    });
    if (r.ok) location.reload();
    else b.textContent = "failed: " + ((await r.json()).error || r.status);
  });
}
