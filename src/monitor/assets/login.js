// The login form: POST /api/login as JSON; the session cookie comes back
// HttpOnly, so this script never sees it.
"use strict";

document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("error");
  err.textContent = "";
  const body = JSON.stringify({
    user: document.getElementById("user").value,
    password: document.getElementById("password").value,
  });
  try {
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
      credentials: "same-origin",
    });
    if (r.ok) {
      location.href = "/";
      return;
    }
    const j = await r.json().catch(() => ({}));
    err.textContent = j.error || ("login failed: HTTP " + r.status);
  } catch (e) {
    err.textContent = "the monitor did not answer: " + e;
  }
});
