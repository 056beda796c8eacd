// The xbundle dashboard: everything it shows comes from the same /api/v1 the command line
// answers for. No data from the API is ever parsed as HTML: text goes through textContent.
"use strict";

const api = (path, options) =>
  fetch("/api/v1" + path, options).then(async (response) => {
    const type = response.headers.get("content-type") || "";
    const body = type.startsWith("application/json") ? await response.json() : await response.text();
    if (!response.ok) {
      throw new Error((body && body.error) || response.status + " " + response.statusText);
    }
    return body;
  });

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
  dag.src = "/api/v1/dag/" + scenario + "?format=svg&" + query(profile, false);
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

function follow(build) {
  if (following) following.close();
  const log = document.getElementById("log");
  log.textContent = "";
  document.getElementById("log-build").textContent = build.build_id;
  const source = new EventSource(build.logs_url);
  following = source;
  source.addEventListener("log", (event) => {
    const line = JSON.parse(event.data);
    let text = line.event;
    if (line.id) text += " " + line.id;
    if (line.status) text += " " + line.status;
    if (line.text) text += ": " + line.text.trimEnd();
    if (line.message) text += ": " + line.message;
    log.textContent += text + "\n";
    log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("end", () => {
    source.close();
    loadBuilds();
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
    document.body.setAttribute("data-loaded", "true");
  } catch (error) {
    say(error.message, true);
  }
}

main();
