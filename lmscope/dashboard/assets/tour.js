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
  }

  function run(actions) {
    (actions || []).forEach(function (action) {
      const kind = action[0];
      if (kind === "set") setProps(action[1], action[2]);
      else if (kind === "click") {
        const el = document.querySelector(action[1]);
        if (el) el.click();
      } else if (kind === "open") {
        const el = document.querySelector(action[1]);
        if (el) el.open = true;
      }
    });
  }

  function show(step, ready) {
    const list = steps();
    box.querySelector(".tour-counter").textContent =
      "Step " + (state.index + 1) + " of " + list.length;
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

  function point(el) {
    const fresh = lit !== el;
    if (fresh) {
      unlight();
      lit = el;
    }
    // Every tick: a Dash re-render of the target resets its className.
    el.classList.add("tour-highlight");
    el.setAttribute("data-tour-step", String(state.index));
    if (fresh) {
      const tall = el.getBoundingClientRect().height > window.innerHeight * 0.6;
      el.scrollIntoView({ block: tall ? "start" : "center", behavior: "instant" });
    } else if (!inView(el)) {
      el.scrollIntoView({ block: "start", behavior: "instant" });
    }
  }

  function tick() {
    if (!state) return;
    const list = steps();
    const step = list[state.index];
    if (!step) {
      if (list.length) go(list.length - 1);
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
    const ready = step.ready !== false && visible(el);
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
    if (!tours()) return;
    state = { name: name, index: 0, done: new Set() };
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
    if (link) {
      const glossary = document.getElementById("glossary");
      if (glossary) glossary.open = true;
    }
  });

  document.addEventListener("keydown", function (event) {
    if (state && event.key === "Escape") end("skipped");
  });

  function openForHash() {
    if (location.hash.indexOf("#glossary-") === 0) {
      const glossary = document.getElementById("glossary");
      if (glossary) glossary.open = true;
      const entry = document.getElementById(location.hash.slice(1));
      if (entry) entry.scrollIntoView({ block: "center" });
    }
  }
  window.addEventListener("hashchange", openForHash);
})();
