// treadle dashboard: fetch live fragments with the signed-in token, refresh them, run actions.
(function () {
  "use strict";
  var KEY = "treadle.token";
  var openMode = document.body.dataset.open === "1";
  var busy = false;
  var lastHtml = "";
  var timer = null;

  function token() { return openMode ? "" : (localStorage.getItem(KEY) || ""); }
  function headers(extra) {
    var h = extra || {};
    if (token()) h["Authorization"] = "Bearer " + token();
    return h;
  }
  function toast(text, bad) {
    var el = document.getElementById("toast");
    el.textContent = text;
    el.className = bad ? "show bad" : "show";
    clearTimeout(toast.t);
    toast.t = setTimeout(function () { el.className = ""; }, 4000);
  }
  async function errorText(resp) {
    try {
      var body = await resp.json();
      if (body && body.error) return body.error.type + ": " + body.error.message;
    } catch (e) { /* not JSON */ }
    return "HTTP " + resp.status;
  }

  // Sign in ------------------------------------------------------------------------------
  async function whoami() {
    if (openMode) return;
    var form = document.getElementById("login"), box = document.getElementById("whoami");
    if (!token()) { form.hidden = false; box.hidden = true; return; }
    var resp = await fetch("/api/whoami", { headers: headers() });
    if (!resp.ok) {
      localStorage.removeItem(KEY);
      form.hidden = false; box.hidden = true;
      toast("Sign-in failed: " + (await errorText(resp)), true);
      return;
    }
    var me = await resp.json();
    document.getElementById("who").textContent =
      me.name + " · " + (me.can_write ? "read-write" : "read-only");
    form.hidden = true; box.hidden = false;
  }
  var login = document.getElementById("login");
  if (login) {
    login.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var value = document.getElementById("token").value.trim();
      if (!value) return;
      localStorage.setItem(KEY, value);
      document.getElementById("token").value = "";
      await whoami();
      refresh(true);
    });
    document.getElementById("logout").addEventListener("click", function () {
      localStorage.removeItem(KEY);
      whoami();
      refresh(true);
    });
  }

  // Live fragments -----------------------------------------------------------------------
  var live = document.getElementById("live");
  function editing() {
    var a = document.activeElement;
    return a && live && live.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  }
  function picked() {
    return Array.prototype.map.call(
      document.querySelectorAll("input.pick:checked"), function (el) { return el.value; });
  }
  function showPicked() {
    var el = document.getElementById("picked");
    if (el) el.textContent = picked().length + " selected";
  }
  function keepValues(fn) {
    var chosen = picked();
    fn();
    chosen.forEach(function (id) {
      var box = live.querySelector('input.pick[value="' + CSS.escape(id) + '"]');
      if (box) box.checked = true;
    });
    showPicked();
  }
  function keepInputs(fn) {
    var saved = {};
    live.querySelectorAll("input[id], textarea[id], select[id]").forEach(function (el) {
      saved[el.id] = el.value;
    });
    fn();
    Object.keys(saved).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && saved[id] !== "") el.value = saved[id];
    });
  }
  async function refresh(force) {
    if (!live || (busy && !force) || (!force && editing())) return schedule();
    var resp;
    try {
      resp = await fetch(live.dataset.src, { headers: headers() });
    } catch (e) {
      live.dataset.stale = "1";
      return schedule();
    }
    var html;
    if (resp.ok) {
      html = await resp.text();
    } else {
      var hint = resp.status === 401 ? " — sign in with a token above." : "";
      html = '<div class="card why error"></div>';
      var text = (await errorText(resp)) + hint;
      if (html + text !== lastHtml) {
        live.innerHTML = html;
        live.firstChild.textContent = text;
        lastHtml = html + text;
      }
      return schedule();
    }
    delete live.dataset.stale;
    if (html !== lastHtml) {
      keepValues(function () { keepInputs(function () { live.innerHTML = html; }); });
      lastHtml = html;
    }
    schedule();
  }
  function schedule() {
    clearTimeout(timer);
    if (!live) return;
    var toggle = document.getElementById("live-toggle");
    if (toggle && !toggle.checked) return;
    var head = live.querySelector("[data-finished]");
    if (head && head.dataset.finished === "1") return;
    timer = setTimeout(function () { refresh(false); }, Number(live.dataset.every || 2000));
  }
  var toggle = document.getElementById("live-toggle");
  if (toggle) toggle.addEventListener("change", function () { refresh(true); });

  // Actions ------------------------------------------------------------------------------
  function field(id) { var el = document.getElementById(id); return el ? el.value : ""; }
  function pairs(spec) {
    return (spec || "").split(",").filter(Boolean).map(function (p) { return p.split("="); });
  }
  document.addEventListener("click", async function (ev) {
    var btn = ev.target.closest("button.act");
    if (!btn || btn.disabled) return;
    ev.preventDefault();
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    var url = btn.dataset.url.replace(/\{([\w-]+)\}/g, function (_, id) {
      return encodeURIComponent(field(id));
    });
    var body = {};
    pairs(btn.dataset.fields).forEach(function (p) {
      var v = field(p[1]).trim();
      if (v !== "") body[p[0]] = v;
    });
    try {
      pairs(btn.dataset.json).forEach(function (p) {
        var v = field(p[1]).trim();
        if (v !== "") body[p[0]] = JSON.parse(v);
      });
    } catch (e) {
      toast("Not valid JSON: " + e.message, true);
      return;
    }
    await send(btn, url, btn.dataset.method || "POST", body, async function (resp) {
      if (btn.dataset.go) {
        var made = await resp.json();  // e.g. a fork: go to the new run
        window.location.href = "/runs/" + encodeURIComponent(made[btn.dataset.go]);
        return true;
      }
      toast(btn.textContent.trim() + ": done");
      live.querySelectorAll("input[id], textarea[id]").forEach(function (el) { el.value = ""; });
      return false;
    });
  });

  // Send a button's request; ``ok(resp)`` handles success (true: do not refresh), then the
  // live part is refreshed.
  async function send(btn, url, method, body, ok) {
    busy = true;
    btn.disabled = true;
    try {
      var resp = await fetch(url, {
        method: method,
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(body),
      });
      if (resp.ok && await ok(resp)) return;
      if (!resp.ok) toast(await errorText(resp), true);
    } finally {
      busy = false;
      btn.disabled = false;
    }
    lastHtml = "";
    await refresh(true);
    setTimeout(function () { refresh(true); }, 400);
  }

  // Bulk actions on the selected runs ------------------------------------------------------
  document.addEventListener("change", function (ev) {
    if (ev.target.matches("input.pick-all")) {
      live.querySelectorAll("input.pick").forEach(function (el) { el.checked = ev.target.checked; });
    }
    if (ev.target.matches("input.pick, input.pick-all")) showPicked();
  });
  document.addEventListener("click", async function (ev) {
    var btn = ev.target.closest("button.bulk");
    if (!btn || btn.disabled) return;
    var ids = picked();
    if (!ids.length) { toast("Select runs first", true); return; }
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    var url = "/api/runs/bulk/" + encodeURIComponent(btn.dataset.action);
    await send(btn, url, "POST", { run_ids: ids }, async function (resp) {
      var done = await resp.json();
      var skipped = Object.keys(done.skipped).length;
      toast(btn.dataset.action + ": " + done.applied.length + " done, " + skipped + " skipped",
            skipped > 0 && done.applied.length === 0);
      document.querySelectorAll("input.pick, input.pick-all").forEach(function (el) {
        el.checked = false;
      });
      showPicked();
      return false;
    });
  });

  whoami();
  refresh(true);
})();
