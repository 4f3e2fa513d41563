// Static parts of the page (tables, the glossary) built from their `data-static` JSON (see
// dashboard/static.py): [tag, attrs, children] elements and strings. Text goes to text nodes
// only; attributes are those static.py lets through (no handlers; links only to #anchors).
(function () {
  const TAGS = new Set(["a", "caption", "code", "dd", "div", "dl", "dt", "em", "li", "ol", "p",
    "small", "span", "strong", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "b", "i",
    "br", "h3", "h4", "sub", "sup"]);
  const NAMES = { className: "class", colSpan: "colspan", rowSpan: "rowspan" };

  function build(item, into) {
    if (item === null || item === undefined) return;
    if (typeof item === "string") { into.append(document.createTextNode(item)); return; }
    if (typeof item[0] !== "string") { item.forEach(function (child) { build(child, into); }); return; }
    const tag = TAGS.has(item[0]) ? item[0] : "span";
    const el = document.createElement(tag);
    const attrs = item[1] || {};
    Object.keys(attrs).forEach(function (key) {
      const value = attrs[key];
      if (key === "style") {
        Object.keys(value).forEach(function (k) { el.style[k] = value[k]; });
      } else if (key === "href") {
        if (String(value).charAt(0) === "#") el.setAttribute("href", String(value));
      } else if (key === "hidden") {
        el.hidden = Boolean(value);
      } else if (!/^on/i.test(key)) {
        el.setAttribute(NAMES[key] || key, String(value));
      }
    });
    build(item[2], el);
    into.append(el);
  }

  function draw(holder) {
    const source = holder.getAttribute("data-static");
    if (holder.lmscopeDrawn === source) return;
    holder.lmscopeDrawn = source;
    holder.replaceChildren();
    try {
      build(JSON.parse(source), holder);
    } catch (error) {
      holder.replaceChildren();
    }
  }

  function drawWithin(node) {
    if (node.nodeType !== 1) return;
    if (node.hasAttribute("data-static")) draw(node);
    node.querySelectorAll("[data-static]").forEach(draw);
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
    attributeFilter: ["data-static"],
  });
  drawWithin(document.documentElement);
})();
