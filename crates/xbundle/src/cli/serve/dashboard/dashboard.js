// The xbundle dashboard: everything it shows comes from the same /api/v1 the command line
// answers for. No data from the API is ever parsed as HTML: text goes through textContent.
"use strict";

// The API token, when the server has one: asked for once, kept for this tab only
// (sessionStorage), sent as `Authorization: Bearer` on every request. The page itself and its
// script hold no data and are served without it.
const TOKEN_KEY = "xbundle-token";

function authorized(options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = new Headers((options && options.headers) || {});
  if (token) headers.set("Authorization", "Bearer " + token);
  return Object.assign({}, options, { headers });
}

class Unauthorized extends Error {}

// A request to the API with the token; a 401 shows the token form.
async function request(url, options) {
  const response = await fetch(url, authorized(options));
  if (response.status === 401) {
    askForToken();
    throw new Unauthorized("this server needs its API token");
  }
  return response;
}

const api = (path, options) =>
  request("/api/v1" + path, options).then(async (response) => {
    const type = response.headers.get("content-type") || "";
    const body = type.startsWith("application/json") ? await response.json() : await response.text();
    if (!response.ok) {
      throw new Error((body && body.error) || response.status + " " + response.statusText);
    }
    return body;
  });

// A response body as an object URL (an image or a download fetched with the token).
async function objectUrl(url) {
  const response = await request(url);
  if (!response.ok) throw new Error(response.status + " " + response.statusText);
  return URL.createObjectURL(await response.blob());
}

function askForToken() {
  const form = document.getElementById("token-form");
  form.hidden = false;
  document.getElementById("token").focus();
}

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function row(cells, attributes) {
  const tr = element("tr", null, attributes);
  for (const cell of cells) {
    const td = element("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === undefined ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function say(message, isError) {
  const status = document.getElementById("status");
  status.textContent = message;
  status.className = isError ? "error" : "";
}

// The profile's swaps as query parameters (and its tier, when `withTier`).
function query(profile, withTier) {
  const parts = withTier ? ["tier=" + encodeURIComponent(profile.tier)] : [];
  for (const [from, to] of Object.entries(profile.swaps || {})) {
    parts.push("swap=" + encodeURIComponent(from + "=" + to));
  }
  return parts.join("&");
}

const score = (value) => (typeof value === "number" ? value.toFixed(2) : "");

async function showProfile(profile, tr) {
  for (const selected of document.querySelectorAll("#profiles tr.selected")) selected.classList.remove("selected");
  tr.classList.add("selected");
  const detail = document.getElementById("detail");
  detail.hidden = false;
  document.getElementById("detail-title").textContent = profile.name + " (" + profile.scenario + ")";
  const scenario = encodeURIComponent(profile.scenario);
  const [analysis, plan] = await Promise.all([
    api("/analyze/" + scenario + "?" + query(profile, false)),
    api("/secrets/" + scenario + "/bundle?" + query(profile, true)).catch((error) => ({ error: error.message })),
  ]);
  const fitness = document.querySelector("#fitness tbody");
  fitness.replaceChildren();
  for (const [tier, report] of Object.entries(analysis.tiers)) {
    fitness.appendChild(row([tier, score(report.score), element("span", report.status, { class: report.blockers.length ? "blocked" : "ok" })]));
  }
  const blockers = document.getElementById("blockers");
  blockers.replaceChildren();
  const own = analysis.tiers[profile.tier];
  for (const blocker of (own && own.blockers) || []) {
    blockers.appendChild(element("li", blocker.node + ": " + blocker.reason));
  }
  if (!blockers.children.length) blockers.appendChild(element("li", "none"));
  const swaps = document.querySelector("#swaps tbody");
  swaps.replaceChildren();
  for (const swap of analysis.swaps.filter((swap) => swap.tier === profile.tier)) {
    swaps.appendChild(row([swap.from + " → " + swap.to, swap.tier, swap.impact, swap.ram_mb_delta + " MB"]));
  }
  const secrets = document.querySelector("#secrets tbody");
  const excluded = document.getElementById("excluded");
  secrets.replaceChildren();
  excluded.replaceChildren();
  if (plan.error) {
    excluded.appendChild(element("li", plan.error, { class: "error" }));
  } else {
    for (const secret of plan.secrets) {
      secrets.appendChild(row([secret.id, secret.class, secret.target.type + " " + secret.target.name]));
    }
    for (const item of plan.excluded) excluded.appendChild(element("li", item.id + " excluded: " + item.reason));
  }
  const dag = document.getElementById("dag");
  const previous = dag.src;
  dag.src = await objectUrl("/api/v1/dag/" + scenario + "?format=svg&" + query(profile, false));
  if (previous.startsWith("blob:")) URL.revokeObjectURL(previous);
}

async function loadProfiles() {
  const { profiles } = await api("/profiles");
  const body = document.querySelector("#profiles tbody");
  body.replaceChildren();
  for (const profile of profiles) {
    const fitness = element("span", "…");
    const build = element("button", "Build", { "data-build": profile.name, type: "button" });
    build.addEventListener("click", (event) => {
      event.stopPropagation();
      startBuild(profile.name);
    });
    const tr = row([profile.name, profile.scenario, profile.tier, profile.platforms.join(", "), fitness, build], { "data-profile": profile.name });
    tr.addEventListener("click", () => showProfile(profile, tr).catch((error) => say(error.message, true)));
    body.appendChild(tr);
    api("/fitness/score?scenario=" + encodeURIComponent(profile.scenario) + "&" + query(profile, true))
      .then((result) => { fitness.textContent = score(result.fitness[profile.tier]); })
      .catch(() => { fitness.textContent = "?"; });
  }
  const first = body.querySelector("tr");
  if (first) first.click();
}

let following = null;

// A build's log: server-sent events read from a fetch (EventSource cannot send the token).
function follow(build) {
  if (following) following.abort();
  const controller = new AbortController();
  following = controller;
  const log = document.getElementById("log");
  log.textContent = "";
  document.getElementById("log-build").textContent = build.build_id;
  const onEvent = (name, data) => {
    if (name === "end") {
      loadBuilds().catch((error) => say(error.message, true));
      return;
    }
    const line = JSON.parse(data);
    let text = line.event;
    if (line.id) text += " " + line.id;
    if (line.status) text += " " + line.status;
    if (line.text) text += ": " + line.text.trimEnd();
    if (line.message) text += ": " + line.message;
    log.textContent += text + "\n";
    log.scrollTop = log.scrollHeight;
  };
  (async () => {
    const response = await request(build.logs_url, { signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, data.join("\n"));
      }
    }
  })().catch((error) => {
    if (error.name !== "AbortError") say(error.message, true);
  });
}

async function startBuild(profile) {
  try {
    const build = await api("/desktop/package", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ profile_id: profile }),
    });
    say("queued " + build.build_id);
    await loadBuilds();
    follow(build);
  } catch (error) {
    say(error.message, true);
  }
}

