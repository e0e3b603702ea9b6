"use strict";
// The ringfence console: polls the admin API with the bearer token kept in
// this tab's session storage, draws every object, and sends actions after
// asking for a reason and a confirmation. It sets no cookie.
(function () {
  var KEY = "ringfence.token";
  var POLL_MS = 2000;
  var api = "api/v1/";
  var $ = function (id) { return document.getElementById(id); };
  var timer = null;
  var pending = null; // the action waiting in the dialog

  function token() { return sessionStorage.getItem(KEY) || ""; }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function cssName(s) { return String(s).replace(/[^a-z-]/g, ""); }
  function when(t) { return t ? new Date(t).toLocaleTimeString() : "-"; }
  function secs(s) {
    if (!s) { return "0s"; }
    if (s < 90) { return s.toFixed(s < 10 ? 1 : 0) + "s"; }
    if (s < 5400) { return (s / 60).toFixed(0) + "m"; }
    return (s / 3600).toFixed(1) + "h";
  }
  function pct(x) { return (x * 100).toFixed(1) + "%"; }

  function banner(kind, text) {
    var b = $("banner");
    b.className = kind;
    b.textContent = text;
    b.hidden = false;
  }

  function request(method, path, body) {
    var opts = { method: method, headers: { "Authorization": "Bearer " + token() }, credentials: "omit", cache: "no-store" };
    if (body) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(api + path, opts).then(function (resp) {
      return resp.json().catch(function () { return { error: "the server sent no JSON (HTTP " + resp.status + ")" }; })
        .then(function (data) { return { ok: resp.ok, status: resp.status, data: data }; });
    });
  }

  function signedOut(message) {
    if (timer) { clearInterval(timer); timer = null; }
    $("console").hidden = true;
    $("signout").hidden = true;
    $("login").hidden = false;
    $("whoami").textContent = "";
    if (message) { banner("error", message); }
  }

  function refresh() {
    return request("GET", "overview").then(function (r) {
      if (r.status === 401) {
        sessionStorage.removeItem(KEY);
        signedOut("token refused: " + r.data.error);
        return;
      }
      if (!r.ok) { banner("error", "refresh failed: " + r.data.error); return; }
      render(r.data);
    }).catch(function (e) { banner("error", "cannot reach the admin API: " + e); });
  }

  function start() {
    $("login").hidden = true;
    $("console").hidden = false;
    $("signout").hidden = false;
    refresh();
    if (!timer) { timer = setInterval(refresh, POLL_MS); }
  }

  // ask opens the dialog for one action; confirm sends it.
  function ask(title, text, path, body) {
    pending = { path: path, body: body };
    $("dialog-title").textContent = title;
    $("dialog-text").textContent = text;
    $("dialog-reason").value = "";
    $("dialog-confirm").disabled = true;
    $("dialog").hidden = false;
    $("dialog-reason").focus();
  }
  function closeDialog() { $("dialog").hidden = true; pending = null; }
  function confirmAction() {
    var reason = $("dialog-reason").value.trim();
    if (!pending || !reason) { return; }
    var body = Object.assign({ reason: reason }, pending.body || {});
    var path = pending.path;
    closeDialog();
    request("POST", path, body).then(function (r) {
      if (r.ok) {
        var c = r.data.change;
        banner("ok", "done (" + r.data.scope + "): " + c.verb + " " + c.kind + " " + c.name + (c.mode ? " to " + c.mode : "") + " by " + c.actor);
      } else {
        banner("error", "refused (HTTP " + r.status + "): " + r.data.error);
      }
      return refresh();
    }).catch(function (e) { banner("error", "the action was not sent: " + e); });
  }

  function actionButton(label, title, text, path, body, danger) {
    var b = el("button", danger ? "danger" : "", label);
    b.type = "button";
    b.dataset.action = label;
    b.addEventListener("click", function () { ask(title, text, path, body); });
    return b;
  }
  function esc(name) { return encodeURIComponent(name); }

  function breakerCard(b, basePath, body) {
    var card = el("div", "card b-" + cssName(b.state));
    card.dataset.breaker = b.name;
    var h = el("h3", "", b.name + " ");
    h.appendChild(el("span", "state s-" + cssName(b.state), b.state));
    card.appendChild(h);
    card.appendChild(el("div", "facts", "since " + when(b.since) + " - " + b.reason));
    card.appendChild(el("div", "facts", b.requests + " calls, " + b.failures + " failed (" + pct(b.failure_ratio) + "), " +
      b.consecutive_failures + " in a row" + (b.ramping ? ", ramping up" : "") + (b.next_probe ? ", next probe " + when(b.next_probe) : "")));
    var what = basePath.indexOf("groups/") === 0 ? "member " + b.name : "breaker " + b.name;
    card.appendChild(actionButton("force open", "Force " + what + " open?", "Every call will be rejected and fallbacks take over, until released.", basePath + "/force-open", body, true));
    card.appendChild(actionButton("force closed", "Force " + what + " closed?", "Every call will go through, whatever its outcome, until released.", basePath + "/force-close", body, true));
    if (b.forced) {
      card.appendChild(actionButton("release", "Release " + what + "?", "It returns to automatic control in a fresh closed state.", basePath + "/release", body, false));
    }
    return card;
  }

  function renderSwitches(list) {
    var box = $("switches");
    box.replaceChildren();
    if (!list.length) { box.appendChild(el("p", "muted", "none")); }
    list.forEach(function (s) {
      var card = el("div", "card m-" + cssName(s.mode));
      card.dataset.switch = s.name;
      var h = el("h3", "", s.name + " ");
      var m = el("span", "state mode s-" + cssName(s.mode), s.mode);
      h.appendChild(m);
      card.appendChild(h);
      var last = s.history.length ? s.history[s.history.length - 1] : null;
      card.appendChild(el("div", "facts", last ? "since " + when(last.time) + ": " + last.reason : "never changed"));
      ["auto", "manual", "primary"].forEach(function (mode) {
        if (mode === s.mode) { return; }
        var text = { auto: "Calls go to the dependency and fall back when it fails.",
          manual: "The dependency is not called at all; every call goes straight to the fallbacks.",
          primary: "Only the dependency is called and its errors surface (diagnosis)." }[mode];
        card.appendChild(actionButton(mode + " mode", "Set " + s.name + " to " + mode + " mode?", text, "switches/" + esc(s.name) + "/mode", { mode: mode }, mode !== "auto"));
      });
      box.appendChild(card);
    });
  }

  function renderBreakers(list) {
    var box = $("breakers");
    box.replaceChildren();
    if (!list.length) { box.appendChild(el("p", "muted", "none")); }
    list.forEach(function (b) { box.appendChild(breakerCard(b, "breakers/" + esc(b.name))); });
  }

  function renderGroups(list) {
    var box = $("groups");
    box.replaceChildren();
    if (!list.length) { box.appendChild(el("p", "muted", "none")); }
    list.forEach(function (g) {
      var wrap = el("div", "rollout");
      wrap.dataset.group = g.name;
      var h = el("h3", "", g.name + " (" + g.members.length + " members) ");
      wrap.appendChild(h);
      var path = "groups/" + esc(g.name);
      wrap.appendChild(actionButton("force all open", "Force every member of " + g.name + " open?", "Applies to the members the group holds now.", path + "/force-open", null, true));
      wrap.appendChild(actionButton("release all", "Release every forced member of " + g.name + "?", "They return to automatic control.", path + "/release", null, false));
      var cards = el("div", "cards");
      g.members.forEach(function (b) {
        var key = b.name.slice(g.name.length + 1);
        cards.appendChild(breakerCard(b, path, { key: key }));
      });
      wrap.appendChild(cards);
      box.appendChild(wrap);
    });
  }

  function chart(samples) {
    var w = 260, hgt = 60;
    var s = svg("svg", { "class": "chart", width: w, height: hgt, viewBox: "0 0 " + w + " " + hgt, role: "img" });
    var max = 1;
    samples.forEach(function (p) { max = Math.max(max, p.pending, p.dead); });
    var t0 = samples.length ? Date.parse(samples[0].time) : 0;
    var t1 = samples.length ? Date.parse(samples[samples.length - 1].time) : 1;
    var span = Math.max(t1 - t0, 1);
    function line(field, cls) {
      var pts = samples.map(function (p) {
        var x = samples.length === 1 ? w : (Date.parse(p.time) - t0) / span * (w - 4) + 2;
        var y = hgt - 4 - p[field] / max * (hgt - 8);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      if (pts.length === 1) { pts.unshift("2," + pts[0].split(",")[1]); }
      s.appendChild(svg("polyline", { "class": cls, points: pts.join(" ") }));
    }
    if (samples.length) { line("pending", "pending"); line("dead", "dead"); }
    var title = svg("title", {});
    title.textContent = "backlog: pending (blue) and dead letters (red), peak " + max;
    s.appendChild(title);
    return s;
  }

  function renderOutboxes(list) {
    var box = $("outboxes");
    box.replaceChildren();
    if (!list.length) { box.appendChild(el("p", "muted", "none")); }
    list.forEach(function (o) {
      var card = el("div", "card " + (o.dead ? "b-open" : o.pending ? "b-half-open" : "b-closed"));
      card.dataset.outbox = o.name;
      card.appendChild(el("h3", "", o.name));
      card.appendChild(el("div", "facts pending", o.pending + " pending" + (o.oldest ? ", oldest " + secs(o.oldest_age_seconds) + " old" : "") +
        ", " + o.dead + " dead, " + o.delivered + " delivered" + (o.replaying ? ", replaying" : "")));
      if (o.last_error) { card.appendChild(el("div", "facts muted", "last error: " + o.last_error)); }
      card.appendChild(chart(o.backlog || []));
      card.appendChild(el("div", "facts muted legend", "backlog over the last " + (o.backlog || []).length + " samples: pending (blue), dead letters (red)"));
      if (o.dead) {
        var b = el("button", "", "dead letters");
        b.type = "button";
        b.addEventListener("click", function () { showDeadLetters(o.name, card); });
        card.appendChild(b);
      }
      box.appendChild(card);
    });
  }

  function showDeadLetters(name, card) {
    request("GET", "outboxes/" + esc(name) + "/dead-letters").then(function (r) {
      if (!r.ok) { banner("error", r.data.error); return; }
      var t = el("table", "deadletters");
      r.data.dead_letters.forEach(function (d) {
        var tr = el("tr");
        [d.key, d.stream, when(d.enqueued), d.reason].forEach(function (v) { tr.appendChild(el("td", "", v)); });
        var td = el("td");
        td.appendChild(actionButton("requeue", "Requeue " + d.key + "?", "It goes back behind the items pending on stream " + d.stream + ".", "outboxes/" + esc(name) + "/requeue", { key: d.key }, false));
        tr.appendChild(td);
        t.appendChild(tr);
      });
      var old = card.querySelector("table.deadletters");
      if (old) { old.remove(); }
      card.appendChild(t);
    });
  }

  function renderRollouts(list) {
    var box = $("rollouts");
    box.replaceChildren();
    if (!list.length) { box.appendChild(el("p", "muted", "none")); }
    list.forEach(function (r) {
      var wrap = el("div", "rollout");
      wrap.dataset.rollout = r.name;
      var h = el("h3", "", r.name + " ");
      h.appendChild(el("span", "state s-" + cssName(r.state), r.state));
      h.appendChild(el("span", "muted", " " + r.percent + "% on the canary" + (r.state === "running" ? ", bake left " + secs(r.bake_left_seconds) : "")));
      wrap.appendChild(h);
      var rings = el("div", "rings");
      r.stages.forEach(function (s, i) {
        var cls = "ring";
        if (r.state === "promoted" || i < r.stage) { cls += " done"; }
        else if (i === r.stage && (r.state === "running" || r.state === "paused")) { cls += " current" + (r.state === "paused" ? " paused" : ""); }
        else if (i === r.stage && r.state === "rolled-back") { cls += " failed"; }
        rings.appendChild(el("div", cls, s.percent + "%" + (s.shadow ? " (shadow)" : "")));
      });
      wrap.appendChild(rings);
      var v = r.verdict;
      wrap.appendChild(el("div", "facts", "verdict: " + v.outcome + (v.rule ? " (" + v.rule + ")" : "") +
        "; canary " + v.canary.errors + "/" + v.canary.samples + " errors (" + pct(v.canary.error_rate) + "), baseline " +
        v.baseline.errors + "/" + v.baseline.samples + " (" + pct(v.baseline.error_rate) + "); likelihood ratio " +
        v.likelihood_ratio.toPrecision(3) + " of " + v.threshold.toPrecision(3) + "; last: " + r.reason + (r.error ? "; error: " + r.error : "")));
      var path = "rollouts/" + esc(r.name);
      [["pause", "Pause", "The stage keeps its exposure and is still judged, but does not advance.", false],
        ["resume", "Resume", "The stage bakes and advances again.", false],
        ["promote", "Promote", "Every key gets the canary at once.", true],
        ["abort", "Abort", "Every key goes back to the baseline; the rollout ends rolled back.", true]].forEach(function (a) {
        wrap.appendChild(actionButton(a[0], a[1] + " rollout " + r.name + "?", a[2], path + "/" + a[0], null, a[3]));
      });
      var t = el("table", "history");
      var head = el("tr");
      ["time", "transition", "ring", "reason", "verdict", "canary errors", "baseline errors"].forEach(function (c) { head.appendChild(el("th", "", c)); });
      t.appendChild(head);
      r.history.slice().reverse().forEach(function (e) {
        var tr = el("tr");
        [when(e.time), e.from + " -> " + e.to, e.percent + "%", e.reason, e.verdict.outcome + (e.verdict.rule ? " (" + e.verdict.rule + ")" : ""),
          e.verdict.canary.errors + "/" + e.verdict.canary.samples, e.verdict.baseline.errors + "/" + e.verdict.baseline.samples].forEach(function (c) { tr.appendChild(el("td", "", c)); });
        t.appendChild(tr);
      });
      wrap.appendChild(t);
      box.appendChild(wrap);
    });
  }

  function renderChanges(list) {
    var body = $("changes").querySelector("tbody");
    body.replaceChildren();
    if (!list.length) {
      var tr = el("tr");
      var td = el("td", "muted", "no action taken through this console yet");
      td.colSpan = 6;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    list.forEach(function (c) {
      var tr = el("tr");
      [when(c.time), c.actor, c.verb + (c.mode ? " " + c.mode : ""), c.kind + " " + c.name + (c.key ? " [" + c.key + "]" : ""),
        c.reason + (c.error ? " (error: " + c.error + ")" : ""), c.scope].forEach(function (v) { tr.appendChild(el("td", "", v)); });
      body.appendChild(tr);
    });
  }

  function render(o) {
    $("scope").textContent = "scope: " + o.scope;
    if (o.token) { $("whoami").textContent = "as " + o.token.name + (o.token.write ? "" : " (read-only)"); }
    $("refreshed").textContent = "updated " + when(o.time);
    renderSwitches(o.switches);
    renderBreakers(o.breakers);
    renderGroups(o.groups);
    renderOutboxes(o.outboxes);
    renderRollouts(o.rollouts);
    renderChanges(o.changes);
  }

  $("login-btn").addEventListener("click", function () {
    var t = $("token").value.trim();
    if (!t) { return; }
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    $("banner").hidden = true;
    start();
  });
  $("token").addEventListener("keydown", function (e) { if (e.key === "Enter") { $("login-btn").click(); } });
  $("signout").addEventListener("click", function () { sessionStorage.removeItem(KEY); signedOut(""); });
  $("dialog-reason").addEventListener("input", function () { $("dialog-confirm").disabled = !$("dialog-reason").value.trim(); });
  $("dialog-cancel").addEventListener("click", closeDialog);
  $("dialog-confirm").addEventListener("click", confirmAction);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && !$("dialog").hidden) { closeDialog(); } });

  // A token may come in the address's fragment (#token=...), which is never
  // sent to the server; it is moved to session storage and removed from the
  // address at once.
  var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  if (token()) { start(); } else { signedOut(""); }
})();
