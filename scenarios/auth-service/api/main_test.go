package main

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

func post(t *testing.T, url, body string, want int) map[string]interface{} {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]interface{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d, want %d: %v", url, resp.StatusCode, want, out)
	}
	return out
}

func TestIssueAndVerify(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	clock := time.Unix(1_700_000_000, 0)
	server := httptest.NewServer(handler(key, func() time.Time { return clock }))
	defer server.Close()

	issued := post(t, server.URL+"/api/tokens", `{"subject":"alice","ttl_seconds":60}`, 201)
	token := issued["token"].(string)
	checked := post(t, server.URL+"/api/tokens/verify", `{"token":"`+token+`"}`, 200)
	if checked["subject"] != "alice" || checked["valid"] != true {
		t.Fatalf("verify: %v", checked)
	}
	// Another key, a changed payload, garbage: refused.
	other := httptest.NewServer(handler([]byte(strings.Repeat("o", 32)), func() time.Time { return clock }))
	defer other.Close()
	post(t, other.URL+"/api/tokens/verify", `{"token":"`+token+`"}`, 401)
	parts := strings.Split(token, ".")
	forged := sign([]byte("x"), claims{Subject: "mallory", ExpiresAt: clock.Unix() + 60})
	tampered := parts[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
	post(t, server.URL+"/api/tokens/verify", `{"token":"`+tampered+`"}`, 401)
	post(t, server.URL+"/api/tokens/verify", `{"token":"a.b"}`, 401)
	// Expired.
	clock = clock.Add(61 * time.Second)
	post(t, server.URL+"/api/tokens/verify", `{"token":"`+token+`"}`, 401)
	// Bad requests.
	post(t, server.URL+"/api/tokens", `{"subject":""}`, 400)
	post(t, server.URL+"/api/tokens", `{"subject":"a","ttl_seconds":-5}`, 400)
	post(t, server.URL+"/api/tokens", `{"subject":"a","admin":true}`, 400)
	resp, err := http.Get(server.URL + "/api/tokens")
	if err != nil || resp.StatusCode != 405 {
		t.Fatalf("GET /api/tokens: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestSigningKeySources(t *testing.T) {
	dir := t.TempDir()
	env := func(values map[string]string) func(string) string {
		return func(k string) string { return values[k] }
	}
	// Generated once in DATA_DIR, then reused.
	first, _, err := signingKey(env(map[string]string{"DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	again, source, err := signingKey(env(map[string]string{"DATA_DIR": dir}))
	if err != nil || string(again) != string(first) || strings.Contains(source, "generated") {
		t.Fatalf("the kept key was not reused: %s %v", source, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != keyFile {
		t.Fatalf("data dir holds %v", entries)
	}
	// The runtime's secret file wins over the environment and the kept key.
	file := filepath.Join(t.TempDir(), "jwt.key")
	secret := strings.Repeat("ab", 32)
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, _, err := signingKey(env(map[string]string{"SECRET_FILE_JWT_SECRET": file, "JWT_SECRET": strings.Repeat("z", 40), "DATA_DIR": dir}))
	if err != nil || string(key) != secret {
		t.Fatalf("secret file: %q %v", key, err)
	}
	if _, _, err := signingKey(env(map[string]string{"JWT_SECRET": "short"})); err == nil {
		t.Fatal("a short key was accepted")
	}
	if _, _, err := signingKey(env(nil)); err == nil {
		t.Fatal("no key source accepted")
	}
}
