// Dash's html.Details does not report its `open` prop when the user opens it; this does (for
// every <details> with an id), so a view inside can be drawn only once someone opens it.
document.addEventListener(
  "toggle",
  function (event) {
    const box = event.target;
    if (box.tagName !== "DETAILS" || !box.id || !window.dash_clientside) return;
    if (window.dash_clientside.set_props) window.dash_clientside.set_props(box.id, { open: box.open });
  },
  true
);
