/* supportbot: the ticket queue refreshes itself every 30 s, so a newly waiting customer shows
   up without a click; never while the operator selects rows or types in a field. */
(function () {
  "use strict";
  const EVERY_MS = 30000;
  function busy() {
    if (document.querySelector("#result_list input.action-select:checked")) return true;
    const active = document.activeElement;
    return Boolean(active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
  }
  window.setInterval(function () {
    if (document.getElementById("changelist") && !busy()) window.location.reload();
  }, EVERY_MS);
})();
