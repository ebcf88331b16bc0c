"use strict";
// The deployment page's build log: while the build runs, the log is streamed (fetch, ?follow=1) into
// the page as it is written; when the stream ends the page is loaded again, with the outcome.
(function () {
  const section = document.getElementById("build-log");
  if (!section || !section.dataset.follow) return;
  const text = document.getElementById("build-log-text");
  const state = document.getElementById("build-log-state");

  async function follow() {
    const response = await fetch(section.dataset.follow, { credentials: "same-origin" });
    if (!response.ok || !response.body) throw new Error("status " + response.status);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const following = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      text.textContent += decoder.decode(value, { stream: true });
      if (following) window.scrollTo(0, document.body.scrollHeight);
    }
    state.textContent = "The build has ended.";
    window.location.reload();
  }

  follow().catch(function () {
    state.textContent = "The log stopped following; reload the page for the rest.";
  });
})();
