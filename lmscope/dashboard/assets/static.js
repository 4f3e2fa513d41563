// Static parts of the page (tables, the glossary) built from their `data-static` JSON (see
// dashboard/static.py): [tag, attrs, children] elements and strings. Text goes to text nodes
// only; attributes are those static.py lets through (no handlers; links only to #anchors).
(function () {
  const TAGS = new Set(["a", "caption", "code", "dd", "div", "dl", "dt", "em", "li", "ol", "p",
    "small", "span", "strong", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "b", "i",
    "br", "h2", "h3", "h4", "sub", "sup", "nav"]);
  const NAMES = { className: "class", colSpan: "colspan", rowSpan: "rowspan" };

  function build(item, into) {
    if (item === null || item === undefined) return;
    if (typeof item === "string") { into.append(document.createTextNode(item)); return; }
    // An element is [tag, {attrs}, children]; any other list is siblings (which may start with text).
    const element = item.length === 3 && typeof item[0] === "string" && item[1] !== null &&
      typeof item[1] === "object" && !Array.isArray(item[1]);
    if (!element) { item.forEach(function (child) { build(child, into); }); return; }
    const tag = TAGS.has(item[0]) ? item[0] : "span";
    const el = document.createElement(tag);
    const attrs = item[1] || {};
    Object.keys(attrs).forEach(function (key) {
      const value = attrs[key];
      if (key === "style") {
        Object.keys(value).forEach(function (k) { el.style[k] = value[k]; });
      } else if (key === "href") {
        const href = String(value); // within the page or this server only (static.py same_site)
        if (href.charAt(0) === "#" || (href.charAt(0) === "/" && href.charAt(1) !== "/")) {
          el.setAttribute("href", href);
        }
      } else if (key === "hidden") {
        el.hidden = Boolean(value);
      } else if (!/^on/i.test(key)) {
        el.setAttribute(NAMES[key] || key, String(value));
      }
    });
    build(item[2], el);
    into.append(el);
  }

  function draw(holder, tree) {
    holder.replaceChildren();
    if (tree) build(tree, holder);
  }

  (window.lmscopeDrawers = window.lmscopeDrawers || []).push({ attribute: "data-static", draw: draw });
})();
