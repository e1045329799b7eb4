// Idle reset: after a while without a touch or a key, go back to Welcome so the next
// visitor never sees what the last one typed. The timer restarts on every interaction.
(function () {
  var seconds = parseInt(document.body.dataset.idleSeconds || "0", 10);
  if (!seconds) return;
  var home = document.body.dataset.home || "/";
  var timer;
  function restart() {
    clearTimeout(timer);
    timer = setTimeout(function () { window.location.replace(home); }, seconds * 1000);
  }
  ["pointerdown", "keydown", "input", "touchstart"].forEach(function (name) {
    document.addEventListener(name, restart, { passive: true });
  });
  restart();
})();
