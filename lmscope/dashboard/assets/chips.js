// Token chips are drawn here from the JSON in a row's `data-chips` attribute, as DOM text nodes:
// a token's text is only ever assigned to `textContent`, so no markup in a vocabulary or a prompt
// is parsed or run. One DOM element per chip (no React component each) keeps 8,192 tokens fast.
(function () {
  function chip(row, k) {
    const el = document.createElement("span");
    const split = row.x && row.x[k];
    el.className = (row.c ? "chip " + row.c : "chip") + (split ? " chip-split" : "");
    el.setAttribute("data-token-index", String(row.i[k]));
    el.title = "token " + row.i[k] + ": " + JSON.stringify(row.t[k]) + ", id " + row.d[k] +
      (split ? "; part of " + split + ", split over several tokens (its bytes are shown)" : "") +
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

  function draw(holder, row) {
    if (!row) {
      holder.replaceChildren();
      return;
    }
    const parts = row.t.map(function (_, k) { return chip(row, k); });
    if (row.after) parts.push(predicted(row.after));
    holder.replaceChildren.apply(holder, parts);
  }

  (window.lmscopeDrawers = window.lmscopeDrawers || []).push({ attribute: "data-chips", draw: draw });
})();
