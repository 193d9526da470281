// The console's only script (served as a file: the Content-Security-Policy allows no
// inline script). It refreshes an opening's progress by polling its JSON endpoint.
"use strict";
(function () {
  const card = document.getElementById("opening");
  if (!card) {
    return;
  }
  const url = card.dataset.progress;
  const set = (name, value) => {
    const el = card.querySelector('[data-field="' + name + '"]');
    if (el) {
      el.textContent = String(value);
    }
  };
  async function refresh() {
    try {
      const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (!resp.ok) {
        set("updated", "刷新失败（" + resp.status + "）");
        return;
      }
      const o = await resp.json();
      for (const k of ["state", "envelopes", "consented", "released", "early_attempts"]) {
        set(k, o[k]);
      }
      const bar = card.querySelector('[data-field="released-bar"]');
      if (bar) {
        bar.max = Math.max(o.envelopes, 1);
        bar.value = o.released;
      }
      set("updated", "更新于 " + new Date().toLocaleTimeString("zh-CN"));
      if (o.closed) {
        const report = document.getElementById("report");
        if (report) {
          report.classList.remove("hidden");
        }
      }
    } catch (e) {
      set("updated", "刷新失败");
    }
  }
  setInterval(refresh, 2000);
})();
