"""The run view's HTML: one self-contained page (no external scripts: the API server may have no internet) that
polls the app's ``state.json`` every 2 s while the load test runs and draws the timeline as SVG."""

from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Scale-out: __RUN__</title>
<style>
body{font:14px system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:18px;margin:0 0 8px} .muted{color:#777} table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left} .passed{color:#1a7f37;font-weight:600}
.failed{color:#c62828;font-weight:600} svg{background:#fafafa;border:1px solid #eee;margin:4px 0}
.legend span{margin-right:12px;white-space:nowrap} .legend i{display:inline-block;width:14px;height:3px;
vertical-align:middle;margin-right:4px}
</style></head><body>
<h1>Scale-out of run <code>__RUN__</code> <span id="phase" class="muted"></span></h1>
<div id="summary"></div>
<div id="charts"></div>
<script>
const STATE = __STATE__, REPORTS = __REPORTS__;
const COLORS = {"RPS sent":"#2ca02c","metric":"#17becf","HPA desired":"#d62728","replicas":"#9467bd",
  "ready pods":"#8c564b","pay-as-you-go nodes":"#ff7f0e","spot nodes":"#1f77b4","p95 ms":"#e377c2"};
function esc(s){return String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]))}
function chart(title, lines, w, h, xr, step, stop){
  const pts = lines.flatMap(l=>l.points); if(!pts.length) return "";
  const ys = pts.map(p=>p[1]), [x0, x1] = xr, y1 = step ? Math.max(...ys, 1) + 1 : Math.max(...ys, 1) * 1.1;
  const X = x=>40+(x-x0)/(x1-x0)*(w-50), Y = y=>h-20-y/y1*(h-40);
  let s = `<svg width="${w}" height="${h}" role="img" aria-label="${esc(title)}">`;
  s += `<text x="40" y="14" font-size="12">${esc(title)}</text>`;
  for(let i=0;i<=4;i++){const y=y1*i/4; s+=`<line x1="40" x2="${w-10}" y1="${Y(y)}" y2="${Y(y)}" stroke="#e5e5e5"/>`+
    `<text x="2" y="${Y(y)+4}" font-size="10">${y.toFixed(y1<10?1:0)}</text>`}
  s += `<text x="${w-10}" y="${h-4}" font-size="10" text-anchor="end">s since the load started (${x0.toFixed(0)} to ${x1.toFixed(0)})</text>`;
  s += `<line x1="${X(0)}" x2="${X(0)}" y1="20" y2="${h-20}" stroke="#999" stroke-dasharray="3,3"/>`;
  if(stop!==null) s += `<line x1="${X(stop)}" x2="${X(stop)}" y1="20" y2="${h-20}" stroke="#999" stroke-dasharray="3,3"/>`+
    `<text x="${X(stop)+3}" y="30" font-size="10" fill="#777">load stopped</text>`;
  for(const l of lines){ if(!l.points.length) continue;
    const d = l.points.map((p,i)=>(i?(step?"H"+X(p[0]).toFixed(1)+"V":"L"+X(p[0]).toFixed(1)+","):"M"+X(p[0]).toFixed(1)+",")+Y(p[1]).toFixed(1)).join("");
    s += `<path d="${d}" fill="none" stroke="${l.color}" stroke-width="2"/>`}
  s += "</svg><div class='legend'>" + lines.filter(l=>l.points.length).map(
    l=>`<span><i style="background:${l.color}"></i>${esc(l.name)}</span>`).join("") + "</div>";
  return s;
}
function col(rows, i){return rows.filter(r=>r[i]!==null&&r[i]!==undefined).map(r=>[r[0],r[i]])}
function render(st){
  const phase = {none:"(no load test recorded in this run yet)", load:"(load test running: refreshed every 2 s)",
    done:"(load test finished)"}[st.phase];
  document.getElementById("phase").textContent = phase;
  const sm = st.summary; let out = "";
  if(sm){
    const nodes = Object.entries(sm.nodes_by_charge_type||{}).map(([k,v])=>`${v} ${esc(k)}`).join(", ")||"n/a";
    out += `<table><tr><th>verdict</th><td class="${esc(sm.verdict)}" id="verdict">${esc(sm.verdict)}</td></tr>`+
      (sm.failed_checks&&sm.failed_checks.length?`<tr><th>failed checks</th><td>${sm.failed_checks.map(esc).join(", ")}</td></tr>`:"")+
      `<tr><th>endpoint</th><td>${esc(sm.endpoint)}</td></tr><tr><th>replicas reached</th><td>${esc(sm.replicas_reached)}</td></tr>`+
      `<tr><th>pool nodes at the peak</th><td>${nodes}</td></tr><tr><th>p95 latency</th><td>${esc(sm.p95_latency_ms)} ms</td></tr>`+
      `<tr><th>error rate</th><td>${(100*(sm.error_rate||0)).toFixed(2)} %</td></tr>`+
      (sm.cost_usd!==undefined&&sm.cost_usd!==null?`<tr><th>pool cost of the run (estimate)</th><td>$${Number(sm.cost_usd).toFixed(4)}`+
        (sm.cost_after_load_usd!==undefined?` (during the load $${Number(sm.cost_during_load_usd).toFixed(4)}, after it $${Number(sm.cost_after_load_usd).toFixed(4)})`:"")+`</td></tr>`:"")+
      (sm.pool_back_after_s!==undefined?`<tr><th>pool scale-in</th><td id="pool-back">${sm.pool_back_after_s===null?"not back to its size before the load within the recording":`back to its size before the load ${esc(sm.pool_back_after_s)} s after the load`}</td></tr>`:"")+
      `</table>`;
  }
  if(st.reports.length) out += "<p>" + st.reports.map(r=>`<a href="${REPORTS}/${r}" target="_blank" id="link-${r.split('.')[0]}">${esc(r)}</a>`).join(" · ") + "</p>";
  document.getElementById("summary").innerHTML = out;
  const sr = st.series; let charts = "";
  if(sr){
    const c = sr.cluster, w = Math.max(500, Math.min(1100, window.innerWidth - 30));
    const xs = [...c.map(r=>r[0]), ...sr.load.map(r=>r[0])], xr = [Math.min(0, ...xs), Math.max(1, ...xs)];
    charts += chart("Load vs replicas vs nodes", [
      {name:"RPS sent", color:COLORS["RPS sent"], points:col(sr.load,1)},
      {name:sr.metric+" (HPA input)", color:COLORS.metric, points:col(c,1)}], w, 200, xr, false, sr.stop);
    charts += chart("Replicas and pool nodes" + (sr.max_replicas?` (maxReplicas ${sr.max_replicas})`:""), [
      {name:"HPA desired", color:COLORS["HPA desired"], points:col(c,2)},
      {name:"replicas", color:COLORS.replicas, points:col(c,3)},
      {name:"ready pods", color:COLORS["ready pods"], points:col(c,4)},
      {name:"pay-as-you-go nodes", color:COLORS["pay-as-you-go nodes"], points:col(c,5)},
      {name:"spot nodes", color:COLORS["spot nodes"], points:col(c,6)}], w, 220, xr, true, sr.stop);
    charts += chart("p95 latency (ms)", [{name:"p95 ms", color:COLORS["p95 ms"], points:col(sr.load,2)}], w, 160, xr, false, sr.stop);
  }
  document.getElementById("charts").innerHTML = charts;
  return st.phase;
}
async function tick(){
  let phase = "none";
  try { const r = await fetch(STATE, {credentials:"same-origin"}); if(r.ok) phase = render(await r.json()); }
  catch(e) { document.getElementById("phase").textContent = "(could not read the run: " + e + ")"; }
  // live while the load runs; slower while nothing is recorded (a run before its load test, or another DAG's)
  if(phase !== "done" || !document.getElementById("verdict")) setTimeout(tick, phase === "none" ? 10000 : 2000);
}
tick();
</script></body></html>
"""


def run_page(run_id: str, state_url: str, reports_url: str) -> str:
    """The page of one run; the URLs are the app's own (same origin as the Airflow UI that frames it)."""
    return (
        _PAGE.replace("__RUN__", html.escape(run_id))
        .replace("__STATE__", _js(state_url))
        .replace("__REPORTS__", _js(reports_url))
    )


def _js(value: str) -> str:
    """A JS string literal safe inside <script> (no "</script>" can close it)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
