/* The lineage page: inflates the graph, lays it out in layers from left to right (data flows
   datasets -> runs -> models -> registered models -> deployments), and answers search, click,
   focus and expand. Runs are shown under their experiment until it is expanded when there are many.
   URL hash parameters (for links and tests): #search=TEXT, #focus=URN, #select=URN, #expand=all. */
(function () {
  "use strict";
  const KINDS = {
    container: ["Experiment", "#8250df"], dataProcessInstance: ["Run", "#0969da"], dataset: ["Dataset", "#1a7f37"],
    mlModel: ["Model", "#bc4c00"], mlModelGroup: ["Registered model", "#cf222e"],
    mlModelDeployment: ["Deployment", "#6e7781"], mlFeature: ["Feature", "#4d8f96"], aiAgent: ["Agent", "#bf3989"],
  };
  // The column each kind starts at: longest paths push entities further right, never further left.
  const MIN_LAYER = { container: 0, dataset: 1, mlFeature: 2, dataProcessInstance: 2, mlModel: 3, mlModelGroup: 4,
    mlModelDeployment: 5, aiAgent: 5 };
  const NOT_LAYERED = new Set(["replaced by"]);  // drawn, but no reason to push a column right
  const NOT_DRAWN = new Set(["trained a version of"]);  // run -> registered model: the version in between says it
  const GROUP_ABOVE = 30, EXPAND_ALL_BELOW = 300, STRUCTURAL = "in", INDEX_MAX = 20000;
  const $ = (id) => document.getElementById(id);
  const kindLabel = (k) => (KINDS[k] || [k])[0];
  const kindColor = (k) => (KINDS[k] || [k, "#8c959f"])[1];

  async function inflate() {
    const bytes = Uint8Array.from(atob($("lineage-data").textContent.trim()), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  function model(data) {
    const nodes = data.nodes, ins = nodes.map(() => []), outs = nodes.map(() => []), runsOf = new Map();
    data.edges.forEach(([s, t, k], e) => { outs[s].push(e); ins[t].push(e); });
    nodes.forEach((n, i) => {
      if (n.k === "dataProcessInstance" && n.g !== undefined) {
        if (!runsOf.has(n.g)) runsOf.set(n.g, []);
        runsOf.get(n.g).push(i);
      }
    });
    const runCount = nodes.filter((n) => n.k === "dataProcessInstance").length;
    const expanded = new Set();
    runsOf.forEach((runs, g) => { if (runCount <= EXPAND_ALL_BELOW || runs.length <= GROUP_ABOVE) expanded.add(g); });
    return { data, nodes, ins, outs, runsOf, expanded, shown: null /* null: everything; else a Set of nodes */ };
  }

  // Where node i is drawn: itself, or its experiment while that is collapsed.
  function stand(m, i) {
    const n = m.nodes[i];
    return (n.k === "dataProcessInstance" && n.g !== undefined && !m.expanded.has(n.g)) ? n.g : i;
  }

  function visible(m) {
    const ids = new Set(), edges = new Map();
    m.nodes.forEach((n, i) => {
      if (n.k === "tag" || (m.shown && !m.shown.has(i))) return;
      ids.add(stand(m, i));
    });
    m.data.edges.forEach(([s, t, k]) => {
      if (m.shown && (!m.shown.has(s) || !m.shown.has(t))) return;
      let a = stand(m, s), b = stand(m, t), kind = m.data.kinds[k];
      if (NOT_DRAWN.has(kind)) return;
      if (kind === STRUCTURAL) { [a, b] = [b, a]; }  // the experiment left of its runs
      if (a === b || !ids.has(a) || !ids.has(b)) return;
      const key = a + ">" + b;
      if (!edges.has(key)) edges.set(key, { a, b, kind, n: 0 });
      edges.get(key).n += 1;
    });
    return { ids: [...ids], edges: [...edges.values()] };
  }

  // Longest-path layers over the visible graph (back edges of cycles ignored), then a barycentre order.
  function layout(m, view) {
    const succ = new Map(view.ids.map((i) => [i, []])), pred = new Map(view.ids.map((i) => [i, []]));
    view.edges.forEach((e) => { if (!NOT_LAYERED.has(e.kind)) { succ.get(e.a).push(e.b); pred.get(e.b).push(e.a); } });
    const layer = new Map(), state = new Map(), order = [];
    const visit = (root) => {
      const stack = [[root, 0]];
      state.set(root, 1);
      while (stack.length) {
        const top = stack[stack.length - 1], next = succ.get(top[0])[top[1]++];
        if (next === undefined) { state.set(top[0], 2); order.push(top[0]); stack.pop(); }
        else if (!state.has(next)) { state.set(next, 1); stack.push([next, 0]); }
      }
    };
    view.ids.forEach((i) => { if (!state.has(i)) visit(i); });
    order.reverse().forEach((i) => {  // topological order: every predecessor placed before
      const n = m.nodes[i];
      let l = n.x ? 0 : (MIN_LAYER[n.k] || 0);
      pred.get(i).forEach((p) => { if (layer.has(p)) l = Math.max(l, layer.get(p) + 1); });
      layer.set(i, l);
    });
    const columns = [];
    view.ids.forEach((i) => { const l = layer.get(i); (columns[l] = columns[l] || []).push(i); });
    const rank = new Map();
    columns.forEach((col) => col.forEach((i, r) => rank.set(i, r)));
    for (let sweep = 0; sweep < 2; sweep++) {
      columns.forEach((col) => {
        const centre = (i) => { const ps = pred.get(i).filter((p) => rank.has(p));
          return ps.length ? ps.reduce((s, p) => s + rank.get(p), 0) / ps.length : rank.get(i); };
        col.sort((x, y) => centre(x) - centre(y)).forEach((i, r) => rank.set(i, r));
      });
    }
    const pos = new Map();
    columns.forEach((col, l) => col.forEach((i, r) => pos.set(i, { x: l * 280, y: (r - col.length / 2) * 56 })));
    return pos;
  }

  function label(m, i) {
    const n = m.nodes[i], d = n.d || {};
    if (n.k === "container" && m.runsOf.has(i) && !m.expanded.has(i)) return `${n.n}\n(${m.runsOf.get(i).length} runs)`;
    const extra = d.aliases ? `\n[${d.aliases.join(", ")}]` : "";
    return n.n.length > 40 ? n.n.slice(0, 38) + "…" + extra : n.n + extra;
  }

  function draw(m, cy) {
    const view = visible(m), pos = layout(m, view);
    const elements = view.ids.map((i) => ({ group: "nodes", data: { id: "n" + i, label: label(m, i),
      color: kindColor(m.nodes[i].k), outside: m.nodes[i].x ? 1 : 0 }, position: pos.get(i) }));
    view.edges.forEach((e) => elements.push({ group: "edges", data: { id: `e${e.a}-${e.b}`, source: "n" + e.a,
      target: "n" + e.b, kind: e.kind, structural: e.kind === STRUCTURAL ? 1 : 0 } }));
    cy.startBatch(); cy.elements().remove(); cy.add(elements); cy.endBatch();
    cy.fit(undefined, 30);
    $("summary").textContent = `${m.nodes.length} entities, ${m.data.edges.length} links; ${view.ids.length} shown`;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function table(rows) {
    const t = el("table");
    rows.forEach(([k, v]) => { const tr = el("tr"); tr.append(el("td", {}, k), el("td", {}, String(v))); t.append(tr); });
    return t;
  }

  function showDetails(m, i) {
    const n = m.nodes[i], d = n.d || {}, box = $("details");
    box.replaceChildren(el("div", { class: "kind" }, kindLabel(n.k) + (d.types ? " · " + d.types.join(", ") : "")),
      el("h2", { "data-urn": n.i }, n.n), el("div", { class: "urn" }, n.i));
    if (/^https?:\/\//i.test(d.url || "")) { const p = el("p"); p.append(el("a", { href: d.url, target: "_blank", rel: "noopener" }, "Open in MLflow")); box.append(p); }
    if (d.desc) box.append(el("p", {}, d.desc));
    const chips = (xs, cls) => { const p = el("p"); xs.forEach((x) => p.append(el("span", { class: "chip " + cls }, x))); return p; };
    if (d.aliases) box.append(chips(d.aliases, "alias"));
    if (d.tags) box.append(chips(d.tags, "tag"));
    const facts = [["version", d.version], ["result", d.result], ["owners", (d.owners || []).join(", ")],
      ["created", Number.isFinite(new Date(d.created).getTime()) && d.created ? new Date(d.created).toISOString() : ""], ["removed", d.removed ? "yes" : ""]]
      .filter(([, v]) => v);
    if (facts.length) box.append(table(facts));
    [["Metrics", d.metrics], ["Parameters", d.params]].forEach(([title, rows]) => {
      if (rows) box.append(el("h3", {}, title), table(rows));
    });
    if (m.data.lean && n.k === "dataProcessInstance") {
      box.append(el("p", { class: "hint" }, "Parameters of runs are left out of a page this large: see MLflow."));
    }
    if (d.props) box.append(el("h3", {}, "Properties"), table(Object.entries(d.props)));
    const links = el("ul");
    m.ins[i].concat(m.outs[i]).forEach((e) => {
      const [s, t, k] = m.data.edges[e], other = s === i ? t : s;
      const li = el("li", {}, `${s === i ? "→" : "←"} ${m.data.kinds[k]}: ${m.nodes[other].n}`);
      li.onclick = () => select(m, other);
      links.append(li);
    });
    box.append(el("h3", {}, "Links"), links);
  }

  let cy, M, selected = null;

  function select(m, i, centre = true) {
    const n = m.nodes[i];
    if (n.k === "dataProcessInstance" && n.g !== undefined && !m.expanded.has(n.g)) { m.expanded.add(n.g); draw(m, cy); }
    if (m.shown && !m.shown.has(i)) { m.shown = null; draw(m, cy); }
    selected = i;
    $("focus").disabled = false;
    cy.$(":selected").unselect();
    const node = cy.getElementById("n" + stand(m, i));
    node.select();
    if (centre) cy.center(node);
    showDetails(m, i);
  }

  // Everything upstream and downstream of i (data-flow links; an experiment is not lineage).
  function lineageOf(m, i) {
    const seen = new Set([i]);
    [[m.ins, 0], [m.outs, 1]].forEach(([adj, side]) => {
      const queue = [i];
      while (queue.length) {
        const j = queue.pop();
        adj[j].forEach((e) => {
          const edge = m.data.edges[e], next = edge[side];
          const kind = m.data.kinds[edge[2]];
          if (kind !== STRUCTURAL && !NOT_DRAWN.has(kind) && !NOT_LAYERED.has(kind) && !seen.has(next)) { seen.add(next); queue.push(next); }
        });
      }
    });
    [...seen].forEach((j) => { const g = m.nodes[j].g; if (g !== undefined) { seen.add(g); m.expanded.add(g); } });
    return seen;
  }

  function focus(m, i) {
    m.shown = lineageOf(m, i);
    draw(m, cy);
    select(m, i, false);
    document.body.dataset.focus = m.nodes[i].i;
    document.body.dataset.focusCount = String(m.shown.size);
  }

  function search(m, text) {
    const q = text.trim().toLowerCase(), list = $("results");
    list.replaceChildren();
    if (!q) return;
    const hits = [];
    for (let i = 0; i < m.nodes.length && hits.length < 50; i++) {
      const n = m.nodes[i];
      if (n.k !== "tag" && (n.n.toLowerCase().includes(q) || n.i.toLowerCase().includes(q))) hits.push(i);
    }
    hits.forEach((i) => {
      const li = el("li", { "data-urn": m.nodes[i].i, "data-kind": m.nodes[i].k }, `${m.nodes[i].n} (${kindLabel(m.nodes[i].k)})`);
      li.onclick = () => select(m, i);
      list.append(li);
    });
    if (!hits.length) list.append(el("li", { class: "none" }, "nothing found"));
  }

  function buildIndex(m) {
    const ents = $("entity-index"), links = $("edge-index");
    if (ents.childElementCount) return;
    const a = document.createDocumentFragment(), b = document.createDocumentFragment();
    m.nodes.forEach((n) => a.append(el("li", { "data-urn": n.i, "data-kind": n.k }, `${kindLabel(n.k)}: ${n.n}`)));
    m.data.edges.forEach(([s, t, k]) => b.append(el("li", { "data-source": m.nodes[s].i, "data-target": m.nodes[t].i,
      "data-kind": m.data.kinds[k] }, `${m.nodes[s].n} → ${m.data.kinds[k]} → ${m.nodes[t].n}`)));
    ents.append(a); links.append(b);
  }

  function fromHash(m) {
    const params = new URLSearchParams(location.hash.slice(1)), byUrn = (u) => m.nodes.findIndex((n) => n.i === u);
    if (params.get("expand") === "all") { m.runsOf.forEach((_, g) => m.expanded.add(g)); draw(m, cy); }
    if (params.has("search")) { $("search").value = params.get("search"); search(m, params.get("search")); }
    if (params.has("focus") && byUrn(params.get("focus")) >= 0) focus(m, byUrn(params.get("focus")));
    else if (params.has("select") && byUrn(params.get("select")) >= 0) select(m, byUrn(params.get("select")), false);
  }

  async function main() {
    M = model(await inflate());
    cy = cytoscape({ container: $("graph"), layout: { name: "preset" }, wheelSensitivity: 0.3, minZoom: 0.02,
      style: [
        { selector: "node", style: { "background-color": "data(color)", label: "data(label)", "font-size": 10,
          "text-wrap": "wrap", "text-valign": "bottom", "text-margin-y": 3, width: 18, height: 18 } },
        { selector: "node[outside = 1]", style: { shape: "round-rectangle", "background-opacity": 0.45 } },
        { selector: "node:selected", style: { "border-width": 3, "border-color": "#0550ae" } },
        { selector: "edge", style: { width: 1.2, "line-color": "#afb8c1", "target-arrow-color": "#afb8c1",
          "target-arrow-shape": "triangle", "curve-style": "bezier", "arrow-scale": 0.7 } },
        { selector: "edge[structural = 1]", style: { "line-style": "dashed", "target-arrow-shape": "none" } },
      ] });
    cy.on("tap", "node", (evt) => {
      const i = Number(evt.target.id().slice(1)), n = M.nodes[i];
      if (n.k === "container" && M.runsOf.has(i) && selected === i) {
        M.expanded.has(i) ? M.expanded.delete(i) : M.expanded.add(i);
        draw(M, cy);
      }
      select(M, i);
    });
    $("search").addEventListener("input", (e) => search(M, e.target.value));
    $("focus").onclick = () => { if (selected !== null) focus(M, selected); };
    $("show-all").onclick = () => { M.shown = null; delete document.body.dataset.focus; draw(M, cy); };
    $("expand-runs").onclick = () => { M.runsOf.forEach((_, g) => M.expanded.add(g)); draw(M, cy); };
    $("index-panel").addEventListener("toggle", () => buildIndex(M));
    $("legend").replaceChildren(...Object.entries(KINDS).map(([, [name, color]]) => {
      const s = el("span"); s.append(el("i", { style: "background:" + color }), name); return s; }));
    draw(M, cy);
    if (M.nodes.length + M.data.edges.length <= INDEX_MAX) buildIndex(M);
    fromHash(M);
    document.body.dataset.renderedMs = String(Math.round(performance.now()));
    document.body.dataset.ready = "1";
  }

  main().catch((err) => { document.body.dataset.ready = "error"; $("summary").textContent = "cannot draw: " + err; });
})();
