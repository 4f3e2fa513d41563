// The link the page was opened with, read once at load, before the page's own callbacks rewrite
// the URL: dashboard/share.py applies its keys (head, pos, target, ...) when the analysis arrives.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  lmscope_share: {
    opened_with: function () {
      return { search: window.location.search, done: false };
    },
  },
});
