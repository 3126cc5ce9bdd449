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
//
// Every word it shows is in the page, translated on the server (the JSON data block
// #messages); what was bought (name, platform, where it works, how to activate it) comes
// from the status, in the page's language (`?lang=`). The page loads nothing from another
// host: no cover images (a request to an image host would tell it this customer opened
// their keys); the platforms' redeem pages are plain links, opened only when clicked.
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

  // --- words: the page's translated messages --------------------------------------------

  const LANG = document.documentElement.lang || "en";
  const TEXT = (() => {
    try {
      return JSON.parse($("messages").textContent);
    } catch (_) {
      return {};
    }
  })();
  const PLURAL = new Intl.PluralRules(LANG);

  function fill(text, values) {
    return String(text).replace(/\{(\w+)\}/g, (whole, name) =>
      values && name in values ? String(values[name]) : whole,
    );
  }

  // A message by id, its {placeholders} filled in.
  function t(id, values) {
    return fill(Object.hasOwn(TEXT, id) ? TEXT[id] : id, values);
  }

  // A plural message ([one, other]) for the number n, with {n} and the other values.
  function tn(id, n, values) {
    const forms = TEXT[id];
    if (!Array.isArray(forms)) return t(id, { n, ...values });
    return fill(PLURAL.select(n) === "one" ? forms[0] : forms[1], { n, ...values });
  }

  const ui = {
    orderId: $("order-id"),
    status: $("status"),
    error: $("error"),
    reveal: $("reveal"),
    revealBox: $("reveal-box"),
    keysBox: $("keys-box"),
    keys: $("keys"),
    itemsBox: $("items-box"),
    items: $("items"),
    recoverBox: $("recover-box"),
    recoverForm: $("recover-form"),
    recoverEmail: $("recover-email"),
    recoverSend: $("recover-send"),
    recoverDone: $("recover-done"),
    recoverError: $("recover-error"),
  };

  const blobUrls = [];
  let itemsById = new Map();
  let itemsShown = false;
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

  // The order's status in words (waiting, confirming, buying, preorder, ready, underpaid,
  // refunded, expired, failed, delivery-failed): for styling and for tests.
  function setPhase(phase) {
    document.body.dataset.phase = phase;
  }

  function say(text) {
    // The same words again would be announced again by some screen readers.
    if (ui.status.textContent !== text) ui.status.textContent = text;
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

  // --- a new link, by email ---------------------------------------------------------------

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
      // The page's language, for the email if the server honours it (the orders' own
      // languages may win).
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "Accept-Language": LANG,
      },
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
      showRecoverError(`${t("network")} ${t("tryAgain")}`);
      return;
    } finally {
      ui.recoverSend.disabled = false;
      ui.recoverForm.removeAttribute("aria-busy");
    }
    switch (result.status) {
      case 202:
        ui.recoverForm.hidden = true;
        ui.recoverDone.textContent = t("recoverDone");
        ui.recoverDone.hidden = false;
        ui.recoverDone.focus();
        return;
      case 422:
        showRecoverError(t("recoverInvalid"));
        ui.recoverEmail.focus();
        return;
      case 429: {
        const minutes = Math.max(Math.ceil((result.retryAfter ?? 600) / 60), 1);
        showRecoverError(tn("recoverTooMany", minutes));
        return;
      }
      default:
        showRecoverError(t("server"));
    }
  }

  // --- order status, polled with backoff while the order is not fulfilled ---------------

  // The order's status in words. `state` is the page's mode: waiting (still polling, Reveal
  // disabled), ready, attention (someone at BitLoot acts next; still polling, since the
  // order may yet be paid or delivered) or failed (final: nothing more will happen).
  function describe(status) {
    const order = status.orderStatus;
    const fulfillment = status.fulfillmentStatus;
    const keys = Array.isArray(status.keys) ? status.keys.length : 0;
    const items = Array.isArray(status.items) ? status.items : [];
    if (order === "refunded") return { state: "failed", phase: "refunded", text: t("refunded") };
    if (fulfillment === "fulfilled" || order === "fulfilled") {
      const text = keys > 0 ? tn("ready", keys) : t("readyNoCount");
      return { state: "ready", phase: "ready", text };
    }
    if (fulfillment === "failed") {
      return { state: "attention", phase: "delivery-failed", text: t("deliveryFailed") };
    }
    switch (order) {
      case "created":
      case "waiting":
        return { state: "waiting", phase: "waiting", text: t("waiting") };
      case "confirming":
        return { state: "waiting", phase: "confirming", text: t("confirming") };
      case "paid":
        if (items.some((item) => item && item.preorder)) {
          return { state: "waiting", phase: "preorder", text: t("preorder") };
        }
        return { state: "waiting", phase: "buying", text: t("buying") };
      case "underpaid":
        return { state: "attention", phase: "underpaid", text: t("underpaid") };
      case "expired":
        return { state: "failed", phase: "expired", text: t("expired") };
      case "failed":
        return { state: "failed", phase: "failed", text: t("paymentFailed") };
      default:
        return { state: "waiting", phase: "checking", text: t("checking") };
    }
  }

  // --- what was bought: one card per order line --------------------------------------------

  function productLabel(item) {
    if (!item) return "";
    if (!item.platform) return item.name;
    return t("productLabel", { name: item.name, platform: item.platform });
  }

  function renderItem(item) {
    const node = element("li", "item");
    node.dataset.productId = String(item.productId);
    const heading = element("h3", "item-name", item.name);
    heading.setAttribute("translate", "no");
    node.append(heading);
    const facts = element("p", "item-facts");
    if (item.platform) {
      facts.append(element("span", "item-platform", t("platform", { platform: item.platform })));
    }
    if (item.qty > 1) facts.append(element("span", "item-qty", t("quantity", { qty: item.qty })));
    if (facts.childNodes.length) node.append(facts);
    if (item.preorder) node.append(element("p", "item-preorder", item.preorder));
    if (item.region) node.append(element("p", "item-region", item.region));
    if (item.excluded) node.append(element("p", "item-excluded", item.excluded));
    const steps = Array.isArray(item.steps) ? item.steps : [];
    if (steps.length) {
      node.append(element("h4", "item-steps-heading", t("howToActivate")));
      const list = element("ol", "item-steps");
      for (const step of steps) list.append(element("li", null, step));
      node.append(list);
    }
    const url = safeHttpsUrl(item.redeemUrl);
    if (url) {
      // The platform's own page, opened only when clicked, in a new tab (said to screen
      // readers too), and told nothing about this page (noopener noreferrer).
      const link = element("a", "redeem", item.redeemLabel || url);
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.append(element("span", "visually-hidden", ` ${t("newTab")}`));
      const line = element("p", "item-redeem");
      line.append(link);
      node.append(line);
    }
    return node;
  }

  function safeHttpsUrl(value) {
    if (typeof value !== "string" || !value) return null;
    try {
      const url = new URL(value);
      return url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function showItems(items) {
    if (!Array.isArray(items)) return;
    itemsById = new Map(items.filter(Boolean).map((item) => [String(item.productId), item]));
    if (itemsShown || items.length === 0) return;
    itemsShown = true;
    ui.items.replaceChildren(...items.filter(Boolean).map(renderItem));
    ui.itemsBox.hidden = false;
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
      // What was bought comes in the page's language.
      const lang = encodeURIComponent(LANG);
      result = await api(`/fulfillment/${encodeURIComponent(orderId)}/status?lang=${lang}`);
    } catch (_) {
      const wait = backoff();
      showError(`${t("network")} ${tn("retryingIn", Math.ceil(wait / 1000))}`);
      schedulePoll(wait);
      return;
    }
    if (stopped) return;
    switch (result.status) {
      case 200:
        break;
      case 401:
        forgetToken(storageKey);
        stop("error", t("unauthorized"));
        setPhase("link-invalid");
        say(t("cannotOpenOrder"));
        offerRecovery();
        return;
      case 404:
        stop("error", t("notFound"));
        setPhase("not-found");
        say(t("orderNotFound"));
        return;
      case 429: {
        const seconds = result.retryAfter ?? Math.ceil(backoff() / 1000);
        schedulePoll(Math.max(seconds, 1) * 1000);
        return;
      }
      default: {
        const wait = backoff();
        showError(`${t("server")} ${tn("retryingIn", Math.ceil(wait / 1000))}`);
        schedulePoll(wait);
        return;
      }
    }
    if (!result.body || typeof result.body !== "object") {
      showError(t("server"));
      schedulePoll(backoff());
      return;
    }
    clearError();
    const { state, phase, text } = describe(result.body);
    ui.status.dataset.orderStatus = String(result.body.orderStatus || "");
    ui.status.dataset.fulfillmentStatus = String(result.body.fulfillmentStatus || "");
    showItems(result.body.items);
    say(text);
    setPhase(phase);
    if (state === "ready") {
      stopped = true;
      setState("ready");
      ui.revealBox.hidden = false;
      ui.reveal.disabled = false;
    } else if (state === "failed" || state === "attention") {
      stopped = state === "failed";
      setState(state);
      ui.reveal.disabled = true;
      ui.revealBox.hidden = true;
      if (!stopped) schedulePoll(backoff());
    } else {
      setState("waiting");
      ui.revealBox.hidden = false;
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
      throw new KeyError(t("unknownAlgorithm"));
    }
    let url;
    try {
      url = new URL(entry.signedUrl, location.href);
    } catch (_) {
      throw new KeyError(t("badAddress"));
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new KeyError(t("badAddress"));
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
      throw new KeyError(t("downloadNetwork"));
    }
    if (!response.ok) {
      throw new KeyError(
        response.status === 403
          ? t("linkExpired")
          : t("downloadHttp", { status: response.status }),
      );
    }
    const blob = new Uint8Array(await response.arrayBuffer());
    if (blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== FORMAT_VERSION) {
      throw new KeyError(t("damaged"));
    }
    let raw;
    try {
      raw = base64Bytes(entry.dataKey);
    } catch (_) {
      raw = new Uint8Array(0);
    }
    if (raw.length !== 32) throw new KeyError(t("badDataKey"));
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
      throw new KeyError(t("undecryptable"));
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
      button.textContent = t("copied");
      say(t("copiedStatus", { label }));
      setTimeout(() => {
        button.textContent = t("copy");
      }, 2000);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(codeNode);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      say(t("selectedStatus", { label }));
    }
  }

  // Each key is named for its product ("Stardew Valley (Steam)", with "key 2 of 3" when the
  // order has several of it); a key of no known product is "Key n".
  function keyLabels(entries) {
    const totals = new Map();
    for (const entry of entries) {
      const id = String(entry.productId ?? "");
      totals.set(id, (totals.get(id) || 0) + 1);
    }
    const seen = new Map();
    return entries.map((entry, index) => {
      const item = itemsById.get(String(entry.productId ?? ""));
      if (!item) return t("keyNumber", { i: index + 1 });
      const id = String(entry.productId);
      const i = (seen.get(id) || 0) + 1;
      seen.set(id, i);
      const product = productLabel(item);
      return totals.get(id) > 1 ? t("keyOfProduct", { product, i, n: totals.get(id) }) : product;
    });
  }

  function renderKey(index, name, entry, plain, failure) {
    const n = index + 1;
    const labelId = `key-${n}-label`;
    const type = mediaType(entry.contentType);
    const item = element("li", "key");
    item.dataset.keyId = String(entry.keyId);
    if (entry.productId != null) item.dataset.productId = String(entry.productId);
    const label = element("p", "key-label", name);
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
        item.append(element("p", "key-error", t("notText")));
        return item;
      }
      plain.fill(0);
      // A group named by the label: the key itself is plain text in a <code>, focusable so
      // a keyboard user can select it (code may carry no name of its own).
      const row = element("div", "key-row");
      row.setAttribute("role", "group");
      row.setAttribute("aria-labelledby", labelId);
      const code = element("code", "key-text", text);
      code.setAttribute("translate", "no");
      code.tabIndex = 0;
      const copy = element("button", "button copy", t("copy"));
      copy.type = "button";
      copy.setAttribute("aria-label", t("copyLabel", { label: name }));
      copy.addEventListener("click", () => copyText(text, code, copy, name));
      row.append(code, copy);
      item.append(row);
      return item;
    }

    label.append(element("span", "key-type", t("image")));
    const blob = new Blob([plain], { type: IMAGE_TYPES.has(type) ? type : "application/octet-stream" });
    plain.fill(0);
    const url = URL.createObjectURL(blob);
    blobUrls.push(url);
    if (IMAGE_TYPES.has(type)) {
      const img = element("img", "key-image");
      img.src = url;
      img.alt = t("imageAlt", { label: name });
      item.append(img);
    } else {
      item.append(element("p", "hint", t("fileHint")));
    }
    const save = element("a", "button", IMAGE_TYPES.has(type) ? t("saveImage") : t("saveFile"));
    save.href = url;
    save.download = `bitloot-key-${n}${type === "image/png" ? ".png" : type === "image/jpeg" ? ".jpg" : ""}`;
    save.setAttribute("aria-label", t("saveLabel", { label: name }));
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
    say(t("gettingKeys"));
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
      say(t("readyToReveal"));
      showError(`${t("network")} ${t("pressRevealAgain")}`);
      ui.reveal.disabled = false;
      return;
    }
    switch (result.status) {
      case 200:
        break;
      case 401:
        forgetToken(storageKey);
        say(t("cannotOpenOrder"));
        stop("error", t("unauthorized"));
        setPhase("link-invalid");
        offerRecovery();
        return;
      case 404:
        say(t("orderNotFound"));
        stop("error", t("notFound"));
        setPhase("not-found");
        return;
      case 409:
        setState("waiting");
        say(t("notReadyYet"));
        stopped = false;
        pollDelay = POLL_FIRST_MS;
        schedulePoll(POLL_FIRST_MS);
        return;
      case 429: {
        const seconds = Math.max(result.retryAfter ?? 30, 1);
        setState("ready");
        say(t("readyToReveal"));
        showError(tn("tooManyAttempts", seconds));
        retryRevealIn(seconds);
        return;
      }
      default:
        setState("ready");
        say(t("readyToReveal"));
        showError(t("server"));
        ui.reveal.disabled = false;
        return;
    }

    const body = result.body;
    const entries = body && Array.isArray(body.keys) ? body.keys : null;
    if (!entries || typeof body.orderId !== "string" || body.orderId.toLowerCase() !== orderId) {
      setState("ready");
      showError(t("server"));
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
            failure: err instanceof KeyError ? err.message : t("notShown"),
          }),
        ),
      ),
    );
    for (const url of blobUrls.splice(0)) URL.revokeObjectURL(url);
    const names = keyLabels(opened.map((o) => o.entry));
    ui.keys.replaceChildren(
      ...opened.map((o, i) => renderKey(i, names[i], o.entry, o.plain, o.failure)),
    );
    ui.keysBox.hidden = false;

    const failed = opened.filter((o) => o.failure).length;
    if (failed === 0) {
      setState("revealed");
      say(entries.length === 1 ? t("hereIsKey") : tn("hereAreKeys", entries.length));
      ui.revealBox.hidden = true;
    } else {
      setState(failed === opened.length ? "error" : "revealed");
      say(tn("keysShown", opened.length - failed));
      showError(tn("keysFailed", failed));
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
    stop("error", t("incompleteLink"));
    setPhase("link-incomplete");
    say(t("cannotOpenAnyOrder"));
    offerRecovery();
    return;
  }
  ui.orderId.textContent = orderId;
  if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
    stop("error", t("insecure"));
    setPhase("insecure");
    say(t("cannotRevealHere"));
    return;
  }
  if (!token) {
    stop("error", t("missingToken"));
    setPhase("link-incomplete");
    say(t("cannotOpenOrder"));
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
