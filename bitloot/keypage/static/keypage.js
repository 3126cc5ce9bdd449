// The BitLoot key page: order status, then, on Reveal only, the keys decrypted in this browser.
//
// The order token arrives in the URL fragment (#token=...), which browsers never send to a
// server. It is removed from the address bar at once and kept in memory, plus in this tab's
// sessionStorage so that a reload still works (sessionStorage is per tab and per origin, is
// never sent anywhere, and is gone when the tab closes). Keys and data keys live only in
// memory and on the page: never in storage, never in the console.
//
// A link that no longer works (expired, revoked, incomplete) offers a new one: the form
// posts the address to POST /orders/recover, whose answer is the same whether or not the
// address has orders, so the page says the same thing every time.
"use strict";

(() => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const POLL_FIRST_MS = 2000;
  const POLL_MAX_MS = 30000;
  const POLL_GROWTH = 1.6;
  const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
  const FORMAT_VERSION = 1;
  const NONCE_BYTES = 12;
  const TAG_BYTES = 16;

  const $ = (id) => document.getElementById(id);
  const ui = {
    orderId: $("order-id"),
    status: $("status"),
    error: $("error"),
    reveal: $("reveal"),
    revealBox: $("reveal-box"),
    keysBox: $("keys-box"),
    keys: $("keys"),
    recoverBox: $("recover-box"),
    recoverForm: $("recover-form"),
    recoverEmail: $("recover-email"),
    recoverSend: $("recover-send"),
    recoverDone: $("recover-done"),
    recoverError: $("recover-error"),
  };

  const blobUrls = [];
  let token = null;
  let pollTimer = null;
  let pollDelay = POLL_FIRST_MS;
  let stopped = false;

  // --- the token: out of the address bar first, before anything can go wrong ----------

  function takeToken(storageKey) {
    let fromHash = null;
    if (location.hash) {
      fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
      history.replaceState(history.state, "", location.pathname + location.search);
    }
    try {
      if (fromHash) {
        sessionStorage.setItem(storageKey, fromHash);
        return fromHash;
      }
      return sessionStorage.getItem(storageKey);
    } catch (_) {
      return fromHash; // storage blocked: the token lives in memory only
    }
  }

  function forgetToken(storageKey) {
    token = null;
    try {
      sessionStorage.removeItem(storageKey);
    } catch (_) {
      // nothing stored
    }
  }

  // --- page state and messages ---------------------------------------------------------

  function setState(state) {
    document.body.dataset.state = state;
  }

  function say(text) {
    ui.status.textContent = text;
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  function stop(state, text) {
    stopped = true;
    clearTimeout(pollTimer);
    setState(state);
    ui.reveal.disabled = true;
    ui.revealBox.hidden = true; // nothing this link can reveal
    showError(text);
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  // --- the API ---------------------------------------------------------------------------

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, body, retryAfter: retryAfterSeconds(response, body) };
  }

  function retryAfterSeconds(response, body) {
    const header = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    if (Number.isFinite(header) && header >= 0) return header;
    const fromBody = body && Number(body.retryAfter);
    return Number.isFinite(fromBody) && fromBody >= 0 ? Math.ceil(fromBody) : null;
  }

  const MESSAGES = {
    401:
      "This link is invalid or has expired. Enter your email address below and we will " +
      "send you a new one.",
    404: "We could not find this order. Check that you opened the whole link from your email.",
    network: "We cannot reach BitLoot right now. Check your connection.",
    server: "Something went wrong on our side. Please try again in a minute.",
    insecure:
      "Your browser cannot decrypt keys on this page (it needs a secure https:// connection " +
      "and a current browser).",
  };

  // --- a new link, by email ---------------------------------------------------------------

  const RECOVER_DONE =
    "Thank you. If this address has orders with us, an email with fresh links is on its " +
    "way. It can take a few minutes; check your spam folder too.";

  function offerRecovery() {
    ui.recoverBox.hidden = false;
  }

  function showRecoverError(text) {
    ui.recoverError.textContent = text;
    ui.recoverError.hidden = false;
  }

  async function postRecovery(email) {
    const response = await fetch("/orders/recover", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email }),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, retryAfter: retryAfterSeconds(response, body) };
  }

  async function requestRecovery(event) {
    event.preventDefault(); // never a native submission: the page's CSP allows none
    const email = ui.recoverEmail.value.trim();
    if (!email || !ui.recoverEmail.checkValidity()) {
      ui.recoverEmail.reportValidity();
      return;
    }
    ui.recoverError.hidden = true;
    ui.recoverSend.disabled = true;
    ui.recoverForm.setAttribute("aria-busy", "true");
    let result;
    try {
      result = await postRecovery(email);
    } catch (_) {
      showRecoverError(`${MESSAGES.network} Please try again.`);
      return;
    } finally {
      ui.recoverSend.disabled = false;
      ui.recoverForm.removeAttribute("aria-busy");
    }
    switch (result.status) {
      case 202:
        ui.recoverForm.hidden = true;
        ui.recoverDone.textContent = RECOVER_DONE;
        ui.recoverDone.hidden = false;
        ui.recoverDone.focus();
        return;
      case 422:
        showRecoverError("Please enter a valid email address.");
        ui.recoverEmail.focus();
        return;
      case 429: {
        const minutes = Math.max(Math.ceil((result.retryAfter ?? 600) / 60), 1);
        showRecoverError(
          `Too many requests from your network. Please try again in ${plural(minutes, "minute", "minutes")}.`,
        );
        return;
      }
      default:
        showRecoverError(MESSAGES.server);
    }
  }

  // --- order status, polled with backoff while the order is not fulfilled ---------------

  function describe(status) {
    const order = status.orderStatus;
    const fulfillment = status.fulfillmentStatus;
    const keys = Array.isArray(status.keys) ? status.keys.length : 0;
    if (fulfillment === "fulfilled" || order === "fulfilled") {
      const what = keys > 0 ? plural(keys, "key is", "keys are") : "your keys are";
      return { state: "ready", text: `Your order is fulfilled: ${what} ready to reveal.` };
    }
    if (fulfillment === "failed") {
      return {
        state: "failed",
        text:
          "We could not deliver this order yet. Our team has been told and will fix it or " +
          "refund you; you can also contact support with the order number above.",
      };
    }
    switch (order) {
      case "created":
      case "waiting":
        return { state: "waiting", text: "Waiting for your payment…" };
      case "confirming":
        return { state: "waiting", text: "Payment seen, waiting for the network to confirm it…" };
      case "paid":
        return { state: "waiting", text: "Payment received. Getting your keys, this takes a moment…" };
      case "underpaid":
        return { state: "failed", text: "The payment was less than the order total. Please contact support." };
      case "expired":
        return { state: "failed", text: "The payment window expired before a payment arrived." };
      case "failed":
        return { state: "failed", text: "The payment failed, so no keys were bought." };
      case "refunded":
        return { state: "failed", text: "This order was refunded." };
      default:
        return { state: "waiting", text: "Checking your order…" };
    }
  }

  function schedulePoll(ms) {
    clearTimeout(pollTimer);
    if (!stopped) pollTimer = setTimeout(poll, ms);
  }

  function backoff() {
    const wait = pollDelay;
    pollDelay = Math.min(Math.round(pollDelay * POLL_GROWTH), POLL_MAX_MS);
    return wait;
  }

  async function poll() {
    if (stopped) return;
    if (document.hidden) return; // resumed by visibilitychange
    let result;
    try {
      result = await api(`/fulfillment/${encodeURIComponent(orderId)}/status`);
    } catch (_) {
      const wait = backoff();
      showError(`${MESSAGES.network} Retrying in ${Math.ceil(wait / 1000)} s.`);
      schedulePoll(wait);
      return;
    }
    if (stopped) return;
    switch (result.status) {
      case 200:
        break;
      case 401:
        forgetToken(storageKey);
        stop("error", MESSAGES[401]);
        say("This link cannot open the order.");
        offerRecovery();
        return;
      case 404:
        stop("error", MESSAGES[404]);
        say("Order not found.");
        return;
      case 429: {
        const seconds = result.retryAfter ?? Math.ceil(backoff() / 1000);
        schedulePoll(Math.max(seconds, 1) * 1000);
        return;
      }
      default: {
        const wait = backoff();
        showError(`${MESSAGES.server} Retrying in ${Math.ceil(wait / 1000)} s.`);
        schedulePoll(wait);
        return;
      }
    }
    if (!result.body || typeof result.body !== "object") {
      showError(MESSAGES.server);
      schedulePoll(backoff());
      return;
    }
    clearError();
    const { state, text } = describe(result.body);
    ui.status.dataset.orderStatus = String(result.body.orderStatus || "");
    ui.status.dataset.fulfillmentStatus = String(result.body.fulfillmentStatus || "");
    say(text);
    if (state === "ready") {
      stopped = true;
      setState("ready");
      ui.reveal.disabled = false;
    } else if (state === "failed") {
      stopped = true;
      setState("failed");
      ui.reveal.disabled = true;
      ui.revealBox.hidden = true;
    } else {
      setState("waiting");
      schedulePoll(backoff());
    }
  }

  // --- Reveal: download-link, fetch each ciphertext, decrypt with WebCrypto -------------

  class KeyError extends Error {}

  function base64Bytes(text) {
    const binary = atob(String(text));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function openKey(canonicalOrderId, entry) {
    if (entry.algorithm !== "AES-256-GCM") {
      throw new KeyError("This key uses an encryption this page does not know.");
    }
    let url;
    try {
      url = new URL(entry.signedUrl, location.href);
    } catch (_) {
      throw new KeyError("The download address of this key is not valid.");
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new KeyError("The download address of this key is not valid.");
    }
    let response;
    try {
      response = await fetch(url.href, {
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
        mode: "cors",
      });
    } catch (_) {
      throw new KeyError("The key could not be downloaded (network problem). Press Reveal to try again.");
    }
    if (!response.ok) {
      throw new KeyError(
        response.status === 403
          ? "The download link has expired. Press Reveal to get a new one."
          : `The key could not be downloaded (HTTP ${response.status}). Press Reveal to try again.`,
      );
    }
    const blob = new Uint8Array(await response.arrayBuffer());
    if (blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== FORMAT_VERSION) {
      throw new KeyError("The downloaded key is damaged or in an unknown format.");
    }
    let raw;
    try {
      raw = base64Bytes(entry.dataKey);
    } catch (_) {
      raw = new Uint8Array(0);
    }
    if (raw.length !== 32) throw new KeyError("The key's decryption key is not valid.");
    let plain;
    try {
      const key = await crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["decrypt"]);
      plain = await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: blob.subarray(1, 1 + NONCE_BYTES),
          additionalData: new TextEncoder().encode(`${canonicalOrderId}:${entry.keyId}`),
          tagLength: TAG_BYTES * 8,
        },
        key,
        blob.subarray(1 + NONCE_BYTES),
      );
    } catch (_) {
      throw new KeyError("This key could not be decrypted. Please contact support.");
    } finally {
      raw.fill(0);
    }
    return new Uint8Array(plain);
  }

  function mediaType(contentType) {
    return String(contentType || "").split(";")[0].trim().toLowerCase();
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function copyText(text, codeNode, button, label) {
    try {
      if (!navigator.clipboard || !navigator.clipboard.writeText) throw new Error("no clipboard");
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
      say(`${label} copied to the clipboard.`);
      setTimeout(() => {
        button.textContent = "Copy";
      }, 2000);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(codeNode);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      say(`${label} is selected: press Ctrl+C (or ⌘+C) to copy it.`);
    }
  }

  function renderKey(index, entry, plain, failure) {
    const n = index + 1;
    const labelId = `key-${n}-label`;
    const type = mediaType(entry.contentType);
    const item = element("li", "key");
    item.dataset.keyId = String(entry.keyId);
    const label = element("p", "key-label", `Key ${n}`);
    label.id = labelId;
    item.append(label);

    if (failure) {
      item.classList.add("key-failed");
      item.append(element("p", "key-error", failure));
      return item;
    }

    if (type === "text/plain" || type === "") {
      let text;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(plain);
      } catch (_) {
        item.append(element("p", "key-error", "This key is not readable text. Please contact support."));
        return item;
      }
      plain.fill(0);
      const row = element("div", "key-row");
      const code = element("code", "key-text", text);
      code.setAttribute("aria-labelledby", labelId);
      code.setAttribute("translate", "no");
      code.tabIndex = 0;
      const copy = element("button", "button copy", "Copy");
      copy.type = "button";
      copy.setAttribute("aria-label", `Copy key ${n}`);
      copy.addEventListener("click", () => copyText(text, code, copy, `Key ${n}`));
      row.append(code, copy);
      item.append(row);
      return item;
    }

    label.append(element("span", "key-type", "(image)"));
    const blob = new Blob([plain], { type: IMAGE_TYPES.has(type) ? type : "application/octet-stream" });
    plain.fill(0);
    const url = URL.createObjectURL(blob);
    blobUrls.push(url);
    if (IMAGE_TYPES.has(type)) {
      const img = element("img", "key-image");
      img.src = url;
      img.alt = `Key ${n}: an image of your key; use the Save button to keep a copy.`;
      item.append(img);
    } else {
      item.append(element("p", "hint", "This key is a file this page cannot show. Save it to open it."));
    }
    const save = element("a", "button", IMAGE_TYPES.has(type) ? "Save image" : "Save file");
    save.href = url;
    save.download = `bitloot-key-${n}${type === "image/png" ? ".png" : type === "image/jpeg" ? ".jpg" : ""}`;
    save.setAttribute("aria-label", `Save key ${n}`);
    item.append(save);
    return item;
  }

  function retryRevealIn(seconds) {
    ui.reveal.disabled = true;
    setTimeout(() => {
      ui.reveal.disabled = false;
    }, seconds * 1000);
  }

  async function reveal() {
    if (!token) return;
    ui.reveal.disabled = true;
    ui.reveal.setAttribute("aria-busy", "true");
    setState("revealing");
    clearError();
    say("Getting your keys…");
    try {
      await revealOnce();
    } finally {
      ui.reveal.removeAttribute("aria-busy");
    }
  }

  async function revealOnce() {
    let result;
    try {
      result = await api(`/fulfillment/${encodeURIComponent(orderId)}/download-link`);
    } catch (_) {
      setState("ready");
      say("Your keys are ready to reveal.");
      showError(`${MESSAGES.network} Press Reveal to try again.`);
      ui.reveal.disabled = false;
      return;
    }
    switch (result.status) {
      case 200:
        break;
      case 401:
        forgetToken(storageKey);
        say("This link cannot open the order.");
        stop("error", MESSAGES[401]);
        offerRecovery();
        return;
      case 404:
        say("Order not found.");
        stop("error", MESSAGES[404]);
        return;
      case 409:
        setState("waiting");
        say("Your keys are not ready yet. This page checks again by itself.");
        stopped = false;
        pollDelay = POLL_FIRST_MS;
        schedulePoll(POLL_FIRST_MS);
        return;
      case 429: {
        const seconds = Math.max(result.retryAfter ?? 30, 1);
        setState("ready");
        say("Your keys are ready to reveal.");
        showError(`Too many attempts. Please try again in ${plural(seconds, "second", "seconds")}.`);
        retryRevealIn(seconds);
        return;
      }
      default:
        setState("ready");
        say("Your keys are ready to reveal.");
        showError(MESSAGES.server);
        ui.reveal.disabled = false;
        return;
    }

    const body = result.body;
    const entries = body && Array.isArray(body.keys) ? body.keys : null;
    if (!entries || typeof body.orderId !== "string" || body.orderId.toLowerCase() !== orderId) {
      setState("ready");
      showError(MESSAGES.server);
      ui.reveal.disabled = false;
      return;
    }
    const opened = await Promise.all(
      entries.map((entry) =>
        openKey(body.orderId, entry).then(
          (plain) => ({ entry, plain, failure: null }),
          (err) => ({
            entry,
            plain: null,
            failure: err instanceof KeyError ? err.message : "This key could not be shown.",
          }),
        ),
      ),
    );
    for (const url of blobUrls.splice(0)) URL.revokeObjectURL(url);
    ui.keys.replaceChildren(...opened.map((o, i) => renderKey(i, o.entry, o.plain, o.failure)));
    ui.keysBox.hidden = false;

    const failed = opened.filter((o) => o.failure).length;
    if (failed === 0) {
      setState("revealed");
      say(`Here ${entries.length === 1 ? "is your key" : `are your ${entries.length} keys`}.`);
      ui.revealBox.hidden = true;
    } else {
      setState(failed === opened.length ? "error" : "revealed");
      say(`${plural(opened.length - failed, "key is", "keys are")} shown below.`);
      showError(`${plural(failed, "key", "keys")} could not be shown; see below.`);
      ui.reveal.disabled = false;
    }
    $("keys-heading").focus();
  }

  // --- start -----------------------------------------------------------------------------

  const match = /^\/orders\/([^/]+)\/key\/?$/.exec(location.pathname);
  const orderId = match ? decodeURIComponent(match[1]).toLowerCase() : "";
  const storageKey = `bitloot.keypage.token.${orderId}`;
  token = takeToken(storageKey);
  ui.recoverForm.addEventListener("submit", requestRecovery);

  if (!UUID.test(orderId)) {
    stop("error", "This link is not complete. Open the link from your email again.");
    say("This link cannot open an order.");
    offerRecovery();
    return;
  }
  ui.orderId.textContent = orderId;
  if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
    stop("error", MESSAGES.insecure);
    say("This page cannot reveal keys here.");
    return;
  }
  if (!token) {
    stop(
      "error",
      "This link is missing its access code. Open the link from your email again " +
        "(the whole link, including the part after #), or get a new link below.",
    );
    say("This link cannot open the order.");
    offerRecovery();
    return;
  }

  ui.reveal.addEventListener("click", reveal);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !stopped) schedulePoll(0);
  });
  window.addEventListener("pagehide", () => {
    for (const url of blobUrls.splice(0)) URL.revokeObjectURL(url);
  });
  poll();
})();
