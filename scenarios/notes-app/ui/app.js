// The notes page: list, add and delete notes through the API. `/api/...` on the page's own
// origin is proxied by the runtime to the notes API, path unchanged.
"use strict";

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/api${path}`, init);
  if (response.status === 204) {
    return null;
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(data.error || `${response.status} ${response.statusText}`);
  }
  return data;
}

function status(message, isError) {
  const el = document.getElementById("status");
  el.textContent = message;
  el.style.color = isError ? "#ffc9c9" : "";
}

function render(notes) {
  const list = document.getElementById("notes");
  list.replaceChildren();
  for (const note of notes.slice().reverse()) {
    const item = document.createElement("li");
    const title = document.createElement("h2");
    title.textContent = note.title;
    const body = document.createElement("p");
    body.textContent = note.body;
    const when = document.createElement("small");
    when.textContent = new Date(note.created_at * 1000).toLocaleString();
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.addEventListener("click", async () => {
      try {
        await api("DELETE", `/notes/${note.id}`);
        await load();
      } catch (err) {
        status(err.message, true);
      }
    });
    item.append(title, body, when, remove);
    list.append(item);
  }
  if (notes.length === 0) {
    const item = document.createElement("li");
    item.textContent = "No notes yet.";
    list.append(item);
  }
}

async function load() {
  render(await api("GET", "/notes"));
}

document.getElementById("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    await api("POST", "/notes", { title: form.elements.title.value, body: form.elements.body.value });
    form.reset();
    await load();
    status("Saved");
  } catch (err) {
    status(err.message, true);
  }
});

load().then(
  () => status("Connected"),
  (err) => status(`Cannot reach the API: ${err.message}`, true),
);
