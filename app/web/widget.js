/*! <kb-ask>: ask the knowledge base. One file, no build step, no dependencies.
 *
 * Embed:  <script src="https://KB-SERVICE/widget.js" defer></script> <kb-ask></kb-ask>
 * Attributes: service (default: where this script came from), key (sent as a Bearer token),
 * placeholder, title, layout="page" (the full-page UI at / uses it). See docs/widget.md.
 *
 * Safety: nothing from the service (answer, sources) or from the question is ever parsed as
 * HTML. Everything is built with createElement and text nodes; links are kept only when they
 * are absolute http(s) URLs.
 */
(function () {
  "use strict";

  if (!window.customElements || window.customElements.get("kb-ask")) return;

  // Captured now: document.currentScript is only set while this script first runs.
  var script = document.currentScript;
  var DEFAULT_SERVICE = script && script.src ? new URL(".", script.src).href : new URL("/", location.href).href;

  // The server sends a heartbeat while it waits (every few seconds by default); this much
  // silence means the connection is gone even if no error surfaced.
  var IDLE_MS = 45000;
  var STORAGE_PREFIX = "kb-ask:v1:";
  var SEARCH_UNAVAILABLE = "Search unavailable \u2014 this answer is not grounded in the knowledge base";
  var STATUS_TEXT = {
    empty: "No matching documents",
    timeout: SEARCH_UNAVAILABLE,
    error: SEARCH_UNAVAILABLE,
  };

  var CSS = [
    ":host{display:block;contain:content}",
    ":host([hidden]){display:none}",
    // The root resets everything it could inherit from the host page, then sets its own.
    ".kb{all:initial;display:block;box-sizing:border-box;",
    "font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;",
    "color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:16px;",
    "text-align:start;word-wrap:break-word;overflow-wrap:anywhere;",
    "--bg:#ffffff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--field:#818b98;--accent:#0969da;",
    "--accent-strong:#0550ae;--on-accent:#ffffff;--soft:#f6f8fa;--code:#f2f4f7;--mark:#ddf4ff;",
    "--warn-bg:#fff8c5;--warn-fg:#6b4700;--err-bg:#ffebe9;--err-fg:#a40e26;--focus:#0969da}",
    "@media (prefers-color-scheme:dark){.kb{--bg:#161b22;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;",
    "--field:#6e7681;--accent:#4493f8;--accent-strong:#1f6feb;--on-accent:#ffffff;--soft:#0d1117;",
    "--code:#0d1117;--mark:#1c2d41;--warn-bg:#3b2e00;--warn-fg:#f2cc60;--err-bg:#3c1618;",
    "--err-fg:#ff9492;--focus:#4493f8}}",
    ":host([layout=page]) .kb{padding:20px 24px}",
    ".kb *,.kb *::before,.kb *::after{box-sizing:border-box}",
    ".kb [hidden]{display:none!important}",
    "h2{font-size:1.2em;font-weight:650;margin:0 0 12px;line-height:1.3}",
    "h3{font-size:1em;font-weight:650;margin:16px 0 8px}",
    "p,ul,ol,pre{margin:0 0 10px}",
    "ul,ol{padding-inline-start:24px}",
    "li{margin:0 0 4px}",
    "a{color:var(--accent);text-decoration:underline;text-underline-offset:2px}",
    "a:hover{color:var(--accent-strong)}",
    "code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}",
    "code{background:var(--code);border-radius:4px;padding:1px 4px}",
    "pre{background:var(--code);border-radius:6px;padding:10px 12px;overflow:auto;white-space:pre}",
    "pre code{background:none;padding:0;font-size:1em}",
    "em{font-style:italic}strong{font-weight:650}",
    "label{display:block;font-weight:600;margin:0 0 6px}",
    "textarea{display:block;width:100%;min-height:3.2em;resize:vertical;font:inherit;color:var(--fg);",
    "background:var(--bg);border:1px solid var(--field);border-radius:6px;padding:8px 10px;margin:0}",
    "textarea::placeholder{color:var(--muted);opacity:1}",
    ".row{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0 0}",
    ".hint{color:var(--muted);font-size:.87em;margin:0 auto 0 0}",
    "button{font:inherit;font-weight:600;line-height:1.2;cursor:pointer;border-radius:6px;",
    "padding:7px 14px;margin:0;border:1px solid var(--accent-strong);background:var(--accent-strong);",
    "color:var(--on-accent)}",
    "button:hover{background:var(--accent)}",
    "button.plain{background:var(--bg);color:var(--fg);border-color:var(--field)}",
    "button.plain:hover{background:var(--soft)}",
    "button:disabled{cursor:not-allowed;opacity:.75}",
    ":focus{outline:none}",
    ":focus-visible{outline:3px solid var(--focus);outline-offset:2px}",
    "textarea:focus-visible{outline-offset:0}",
    ".result{margin:16px 0 0;border-top:1px solid var(--line);padding:12px 0 0}",
    ".asked{color:var(--muted);margin:0 0 8px;white-space:pre-wrap}",
    ".asked b{color:var(--fg);font-weight:600}",
    ".status{font-size:.9em;color:var(--muted);margin:0 0 10px}",
    ".status.warn,.notice.warn{background:var(--warn-bg);color:var(--warn-fg);border-radius:6px;padding:6px 10px}",
    ".notice{margin:10px 0}",
    ".notice.error{background:var(--err-bg);color:var(--err-fg);border-radius:6px;padding:6px 10px}",
    ".notice.info{color:var(--muted)}",
    ".answer{min-height:1.5em}",
    // The cursor while the answer streams; the empty alternative text keeps it from being read out.
    ".answer[aria-busy=true]::after{content:'\u258d';content:'\u258d'/'';color:var(--muted)}",
    "a.cite{text-decoration:none;font-size:.85em;font-weight:600;padding:0 1px}",
    ".tools{margin:4px 0 0}",
    ".sources ol{padding-inline-start:28px;margin:0}",
    ".sources li{padding:6px 8px;border-radius:6px;margin:0 0 4px}",
    ".sources li.flash{background:var(--mark)}",
    ".src-title{font-weight:600}",
    ".src-meta{color:var(--muted);font-size:.87em;display:block}",
    ".src-snippet{color:var(--muted);font-size:.9em;margin:2px 0 0}",
    ".cited{font-size:.8em;font-weight:600;color:var(--accent);margin-inline-start:6px}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
  ].join("\n");

  var sheet = null;
  function styleInto(root) {
    // A constructed sheet needs no inline <style>, so a page with a strict style-src still works.
    try {
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
      }
      root.adoptedStyleSheets = [sheet];
    } catch (_) {
      var style = document.createElement("style");
      style.textContent = CSS;
      root.append(style);
    }
  }

  // -- DOM helpers: elements from constant tag names and attributes, content as text ---------

  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var name in attrs) {
        if (attrs[name] === true) node.setAttribute(name, "");
        else if (attrs[name] !== false && attrs[name] != null) node.setAttribute(name, String(attrs[name]));
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child != null) node.append(child); // a string becomes a text node, never markup
    }
    return node;
  }

  /** An absolute http(s) URL, or null: no javascript:, data:, relative or malformed links. */
  function safeUrl(raw) {
    try {
      var url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  // -- The Markdown subset: paragraphs, lists, fenced code, inline code, emphasis, links ------

  var INLINE = new RegExp(
    [
      "(`+)([^`]+?)\\1", // 1, 2: inline code
      "\\*\\*([^*\\s](?:[^*]*?[^*\\s])?)\\*\\*", // 3: strong
      "\\*([^*\\s](?:[^*]*?[^*\\s])?)\\*", // 4: emphasis
      "\\[([^\\[\\]\\n]+)\\]\\(\\s*<?([^\\s()<>]*)>?(?:\\s+\"[^\"\\n]*\")?\\s*\\)", // 5, 6: link
      "\\[(\\d{1,3}(?:\\s*,\\s*\\d{1,3})*)\\]", // 7: citation markers [1] or [1, 2]
      "(https?:\\/\\/[^\\s<>\"'()\\[\\]]*[^\\s<>\"'()\\[\\].,;:!?])", // 8: a bare URL
    ].join("|"),
    "g",
  );

  function inline(parent, text, ctx, inLink) {
    var last = 0;
    for (var m of text.matchAll(INLINE)) {
      if (m.index > last) parent.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[2] !== undefined) parent.append(h("code", null, m[2]));
      else if (m[3] !== undefined) inline(parent.appendChild(h("strong")), m[3], ctx, inLink);
      else if (m[4] !== undefined) inline(parent.appendChild(h("em")), m[4], ctx, inLink);
      else if (m[5] !== undefined) {
        var href = inLink ? null : safeUrl(m[6]);
        // A link that is not http(s) keeps its words and loses its target.
        var target = href ? parent.appendChild(externalLink(href)) : parent;
        inline(target, m[5], ctx, true);
      } else if (m[7] !== undefined) citations(parent, m[0], m[7], ctx, inLink);
      else if (m[8] !== undefined) parent.append(inLink ? m[8] : externalLink(m[8], m[8]));
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  function externalLink(href, text) {
    return h("a", { href: href, target: "_blank", rel: "noopener noreferrer nofollow" }, text);
  }

  function citations(parent, whole, list, ctx, inLink) {
    var numbers = list.split(",").map(function (n) {
      return parseInt(n, 10);
    });
    var known = numbers.every(function (n) {
      return ctx.sources.has(n);
    });
    if (inLink || !known) {
      parent.append(whole);
      return;
    }
    numbers.forEach(function (n) {
      var title = ctx.sources.get(n).title || ctx.sources.get(n).source || "";
      parent.append(
        h("a", { class: "cite", href: "#kb-source-" + n, "data-source": n, "aria-label": "source " + n + ": " + title }, "[" + n + "]"),
      );
    });
  }

  var FENCE = /^ {0,3}(`{3,}|~{3,})/;
  var ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;
  var HEADING = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/;

  /** Blocks of the subset; unclosed constructs (a stream in progress) end where the text ends. */
  function blocks(source) {
    var out = [];
    var para = null;
    var list = null;
    var code = null;
    var blank = false;
    function closePara() {
      if (para) out.push({ kind: "p", text: para.join("\n") });
      para = null;
    }
    function closeList() {
      if (list) out.push(list);
      list = null;
    }
    source
      .replace(/\r\n?/g, "\n")
      .split("\n")
      .forEach(function (line) {
        if (code) {
          var close = FENCE.exec(line);
          if (close && close[1][0] === code.fence[0] && close[1].length >= code.fence.length && !line.slice(close[0].length).trim()) {
            out.push({ kind: "code", text: code.lines.join("\n") });
            code = null;
          } else code.lines.push(line);
          return;
        }
        var fence = FENCE.exec(line);
        if (fence) {
          closePara();
          closeList();
          code = { fence: fence[1], lines: [] };
          return;
        }
        if (!line.trim()) {
          closePara();
          blank = true;
          return;
        }
        var item = ITEM.exec(line);
        if (item) {
          closePara();
          var ordered = /\d/.test(item[1]);
          if (!list || list.ordered !== ordered) {
            closeList();
            list = { kind: "list", ordered: ordered, start: ordered ? parseInt(item[1], 10) : 1, items: [] };
          }
          list.items.push(item[2]);
          blank = false;
          return;
        }
        var heading = HEADING.exec(line);
        if (heading) {
          closePara();
          closeList();
          out.push({ kind: "h", text: heading[1] });
          blank = false;
          return;
        }
        if (list && (!blank || /^\s{2,}/.test(line))) {
          list.items[list.items.length - 1] += "\n" + line.trim(); // the item goes on
          blank = false;
          return;
        }
        closeList();
        (para = para || []).push(line);
        blank = false;
      });
    if (code) out.push({ kind: "code", text: code.lines.join("\n") });
    closePara();
    closeList();
    return out;
  }

  function renderMarkdown(source, ctx) {
    var fragment = document.createDocumentFragment();
    blocks(source).forEach(function (block) {
      if (block.kind === "code") fragment.append(h("pre", null, h("code", null, block.text)));
      else if (block.kind === "list") {
        var list = h(block.ordered ? "ol" : "ul", block.ordered && block.start !== 1 ? { start: block.start } : null);
        block.items.forEach(function (text) {
          inline(list.appendChild(h("li")), text, ctx, false);
        });
        fragment.append(list);
      } else {
        // Headings in an answer become bold paragraphs: they must not reshape the page outline.
        var p = h("p");
        inline(block.kind === "h" ? p.appendChild(h("strong")) : p, block.text, ctx, false);
        fragment.append(p);
      }
    });
    return fragment;
  }

  // -- The /ask stream: server-sent events over fetch (EventSource cannot POST) --------------

  function sseParser(onEvent) {
    var buffer = "";
    var event = "message";
    var data = [];
    return function push(text) {
      buffer += text;
      var start = 0;
      var end;
      while ((end = buffer.indexOf("\n", start)) !== -1) {
        var line = buffer.slice(start, end);
        start = end + 1;
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) onEvent(event, data.join("\n"));
          event = "message";
          data = [];
        } else if (line[0] !== ":") {
          // ":" starts a comment: the server's heartbeat
          var colon = line.indexOf(":");
          var field = colon === -1 ? line : line.slice(0, colon);
          var value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
      }
      buffer = buffer.slice(start);
    };
  }

  /** Seconds to wait from a Retry-After header (seconds or an HTTP date), or null. */
  function retryAfterSeconds(header) {
    if (!header) return null;
    if (/^\s*\d+\s*$/.test(header)) return parseInt(header, 10);
    var when = Date.parse(header);
    return isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
  }

  function waitWords(seconds) {
    if (seconds < 60) return seconds + (seconds === 1 ? " second" : " seconds");
    var minutes = Math.ceil(seconds / 60);
    return minutes + (minutes === 1 ? " minute" : " minutes");
  }

  /** What an HTTP error response says, in words. */
  async function problemOf(response) {
    var body = null;
    try {
      body = await response.json();
    } catch (_) {
      /* not JSON: a proxy's page, say */
    }
    var info = (body && body.error) || {};
    var requestId = (body && body.request_id) || response.headers.get("X-Request-ID");
    if (response.status === 429) {
      var wait = retryAfterSeconds(response.headers.get("Retry-After"));
      return {
        kind: "warn",
        wait: wait,
        text:
          "Too many questions for now: the service is rate limiting. " +
          (wait === null ? "Please try again later." : "Try again in " + waitWords(wait) + "."),
      };
    }
    var what =
      response.status === 401 || response.status === 403
        ? "The service refused this widget's key"
        : response.status >= 500
          ? "The service could not answer (HTTP " + response.status + ")"
          : "The question was not accepted";
    return {
      kind: "error",
      text: what + (info.message ? ": " + info.message : ".") + (requestId ? " (request id " + requestId + ")" : ""),
    };
  }

  // -- The element -----------------------------------------------------------------------

  class KbAsk extends HTMLElement {
    static get observedAttributes() {
      return ["title", "placeholder", "service"];
    }

    constructor() {
      super();
      var root = this.attachShadow({ mode: "open" });
      styleInto(root);
      this.run = null;
      this.last = null; // what is shown: {question, answer, status, sources, citations, notice, complete}
      this.pending = 0;
      this.waitTimer = 0;
      this.build(root);
    }

    build(root) {
      var self = this;
      var id = "kb-q";
      this.heading = h("h2", { part: "title" });
      this.input = h("textarea", { id: id, rows: 2, maxlength: 4000, "aria-describedby": "kb-hint", autocomplete: "off" });
      this.send = h("button", { type: "submit" }, "Ask");
      this.stop = h("button", { type: "button", class: "plain stop", hidden: true }, "Stop");
      this.hint = h("p", { class: "hint", id: "kb-hint" }, "Enter to ask, Shift+Enter for a new line");
      this.form = h(
        "form",
        { novalidate: true, "aria-label": "Ask the knowledge base" },
        h("label", { for: id }, "Your question"),
        this.input,
        h("div", { class: "row" }, this.hint, this.stop, this.send),
      );
      this.askedText = h("span");
      this.asked = h("p", { class: "asked" }, h("b", null, "Question: "), this.askedText);
      this.status = h("p", { class: "status", role: "status" });
      this.answer = h("div", { class: "answer", "aria-live": "polite", "aria-busy": "false" });
      this.notice = h("p", { class: "notice", role: "alert" });
      this.copy = h("button", { type: "button", class: "plain copy" }, "Copy answer");
      this.copied = h("span", { class: "hint", role: "status" });
      this.tools = h("div", { class: "row tools", hidden: true }, this.copy, this.copied);
      this.sourceList = h("ol");
      this.sources = h("section", { class: "sources", "aria-labelledby": "kb-sources", hidden: true }, h("h3", { id: "kb-sources" }, "Sources"), this.sourceList);
      this.result = h("section", { class: "result", "aria-label": "Answer", hidden: true }, this.asked, this.status, this.answer, this.notice, this.tools, this.sources);
      // title="" stops the host's title attribute from becoming a tooltip over the whole widget.
      root.append(h("div", { class: "kb", part: "root", title: "" }, this.heading, this.form, this.result));

      this.form.addEventListener("submit", function (event) {
        event.preventDefault();
        self.askQuestion(self.input.value);
      });
      this.input.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey && !event.isComposing) {
          event.preventDefault();
          self.askQuestion(self.input.value);
        } else if (event.key === "Escape" && self.run) {
          event.preventDefault();
          self.stopRun();
        }
      });
      this.stop.addEventListener("click", function () {
        self.stopRun();
      });
      this.copy.addEventListener("click", function () {
        self.copyAnswer();
      });
      this.answer.addEventListener("click", function (event) {
        var link = event.target.closest && event.target.closest("a.cite");
        if (!link) return;
        event.preventDefault(); // the host page's URL fragment is not ours to change
        self.showSource(link.getAttribute("data-source"));
      });
    }

    connectedCallback() {
      this.applyAttributes();
      if (this.last === null) this.restore();
    }

    disconnectedCallback() {
      this.stopRun(); // taken off the page: nobody is reading the answer any more
    }

    attributeChangedCallback() {
      this.applyAttributes();
    }

    applyAttributes() {
      var title = this.getAttribute("title");
      this.heading.textContent = title === null ? "Ask the knowledge base" : title;
      this.heading.hidden = title === "";
      this.input.placeholder = this.getAttribute("placeholder") || "Ask a question about the documentation";
    }

    /** The service's base URL: the ``service`` attribute, or where this script came from. */
    serviceUrl() {
      var service = this.getAttribute("service");
      var base = service ? new URL(service, document.baseURI).href : DEFAULT_SERVICE;
      return base.endsWith("/") ? base : base + "/";
    }

    headers() {
      var headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
      var key = this.getAttribute("key");
      if (key) headers.Authorization = "Bearer " + key;
      return headers;
    }

    /** The request body. Follow-up questions (a conversation id) will be added here. */
    requestBody(question) {
      return JSON.stringify({ question: question, stream: true });
    }

    // -- asking --------------------------------------------------------------------------

    askQuestion(raw) {
      var question = raw.trim();
      if (this.run || this.send.disabled) return;
      if (!question) {
        this.showResult();
        this.asked.hidden = this.last === null;
        this.setNotice({ kind: "info", text: "Type a question first." });
        this.input.focus();
        return;
      }
      this.input.value = "";
      this.ask(question);
    }

    async ask(question) {
      var self = this;
      var controller = new AbortController();
      var run = (this.run = { controller: controller, why: null, ended: false, idle: 0 });
      this.last = { question: question, answer: "", status: null, sources: [], citations: null, notice: null, complete: false };
      this.renderAll();
      this.setStreaming(true);
      this.status.textContent = "Searching the knowledge base\u2026";

      function alive() {
        clearTimeout(run.idle);
        run.idle = setTimeout(function () {
          run.why = "idle";
          controller.abort();
        }, IDLE_MS);
      }
      alive();
      try {
        var response;
        try {
          response = await fetch(new URL("ask", this.serviceUrl()).href, {
            method: "POST",
            headers: this.headers(),
            body: this.requestBody(question),
            signal: controller.signal,
            credentials: "omit",
            cache: "no-store",
          });
        } catch (_) {
          return this.end(
            run.why === "stop"
              ? { kind: "info", text: "Stopped." }
              : { kind: "error", text: "Could not reach the knowledge base service at " + this.serviceUrl() + ". Check the connection and try again." },
          );
        }
        if (!response.ok) {
          var problem = await problemOf(response);
          this.end(problem);
          if (problem.wait) this.holdFor(problem.wait);
          return;
        }
        if (!(response.headers.get("Content-Type") || "").startsWith("text/event-stream") || !response.body) {
          return this.end({ kind: "error", text: "The service sent something other than an answer stream." });
        }
        var reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        var push = sseParser(function (event, data) {
          self.onEvent(run, event, data);
        });
        try {
          for (;;) {
            var chunk = await reader.read();
            if (chunk.done || run.ended) break;
            alive();
            push(chunk.value);
            if (run.ended) break;
          }
        } catch (_) {
          /* the reason is worked out below */
        }
        if (run.ended) return;
        if (run.why === "stop") return this.end({ kind: "info", text: "Stopped. The answer above is incomplete." });
        if (run.why === "idle") {
          controller.abort();
          return this.end({ kind: "error", text: "The service stopped responding; the answer above is incomplete. Ask again to retry." });
        }
        this.end({
          kind: "error",
          text: "The connection was lost before the answer was complete; the answer above is incomplete. Ask again to retry.",
        });
      } finally {
        clearTimeout(run.idle);
        if (!run.ended) controller.abort();
      }
    }

    onEvent(run, event, data) {
      if (run !== this.run || run.ended) return;
      var payload;
      try {
        payload = JSON.parse(data);
      } catch (_) {
        return;
      }
      var last = this.last;
      if (event === "retrieval") {
        last.status = payload.status;
        last.sources = Array.isArray(payload.sources) ? payload.sources : [];
        this.renderStatus();
        this.renderSources();
      } else if (event === "delta") {
        last.answer += typeof payload.text === "string" ? payload.text : "";
        this.scheduleAnswer();
      } else if (event === "done") {
        // ``done`` will also carry what follow-ups and feedback need (a conversation id).
        last.citations = Array.isArray(payload.citations) ? payload.citations : [];
        last.complete = true;
        this.end(null);
      } else if (event === "error") {
        this.end({
          kind: "error",
          text:
            "The answer could not be completed: " +
            (payload.message || payload.code || "unknown error") +
            (payload.retryable ? " Try again in a moment." : ""),
        });
      }
    }

    /** Finish the current run: show the final state and remember it for a reload. */
    end(notice) {
      var run = this.run;
      if (run) {
        run.ended = true;
        clearTimeout(run.idle);
      }
      this.run = null;
      this.last.notice = notice;
      this.setStreaming(false);
      this.renderAll();
      this.save();
    }

    stopRun() {
      if (!this.run) return;
      this.run.why = "stop";
      this.run.controller.abort();
      if (this.isConnected) this.input.focus(); // the Stop button goes; focus must not fall to the page
    }

    /** After a rate limit: the Ask button waits as long as the service asked. */
    holdFor(seconds) {
      var self = this;
      var until = Date.now() + seconds * 1000;
      clearInterval(this.waitTimer);
      function tick() {
        var left = Math.ceil((until - Date.now()) / 1000);
        if (left <= 0) {
          clearInterval(self.waitTimer);
          self.send.disabled = false;
          self.send.textContent = "Ask";
        } else {
          self.send.disabled = true;
          self.send.textContent = "Ask (" + left + " s)";
        }
      }
      tick();
      this.waitTimer = setInterval(tick, 1000);
    }

    setStreaming(on) {
      // The button that has focus is about to be hidden or disabled: focus must not fall to
      // the page, so it goes back to the question box.
      var focused = this.shadowRoot.activeElement;
      var losing = on ? focused === this.send : focused === this.stop;
      this.stop.hidden = !on;
      this.send.disabled = on;
      this.answer.setAttribute("aria-busy", on ? "true" : "false");
      if (losing) this.input.focus();
    }

    // -- rendering -------------------------------------------------------------------------

    showResult() {
      this.result.hidden = false;
    }

    scheduleAnswer() {
      var self = this;
      if (this.pending) return;
      // One render per frame however fast the deltas come.
      this.pending = requestAnimationFrame(function () {
        self.pending = 0;
        self.renderAnswer();
        self.save();
      });
    }

    renderAll() {
      var last = this.last;
      if (!last) return;
      this.showResult();
      this.asked.hidden = false;
      this.askedText.textContent = last.question;
      this.renderStatus();
      this.renderAnswer();
      this.renderSources();
      this.setNotice(last.notice);
    }

    renderStatus() {
      var status = this.last.status;
      var count = this.last.sources.length;
      this.status.className = "status" + (status && status !== "ok" ? " warn" : "");
      if (status === "ok") this.status.textContent = count + (count === 1 ? " source found" : " sources found");
      else if (status) this.status.textContent = STATUS_TEXT[status] || SEARCH_UNAVAILABLE;
      else this.status.textContent = this.run ? "Searching the knowledge base\u2026" : "";
    }

    renderAnswer() {
      if (this.pending) {
        cancelAnimationFrame(this.pending);
        this.pending = 0;
      }
      var byId = new Map();
      this.last.sources.forEach(function (source) {
        byId.set(source.id, source);
      });
      this.answer.replaceChildren(renderMarkdown(this.last.answer, { sources: byId }));
      this.tools.hidden = !this.last.answer || !!this.run;
    }

    renderSources() {
      var cited = new Set(this.last.citations || []);
      var items = this.last.sources.map(function (source) {
        var meta = [source.source, source.heading, source.page != null ? "page " + source.page : null].filter(Boolean).join(" \u00b7 ");
        return h(
          "li",
          { id: "kb-source-" + source.id, tabindex: "-1", value: source.id },
          h("span", { class: "src-title" }, source.title || source.source || "Untitled"),
          cited.has(source.id) ? h("span", { class: "cited" }, "cited") : null,
          meta ? h("span", { class: "src-meta" }, meta) : null,
          source.snippet ? h("p", { class: "src-snippet" }, source.snippet) : null,
        );
      });
      this.sourceList.replaceChildren.apply(this.sourceList, items);
      this.sources.hidden = items.length === 0;
    }

    setNotice(notice) {
      this.notice.className = "notice" + (notice ? " " + notice.kind : "");
      this.notice.textContent = notice ? notice.text : "";
      this.notice.hidden = !notice;
    }

    showSource(id) {
      var item = this.shadowRoot.getElementById("kb-source-" + id);
      if (!item) return;
      this.sourceList.querySelectorAll(".flash").forEach(function (el) {
        el.classList.remove("flash");
      });
      item.classList.add("flash");
      item.scrollIntoView({ block: "nearest" });
      item.focus({ preventScroll: true });
    }

    async copyAnswer() {
      var text = this.last ? this.last.answer : "";
      var ok = false;
      try {
        await navigator.clipboard.writeText(text);
        ok = true;
      } catch (_) {
        // No clipboard API (a page not served over https): the old way, from a hidden field.
        var field = h("textarea", { class: "sr", "aria-hidden": "true", tabindex: "-1" });
        field.value = text;
        this.shadowRoot.append(field);
        field.select();
        try {
          ok = document.execCommand("copy");
        } catch (_e) {
          ok = false;
        }
        field.remove();
        this.copy.focus();
      }
      var copied = this.copied;
      copied.textContent = ok ? "Copied" : "Could not copy: select the answer and copy it by hand";
      setTimeout(function () {
        copied.textContent = "";
      }, 3000);
    }

    // -- the last question and answer survive a reload (session storage) ---------------------

    storageKey() {
      return STORAGE_PREFIX + this.serviceUrl();
    }

    save() {
      try {
        var last = this.last;
        var notice = last.notice;
        if (!last.complete && !notice) notice = { kind: "info", text: "Interrupted by a page reload; the answer above is incomplete." };
        sessionStorage.setItem(
          this.storageKey(),
          JSON.stringify({ question: last.question, answer: last.answer, status: last.status, sources: last.sources, citations: last.citations, notice: notice, complete: last.complete }),
        );
      } catch (_) {
        /* storage full or disabled: the widget works without it */
      }
    }

    restore() {
      var saved = null;
      try {
        saved = JSON.parse(sessionStorage.getItem(this.storageKey()) || "null");
      } catch (_) {
        saved = null;
      }
      if (!saved || typeof saved.question !== "string" || typeof saved.answer !== "string") return;
      this.last = {
        question: saved.question,
        answer: saved.answer,
        status: typeof saved.status === "string" ? saved.status : null,
        sources: Array.isArray(saved.sources) ? saved.sources : [],
        citations: Array.isArray(saved.citations) ? saved.citations : null,
        notice: saved.notice && typeof saved.notice.text === "string" ? { kind: String(saved.notice.kind), text: saved.notice.text } : null,
        complete: !!saved.complete,
      };
      this.renderAll();
    }
  }

  window.customElements.define("kb-ask", KbAsk);
})();
