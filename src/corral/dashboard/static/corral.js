// corral dashboard: live updates over Server-Sent Events, ticking durations, log follow.
// The server sends HTML it rendered and escaped itself; nothing here builds markup from data.
"use strict";

function applyEvent(kind, data) {
  const target = data.target && document.getElementById(data.target);
  if (kind === "replace" && target) {
    target.innerHTML = data.html;
  } else if (kind === "append" && target) {
    const box = document.querySelector(".log-box");
    const follow = box && box.querySelector(".follow input");
    target.insertAdjacentHTML("beforeend", data.html);
    if (follow && follow.checked) target.scrollTop = target.scrollHeight;
    showJump();
  }
  tick();
}

function listen(url, onBye) {
  const source = new EventSource(url);
  for (const kind of ["replace", "append"]) {
    source.addEventListener(kind, (e) => applyEvent(kind, JSON.parse(e.data)));
  }
  source.addEventListener("gone", () => source.close());
  source.addEventListener("bye", (e) => {
    // the server ends streams after a while: open the next one where this one stopped
    source.close();
    onBye(JSON.parse(e.data));
  });
  return source;
}

function streamPage(url) {
  listen(url, () => streamPage(url));
}

function streamLog(url) {
  listen(url, (state) => {
    const next = new URL(url, window.location.href);
    next.searchParams.set("after", state.after);
    next.searchParams.set("err", state.err);
    next.searchParams.set("shown", state.shown);
    streamLog(next.pathname + next.search);
  });
}

function showJump() {
  const jump = document.querySelector(".jump");
  if (jump && document.getElementById("first-error")) jump.hidden = false;
}

function fmt(s) {
  if (s < 10) return s.toFixed(1) + "s";
  if (s < 60) return Math.round(s) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function tick() {
  const now = Date.now() / 1000;
  for (const el of document.querySelectorAll(".dur[data-start]")) {
    el.textContent = fmt(Math.max(0, now - parseFloat(el.dataset.start)));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.querySelector("main[data-stream]");
  if (main) streamPage(main.dataset.stream);
  const box = document.querySelector(".log-box[data-log-stream]");
  if (box) streamLog(box.dataset.logStream);
  const log = document.getElementById("log");
  if (log) log.scrollTop = log.scrollHeight;
  showJump();
  setInterval(tick, 1000);
});
