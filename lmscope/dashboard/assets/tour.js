// The guided tour: steps come as JSON in #tour-data's `data-tour` attribute (written by
// lmscope/dashboard/tour.py for the loaded model). Each step's target is scrolled into view and
// highlighted; a small box says what it is, with Back / Next / Skip. Text goes in through
// `textContent` only. A finished or skipped tour is remembered in the `tour-memory` store
// (localStorage); clicking a glossary link opens the glossary at its entry.
(function () {
  const POLL_MS = 200;
  let state = null; // {name, index, done: Set of step indexes whose actions ran}
  let box = null;
  let timer = null;
  let lit = null;
  let lastRect = null; // the size of the target when the box was last placed

  function tours() {
    const holder = document.querySelector("#tour-data [data-tour]");
    if (!holder) return null;
    try {
      return JSON.parse(holder.getAttribute("data-tour"));
    } catch (error) {
      return null;
    }
  }

  function steps() {
    const all = tours();
    return all && state ? all[state.name] || [] : [];
  }

  function setProps(id, props) {
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(id, props);
    }
  }

  function visible(el) {
    if (!el) return false;
    const rect = el.getBoundingClientRect();
    return rect.width > 0 && rect.height > 0 && getComputedStyle(el).visibility !== "hidden";
  }

  function inView(el) {
    const r = el.getBoundingClientRect();
    return r.bottom > 0 && r.right > 0 && r.top < window.innerHeight && r.left < window.innerWidth;
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function buildBox() {
    const el = element("div", "tour-box");
    el.id = "tour-box";
    el.setAttribute("role", "dialog");
    el.setAttribute("aria-live", "polite");
    el.setAttribute("aria-labelledby", "tour-title");
    const counter = element("div", "tour-counter");
    const title = element("h3", "tour-title");
    title.id = "tour-title";
    const text = element("p", "tour-text");
    const wait = element("p", "tour-wait");
    const row = element("div", "tour-buttons");
    const back = element("button", "button secondary", "Back");
    const next = element("button", "button primary", "Next");
    const skip = element("button", "button secondary tour-skip", "Skip tour");
    back.id = "tour-back";
    next.id = "tour-next";
    skip.id = "tour-skip";
    back.addEventListener("click", function () { go(state.index - 1); });
    next.addEventListener("click", function () {
      if (state.index + 1 >= steps().length) end("finished");
      else go(state.index + 1);
    });
    skip.addEventListener("click", function () { end("skipped"); });
    row.append(back, next, skip);
    el.append(counter, title, text, wait, row);
    document.body.appendChild(el);
    return el;
  }

  function unlight() {
    if (lit) lit.classList.remove("tour-highlight");
    lit = null;
    lastRect = null;
  }

  function end(how) {
    const name = state ? state.name : "tour";
    state = null;
    clearInterval(timer);
    timer = null;
    unlight();
    if (box) box.remove();
    box = null;
    setProps("tour-memory", { data: { ended: how, tour: name } });
    setProps("tour-on", { data: false });
    setProps("tour-data", { children: [] }); // the next tour waits for steps of its own
  }

  // What a step or a link acts on may be drawn a moment later (a control in a tab the tour has
  // just opened, a glossary entry once the glossary is open): try for up to 2 s.
  function whenThere(selector, act, tries) {
    const el = document.querySelector(selector);
    if (el) act(el);
    else if (tries > 0) setTimeout(function () { whenThere(selector, act, tries - 1); }, 50);
  }

  function run(actions) {
    (actions || []).forEach(function (action) {
      const kind = action[0];
      if (kind === "set") setProps(action[1], action[2]);
      else if (kind === "click") whenThere(action[1], function (el) { el.click(); }, 40);
      else if (kind === "open") {
        const el = document.querySelector(action[1]);
        if (el) el.open = true;
      }
    });
  }

  function show(step, ready) {
    const list = steps();
    box.querySelector(".tour-counter").textContent =
      list.length ? "Step " + (state.index + 1) + " of " + list.length : "";
    box.querySelector(".tour-title").textContent = step.title;
    box.querySelector(".tour-text").textContent = step.text;
    box.querySelector(".tour-wait").textContent = ready ? "" : (step.wait || "Working on it…");
    box.querySelector("#tour-back").disabled = state.index === 0;
    box.querySelector("#tour-next").disabled = !ready;
    box.querySelector("#tour-next").textContent =
      state.index + 1 >= list.length ? "Finish" : "Next";
    box.setAttribute("data-step", String(state.index));
    box.setAttribute("data-ready", ready ? "true" : "false");
  }

  // The box sits beside, below or above its target, never on it: GAP clears the highlight's
  // ring (4px outline + 4px offset + 8px shadow). `place` runs every tick, so the box follows the
  // target when the page re-lays out or the user scrolls.
  const GAP = 18;

  function clamp(value, low, high) {
    return Math.max(low, Math.min(value, high));
  }

  function spot(r, w, h) {
    // Where a w x h box fits in the viewport clear of rect r (viewport coordinates), or null.
    const W = document.documentElement.clientWidth;
    const H = window.innerHeight;
    const y = clamp(r.top, GAP, H - h - GAP);
    const x = clamp(r.left, GAP, W - w - GAP);
    if (h + 2 * GAP <= H && r.right + GAP + w + GAP <= W) return { x: r.right + GAP, y: y };
    if (h + 2 * GAP <= H && r.left - GAP - w >= GAP) return { x: r.left - GAP - w, y: y };
    if (r.bottom + GAP + h + GAP <= H) return { x: x, y: r.bottom + GAP };
    if (r.top - GAP - h >= GAP) return { x: x, y: r.top - GAP - h };
    return null;
  }

  function scrollFor(el, w, h) {
    // Scroll so that the target and the box both fit: the target centred with the box beside
    // it, or the pair stacked and centred, or (a tall, wide target) the box above its top.
    el.scrollIntoView({ block: "nearest", inline: "nearest", behavior: "instant" });
    const r = el.getBoundingClientRect();
    const W = document.documentElement.clientWidth;
    const H = window.innerHeight;
    const beside = r.right + 2 * GAP + w <= W || r.left - GAP - w >= GAP;
    let top;
    if (beside) top = r.height + 2 * GAP <= H ? (H - r.height) / 2 : GAP;
    else if (r.height + h + 3 * GAP <= H) top = (H - r.height - GAP - h) / 2;
    else top = h + 2 * GAP;
    window.scrollBy({ top: r.top - top, left: 0, behavior: "instant" });
  }

  // Widths the box may take when its own does not fit clear of the target: wide and short
  // below or above a wide target, or as wide as the room beside it (the open head's pattern,
  // kept in sight by a sticky column, cannot be scrolled up to make room below it).
  const WIDE = "min(48rem, calc(100vw - 3rem))";
  const NARROWEST = 224; // px: narrower, the text would be a column of single words

  function fitted(r) {
    // The first width, the box's current one first, at which the box fits clear of rect r.
    const W = document.documentElement.clientWidth;
    const room = Math.floor(Math.max(r.left, W - r.right) - 2 * GAP);
    const text = box.querySelector(".tour-text");
    const long = text.scrollHeight > text.clientHeight + 1; // its text scrolls: widen it first
    const widths = long ? [WIDE, box.style.width, ""] : [box.style.width, "", WIDE];
    if (room >= NARROWEST) widths.push(room + "px");
    for (let i = 0; i < widths.length; i++) {
      box.style.width = widths[i];
      const b = box.getBoundingClientRect();
      const where = spot(r, b.width, b.height);
      if (where) return where;
    }
    box.style.width = "";
    return null;
  }

  function place(el, fresh) {
    let r = el.getBoundingClientRect();
    const grew = !lastRect || Math.abs(lastRect.height - r.height) > 2 ||
      Math.abs(lastRect.width - r.width) > 2;
    // A new step, a target that changed size or left the viewport: scroll. A user who scrolled
    // on their own is not pulled back while the target is still in sight.
    if (fresh || grew || !inView(el)) {
      box.style.width = "";
      const b = box.getBoundingClientRect();
      scrollFor(el, b.width, b.height);
      r = el.getBoundingClientRect();
    }
    lastRect = { width: r.width, height: r.height };
    const where = fitted(r);
    if (!where) return;
    box.style.left = where.x + "px";
    box.style.top = where.y + "px";
    box.style.right = "auto";
    box.style.bottom = "auto";
  }

  function point(el) {
    const fresh = lit !== el;
    if (fresh) {
      unlight();
      lit = el;
    }
    // Every tick: a Dash re-render of the target resets its className.
    el.classList.add("tour-highlight");
    el.setAttribute("data-tour-step", String(state.index));
    place(el, fresh);
  }

  function tick() {
    if (!state) return;
    const list = steps();
    const step = list[state.index];
    if (!step) {
      if (list.length) go(list.length - 1);
      else show({ title: "The tour", text: "", wait: "Loading the tour…" }, false);
      return;
    }
    if (step.do && !state.done.has(state.index)) {
      if (step.hold) {
        show(step, false);
        return;
      }
      state.done.add(state.index);
      run(step.do);
    }
    const el = document.querySelector(step.target);
    // `settled`: what must be drawn inside the target before the box is placed beside it (the
    // glossary's entries arrive after it opens: placed earlier, the box would sit on them)
    const settled = !step.settled || Boolean(el && el.querySelector(step.settled));
    const ready = step.ready !== false && visible(el) && settled;
    show(step, ready);
    if (ready) point(el);
    else unlight();
  }

  function go(index) {
    if (!state) return;
    state.index = Math.max(0, index);
    unlight();
    tick();
  }

  function start(name) {
    // The steps may not have arrived yet (the page is still loading the model): the box opens
    // at once and waits for them.
    state = { name: name, index: 0, done: new Set() };
    setProps("tour-on", { data: true }); // the steps are written from now on (tour.py)
    if (!box) box = buildBox();
    clearInterval(timer);
    timer = setInterval(tick, POLL_MS);
    go(0);
    box.querySelector("#tour-next").focus();
  }

  document.addEventListener("click", function (event) {
    const target = event.target.closest ? event.target : null;
    if (!target) return;
    const starter = target.closest("[data-tour-start]");
    if (starter) {
      start(starter.getAttribute("data-tour-start"));
      return;
    }
    const link = target.closest('a[href^="#glossary-"]');
    if (link) openEntry(link.getAttribute("href"));
  });

  document.addEventListener("keydown", function (event) {
    if (state && event.key === "Escape") end("skipped");
  });

  // A glossary link opens the glossary and brings its entry into view once it is drawn.
  function openEntry(hash) {
    if (hash.indexOf("#glossary-") !== 0) return;
    const glossary = document.getElementById("glossary");
    if (glossary) glossary.open = true;
    const entry = "#" + CSS.escape(hash.slice(1));
    whenThere(entry, function (el) { el.scrollIntoView({ block: "center" }); }, 40);
  }
  window.addEventListener("hashchange", function () { openEntry(location.hash); });
})();
