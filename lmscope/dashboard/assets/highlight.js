// Hovering a token highlights every copy of it on the page; clicking one inspects it in stage 2.
(function () {
  let current = null;
  document.addEventListener("mouseover", function (event) {
    const el = event.target.closest ? event.target.closest("[data-token-index]") : null;
    const index = el ? el.getAttribute("data-token-index") : null;
    if (index === current) return;
    document.querySelectorAll(".token-hl").forEach(function (x) { x.classList.remove("token-hl"); });
    current = index;
    if (index !== null) {
      document.querySelectorAll('[data-token-index="' + index + '"]').forEach(function (x) {
        x.classList.add("token-hl");
      });
    }
  });
  document.addEventListener("click", function (event) {
    const el = event.target.closest ? event.target.closest("#token-chips [data-token-index]") : null;
    if (el && window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props("embed-position", {
        value: Number(el.getAttribute("data-token-index")),
      });
    }
  });
})();
