/*
 * Sign-in page for otpserver: ask for an email address or phone number, then for the code.
 *
 * No dependencies, no build step. The API base comes from <html data-api-base="...">
 * (empty = same origin); every request sends credentials so the HttpOnly cookie travels
 * with it. Server data only ever reaches the page through textContent.
 * On success the page fires `otp:verified` on document (detail = the verify response body)
 * and, when <html data-success-url> is set, opens that URL.
 */
(function () {
  "use strict";

  var root = document.documentElement;
  var API_BASE = (root.getAttribute("data-api-base") || "").replace(/\/+$/, "");
  var SUCCESS_URL = root.getAttribute("data-success-url") || "";
  var REQUEST_TIMEOUT_MS = 20000;
  // Differences below this are rounding of the whole-second Date header, not a wrong clock.
  var SKEW_THRESHOLD_MS = 3000;
  // Code points of the digit zero in scripts whose keyboards type their own digits; the
  // server accepts ASCII only, so the page translates (fullwidth digits go through NFKC).
  var DIGIT_ZEROS = [
    0x0660, 0x06f0, 0x07c0, 0x0966, 0x09e6, 0x0a66, 0x0ae6, 0x0b66, 0x0be6, 0x0c66,
    0x0ce6, 0x0d66, 0x0e50, 0x0ed0, 0x0f20, 0x1040, 0x17e0, 0x1810,
  ];
  // What people type or paste between groups of a code: spaces, hyphens, dashes, dots.
  var CODE_SEPARATORS = /[\s\-\u2010-\u2015\u2212_.\u00b7]/g;

  function byId(id) {
    return document.getElementById(id);
  }

  var ui = {
    title: byId("title"),
    status: byId("status"),
    alert: byId("alert"),
    announce: byId("announce"),
    stepStart: byId("step-start"),
    stepCode: byId("step-code"),
    stepDone: byId("step-done"),
    startForm: byId("start-form"),
    credential: byId("credential"),
    sendButton: byId("send-button"),
    startWait: byId("start-wait"),
    sentLead: byId("sent-lead"),
    sentTo: byId("sent-to"),
    sentTail: byId("sent-tail"),
    pendingNote: byId("pending-note"),
    codeForm: byId("code-form"),
    code: byId("code"),
    expiry: byId("expiry"),
    verifyButton: byId("verify-button"),
    verifyWait: byId("verify-wait"),
    resendButton: byId("resend-button"),
    resendWait: byId("resend-wait"),
    restartButton: byId("restart-button"),
    doneCredential: byId("done-credential"),
    againButton: byId("again-button"),
    linkWait: byId("link-wait"),
    match: byId("match"),
    approvalNote: byId("approval-note"),
  };
  // How often a tab waiting for approval from another device asks the server.
  var POLL_INTERVAL_MS = 2000;

  // Everything the page knows about the current verification; instants are epoch ms in
  // server time, null when not set.
  var state = {
    step: "start",
    busy: false,
    credential: "",
    channel: "",
    expiresAt: null,
    resendAt: null, // null with resendsLeft === 0: no resend left
    noResendLeft: false,
    verifyAt: null, // temporary verify block (otpBlock)
    createAt: null, // RATE:LIMITED on create, for the address in createFor only
    createFor: "",
    verifyRateAt: null, // RATE:LIMITED on verify
    resendRateAt: null, // RATE:LIMITED on resend
    skewMs: 0,
    webOtp: null,
    pollTimer: null,
  };

  // ---- small helpers -------------------------------------------------------------------

  function now() {
    return Date.now() + state.skewMs;
  }

  function parseInstant(value) {
    if (typeof value !== "string") return null;
    var ms = Date.parse(value);
    return isNaN(ms) ? null : ms;
  }

  function msUntil(instant) {
    return instant === null ? 0 : Math.max(0, instant - now());
  }

  /** "4:05" for a countdown; hours only when needed. */
  function clock(ms) {
    var total = Math.ceil(ms / 1000);
    var hours = Math.floor(total / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    var mm = hours > 0 && minutes < 10 ? "0" + minutes : String(minutes);
    var ss = seconds < 10 ? "0" + seconds : String(seconds);
    return (hours > 0 ? hours + ":" : "") + mm + ":" + ss;
  }

  /** "42 seconds" / "3 minutes" for sentences a screen reader reads once. */
  function spoken(ms) {
    var seconds = Math.max(1, Math.ceil(ms / 1000));
    if (seconds < 90) return seconds + (seconds === 1 ? " second" : " seconds");
    var minutes = Math.ceil(seconds / 60);
    return minutes + " minutes";
  }

  function plural(count, one, many) {
    return count + " " + (count === 1 ? one : many);
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function say(text) {
    setText(ui.alert, "");
    setText(ui.status, text);
  }

  function warn(text) {
    setText(ui.status, "");
    setText(ui.alert, text);
  }

  function clearMessages() {
    setText(ui.status, "");
    setText(ui.alert, "");
  }

  /** Tell screen readers about a step change whose text is already visible. */
  function announce(text) {
    clearMessages();
    // Emptying first makes a repeated sentence count as news.
    ui.announce.textContent = "";
    setTimeout(function () {
      ui.announce.textContent = text;
    }, 50);
  }

  function cleanCode(value) {
    var text = typeof value.normalize === "function" ? value.normalize("NFKC") : value;
    text = text.replace(/\p{Nd}/gu, function (digit) {
      var point = digit.codePointAt(0);
      for (var i = 0; i < DIGIT_ZEROS.length; i++) {
        if (point >= DIGIT_ZEROS[i] && point <= DIGIT_ZEROS[i] + 9) {
          return String(point - DIGIT_ZEROS[i]);
        }
      }
      return digit;
    });
    return text.replace(CODE_SEPARATORS, "");
  }

  /** The create body for what the person typed: an email if it has an @, else a phone. */
  function credentialBody(raw) {
    var body;
    if (raw.indexOf("@") === -1 && /^[+\d\s().\-\u2010-\u2015]+$/.test(raw)) {
      var phone = raw.replace(/[^\d+]/g, "");
      // 00 is the international call prefix in most of the world; E.164 writes it as +.
      if (phone.indexOf("00") === 0) phone = "+" + phone.slice(2);
      body = { phone: phone };
    } else {
      body = { email: raw };
    }
    var locale = root.getAttribute("data-locale");
    if (locale) body.locale = locale;
    return body;
  }

  // ---- the API -------------------------------------------------------------------------

  function noteServerClock(response) {
    // Countdowns use the server's clock: the times in the body are the server's. The Date
    // header is readable same-origin, or cross-origin when the server exposes it.
    var header = response.headers.get("Date");
    var serverMs = header ? Date.parse(header) : NaN;
    if (isNaN(serverMs)) return;
    var skew = serverMs - Date.now();
    state.skewMs = Math.abs(skew) > SKEW_THRESHOLD_MS ? skew : 0;
  }

  /** POST to the API; resolves to {ok, status, body, retryAfter}, never rejects. */
  function post(path, contentType, body) {
    var headers = { Accept: "application/json" };
    if (contentType) headers["Content-Type"] = contentType;
    var init = {
      method: "POST",
      credentials: "include",
      cache: "no-store",
      headers: headers,
      body: body,
    };
    if (typeof AbortSignal !== "undefined" && typeof AbortSignal.timeout === "function") {
      init.signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    }
    return fetch(API_BASE + path, init).then(
      function (response) {
        noteServerClock(response);
        var retryAfter = Number(response.headers.get("Retry-After"));
        var type = response.headers.get("Content-Type") || "";
        var parsed = /json/i.test(type)
          ? response.json().catch(function () {
              return {};
            })
          : Promise.resolve({});
        return parsed.then(function (data) {
          return {
            ok: response.ok,
            status: response.status,
            body: data && typeof data === "object" ? data : {},
            retryAfter: isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
          };
        });
      },
      function (error) {
        // A blocked CORS request looks exactly like a network failure to the page.
        if (window.console) {
          console.warn(
            "otp: request to " + (API_BASE || "this origin") + path + " failed. If the API " +
              "is on another origin, check data-api-base and OTP_CORS_ORIGINS.",
            error,
          );
        }
        return { ok: false, status: 0, body: { error: "NETWORK" }, retryAfter: null };
      },
    );
  }

  // ---- steps ---------------------------------------------------------------------------

  var TITLES = { start: "Sign in", code: "Enter your code", done: "Verified" };

  function show(step) {
    state.step = step;
    setText(ui.title, TITLES[step]);
    document.title = TITLES[step];
    ui.stepStart.hidden = step !== "start";
    ui.stepCode.hidden = step !== "code";
    ui.stepDone.hidden = step !== "done";
    if (step !== "code") {
      stopWebOtp();
      stopPolling();
    }
    render();
  }

  function toStart(keepCredential) {
    if (!keepCredential) ui.credential.value = "";
    ui.code.value = "";
    state.expiresAt = null;
    state.resendAt = null;
    state.verifyAt = null;
    show("start");
    ui.credential.focus();
  }

  /** Back to step 1 with the current address filled in, ready to send a fresh code. */
  function toStartForNewCode(message) {
    ui.credential.value = state.credential || ui.credential.value;
    toStart(true);
    warn(message);
    ui.sendButton.focus();
  }

  function isExpired() {
    return state.expiresAt !== null && now() >= state.expiresAt;
  }

  /** Take in the public token state of a create or resend response. */
  function applyTokenState(body) {
    if (typeof body.credential === "string") state.credential = body.credential;
    if (typeof body.channel === "string") state.channel = body.channel;
    state.expiresAt = parseInstant(body.expires);
    if ("resendBlock" in body) {
      state.resendAt = parseInstant(body.resendBlock);
      state.noResendLeft = body.resendBlock === null;
    }
    if (typeof body.resendsLeft === "number" && body.resendsLeft <= 0) state.noResendLeft = true;
    if ("otpBlock" in body) state.verifyAt = parseInstant(body.otpBlock);
  }

  function toCode(body, typed) {
    state.credential = typed;
    state.channel = "";
    state.noResendLeft = false;
    state.verifyRateAt = null;
    state.resendRateAt = null;
    applyTokenState(body);
    ui.code.value = "";
    var how = state.channel === "phone" ? " by text message" : "";
    if (body.sent === false) {
      setText(ui.sentLead, "A code was already sent" + how + " to");
      setText(ui.sentTail, " from this browser. Enter it below.");
    } else {
      setText(ui.sentLead, "We sent a code" + how + " to");
      setText(ui.sentTail, ".");
    }
    setText(ui.sentTo, state.credential);
    var pending = typeof body.pending === "number" ? body.pending : 1;
    setText(
      ui.pendingNote,
      pending > 1
        ? pending + " addresses are waiting for a code in this browser. To switch, use a " +
            "different address and type the other one again."
        : "",
    );
    // No announcement: the code field gets focus and describes itself with the note.
    show("code");
    ui.code.focus();
    startWebOtp();
    startPolling();
  }

  function toDone(body) {
    var credential = typeof body.credential === "string" ? body.credential : state.credential;
    setText(ui.doneCredential, credential);
    state.expiresAt = null;
    state.resendAt = null;
    state.verifyAt = null;
    show("done");
    announce("Verified: " + credential + ".");
    ui.title.focus();
    document.dispatchEvent(new CustomEvent("otp:verified", { detail: body }));
    if (SUCCESS_URL) window.location.assign(SUCCESS_URL);
  }

  // ---- rendering of timers and buttons -------------------------------------------------

  var tickTimer = null;

  function render() {
    // A limit may be about this address only, so another address can be tried at once.
    var startWait = ui.credential.value.trim() === state.createFor ? msUntil(state.createAt) : 0;
    ui.sendButton.disabled = state.busy;
    setText(ui.startWait, startWait > 0 ? "You can try again in " + clock(startWait) + "." : "");

    if (state.step === "code") {
      var expired = isExpired();
      if (state.expiresAt === null) setText(ui.expiry, "");
      else if (expired) setText(ui.expiry, "The code has expired. Send a new code.");
      else setText(ui.expiry, "The code expires in " + clock(state.expiresAt - now()) + ".");

      var verifyWait = Math.max(msUntil(state.verifyAt), msUntil(state.verifyRateAt));
      ui.verifyButton.disabled = state.busy || expired || verifyWait > 0;
      setText(
        ui.verifyWait,
        verifyWait > 0 ? "You can try the code again in " + clock(verifyWait) + "." : "",
      );

      var resendWait = Math.max(msUntil(state.resendAt), msUntil(state.resendRateAt));
      // After expiry the button sends a fresh code (a new create), whatever the old limits.
      var noResend = state.noResendLeft && !expired;
      if (expired) resendWait = msUntil(state.resendRateAt);
      ui.resendButton.disabled = state.busy || noResend || resendWait > 0;
      var resendText = "";
      if (noResend) {
        resendText = "No more new codes can be sent until this one expires.";
      } else if (resendWait > 0) {
        resendText = "Available in " + clock(resendWait) + ".";
      }
      setText(ui.resendWait, resendText);
    }

    // Re-render just after the next whole second of the server clock so countdowns step
    // evenly.
    if (tickTimer !== null) clearTimeout(tickTimer);
    tickTimer = setTimeout(render, 1000 - (((now() % 1000) + 1000) % 1000) + 20);
  }

  function setBusy(busy) {
    state.busy = busy;
    var form = state.step === "start" ? ui.startForm : ui.codeForm;
    if (busy) form.setAttribute("aria-busy", "true");
    else {
      ui.startForm.removeAttribute("aria-busy");
      ui.codeForm.removeAttribute("aria-busy");
    }
    render();
  }

  // ---- errors --------------------------------------------------------------------------

  function retryInstant(result) {
    var seconds = Number(result.body.retryAfter);
    if (!(isFinite(seconds) && seconds > 0)) seconds = result.retryAfter || 1;
    return now() + seconds * 1000;
  }

  /** Show a human message for an error answer and move to the step that makes sense. */
  function handleError(action, result) {
    var body = result.body;
    var code = typeof body.error === "string" ? body.error : "";
    var wait;

    switch (code) {
      case "NETWORK":
        warn("Could not reach the sign-in service. Check your connection and try again.");
        return;
      case "CREDENTIAL:INVALID":
        warn(
          "Enter a valid email address, or a phone number with + and the country code " +
            "(for example +14155550100).",
        );
        ui.credential.focus();
        return;
      case "OTP:INVALID_FORMAT":
        warn("That is not a valid code. Enter the code exactly as it appears in the message.");
        ui.code.select();
        return;
      case "OTP:INCORRECT": {
        state.verifyAt = parseInstant(body.otpBlock);
        var left = typeof body.attemptsLeft === "number" ? body.attemptsLeft : null;
        if (left === 0) {
          toStartForNewCode(
            "That code is not correct, and this code cannot be tried again. Send a new code.",
          );
          return;
        }
        var text = "That code is not correct.";
        if (left !== null) text += " " + plural(left, "attempt", "attempts") + " left.";
        wait = msUntil(state.verifyAt);
        if (wait > 0) text += " You can try again in " + spoken(wait) + ".";
        warn(text);
        ui.code.select();
        return;
      }
      case "OTP:TOO_MANY_ATTEMPTS":
        toStartForNewCode("Too many incorrect codes. That code no longer works: send a new code.");
        return;
      case "OTP:EXPIRED":
        // The server's clock decides; from now on "Send a new code" starts afresh.
        state.expiresAt = Math.min(state.expiresAt === null ? now() : state.expiresAt, now());
        warn("The code has expired. Send a new code.");
        render();
        ui.resendButton.focus();
        return;
      case "OTP:VERIFICATION_NOT_ALLOWED":
        state.verifyAt = parseInstant(body.otpBlock) || now() + 1000;
        warn(
          "Too many tries in a short time. You can try again in " +
            spoken(msUntil(state.verifyAt)) + ".",
        );
        render();
        return;
      case "OTP:RESEND_NOT_ALLOWED":
        if ("resendBlock" in body) {
          state.resendAt = parseInstant(body.resendBlock);
          state.noResendLeft = body.resendBlock === null;
        } else if (result.retryAfter) {
          state.resendAt = now() + result.retryAfter * 1000;
        }
        warn(
          state.noResendLeft
            ? "No more new codes can be sent until this one expires. Use the code you have."
            : "A new code cannot be sent yet. You can ask again in " +
                spoken(msUntil(state.resendAt)) + ".",
        );
        render();
        return;
      case "OTP:INVALID_COOKIE":
        if (isExpired()) {
          // The browser dropped the cookie with the code's lifetime.
          toStartForNewCode("The code has expired. Send a new code.");
          return;
        }
        toStart(true);
        warn(
          "This sign-in is no longer valid: it expired, or it was finished or replaced in " +
            "another tab. Request a new code.",
        );
        return;
      case "OTP:TOO_MANY_CREDENTIALS":
        warn(
          "Too many addresses are waiting for a code in this browser. Type one of them " +
            "again to finish it, or wait until their codes expire.",
        );
        return;
      case "RATE:LIMITED":
        wait = retryInstant(result);
        if (action === "create") {
          state.createAt = wait;
          state.createFor = ui.credential.value.trim();
        }
        else if (action === "verify") state.verifyRateAt = wait;
        else state.resendRateAt = wait;
        warn("Too many requests. Please wait " + spoken(wait - now()) + " and try again.");
        render();
        return;
      case "ORIGIN:NOT_ALLOWED":
        warn("This page is not allowed to use the sign-in service.");
        return;
      case "SEND:FAILED":
        warn("We could not send the code. Check the address, or try again in a few minutes.");
        return;
      case "STORE:UNAVAILABLE":
        warn("The sign-in service is temporarily unavailable. Please try again in a moment.");
        return;
      case "SERVER":
        warn("Something went wrong on our side. Please try again.");
        return;
      default:
        if (code.indexOf("BODY:") === 0) {
          warn("The sign-in service could not read the request. Reload the page and try again.");
        } else if (typeof body.message === "string" && body.message) {
          warn(body.message);
        } else {
          warn("Something went wrong (HTTP " + result.status + "). Please try again.");
        }
    }
  }

  // ---- WebOTP: fill the code from an SMS on browsers that support it --------------------

  function startWebOtp() {
    stopWebOtp();
    if (state.channel !== "phone" || !("OTPCredential" in window)) return;
    if (typeof AbortController === "undefined" || !navigator.credentials) return;
    var controller = new AbortController();
    state.webOtp = controller;
    navigator.credentials
      .get({ otp: { transport: ["sms"] }, signal: controller.signal })
      .then(function (credential) {
        if (state.webOtp !== controller || !credential || !credential.code) return;
        state.webOtp = null;
        ui.code.value = cleanCode(credential.code);
        submitCode();
      })
      .catch(function () {
        // Aborted, refused or unsupported: typing the code still works.
      });
  }

  function stopWebOtp() {
    if (state.webOtp) {
      state.webOtp.abort();
      state.webOtp = null;
    }
  }

  // ---- approval from another device (OTP_LINK_CROSS_DEVICE) -----------------------------

  function stopPolling() {
    if (state.pollTimer !== null) clearTimeout(state.pollTimer);
    state.pollTimer = null;
    ui.linkWait.hidden = true;
  }

  /** Ask the server whether another device approved; it signs in here when it did. */
  function startPolling() {
    stopPolling();
    poll();
  }

  function poll() {
    state.pollTimer = null;
    if (state.step !== "code" || isExpired()) return;
    post("/api/otp/status", null, null).then(function (result) {
      if (state.step !== "code") return;
      var body = result.body;
      if (result.ok && body.status !== "pending") {
        toDone(body);
        return;
      }
      if (!result.ok) {
        // Links are off (404), or this sign-in ended elsewhere: typing still works, and a
        // finished or replaced sign-in says so like a typed code would.
        if (body.error === "OTP:INVALID_COOKIE") handleError("status", result);
        ui.linkWait.hidden = true;
        return;
      }
      if (typeof body.match !== "string") {
        ui.linkWait.hidden = true;
        return; // Same-browser links only: nothing to wait for.
      }
      setText(ui.match, body.match);
      ui.match.setAttribute("aria-label", body.match.split("").join(" "));
      setText(
        ui.approvalNote,
        body.approval === "ended"
          ? "Approval from another device ended after two wrong numbers. Type the code here."
          : "Waiting for approval…",
      );
      ui.linkWait.hidden = false;
      if (body.approval !== "ended") state.pollTimer = setTimeout(poll, POLL_INTERVAL_MS);
    });
  }

  // ---- actions -------------------------------------------------------------------------

  function sendCode() {
    if (state.busy) return;
    var raw = ui.credential.value.trim();
    if (raw === state.createFor && msUntil(state.createAt) > 0) {
      warn(
        "Too many requests. Please wait " + spoken(msUntil(state.createAt)) + " and try again.",
      );
      return;
    }
    if (!raw) {
      warn("Enter your email address or phone number.");
      ui.credential.focus();
      return;
    }
    clearMessages();
    setBusy(true);
    post("/api/otp/create", "application/json", JSON.stringify(credentialBody(raw))).then(
      function (result) {
        setBusy(false);
        if (result.ok) toCode(result.body, raw);
        else handleError("create", result);
      },
    );
  }

  function submitCode() {
    if (state.busy) return;
    var code = cleanCode(ui.code.value);
    ui.code.value = code;
    if (!code) {
      warn("Enter the code from the message.");
      ui.code.focus();
      return;
    }
    if (Math.max(msUntil(state.verifyAt), msUntil(state.verifyRateAt)) > 0) {
      render();
      warn(ui.verifyWait.textContent);
      return;
    }
    stopWebOtp();
    clearMessages();
    setBusy(true);
    var form = new URLSearchParams();
    form.set("otp", code);
    post("/api/otp/verify", "application/x-www-form-urlencoded", form.toString()).then(
      function (result) {
        setBusy(false);
        if (result.ok) toDone(result.body);
        else handleError("verify", result);
      },
    );
  }

  function resendCode() {
    if (state.busy) return;
    if (isExpired()) {
      // An expired code cannot be resent; asking again for the address sends a fresh one.
      ui.credential.value = state.credential;
      sendCode();
      return;
    }
    clearMessages();
    setBusy(true);
    post("/api/otp/resend", null, null).then(function (result) {
      setBusy(false);
      if (result.ok) {
        applyTokenState(result.body);
        ui.code.value = "";
        say("We sent a new code to " + state.credential + ". The previous code no longer works.");
        render();
        ui.code.focus();
        startWebOtp();
        startPolling();
      } else {
        handleError("resend", result);
      }
    });
  }

  function restart() {
    var previous = state.credential;
    toStart(false);
    if (previous) {
      say(
        "Enter another address. The code for " + previous + " stays valid until it " +
          "expires: type " + previous + " again to go back to it.",
      );
    }
  }

  // ---- wiring --------------------------------------------------------------------------

  ui.startForm.addEventListener("submit", function (event) {
    event.preventDefault();
    sendCode();
  });
  ui.codeForm.addEventListener("submit", function (event) {
    event.preventDefault();
    submitCode();
  });
  ui.code.addEventListener("input", function (event) {
    // Leave text alone while an input method is composing it.
    if (event.isComposing) return;
    var cleaned = cleanCode(ui.code.value);
    if (cleaned !== ui.code.value) ui.code.value = cleaned;
  });
  ui.credential.addEventListener("input", render);
  ui.resendButton.addEventListener("click", resendCode);
  ui.restartButton.addEventListener("click", restart);
  ui.againButton.addEventListener("click", function () {
    clearMessages();
    state.credential = "";
    toStart(false);
  });

  show("start");
})();
