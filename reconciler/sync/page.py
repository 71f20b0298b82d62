"""The sync agent's status page (`GET /`): for people, on a desk or a phone. The same facts as
`GET /status`, and the last rounds; it refreshes itself every few seconds.

One renderer, in the page: the status is embedded as JSON (so the first paint needs no
request) and fetched again from /status; every value reaches the page through textContent,
never as markup, so a commit subject or an error cannot inject anything. The status holds no
secret (the repository is shown without credentials, errors are told without secret values).
"""

from __future__ import annotations

import json

REFRESH_S = 3

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reconciler sync</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1b1f24; background: #f6f7f9; }
  header, main { max-width: 60rem; margin: 0 auto; padding: 0.8rem 1rem; }
  header { background: #1b1f24; color: #f6f7f9; max-width: none; }
  header h1 { font-size: 1.1rem; margin: 0; }
  header p { margin: 0.2rem 0 0; color: #c9d1d9; overflow-wrap: anywhere; }
  section { background: #fff; border: 1px solid #d8dee4; border-radius: 6px; margin: 0.8rem 0; padding: 0.6rem 0.8rem; }
  h2 { font-size: 1rem; margin: 0 0 0.4rem; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 0.8rem; margin: 0; }
  dt { color: #57606a; } dd { margin: 0; overflow-wrap: anywhere; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 0.3rem 0.4rem; border-top: 1px solid #eaeef2; vertical-align: top; }
  th { color: #57606a; font-weight: 600; border-top: 0; }
  td.problem { color: #a40e26; overflow-wrap: anywhere; }
  .state { display: inline-block; padding: 0 0.45rem; border-radius: 1rem; font-size: 0.85rem; white-space: nowrap; }
  .in-sync, .applied { background: #dafbe1; color: #116329; }
  .failed, .error { background: #ffebe9; color: #a40e26; }
  .held, .canary, .rolled-back { background: #fff8c5; color: #7d4e00; }
  ol { margin: 0; padding-left: 1.2rem; } li { margin: 0.3rem 0; }
  li pre { margin: 0.2rem 0 0; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.8rem; color: #424a53; }
  footer { color: #57606a; font-size: 0.8rem; }
  @media (max-width: 32rem) { th.revision, td.revision { display: none; } }
</style>
</head>
<body>
<header><h1>reconciler sync</h1><p id="source"></p></header>
<main>
<noscript><p>This page draws itself with JavaScript; <a href="/status">/status</a> has the same as JSON.</p></noscript>
<section><h2>The branch</h2><dl id="facts"></dl></section>
<section><h2>Packages</h2>
<table><thead><tr><th>package</th><th>state</th><th class="revision">runs</th><th>last error</th></tr></thead>
<tbody id="packages"></tbody></table></section>
<section><h2>Last rounds</h2><ol id="rounds"></ol></section>
<footer>Refreshes every __REFRESH__ s. Updated <span id="updated"></span>. <a href="/status">/status</a> · <a href="/metrics">/metrics</a></footer>
</main>
<script id="initial" type="application/json">__INITIAL__</script>
<script>
"use strict";
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function badge(state) { return el("span", state, "state " + String(state).replace(/ /g, "-")); }
function event(value) {
  if (!value) return "-";
  return value.commit.slice(0, 7) + " at " + value.at + (value.message ? ": " + value.message : "");
}
function draw(status) {
  document.getElementById("source").textContent = status.repository + " (" + status.ref + ", " + status.path + ")";
  const facts = document.getElementById("facts");
  facts.replaceChildren();
  for (const [label, value] of [["last fetched", event(status.last_fetched)], ["last applied", event(status.last_applied)],
                                ["last error", event(status.last_error)], ["next round", status.next_round || "-"]]) {
    facts.append(el("dt", label), el("dd", value));
  }
  const rows = document.getElementById("packages");
  rows.replaceChildren();
  for (const pkg of status.packages || []) {
    const row = el("tr");
    const state = el("td"); state.append(badge(pkg.state));
    row.append(el("td", pkg.name), state, el("td", pkg.revision || "-", "revision"), el("td", pkg.error || "", "problem"));
    rows.append(row);
  }
  if (!(status.packages || []).length) { const row = el("tr"); row.append(el("td", "no round has run yet")); rows.append(row); }
  const rounds = document.getElementById("rounds");
  rounds.replaceChildren();
  for (const round of status.rounds || []) {
    const item = el("li");
    item.append(el("code", round.commit.slice(0, 7)), " ", badge(round.outcome), " " + round.at + " (" + round.seconds + " s)");
    if ((round.lines || []).length) item.append(el("pre", round.lines.join("\\n")));
    rounds.append(item);
  }
  document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  document.body.dataset.rounds = String((status.rounds || []).length);
}
draw(JSON.parse(document.getElementById("initial").textContent));
setInterval(async () => {
  try {
    const answer = await fetch("/status", {cache: "no-store"});
    if (answer.ok) draw(await answer.json());
  } catch (error) { document.getElementById("updated").textContent = "not now: the agent does not answer"; }
}, __REFRESH__ * 1000);
</script>
</body>
</html>
"""


def render_page(status: dict) -> bytes:
    """The page, with the status embedded as JSON that cannot end its script element."""
    initial = json.dumps(status).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return PAGE.replace("__REFRESH__", str(REFRESH_S)).replace("__INITIAL__", initial).encode()
