// The pass on one screen (dashboard/stages/flow.py), drawn from the JSON in `data-flow` as DOM:
// text from the model only ever goes to textContent. Every part is a button carrying the stage
// that explains it (`data-stage`); a click brings that stage into view. The layer grid is one Tab
// stop (roving.js: arrow keys); hovering or focusing a cell writes its numbers in the readout.
(function () {
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function num(x) {
    if (x === null || x === undefined) return "–";
    const a = Math.abs(x);
    return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
  }

  function percent(p) {
    return p >= 0.0005 ? (100 * p).toFixed(1) + "%" : p.toExponential(1);
  }

  function part(stage, className, title) {
    const node = el("button", "flow-part " + className);
    node.type = "button";
    node.dataset.stage = String(stage);
    node.title = title;
    return node;
  }

  function arrow() {
    const node = el("span", "flow-arrow", "→");
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  function tokensPart(doc) {
    const node = part(1, "flow-tokens", "Stage 1: how the prompt became tokens");
    node.append(el("span", "flow-title", "1 · Tokens"));
    const tail = el("span", "flow-tail");
    if (doc.tail.length && doc.tail[0][0] > 0) tail.append(el("span", "flow-more", "…"));
    doc.tail.forEach(function (pair) {
      const chip = el("span", "flow-chip", pair[1]);
      chip.dataset.position = String(pair[0]);
      if (pair[0] === doc.position) {
        chip.classList.add("flow-followed");
        chip.style.backgroundColor = doc.followed_colour;
      }
      tail.append(chip);
    });
    node.append(tail);
    node.append(el("span", "flow-note", doc.tokens.toLocaleString() + " tokens; following token " +
      doc.position + " (id " + doc.token_id + ")"));
    return node;
  }

  function embeddingPart(doc) {
    const d = doc.design;
    const node = part(2, "flow-embed", "Stage 2: the embedding table and positions");
    node.append(el("span", "flow-title", "2 · Embedding"));
    const scaled = d.embedding_scale !== 1 ? ", × " + num(d.embedding_scale) : "";
    const row = "its row of " + d.hidden_size.toLocaleString() + " numbers" + scaled +
      ": length " + num(doc.token_embedding);
    node.append(el("span", "flow-line", row));
    if (doc.position_embedding !== null) {
      node.append(el("span", "flow-line", "+ position " + doc.position + "'s learned vector: length " +
        num(doc.position_embedding)));
    } else if (d.rotary) {
      node.append(el("span", "flow-line flow-soft",
        "no position vector: RoPE turns queries and keys inside every attention"));
    }
    node.append(el("span", "flow-line flow-sum", "= the stream, length " + num(doc.stream_start)));
    return node;
  }

  function legend(doc) {
    const d = doc.design;
    const box = el("div", "flow-legend");
    box.append(el("span", "flow-legend-title", "Inside each of the " + d.layers + " layers:"));
    const steps = [
      [d.normalization, 4, "flow-step-norm"],
      ["attention · " + d.heads + " heads" + (d.rotary ? " · RoPE" : ""), 3, "flow-step-attn"],
    ];
    if (d.post_norms) steps.push([d.normalization, 4, "flow-step-norm"]);
    steps.push(["+ stream", 4, "flow-step-add"]);
    steps.push([d.normalization, 4, "flow-step-norm"]);
    steps.push([(d.gated_mlp ? "gated MLP · " : "MLP · ") + d.activation + " · " +
      d.hidden_size + "→" + d.mlp_size.toLocaleString() + "→" + d.hidden_size, 4, "flow-step-mlp"]);
    if (d.post_norms) steps.push([d.normalization, 4, "flow-step-norm"]);
    steps.push(["+ stream", 4, "flow-step-add"]);
    const row = el("span", "flow-steps");
    steps.forEach(function (step, k) {
      if (k) row.append(arrow());
      const chip = part(step[1], "flow-step " + step[2], "Stage " + step[1] + " explains this");
      chip.textContent = step[0];
      row.append(chip);
    });
    box.append(row);
    return box;
  }

  function layerText(doc, step) {
    return "Layer " + step.layer + ": the stream enters " + num(step.stream_in) +
      " long; attention adds a vector " + num(step.attention) + " long, the MLP one " +
      num(step.mlp) + " long; it leaves " + num(step.stream_out) + " long. Read off here " +
      "(logit lens), its top guess is " + JSON.stringify(step.lens.display) + " (" +
      percent(step.lens.probability) + ").";
  }

  function summary(doc) {
    const first = doc.layers[0];
    const last = doc.layers[doc.layers.length - 1];
    let text = "Following " + JSON.stringify(doc.token) + " (token " + doc.position + " of " +
      doc.tokens.toLocaleString() + "). Over " + doc.layers.length + " layers the stream goes from " +
      num(first.stream_in) + " to " + num(last.stream_out) + " long; the longest write: " +
      doc.largest_write.part + " of layer " + doc.largest_write.layer + " (" +
      num(doc.largest_write.length) + ").";
    const answer = doc.predictions.length ? JSON.stringify(doc.predictions[0].display) : "";
    if (doc.settled_layer === last.layer) {
      text += " The logit lens shows the model's answer " + answer + " only after the last layer.";
    } else if (doc.settled_layer !== null) {
      text += " The logit lens reaches the model's answer " + answer + " after layer " +
        doc.settled_layer + " and keeps it to the end.";
    }
    return text + " Hover a layer for its numbers.";
  }

  function layerGrid(doc, readout) {
    const layers = doc.layers;
    const count = layers.length;
    const grid = el("div", "flow-layers roving-grid" + (count <= 12 ? " flow-roomy" : ""));
    grid.setAttribute("data-cols", String(count));
    grid.setAttribute("role", "group");
    grid.setAttribute("aria-label", "the layers, one column each");
    grid.style.gridTemplateColumns = "6.5rem repeat(" + count + ", minmax(1.5rem, 1fr))";
    const writes = Math.max.apply(null, layers.map(function (s) { return Math.max(s.attention, s.mlp); })) || 1;
    const streams = Math.max.apply(null, layers.map(function (s) { return s.stream_out; })) || 1;
    const rows = [
      ["", null],
      ["attention adds", "attn"],
      ["stream length", "stream"],
      ["MLP adds", "mlp"],
      ["logit lens", "lens"],
    ];
    rows.forEach(function (row) {
      grid.append(el("div", "flow-label", row[0]));
      layers.forEach(function (step) {
        if (row[1] === null) {
          grid.append(el("div", "flow-label flow-layer-label", "L" + step.layer));
          return;
        }
        const stage = { attn: 3, stream: 4, mlp: 4, lens: 5 }[row[1]];
        const cell = el("button", "roving-cell flow-cell flow-" + row[1]);
        cell.type = "button";
        cell.tabIndex = step.layer === 0 && row[1] === "attn" ? 0 : -1;
        cell.dataset.stage = String(stage);
        cell.dataset.layer = String(step.layer);
        let value;
        let scale;
        if (row[1] === "attn") { value = step.attention; scale = writes; }
        if (row[1] === "mlp") { value = step.mlp; scale = writes; }
        if (row[1] === "stream") { value = step.stream_out; scale = streams; }
        if (row[1] === "lens") {
          const guess = el("span", "flow-guess", step.lens.display);
          cell.style.backgroundColor = "rgba(47, 111, 173, " + (0.1 + 0.6 * step.lens.probability).toFixed(3) + ")";
          if (doc.predictions.length && step.lens.id === doc.predictions[0].id) cell.classList.add("flow-answer");
          cell.dataset.probability = String(step.lens.probability);
          cell.append(guess);
        } else {
          const bar = el("span", "flow-bar");
          bar.style.height = Math.max(2, 100 * value / scale).toFixed(1) + "%";
          cell.dataset.length = String(value);
          cell.append(bar);
          if (count <= 12) cell.append(el("span", "flow-num", num(value)));
        }
        cell.title = layerText(doc, step);
        cell.setAttribute("aria-label", row[0] + ", layer " + step.layer + ": " + layerText(doc, step));
        grid.append(cell);
      });
    });
    function show(event) {
      const cell = event.target.closest ? event.target.closest(".flow-cell") : null;
      readout.textContent = cell ? layerText(doc, layers[Number(cell.dataset.layer)]) : summary(doc);
    }
    grid.addEventListener("mouseover", show);
    grid.addEventListener("focusin", show);
    grid.addEventListener("mouseleave", function () { readout.textContent = summary(doc); });
    return grid;
  }

  function endParts(doc) {
    const d = doc.design;
    const row = el("div", "flow-row flow-end");
    const norm = part(5, "flow-final", "Stage 5: the read-out at the end");
    norm.append(el("span", "flow-title", "Final " + d.normalization));
    norm.append(el("span", "flow-line", "length " + num(doc.final_in) + " → " + num(doc.final_out)));
    const unembed = part(5, "flow-unembed", "Stage 5: the read-out at the end");
    unembed.append(el("span", "flow-title", "Unembedding"));
    unembed.append(el("span", "flow-line", d.hidden_size.toLocaleString() + " numbers → " +
      d.vocab_size.toLocaleString() + " scores (logits)"));
    unembed.append(el("span", "flow-line flow-soft", d.tied_embeddings
      ? "the embedding table itself, reused (tied)" : "its own read-out matrix"));
    if (d.final_softcap) {
      unembed.append(el("span", "flow-line flow-soft", "scores soft-capped at ±" + d.final_softcap));
    }
    const top = part(5, "flow-top", "Stage 5: the prediction and the logit lens");
    top.append(el("span", "flow-title", "softmax → next token"));
    doc.predictions.forEach(function (p) {
      const line = el("span", "flow-pred");
      line.dataset.id = String(p.id);
      line.dataset.probability = String(p.probability);
      line.append(el("span", "flow-pred-text", p.display));
      const bar = el("span", "flow-pred-bar");
      bar.style.width = Math.max(0.5, 100 * p.probability).toFixed(1) + "%";  // of the whole
      line.append(bar);
      line.append(el("span", "flow-pred-p", percent(p.probability)));
      top.append(line);
    });
    row.append(norm, arrow(), unembed, arrow(), top);
    return row;
  }

  function draw(holder, doc) {
    if (!doc) {
      holder.replaceChildren();
      return;
    }
    const start = el("div", "flow-row flow-start");
    start.append(tokensPart(doc), arrow(), embeddingPart(doc));
    const readout = el("p", "flow-readout");
    readout.id = "flow-readout";
    readout.setAttribute("aria-live", "polite");
    readout.textContent = summary(doc);
    const into = el("div", "flow-into", "↓ the stream enters layer 0, passes every layer " +
      "left to right, and leaves layer " + (doc.layers.length - 1) + " for the read-out below ↓");
    into.setAttribute("aria-hidden", "true");
    holder.replaceChildren(start, legend(doc), into, layerGrid(doc, readout), readout, endParts(doc));
  }

  // A click on any part brings the stage that explains it into view at once, as the skip links
  // do (a smooth scroll could be cut short), gives it the keyboard focus and outlines it for a
  // moment; an attention cell also shows its layer in the line view.
  document.addEventListener("click", function (event) {
    const target = event.target.closest ? event.target.closest(".flow [data-stage]") : null;
    if (!target) return;
    const stage = document.getElementById("stage-" + target.dataset.stage);
    if (!stage) return;
    stage.scrollIntoView({ behavior: "instant", block: "start" });
    stage.focus({ preventScroll: true });
    stage.classList.remove("flow-arrived");
    void stage.offsetWidth; // restart the outline's animation
    stage.classList.add("flow-arrived");
    if (target.dataset.stage === "3" && target.dataset.layer !== undefined) {
      document.dispatchEvent(new CustomEvent("lmscope:lines-layer", {
        detail: Number(target.dataset.layer),
      }));
    }
  });

  (window.lmscopeDrawers = window.lmscopeDrawers || []).push({ attribute: "data-flow", draw: draw });
})();
