package wheel

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T, dir string) (*Store, *httptest.Server) {
	t.Helper()
	store, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	store.Now = func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }
	server := httptest.NewServer(Handler(store))
	t.Cleanup(server.Close)
	return store, server
}

func do(t *testing.T, method, url, body string, want int, into interface{}) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("%s %s: status %d, want %d (%v)", method, url, resp.StatusCode, want, e)
	}
	if into != nil {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
}

func TestHealth(t *testing.T) {
	_, server := newServer(t, t.TempDir())
	var health map[string]string
	do(t, "GET", server.URL+"/health", "", 200, &health)
	if health["status"] != "healthy" {
		t.Fatalf("health: %v", health)
	}
}

func TestCreateListSpinHistory(t *testing.T) {
	store, server := newServer(t, t.TempDir())
	var created Wheel
	do(t, "POST", server.URL+"/api/wheels",
		`{"name":" Lunch ","options":[{"label":"pizza","weight":1},{"label":"soup","weight":3}]}`, 201, &created)
	if created.Name != "Lunch" || len(created.Options) != 2 || created.ID == "" {
		t.Fatalf("created: %+v", created)
	}
	var wheels []Wheel
	do(t, "GET", server.URL+"/api/wheels", "", 200, &wheels)
	if len(wheels) != 1 || wheels[0].ID != created.ID {
		t.Fatalf("list: %+v", wheels)
	}
	// Draws 0 lands on pizza (weight 1); 1, 2 and 3 on soup (weight 3).
	for draw, want := range []string{"pizza", "soup", "soup", "soup"} {
		d := int64(draw)
		store.Pick = func(n int64) (int64, error) {
			if n != 4 {
				t.Fatalf("drawn among %d, want 4", n)
			}
			return d, nil
		}
		var result Result
		do(t, "POST", server.URL+"/api/wheels/"+created.ID+"/spin", "", 200, &result)
		if result.Label != want || result.WheelID != created.ID {
			t.Fatalf("draw %d: %+v, want %s", draw, result, want)
		}
	}
	var history []Result
	do(t, "GET", server.URL+"/api/history?wheel="+created.ID, "", 200, &history)
	if len(history) != 4 || history[0].Label != "soup" || history[3].Label != "pizza" {
		t.Fatalf("history (newest first): %+v", history)
	}
	do(t, "DELETE", server.URL+"/api/wheels/"+created.ID, "", 204, nil)
	do(t, "GET", server.URL+"/api/wheels/"+created.ID, "", 404, nil)
	do(t, "GET", server.URL+"/api/history", "", 200, &history)
	if len(history) != 0 {
		t.Fatalf("history of a deleted wheel: %+v", history)
	}
}

func TestSpinIsWeighted(t *testing.T) {
	options := []Option{{Label: "rare", Weight: 1}, {Label: "common", Weight: 9}}
	counts := map[int]int{}
	for i := 0; i < 2000; i++ {
		index, err := pickWeighted(options, cryptoPick)
		if err != nil {
			t.Fatal(err)
		}
		counts[index]++
	}
	// Expected 200 and 1800; these bounds fail with probability far below 1e-9.
	if counts[0] < 100 || counts[0] > 320 {
		t.Fatalf("counts %v", counts)
	}
}

func TestBadRequests(t *testing.T) {
	_, server := newServer(t, t.TempDir())
	for _, body := range []string{
		`{"name":"x","options":[{"label":"only one"}]}`,
		`{"name":"","options":[{"label":"a"},{"label":"b"}]}`,
		`{"name":"x","options":[{"label":"a","weight":-1},{"label":"b"}]}`,
		`{"name":"x","options":[{"label":"a","weight":1001},{"label":"b"}]}`,
		`{"name":"x","options":[{"label":" "},{"label":"b"}]}`,
		`{"name":"x","extra":1,"options":[{"label":"a"},{"label":"b"}]}`,
		`{"name":"x","options":[{"label":"a"},{"label":"b"}]} {}`,
		`not json`,
		`{"name":"` + strings.Repeat("x", MaxBody) + `"}`,
	} {
		do(t, "POST", server.URL+"/api/wheels", body, 400, nil)
	}
	do(t, "POST", server.URL+"/api/wheels/nope/spin", "", 404, nil)
	do(t, "PUT", server.URL+"/api/wheels", "", 405, nil)
	do(t, "GET", server.URL+"/api/wheels/x/spin", "", 405, nil)
	do(t, "GET", server.URL+"/nothing", "", 404, nil)
}

func TestStateSurvivesReopenAndWritesAtomically(t *testing.T) {
	dir := t.TempDir()
	store, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := store.Create("Colours", []Option{{Label: "red"}, {Label: "blue", Weight: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Spin(w.ID); err != nil {
		t.Fatal(err)
	}
	// A temporary file left by a save killed midway is removed at the next start.
	stale := filepath.Join(dir, tempPrefix+"123")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.Wheel(w.ID)
	if err != nil || got.Name != "Colours" || got.Options[1].Weight != 2 || got.Options[0].Weight != 1 {
		t.Fatalf("reopened: %+v %v", got, err)
	}
	if h := again.History(""); len(h) != 1 {
		t.Fatalf("history: %+v", h)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != StateFile {
		t.Fatalf("data dir holds %v", entries)
	}
}

func TestFailedSaveKeepsState(t *testing.T) {
	dir := t.TempDir()
	store, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The data directory gone: the write fails, the wheel is not kept.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create("w", []Option{{Label: "a"}, {Label: "b"}}); err == nil {
		t.Fatal("create succeeded without a data directory")
	}
	if len(store.Wheels()) != 0 {
		t.Fatalf("a wheel that was not saved is listed: %+v", store.Wheels())
	}
}

func TestCorruptStateIsRefusedNotOverwritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFile)
	if err := os.WriteFile(path, []byte(`{"wheels": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("corrupt state opened: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != `{"wheels": [` {
		t.Fatalf("corrupt state changed: %q", data)
	}
}
