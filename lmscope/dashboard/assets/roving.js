// Roving tabindex for the attention stage's grids (`.roving-grid`, `data-cols` cells a row): the
// whole grid is one Tab stop; the arrow keys, Home and End move within it, Enter or Space press the
// focused cell (a button). Also: a click on a chip of the token view follows that token.
(function () {
  function cellsOf(grid) {
    return Array.prototype.slice.call(grid.querySelectorAll(".roving-cell"));
  }

  function moveTo(cells, from, to) {
    if (to < 0 || to >= cells.length || to === from) return;
    cells.forEach(function (cell, k) { cell.tabIndex = k === to ? 0 : -1; });
    cells[to].focus({ preventScroll: false });
  }

  document.addEventListener("keydown", function (event) {
    const cell = event.target.closest ? event.target.closest(".roving-cell") : null;
    const grid = cell ? cell.closest(".roving-grid") : null;
    if (!grid) return;
    const cells = cellsOf(grid);
    const at = cells.indexOf(cell);
    const cols = Number(grid.getAttribute("data-cols")) || 1;
    const moves = {
      ArrowRight: at + 1,
      ArrowLeft: at - 1,
      ArrowDown: at + cols,
      ArrowUp: at - cols,
      Home: at - (at % cols),
      End: at - (at % cols) + cols - 1,
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    moveTo(cells, at, Math.min(cells.length - 1, Math.max(0, moves[event.key])));
  });

  // A click on a cell makes it the grid's Tab stop.
  document.addEventListener("click", function (event) {
    const cell = event.target.closest ? event.target.closest(".roving-cell") : null;
    const grid = cell ? cell.closest(".roving-grid") : null;
    if (grid) {
      cellsOf(grid).forEach(function (c) { c.tabIndex = c === cell ? 0 : -1; });
    }
    const chip = event.target.closest ? event.target.closest("#attn-token-chips [data-token-index]") : null;
    if (chip && window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props("attn-pick", {
        data: Number(chip.getAttribute("data-token-index")),
      });
    }
  });
})();
