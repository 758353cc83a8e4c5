// The board keeps itself up to date: the station sends each card and each panel
// (network boots, imager sticks, the portal) that changed.
"use strict";
(function () {
  const list = document.querySelector(".cards");
  if (!list || !window.EventSource) { return; }
  const source = new EventSource("/board/events");
  source.addEventListener("card", function (event) {
    const card = JSON.parse(event.data);
    const old = document.getElementById(card.id);
    const focused = old && old.contains(document.activeElement);
    if (old) { old.outerHTML = card.html; } else { list.insertAdjacentHTML("beforeend", card.html); }
    if (focused) {
      const button = document.getElementById(card.id).querySelector("button");
      if (button) { button.focus(); }
    }
  });
})();
