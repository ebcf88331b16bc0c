"use strict";
// The dashboard's small amount of JavaScript: confirmations and busy buttons, times in the reader's
// zone, live updates by polling, and the Deploy tab (drag and drop, zipping a folder, checks before
// the upload, asking before a live site is replaced, upload with progress). No framework, no build step.
(function () {
  const main = document.querySelector("main");
  const csrf = main ? main.dataset.csrf : "";

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    // A rollback, promote or TTL change takes a moment (nginx reloads): say so, and do not send it twice.
    const button = event.submitter || form.querySelector("button[data-busy]");
    if (button && button.dataset.busy) {
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "1";
      button.setAttribute("aria-busy", "true");
      button.textContent = button.dataset.busy;
      window.setTimeout(function () { button.disabled = true; }, 0);
    }
  });

  // Times come from the server in UTC (<time datetime=... data-relative>); here they read "3 min ago",
  // with the exact time in the reader's own zone on hover. Without JavaScript the UTC label stays.
  const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone || "").replace(/_/g, " ");
  const exactFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short",
  });

  function relative(moment) {
    const seconds = Math.round((moment.getTime() - Date.now()) / 1000);
    const past = seconds <= 0;
    const abs = Math.abs(seconds);
    let text;
    if (abs < 45) return past ? "just now" : "in a moment";
    if (abs < 90 * 60) text = Math.max(1, Math.round(abs / 60)) + " min";
    else if (abs < 36 * 3600) text = Math.round(abs / 3600) + " h";
    else if (abs < 45 * 86400) text = Math.round(abs / 86400) + " days";
    else return exactFormat.format(moment);
    return past ? text + " ago" : "in " + text;
  }

  function showTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (element) {
      const moment = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(moment.getTime())) return;
      const exact = exactFormat.format(moment);
      element.title = exact;
      element.textContent = element.hasAttribute("data-relative") ? relative(moment) : exact;
    });
  }

  function markOverflow(root) {
    root.querySelectorAll(".scroll").forEach(function (box) {
      box.classList.toggle("overflows", box.scrollWidth > box.clientWidth + 1);
    });
  }

  const footer = document.getElementById("zone");
  if (footer && zone) footer.textContent = "Times are in your zone, " + zone + "; hover one for the exact time.";
  showTimes(document);
  markOverflow(document);
  window.setInterval(function () { showTimes(document); }, 30000);
  window.addEventListener("resize", function () { markOverflow(document); });

  // Live updates: parts of a page marked data-poll are fetched again every 2 seconds.
  document.querySelectorAll("[data-poll]").forEach(function (element) {
    let last = null;
    async function tick() {
      try {
        const response = await fetch(element.dataset.poll, { credentials: "same-origin" });
        if (response.status === 401) return; // signed out: stop polling
        if (response.ok) {
          const html = await response.text();
          // The first answer replaces the page's copy too: a hidden tab may have missed changes.
          if (html !== last) {
            element.innerHTML = html;
            last = html;
            showTimes(element);
            markOverflow(element);
          }
        }
      } catch (error) {
        // the service is restarting; try again
      }
      window.setTimeout(tick, 2000);
    }
    window.setTimeout(tick, 2000);
  });

  const deploy = document.getElementById("deploy");
  if (deploy) setUpDeploy(deploy);

  function setUpDeploy(section) {
    const zone = document.getElementById("dropzone");
    const zipInput = document.getElementById("zip-input");
    const folderInput = document.getElementById("folder-input");
    const slotField = document.getElementById("slot");
    const ttlField = document.getElementById("ttl");
    const draftBox = document.getElementById("draft");
    const chosenText = document.getElementById("chosen");
    const button = document.getElementById("upload");
    const progress = document.getElementById("progress");
    const progressText = document.getElementById("progress-text");
    const result = document.getElementById("result");
    const confirmBox = document.getElementById("confirm");
    const confirmText = document.getElementById("confirm-text");
    const maxBytes = Number(section.dataset.maxBytes);
    const defaultPlaceholder = slotField.placeholder;
    let chosen = null;
    let busy = false;

    document.getElementById("choose-zip").addEventListener("click", function () { zipInput.click(); });
    document.getElementById("choose-folder").addEventListener("click", function () { folderInput.click(); });

    // named: false for loose files, which have no folder name to make a slot name from.
    function choose(blob, name, description, named) {
      chosen = { blob: blob, name: name, named: named };
      chosenText.textContent = description;
      hideConfirm();
      clearResult();
      slotField.required = !named;
      slotField.placeholder = named ? defaultPlaceholder : "type the slot for these files";
      setReady();
      if (!named) {
        chosenText.textContent = description + " Loose files have no folder name: type the slot they go to.";
        slotField.focus();
        return;
      }
      suggest();
    }

    function setReady() {
      button.disabled = busy || !chosen;
    }

    // The slot a file or folder name makes, as the server makes it, and what is live there now.
    async function suggest() {
      if (!chosen || !chosen.named || slotField.value.trim()) return;
      const answer = await target("");
      if (!answer || answer.error || slotField.value.trim()) return;
      slotField.placeholder = answer.slot + " (from the name)";
      chosenText.textContent += " It goes to the slot " + answer.slot + (answer.live ? ", which is live now." : ", which is new.");
    }

    async function target(ttl) {
      const query = new URLSearchParams({ name: chosen.name, slot: slotField.value.trim(), ttl: ttl });
      try {
        const response = await fetch("/ui/deploy-target?" + query.toString(), { credentials: "same-origin" });
        if (response.status === 401) return { error: "Your session has ended; sign in again (reload the page)." };
        const answer = await response.json();
        if (!response.ok) return { error: answer.error || "DropHost refused this deploy (" + response.status + ").", field: answer.field };
        return answer;
      } catch (error) {
        return { error: "DropHost did not answer; is it running?" };
      }
    }

    function published(path) {
      return !path.split("/").some(function (part) { return part.startsWith("."); });
    }

    async function chooseFolder(entries, folderName) {
      entries = entries.filter(function (e) { return published(e.name); });
      if (!entries.length) {
        showError("The folder has no files to publish.");
        return;
      }
      chosen = null;
      setReady();
      chosenText.textContent = "Zipping " + entries.length + " files…";
      try {
        const blob = await window.DropHostZip.makeZip(entries, function (done, total) {
          chosenText.textContent = "Zipping " + done + " / " + total + " files…";
        });
        const what = folderName ? "Folder " + folderName + ": " : "";
        choose(blob, (folderName || "site") + ".zip", what + entries.length + " files, zipped (" + size(blob.size) + ").", Boolean(folderName));
      } catch (error) {
        showError(String(error.message || error));
      }
    }

    zipInput.addEventListener("change", function () {
      const file = zipInput.files[0];
      if (file) choose(file, file.name, "ZIP " + file.name + " (" + size(file.size) + ").", true);
      zipInput.value = "";
    });

    folderInput.addEventListener("change", function () {
      const files = Array.from(folderInput.files);
      folderInput.value = "";
      if (!files.length) return;
      const top = (files[0].webkitRelativePath || files[0].name).split("/")[0];
      chooseFolder(files.map(function (f) { return { name: f.webkitRelativePath || f.name, file: f }; }), top);
    });

    slotField.addEventListener("input", function () { hideConfirm(); });

    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", async function (event) {
      event.preventDefault();
      zone.classList.remove("over");
      const items = Array.from(event.dataTransfer.items || []);
      const roots = items.map(function (item) { return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null; }).filter(Boolean);
      const files = Array.from(event.dataTransfer.files || []);
      if (files.length === 1 && files[0].name.toLowerCase().endsWith(".zip") && !(roots[0] && roots[0].isDirectory)) {
        choose(files[0], files[0].name, "ZIP " + files[0].name + " (" + size(files[0].size) + ").", true);
        return;
      }
      if (!roots.length) {
        // No directory access (e.g. files dropped from another page): zip the loose files.
        chooseFolder(files.map(function (f) { return { name: f.name, file: f }; }), null);
        return;
      }
      const entries = [];
      for (const root of roots) await collect(root, entries);
      // One folder names the slot; loose files or several folders do not.
      chooseFolder(entries, roots.length === 1 && roots[0].isDirectory ? roots[0].name : null);
    });

    async function collect(entry, out) {
      if (entry.isFile) {
        const file = await new Promise(function (resolve, reject) { entry.file(resolve, reject); });
        out.push({ name: entry.fullPath.replace(/^\//, ""), file: file });
        return;
      }
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise(function (resolve, reject) { reader.readEntries(resolve, reject); });
        if (!batch.length) break;
        for (const child of batch) await collect(child, out);
      }
    }

    // Everything that can be checked before the upload is: the fields, the size, the slot and TTL
    // as the server reads them, and whether a live site would be replaced (then it asks first).
    button.addEventListener("click", async function () {
      if (!chosen || busy) return;
      clearResult();
      hideConfirm();
      if (!chosen.named && !slotField.value.trim()) {
        showError("Type the slot these files go to: loose files have no folder name to make one from.");
        slotField.focus();
        return;
      }
      if (!slotField.checkValidity()) {
        showError('"' + slotField.value + '" is not a valid slot name: use 1 to 63 lowercase letters, digits and "-", not starting or ending with "-".');
        slotField.focus();
        return;
      }
      if (!ttlField.checkValidity()) {
        showError('Time to live "' + ttlField.value + '" is not a duration: use seconds or a number with s, m, h, d or w (e.g. 2h, 7d).');
        ttlField.focus();
        return;
      }
      if (chosen.blob.size > maxBytes) {
        showError("The archive is larger than this DropHost accepts (" + size(maxBytes) + ").");
        return;
      }
      setBusy(true, "Checking…");
      const answer = await target(ttlField.value.trim());
      setBusy(false);
      if (answer.error) {
        showError(answer.error);
        if (answer.field === "ttl") ttlField.focus();
        else if (answer.field === "slot") slotField.focus();
        return;
      }
      if (answer.live && !draftBox.checked) {
        askFirst(answer);
        return;
      }
      upload();
    });

    function askFirst(answer) {
      const live = answer.live;
      confirmText.replaceChildren();
      const strong = document.createElement("strong");
      strong.textContent = answer.slot;
      const when = document.createElement("time");
      when.setAttribute("datetime", live.created_at);
      when.setAttribute("data-relative", "");
      when.textContent = live.created_at;
      confirmText.append(strong, " is live: version " + live.version + " from " + live.source + ", deployed ", when,
        ". Deploying replaces it (its versions stay; you can roll back).");
      showTimes(confirmText);
      confirmBox.hidden = false;
      button.hidden = true;
      document.getElementById("confirm-replace").focus();
    }

    function hideConfirm() {
      confirmBox.hidden = true;
      button.hidden = false;
    }

    document.getElementById("confirm-replace").addEventListener("click", function () {
      hideConfirm();
      upload();
    });
    document.getElementById("confirm-cancel").addEventListener("click", function () {
      hideConfirm();
      progressText.textContent = "Not deployed: nothing changed.";
      button.focus();
    });

    function setBusy(on, label) {
      busy = on;
      button.setAttribute("aria-busy", on ? "true" : "false");
      button.textContent = on ? label : "Deploy";
      setReady();
    }

    function upload() {
      const form = new FormData();
      form.append("file", chosen.blob, chosen.name);
      const slot = slotField.value.trim();
      const ttl = ttlField.value.trim();
      if (slot) form.append("slot", slot);
      if (ttl) form.append("ttl", ttl);
      if (draftBox.checked) form.append("activate", "false");
      const request = new XMLHttpRequest();
      request.open("POST", "/api/deployments");
      request.setRequestHeader("X-CSRF-Token", csrf);
      request.responseType = "json";
      progress.hidden = false;
      progress.value = 0;
      setBusy(true, "Deploying…");
      progressText.textContent = "Uploading…";
      request.upload.addEventListener("progress", function (event) {
        if (!event.lengthComputable) return;
        progress.value = Math.round((100 * event.loaded) / event.total);
        progressText.textContent = "Uploading… " + progress.value + "% of " + size(event.total);
      });
      request.upload.addEventListener("load", function () {
        progress.value = 100;
        progressText.textContent = "Uploaded; publishing…";
      });
      request.addEventListener("load", function () {
        setBusy(false);
        const answer = request.response || {};
        if (request.status === 201) {
          progressText.textContent = "";
          progress.hidden = true;
          // Done with this file: deploying it again needs choosing it again.
          chosen = null;
          setReady();
          chosenText.textContent = "Deployed. Choose another ZIP or folder to deploy again.";
          showLive(answer);
        } else {
          showError(answer.error || "The deploy failed (" + request.status + ").");
        }
      });
      request.addEventListener("error", function () {
        setBusy(false);
        showError("The upload did not reach DropHost.");
      });
      request.send(form);
    }

    function showLive(answer) {
      result.replaceChildren();
      result.className = "notice";
      const text = document.createElement("p");
      if (answer.status === "draft") {
        text.id = "draft-result";
        text.append(answer.slot + ": draft deployment " + answer.id + " (version " + answer.config_version + "), not live; promote it on the slot's page.");
        const permalink = document.createElement("a");
        permalink.href = answer.permalink;
        permalink.id = "draft-link";
        permalink.target = "_blank";
        permalink.rel = "noopener noreferrer";
        permalink.textContent = answer.permalink;
        text.append(" Its permalink: ", permalink);
        const slotPage = document.createElement("a");
        slotPage.href = "/slots/" + answer.slot;
        slotPage.textContent = "versions and promote";
        const next = document.createElement("p");
        next.append(slotPage);
        result.append(text, next);
        return;
      }
      text.append(answer.slot + " is live (version " + answer.config_version + ") at ");
      const link = document.createElement("a");
      link.href = answer.url;
      link.id = "live-link";
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = answer.url;
      text.append(link);
      const slotLink = document.createElement("a");
      slotLink.href = "/slots/" + answer.slot;
      slotLink.textContent = "versions and log";
      const more = document.createElement("p");
      more.append(slotLink);
      result.append(text, more);
    }

    function clearResult() {
      result.replaceChildren();
      result.className = "";
      progressText.textContent = "";
    }

    function showError(message) {
      result.replaceChildren();
      result.className = "error";
      result.textContent = message;
      progress.hidden = true;
      progressText.textContent = "";
    }
  }

  function size(bytes) {
    if (bytes < 1024) return bytes + " B";
    const units = ["KiB", "MiB", "GiB"];
    let value = bytes;
    let unit = "B";
    for (const next of units) {
      if (value < 1024) break;
      value /= 1024;
      unit = next;
    }
    return value.toFixed(1) + " " + unit;
  }
})();