async function loadBuilds() {
  const { builds } = await api("/builds");
  const body = document.querySelector("#builds tbody");
  body.replaceChildren();
  for (const build of builds) {
    const artifacts = element("span");
    for (const artifact of build.artifacts) {
      const link = element("a", artifact.name, { href: artifact.url, download: artifact.name, class: "artifact" });
      // With a token the file is fetched with it, then saved from memory.
      link.addEventListener("click", (event) => {
        if (!sessionStorage.getItem(TOKEN_KEY)) return;
        event.preventDefault();
        objectUrl(artifact.url)
          .then((url) => {
            const save = element("a", null, { href: url, download: artifact.name });
            document.body.appendChild(save);
            save.click();
            save.remove();
            setTimeout(() => URL.revokeObjectURL(url), 60000);
          })
          .catch((error) => say(error.message, true));
      });
      artifacts.appendChild(link);
      artifacts.appendChild(document.createTextNode(" "));
    }
    const status = element("span", build.status, { class: build.status, "data-build-status": build.status });
    const tr = row([build.build_id, build.profile, status, artifacts], { "data-build-id": build.build_id });
    tr.addEventListener("click", () => follow(build));
    body.appendChild(tr);
  }
}

async function main() {
  try {
    await Promise.all([loadProfiles(), loadBuilds()]);
    document.getElementById("token-form").hidden = true;
    say("");
    document.body.setAttribute("data-loaded", "true");
  } catch (error) {
    say(error.message, true);
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, field.value.trim());
  field.value = "";
  main();
});

main();
