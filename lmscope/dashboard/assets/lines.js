// The line view (dashboard/stages/attention/lines.py), BertViz's head view drawn from the server's
// rows. `data-lines-frame` gives the window's tokens and the layer's heads; hovering (or focusing)
// a token on the left writes {analysis, layer, position, heads, end, n} into the `lines-ask` store;
// the answer, `data-lines`, holds one row per shown head with only the weights drawn. Tokens are
// text nodes; lines are SVG elements whose data-* attributes say what they draw.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  let view = null; // the frame drawn last: {doc, holder, layer, shown: Set, active, n, rows}

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function colour(head, heads) {
    return "hsl(" + Math.round((360 * head) / heads) + ", 65%, 42%)";
  }

  function ask(position) {
    if (!view || !window.dash_clientside || !window.dash_clientside.set_props) return;
    view.active = position;
    view.n += 1;
    view.holder.querySelectorAll(".lines-queries .lines-token").forEach(function (t) {
      t.classList.toggle("active", Number(t.dataset.position) === position);
    });
    window.dash_clientside.set_props("lines-ask", {
      data: {
        analysis: view.doc.analysis,
        layer: view.layer,
        position: position,
        heads: Array.from(view.shown).sort(function (a, b) { return a - b; }),
        end: view.doc.position,
        n: view.n,
      },
    });
  }

  function again() {
    if (view) ask(view.active === null ? view.doc.position : view.active);
  }

  function column(doc, className, rows, clickable) {
    const col = el("div", "lines-col " + className);
    rows.forEach(function (row) {
      if (row === null) {
        col.append(el("div", "lines-gap", "⋮"));
        return;
      }
      const token = el(clickable ? "button" : "span", "lines-token", row[1]);
      if (clickable) token.type = "button";
      token.dataset.position = String(row[0]);
      token.setAttribute("data-token-index", String(row[0]));
      token.title = "token " + row[0] + ": " + JSON.stringify(row[1]);
      col.append(token);
    });
    return col;
  }

  function controls(doc) {
    const bar = el("div", "lines-controls");
    const label = el("label", "field-label", "Layer ");
    const select = el("select", "lines-layer");
    select.id = "lines-layer";
    for (let l = 0; l < doc.layers; l++) {
      const option = el("option", "", "Layer " + l);
      option.value = String(l);
      select.append(option);
    }
    select.value = String(view.layer);
    select.addEventListener("change", function () {
      view.layer = Number(select.value);
      again();
    });
    label.append(select);
    bar.append(label, el("span", "field-label", "Heads:"));
    for (let h = 0; h < doc.heads; h++) {
      const button = el("button", "lines-head", "H" + h);
      button.type = "button";
      button.dataset.head = String(h);
      button.style.backgroundColor = colour(h, doc.heads);
      button.setAttribute("aria-pressed", String(view.shown.has(h)));
      button.title = "show or hide head " + h + "'s lines";
      button.addEventListener("click", function () {
        if (view.shown.has(h)) view.shown.delete(h); else view.shown.add(h);
        button.setAttribute("aria-pressed", String(view.shown.has(h)));
        again();
      });
      bar.append(button);
    }
    const all = el("button", "button secondary lines-all", "all heads");
    all.type = "button";
    all.addEventListener("click", function () {
      for (let h = 0; h < doc.heads; h++) view.shown.add(h);
      bar.querySelectorAll(".lines-head").forEach(function (b) { b.setAttribute("aria-pressed", "true"); });
      again();
    });
    bar.append(all);
    return bar;
  }

  function drawFrame(holder, doc) {
    if (!doc) {
      holder.replaceChildren();
      view = null;
      return;
    }
    const same = view && view.doc.analysis === doc.analysis && view.doc.heads === doc.heads;
    const layer = doc.layer !== null ? doc.layer : same ? view.layer : 0;
    view = {
      doc: doc,
      holder: holder,
      layer: layer,
      shown: same ? view.shown : new Set(Array.from({ length: doc.heads }, function (_, h) { return h; })),
      active: null,
      n: view ? view.n : 0,
      rows: [],
    };
    // token 0 pinned above a window that starts later: a gap row between them
    doc.window.forEach(function (pair, k) {
      if (k === 1 && pair[0] !== doc.window[0][0] + 1) view.rows.push(null);
      view.rows.push(pair);
    });
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "lines-svg");
    svg.id = "lines-svg";
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "lines from the hovered token to the tokens it reads");
    const body = el("div", "lines-body");
    body.append(column(doc, "lines-queries", view.rows, true), svg, column(doc, "lines-keys", view.rows, false));
    const readout = el("p", "lines-readout", "Hover a token on the left.");
    readout.id = "lines-readout";
    readout.setAttribute("aria-live", "polite");
    holder.replaceChildren(controls(doc), body, readout);
    // the lines' room is there before any line is: an answer never moves what lies below
    const first = body.querySelector(".lines-token");
    const rowHeight = first ? first.getBoundingClientRect().height || 20 : 20;
    svg.setAttribute("height", String(rowHeight * view.rows.length));
    body.addEventListener("mouseover", pick);
    body.addEventListener("focusin", pick);
    watch(holder);
  }

  function pick(event) {
    const token = event.target.closest ? event.target.closest(".lines-queries .lines-token") : null;
    if (!token || !view) return;
    const position = Number(token.dataset.position);
    if (position !== view.active) ask(position);
  }

  // The followed token's lines are asked for once the view is on screen, not at every Analyze.
  function watch(holder) {
    if (!("IntersectionObserver" in window)) return;
    const seen = new IntersectionObserver(function (entries) {
      if (!entries.some(function (e) { return e.isIntersecting; })) return;
      seen.disconnect();
      if (view && view.holder === holder && view.active === null) ask(view.doc.position);
    });
    seen.observe(holder);
  }

  function rowOf(position) {
    for (let k = 0; k < view.rows.length; k++) {
      if (view.rows[k] !== null && view.rows[k][0] === position) return k;
    }
    return -1;
  }

  function textOf(position) {
    const k = rowOf(position);
    return k < 0 ? "?" : JSON.stringify(view.rows[k][1]);
  }

  function drawLines(_holder, answer) {
    if (!view || !answer || answer.analysis !== view.doc.analysis || answer.n !== view.n) return;
    const svg = view.holder.querySelector("#lines-svg");
    const first = view.holder.querySelector(".lines-queries .lines-token");
    if (!svg || !first) return;
    const rowHeight = first.getBoundingClientRect().height || 20;
    const width = svg.getBoundingClientRect().width || 240;
    const height = rowHeight * view.rows.length;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("height", String(height));
    svg.replaceChildren();
    svg.dataset.layer = String(answer.layer);
    svg.dataset.position = String(answer.position);
    // each head's lines start and end at its own height within a row, so overlaps stay apart
    const heads = view.doc.heads;
    const y = function (position, head) {
      const spread = heads > 1 ? (head / (heads - 1) - 0.5) * 0.7 : 0;
      return (rowOf(position) + 0.5 + spread) * rowHeight;
    };
    const read = new Set();
    const parts = [];
    const drawn = [];
    answer.lines.forEach(function (line) {
      let best = -1;
      line.keys.forEach(function (key, k) {
        const weight = line.weights[k];
        const path = document.createElementNS(SVG, "line");
        path.setAttribute("x1", "2");
        path.setAttribute("y1", y(answer.position, line.head).toFixed(1));
        path.setAttribute("x2", String(width - 2));
        path.setAttribute("y2", y(key, line.head).toFixed(1));
        path.setAttribute("stroke", colour(line.head, view.doc.heads));
        path.setAttribute("stroke-width", (0.6 + 5 * weight).toFixed(2));
        path.setAttribute("stroke-opacity", (0.15 + 0.85 * weight).toFixed(3));
        path.setAttribute("stroke-linecap", "round");
        path.dataset.head = String(line.head);
        path.dataset.key = String(key);
        path.dataset.weight = String(weight);
        const title = document.createElementNS(SVG, "title");
        title.textContent = "H" + line.head + " reads " + textOf(key) + " (token " + key + ") with weight " + weight.toFixed(3);
        path.append(title);
        drawn.push([weight, path]);
        if (weight >= 0.1) read.add(key);
        if (best < 0 || weight > line.weights[best]) best = k;
      });
      let text = "H" + line.head + " → " + (best < 0 ? "nothing above the floor" :
        textOf(line.keys[best]) + " " + line.weights[best].toFixed(2));
      if (line.elsewhere >= 0.01) text += " (+" + line.elsewhere.toFixed(2) + " on tokens not shown)";
      parts.push(text);
    });
    drawn.sort(function (a, b) { return a[0] - b[0]; });  // the strongest lines on top
    drawn.forEach(function (pair) { svg.append(pair[1]); });
    view.holder.querySelectorAll(".lines-keys .lines-token").forEach(function (t) {
      t.classList.toggle("read", read.has(Number(t.dataset.position)));
      t.classList.toggle("future", Number(t.dataset.position) > answer.position);
    });
    const readout = view.holder.querySelector("#lines-readout");
    readout.textContent = "Token " + textOf(answer.position) + " (position " + answer.position +
      "), layer " + answer.layer + ", reads most: " + (parts.length ? parts.join(" · ") : "no head shown") + ".";
  }

  document.addEventListener("lmscope:lines-layer", function (event) {
    if (!view) return;
    view.layer = event.detail;
    const select = view.holder.querySelector("#lines-layer");
    if (select) select.value = String(view.layer);
    if (view.active !== null) again();
    else watch(view.holder);
  });

  const drawers = (window.lmscopeDrawers = window.lmscopeDrawers || []);
  drawers.push({ attribute: "data-lines-frame", draw: drawFrame });
  drawers.push({ attribute: "data-lines", draw: drawLines });
})();
