// dcc.Tabs draws its tabs as plain divs: this makes them an ARIA tablist a keyboard can use (the
// open tab is the one Tab stop; the arrow keys, Home and End move between tabs, Enter or Space
// opens the focused one). It follows Dash's `tab--selected` class as tabs change.
(function () {
  function label(container) {
    container.setAttribute("role", "tablist");
    container.querySelectorAll(":scope > .tab").forEach(function (tab) {
      const open = tab.classList.contains("tab--selected");
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-selected", open ? "true" : "false");
      if (tab !== document.activeElement) tab.tabIndex = open ? 0 : -1;
    });
  }

  function labelAll() {
    document.querySelectorAll(".tab-container").forEach(label);
  }

  new MutationObserver(labelAll).observe(document.documentElement, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ["class"],
  });

  document.addEventListener("keydown", function (event) {
    const tab = event.target.closest ? event.target.closest(".tab-container > .tab") : null;
    if (!tab) return;
    const tabs = Array.prototype.slice.call(tab.parentElement.querySelectorAll(":scope > .tab"));
    const at = tabs.indexOf(tab);
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      tab.click();
      return;
    }
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const to = (moves[event.key] + tabs.length) % tabs.length;
    tabs.forEach(function (t, k) { t.tabIndex = k === to ? 0 : -1; });
    tabs[to].focus();
  });
})();

// dcc.Tabs carries Dash's `dashChildrenUpdate` flag: on every store update (~300 per Analyze) the
// renderer then walks every path ever updated in the page to see whether one of its Tab's props
// changed, 15-25 ms of an Analyze on a 2-core CPU. lmscope never changes a Tab's props (labels and
// panes are fixed; callbacks write components inside the panes, which redraw themselves), and
// the Tabs redraws on its own `value` as any component does. Dash reads the flag from the
// component library once the page has loaded.
document.addEventListener("DOMContentLoaded", function () {
  const library = window.dash_core_components;
  if (library && library.Tabs) delete library.Tabs.dashChildrenUpdate;
});
