// Token chips are drawn here from the JSON in a row's `data-chips` attribute, as DOM text nodes:
// a token's text is only ever assigned to `textContent`, so no markup in a vocabulary or a prompt
// is parsed or run. One DOM element per chip (no React component each) keeps 8,192 tokens fast.
(function () {
  function chip(row, k) {
    const el = document.createElement("span");
    el.className = row.c ? "chip " + row.c : "chip";
    el.setAttribute("data-token-index", String(row.i[k]));
    el.title = "token " + row.i[k] + ": " + JSON.stringify(row.t[k]) + ", id " + row.d[k] +
      (row.n ? row.n[k] : "");
    if (row.s && row.s[k]) el.style.backgroundColor = row.s[k];
    const text = document.createElement("span");
    text.className = "chip-text";
    text.textContent = row.t[k];
    const id = document.createElement("span");
    id.className = "chip-id";
    id.textContent = String(row.d[k]);
    el.append(text, id);
    return el;
  }

  function predicted(after) {
    const el = document.createElement("span");
    el.className = "chip predicted";
    el.id = after.id;
    el.title = after.title;
    const text = document.createElement("span");
    text.className = "chip-text";
    text.textContent = after.text;
    el.append(text, " " + after.label);
    return el;
  }

  function draw(holder) {
    const source = holder.getAttribute("data-chips");
    if (holder.lmscopeDrawn === source) return;
    holder.lmscopeDrawn = source;
    let row;
    try {
      row = JSON.parse(source);
    } catch (error) {
      holder.replaceChildren();
      return;
    }
    const parts = row.t.map(function (_, k) { return chip(row, k); });
    if (row.after) parts.push(predicted(row.after));
    holder.replaceChildren.apply(holder, parts);
  }

  function drawWithin(node) {
    if (node.nodeType !== 1 || node.classList.contains("chip")) return;
    if (node.hasAttribute("data-chips")) draw(node);
    node.querySelectorAll("[data-chips]").forEach(draw);
  }

  new MutationObserver(function (records) {
    records.forEach(function (record) {
      if (record.type === "attributes") draw(record.target);
      else record.addedNodes.forEach(drawWithin);
    });
  }).observe(document.documentElement, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ["data-chips"],
  });
  drawWithin(document.documentElement);
})();
