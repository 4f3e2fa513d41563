// Parts of the page drawn in the browser from a JSON attribute (chips.js: data-chips, cellgrid.js:
// data-cells, static.js: data-static): one MutationObserver draws a holder when it is added or its
// attribute changes, once per distinct value. A drawer registers, in whatever order the assets
// load, with (window.lmscopeDrawers = window.lmscopeDrawers || []).push({attribute, draw}), where
// draw(holder, data) gets the parsed JSON (or null when it does not parse).
(function () {
  const drawers = [];
  const observer = new MutationObserver(function (records) {
    records.forEach(function (record) {
      if (record.type === "attributes") {
        drawers.forEach(function (d) {
          if (d.attribute === record.attributeName) drawOne(d, record.target);
        });
      } else {
        record.addedNodes.forEach(drawWithin);
      }
    });
  });

  function drawOne(drawer, holder) {
    const source = holder.getAttribute(drawer.attribute);
    const key = "lmscopeDrawn:" + drawer.attribute;
    if (holder[key] === source) return;
    holder[key] = source;
    let data = null;
    try {
      data = JSON.parse(source);
    } catch (error) {
      data = null;
    }
    drawer.draw(holder, data);
  }

  function drawWithin(node) {
    if (node.nodeType !== 1) return;
    drawers.forEach(function (d) {
      if (node.hasAttribute(d.attribute)) drawOne(d, node);
      node.querySelectorAll("[" + d.attribute + "]").forEach(function (h) { drawOne(d, h); });
    });
  }

  function add(drawer) {
    drawers.push(drawer);
    observer.observe(document.documentElement, {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: drawers.map(function (d) { return d.attribute; }),
    });
    drawWithin(document.documentElement);
  }

  const waiting = window.lmscopeDrawers || [];
  window.lmscopeDrawers = { push: add };
  waiting.forEach(add);
})();
