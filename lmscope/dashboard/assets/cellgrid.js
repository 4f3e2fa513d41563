// Head grids (the attention grid, the model view) drawn from their `data-cells` JSON as plain DOM
// buttons: one Dash component a grid instead of one per head keeps every page update fast. Text
// goes to textContent and attributes only. A click writes {layer, head, at} into the grid's
// `pick` store; roving.js gives the arrow keys. `window.lmscopeMarks` (head names) marks cells
// `selected` (the ablation set, kept by investigate/ablation.py).
(function () {
  function label(text) {
    const el = document.createElement("div");
    el.className = text ? "grid-label" : "grid-corner";
    el.textContent = text;
    return el;
  }

  function button(cell, first) {
    const el = document.createElement("button");
    el.type = "button";
    el.className = "roving-cell " + cell.c;
    el.tabIndex = first ? 0 : -1;
    el.title = cell.title;
    el.dataset.layer = String(cell.l);
    el.dataset.headIndex = String(cell.h);
    Object.keys(cell.d).forEach(function (k) { el.dataset[k] = cell.d[k]; });
    Object.keys(cell.s).forEach(function (k) { el.style[k] = cell.s[k]; });
    if (cell.img) {
      const img = document.createElement("img");
      img.src = cell.img;
      img.alt = cell.alt;
      el.append(img);
    } else {
      el.textContent = cell.t;
    }
    const marks = window.lmscopeMarks;
    if (marks && cell.d.head && marks.has(cell.d.head)) el.classList.add("selected");
    return el;
  }

  function draw(holder, grid) {
    if (!grid) {
      holder.replaceChildren();
      return;
    }
    const heads = grid.cells.length ? grid.cells[0].length : 0;
    const parts = [label("")];
    for (let h = 0; h < heads; h++) parts.push(label("H" + h));
    grid.cells.forEach(function (row, layer) {
      parts.push(label("L" + layer));
      row.forEach(function (cell, h) { parts.push(button(cell, layer === 0 && h === 0)); });
    });
    holder.replaceChildren.apply(holder, parts);
  }

  document.addEventListener("click", function (event) {
    const cell = event.target.closest ? event.target.closest("[data-cells] .roving-cell") : null;
    if (!cell || !window.dash_clientside || !window.dash_clientside.set_props) return;
    window.dash_clientside.set_props(cell.closest("[data-cells]").dataset.pick, {
      data: { layer: Number(cell.dataset.layer), head: Number(cell.dataset.headIndex), at: Date.now() },
    });
  });

  (window.lmscopeDrawers = window.lmscopeDrawers || []).push({ attribute: "data-cells", draw: draw });
})();
