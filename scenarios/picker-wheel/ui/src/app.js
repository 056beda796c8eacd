// The page: the list of wheels, the creation form, the selected wheel, its spins and history.
const $ = (id) => document.getElementById(id);
const view = { wheels: [], selected: null, rotation: 0, spinning: false };

function status(message, isError) {
  $("status").textContent = message;
  $("status").style.color = isError ? "#ffb3b3" : "";
}

// `label` or `label:weight` per line; blank lines are skipped.
function parseOptions(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => {
      const match = /^(.*?):\s*(\d+)$/.exec(line);
      return match ? { label: match[1].trim(), weight: Number(match[2]) } : { label: line, weight: 1 };
    });
}

function renderList() {
  const list = $("wheel-list");
  list.replaceChildren();
  for (const wheel of view.wheels) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.textContent = `${wheel.name} (${wheel.options.length})`;
    button.setAttribute("aria-current", String(Boolean(view.selected && view.selected.id === wheel.id)));
    button.addEventListener("click", () => select(wheel));
    item.append(button);
    list.append(item);
  }
  if (view.wheels.length === 0) {
    const item = document.createElement("li");
    item.textContent = "No wheels yet: create one below.";
    list.append(item);
  }
}

async function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  if (!view.selected) {
    return;
  }
  const results = await api("GET", `/history?wheel=${encodeURIComponent(view.selected.id)}`);
  for (const result of results) {
    const item = document.createElement("li");
    item.textContent = `${result.label} (${new Date(result.at).toLocaleString()})`;
    list.append(item);
  }
}

async function select(wheel) {
  view.selected = wheel;
  view.rotation = 0;
  $("wheel-name").textContent = wheel ? wheel.name : "No wheel selected";
  $("spin").disabled = !wheel;
  $("delete").disabled = !wheel;
  $("result").textContent = "";
  drawWheel($("canvas"), wheel ? wheel.options : [], 0);
  renderList();
  await renderHistory();
}

async function refresh() {
  view.wheels = await api("GET", "/wheels");
  const still = view.selected && view.wheels.find((w) => w.id === view.selected.id);
  await select(still || view.wheels[0] || null);
}

$("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    const wheel = await api("POST", "/wheels", {
      name: form.elements.name.value,
      options: parseOptions(form.elements.options.value),
    });
    form.reset();
    view.wheels.push(wheel);
    await select(wheel);
    status(`Created ${wheel.name}`);
  } catch (err) {
    status(err.message, true);
  }
});

$("spin").addEventListener("click", async () => {
  if (!view.selected || view.spinning) {
    return;
  }
  view.spinning = true;
  $("spin").disabled = true;
  $("result").textContent = "";
  try {
    const result = await api("POST", `/wheels/${encodeURIComponent(view.selected.id)}/spin`);
    view.rotation = await spinTo($("canvas"), view.selected.options, view.rotation, result.index);
    $("result").textContent = result.label;
    await renderHistory();
  } catch (err) {
    status(err.message, true);
  } finally {
    view.spinning = false;
    $("spin").disabled = !view.selected;
  }
});

$("delete").addEventListener("click", async () => {
  if (!view.selected || !confirm(`Delete ${view.selected.name}?`)) {
    return;
  }
  try {
    await api("DELETE", `/wheels/${encodeURIComponent(view.selected.id)}`);
    view.selected = null;
    await refresh();
  } catch (err) {
    status(err.message, true);
  }
});

refresh().then(
  () => status("Connected"),
  (err) => status(`Cannot reach the API: ${err.message}`, true),
);
