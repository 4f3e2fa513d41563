// The page's state in its URL (dashboard/share.py): read once at load, before the page's own
// callbacks rewrite the URL, then written back as the view changes. In the browser, so that an
// Analyze costs no round trip for them.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  lmscope_share: {
    opened_with: function () {
      return { search: window.location.search, done: false };
    },

    // A new analysis: the link's keys are applied by the server (they are checked against the
    // model) the first time; afterwards a new prompt drops the old position, except a generated
    // token's analysis, which sets its own.
    after_analysis: function (data, pending, focus) {
      const none = window.dash_clientside.no_update;
      if (!data) return [none, none];
      if (!pending || !pending.done) return [none, { id: data.id }];
      if (data.generation || !focus || !("position" in focus)) return [none, none];
      const rest = Object.assign({}, focus);
      delete rest.position;
      return [rest, none];
    },

    // The URL of this view: model and prompt first (as app.py writes them), then the focus,
    // then the panel's settings that differ from their defaults (a list of heads as 0.1,3.5).
    // `args`: the callback's focus, analysis, one value per setting, the pending link and the
    // URL's query now; `settings`: [key, default, the focus key it follows or null] per setting
    // (one that still shows the focus's value is left out). Rewritten only when a key changed.
    link: function (args, settings) {
      const none = window.dash_clientside.no_update;
      const focus = args[0] || {};
      const data = args[1];
      const pending = args[2 + settings.length];
      const search = args[3 + settings.length];
      if (!data || !data.prompt || !(pending || {}).done) return none;
      const keys = [["model", data.model], ["prompt", data.prompt]];
      if (Array.isArray(focus.head) && focus.head.length === 2) {
        keys.push(["head", focus.head.join(".")]);
      }
      if (Number.isInteger(focus.layer)) keys.push(["layer", String(focus.layer)]);
      if (Number.isInteger(focus.position)) keys.push(["pos", String(focus.position)]);
      if (typeof focus.target === "string" && focus.target) keys.push(["target", focus.target]);
      settings.forEach(function (setting, i) {
        const value = args[2 + i];
        if (value === null || value === undefined || value === "") return;
        if (JSON.stringify(value) === JSON.stringify(setting[1])) return;
        if (setting[2] && value === focus[setting[2]]) return;
        const text = Array.isArray(value)
          ? value.map(function (item) { return [].concat(item).join("."); }).join(",")
          : String(value);
        if (text) keys.push([setting[0], text]);
      });
      const now = new URLSearchParams(search || "");
      const same =
        Array.from(now.keys()).length === keys.length &&
        keys.every(function (kv) { return now.get(kv[0]) === kv[1]; });
      return same ? none : "?" + new URLSearchParams(keys).toString();
    },
  },
});
