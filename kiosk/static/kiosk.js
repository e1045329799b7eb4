// The kiosk's own behaviour: idle reset, the on-screen keyboard (Chromium --kiosk hides
// the system's), live lookup of returning visitors, the PIN pad, greeting visitors who
// signed in on their phone, and the admins' long press. No libraries, nothing fetched
// from outside.
(function () {
  "use strict";
  var body = document.body;
  var onKiosk = body.classList.contains("kiosk");

  // --- idle reset: counts from the last touch or key, not from page load. A
  // confirmation ("Welcome, Ana") goes back sooner, on the kiosk only: a touch keeps it,
  // and a phone is the visitor's own (no timed refresh a visitor cannot stop) ---
  var confirmation = document.querySelector("[data-confirm-seconds]");
  var idleSeconds = parseInt(body.dataset.idleSeconds || "0", 10);
  if (confirmation) {
    idleSeconds = onKiosk ? parseInt(confirmation.dataset.confirmSeconds, 10) : 0;
  }
  if (idleSeconds) {
    var idleTimer;
    var restart = function () {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(function () {
        window.location.replace(body.dataset.home || "/");
      }, idleSeconds * 1000);
    };
    ["pointerdown", "keydown", "input", "touchstart"].forEach(function (name) {
      document.addEventListener(name, restart, { passive: true });
    });
    restart();
  }

  // --- one submission per form: a double tap must not post twice ---
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      setTimeout(function () {
        if (e.defaultPrevented) { return; }  // a step's Enter, not a submission
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });

  // --- the on-screen keyboard ---
  var LAYOUTS = {
    latin: ["q w e r t y u i o p", "a s d f g h j k l", "⇧ z x c v b n m ⌫",
            "á é í ó ú ñ ü ç ã ô", "123 ΑΒΓ ␣ - ' . @ ✓"],
    greek: ["; ς ε ρ τ υ θ ι ο π", "α σ δ φ γ η ξ κ λ", "⇧ ζ χ ψ ω β ν μ ⌫",
            "ά έ ή ί ό ύ ώ ϊ ϋ ΐ", "123 ABC ␣ - ' . @ ✓"],
    symbols: ["1 2 3 4 5 6 7 8 9 0", "- ' . @ _ + & ( ) /", "⇧ ! ? , : # * = ~ ⌫",
              "123 ABC ␣ ✓"],
    digits: ["1 2 3", "4 5 6", "7 8 9", "⌫ 0 ✓"]
  };
  var keyboard = document.getElementById("keyboard");
  // The special keys' names, in the page's language, for screen readers and tests.
  var NAMES = keyboard ? JSON.parse(keyboard.dataset.names || "{}") : {};
  var target = null;
  var shift = false;
  var textLayout = (document.documentElement.lang || "").indexOf("el") === 0 ? "greek" : "latin";

  function insert(text) {
    var start = target.selectionStart, end = target.selectionEnd;
    var value = target.value;
    if (start === null || start === undefined) { start = end = value.length; }
    var max = target.maxLength > 0 ? target.maxLength : 1e9;
    if (value.length - (end - start) + text.length > max) { return; }
    target.value = value.slice(0, start) + text + value.slice(end);
    var caret = start + text.length;
    try { target.setSelectionRange(caret, caret); } catch (e) { /* type=email */ }
    target.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function backspace() {
    var start = target.selectionStart, end = target.selectionEnd;
    var value = target.value;
    if (start === null || start === undefined) { start = end = value.length; }
    if (start === end && start > 0) { start -= 1; }
    target.value = value.slice(0, start) + value.slice(end);
    try { target.setSelectionRange(start, start); } catch (e) { /* type=email */ }
    target.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function autoShift() {
    // Names start their words with a capital letter.
    var v = target.value;
    return target.name === "name" && (v === "" || v.slice(-1) === " ");
  }

  function press(key) {
    if (key === "⇧") { shift = !shift; draw(); return; }
    if (key === "⌫") { backspace(); }
    else if (key === "␣") { insert(" "); }
    else if (key === "✓") { enter(); return; }
    else if (key === "123") { draw("symbols"); return; }
    else if (key === "ABC") { textLayout = "latin"; draw("latin"); return; }
    else if (key === "ΑΒΓ") { textLayout = "greek"; draw("greek"); return; }
    else { insert(shift ? key.toLocaleUpperCase() : key); }
    shift = autoShift();
    draw();
  }

  function draw(layout) {
    if (!keyboard || !target) { return; }
    var wanted = layout || keyboard.dataset.layout ||
      (target.dataset.keyboard === "digits" ? "digits" : textLayout);
    keyboard.dataset.layout = wanted;
    keyboard.textContent = "";
    LAYOUTS[wanted].forEach(function (row) {
      var line = document.createElement("div");
      line.className = "row";
      row.split(" ").forEach(function (key) {
        var b = document.createElement("button");
        b.type = "button";
        b.className = "key" + (key.length > 1 || NAMES[key] ? " wide" : "");
        b.textContent = shift && key.length === 1 ? key.toLocaleUpperCase() : key;
        // A key that shows letters or digits says them first, so its name holds what
        // it shows (WCAG 2.5.3): "ΑΒΓ (Greek letters)"; a symbol key says what it does.
        var shown = b.textContent;
        var name = NAMES[key];
        if (name && /[\p{L}\p{N}]/u.test(shown)) { name = shown + " (" + name + ")"; }
        b.setAttribute("aria-label", name || shown);
        b.addEventListener("pointerdown", function (e) { e.preventDefault(); });
        b.addEventListener("click", function () { press(key); target.focus(); });
        line.appendChild(b);
      });
      keyboard.appendChild(line);
    });
  }

  function enter() {
    // On the name step the check key means "Next"; elsewhere it puts the keyboard away.
    var form = target.form;
    hide();
    if (target.dataset.enter === "submit" && form) {
      if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
    }
  }

  function show(input) {
    target = input;
    delete keyboard.dataset.layout;
    shift = autoShift();
    keyboard.hidden = false;
    body.classList.add("typing");
    // In a step of the first visit only the field's own group stays beside the keyboard
    // (see kiosk.css), so that the field and the step's Next both fit above it.
    document.querySelectorAll(".field.typing-here").forEach(function (f) {
      f.classList.remove("typing-here");
    });
    var field = input.closest(".field");
    if (field) { field.classList.add("typing-here"); }
    draw();
    // Beside the form (the PIN pad in a landscape screen, see kiosk.css): nothing to move.
    if (keyboard.getBoundingClientRect().left > 0) { return; }
    // Leave room to scroll everything above the keyboard, and keep the field in sight,
    // with its step's buttons below it when they fit.
    document.querySelector("main").style.paddingBottom = keyboard.offsetHeight + "px";
    var top = window.innerHeight - keyboard.offsetHeight;
    var step = input.closest("[data-step]");
    var nav = step && step.querySelector(".step-nav");
    var keep = nav && !nav.hidden ? nav : input;
    var hidden = keep.getBoundingClientRect().bottom - top;
    hidden = Math.min(hidden, input.getBoundingClientRect().top - 8);
    if (hidden > -8) { window.scrollBy(0, hidden + 8); }
  }

  function hide() {
    if (!keyboard) { return; }
    keyboard.hidden = true;
    body.classList.remove("typing");
    document.querySelector("main").style.paddingBottom = "";
  }

  if (onKiosk && keyboard) {
    document.querySelectorAll("input[data-keyboard]").forEach(function (input) {
      input.addEventListener("focus", function () { show(input); });
    });
    var first = document.querySelector("input[data-autofocus]");
    if (first) { first.focus(); }
  }

  // --- the first visit, one step at a time: the form stays one POST, and without
  // this script every step shows at once. A refusal from the server opens the step
  // that holds the refused field (data-error-step). ---
  var stepped = document.querySelector("form[data-steps]");
  if (stepped) {
    var steps = Array.prototype.slice.call(stepped.querySelectorAll("[data-step]"));
    var counter = stepped.querySelector(".step-count");
    var current = 0;
    var box = stepped.querySelector(".guidelines-text");
    var more = document.getElementById("guidelines-more");

    // The guidelines' box takes what room the screen has left, and says when it scrolls.
    var fit = function () {
      if (!box || box.offsetParent === null) { return; }
      more.hidden = false;
      box.style.maxHeight = "";
      var over = document.documentElement.scrollHeight - window.innerHeight;
      if (over > 0) {
        box.style.maxHeight = Math.max(box.clientHeight - over, 72) + "px";
      }
      more.hidden = box.scrollHeight <= box.clientHeight + 1;
    };

    var go = function (index, focus) {
      current = Math.max(0, Math.min(index, steps.length - 1));
      hide();
      steps.forEach(function (step, i) { step.hidden = i !== current; });
      counter.textContent = steps[current].dataset.counter;
      window.scrollTo(0, 0);
      fit();
      if (focus) { steps[current].querySelector("h2").focus(); }
    };

    stepped.querySelectorAll(".step-nav, [data-go]").forEach(function (el) { el.hidden = false; });
    stepped.querySelectorAll("[data-go]").forEach(function (button) {
      button.addEventListener("click", function () {
        var how = button.dataset.go;
        if (how === "skip") {  // nothing given on this step, whatever was typed
          steps[current].querySelectorAll("input[data-keyboard]").forEach(function (input) {
            input.value = "";
          });
        }
        go(current + (how === "back" ? -1 : 1), true);
      });
    });
    // Enter in a field (a phone's keyboard) goes to the next step, until the last.
    stepped.addEventListener("submit", function (e) {
      if (current < steps.length - 1) { e.preventDefault(); go(current + 1, true); }
    });
    window.addEventListener("resize", fit);
    counter.hidden = false;
    body.classList.add("stepped");
    var failed = stepped.dataset.errorStep;
    var at = steps.findIndex(function (step) { return step.dataset.step === failed; });
    go(at < 0 ? 0 : at, at >= 0);
  }

  // --- returning visitors: matches for the first letters typed, masked ---
  var nameForm = document.querySelector("form[data-matches]");
  if (nameForm) {
    var nameInput = nameForm.querySelector("input[name=name]");
    var list = document.getElementById("matches");
    var pending;
    nameInput.addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        var q = nameInput.value.trim();
        if (q.length < 2) { list.textContent = ""; return; }
        fetch(nameForm.dataset.matches + "?q=" + encodeURIComponent(q))
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (found) {
            if (nameInput.value.trim() !== q) { return; }
            list.textContent = "";
            found.forEach(function (m) {
              var li = document.createElement("li");
              var a = document.createElement("a");
              a.className = "match";
              a.href = m.url;
              a.textContent = m.label;
              li.appendChild(a);
              list.appendChild(li);
            });
          })
          .catch(function () { list.textContent = ""; });
      }, 150);
    });
  }

  // --- the PIN pad sends itself after the fourth digit ---
  document.querySelectorAll("input[data-autosubmit]").forEach(function (input) {
    input.addEventListener("input", function () {
      var form = input.form;
      var accept = form.querySelector("input[name=accept]");
      if (input.value.length === parseInt(input.dataset.autosubmit, 10) &&
          (!accept || accept.checked)) {
        if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
      }
    });
  });

  // --- the local admins' way in, on the kiosk's screen: hold the space's name on
  // Welcome for three seconds (a tap still just goes to Welcome) ---
  var adminHold = document.querySelector("[data-admin-hold]");
  var spaceName = document.querySelector(".bar .space-name");
  if (onKiosk && adminHold && spaceName) {
    var holdTimer = null;
    var held = false;
    var letGo = function () { clearTimeout(holdTimer); holdTimer = null; };
    spaceName.style.touchAction = "none";  // a held finger is not a scroll
    spaceName.addEventListener("pointerdown", function () {
      letGo();
      holdTimer = setTimeout(function () {
        held = true;
        window.location.assign(adminHold.dataset.adminHold);
      }, 3000);
    });
    ["pointerup", "pointerleave", "pointercancel"].forEach(function (name) {
      spaceName.addEventListener(name, letGo);
    });
    spaceName.addEventListener("click", function (e) { if (held) { e.preventDefault(); } });
    spaceName.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  }

  // --- an evacuation's roll-call on the kiosk's screen stays up to date in place (no
  // timed reload): the counts and both lists, every few seconds; once it is over (the
  // page is no roll-call any more, or cannot be had again) the screen goes home ---
  var rollCall = document.querySelector("[data-refresh-seconds]");
  if (rollCall) {
    setInterval(function () {
      fetch(window.location.href, { cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          var fresh = html && new DOMParser().parseFromString(html, "text/html");
          if (!fresh || !fresh.querySelector("[data-refresh-seconds]")) {
            window.location.replace(body.dataset.home || "/");
            return;
          }
          ["roll-count", "missing", "safe"].forEach(function (id) {
            var now = document.getElementById(id), next = fresh.getElementById(id);
            if (now && next && now.innerHTML !== next.innerHTML) { now.innerHTML = next.innerHTML; }
          });
        })
        .catch(function () {});
    }, parseInt(rollCall.dataset.refreshSeconds, 10) * 1000);
  }

  // --- greet, on the kiosk's screen, visitors who signed in on their phone ---
  var welcome = document.querySelector("[data-greetings]");
  if (onKiosk && welcome) {
    var since = parseFloat(welcome.dataset.greetSince || "0");
    var greeting = document.getElementById("greeting");
    var template = greeting.dataset.template || "";
    setInterval(function () {
      fetch(welcome.dataset.greetings + "?since=" + since)
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (found) {
          if (found.reload) { window.location.reload(); return; }  // an evacuation began
          found.forEach(function (v) {
            since = Math.max(since, v.at);
            greeting.textContent = template.replace("%s", v.first_name);
            setTimeout(function () { greeting.textContent = ""; }, 8000);
          });
        })
        .catch(function () {});
    }, 3000);
  }
})();
