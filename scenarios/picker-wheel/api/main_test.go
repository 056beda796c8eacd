package main

import "testing"

func TestConfigFrom(t *testing.T) {
	env := func(values map[string]string) func(string) string {
		return func(k string) string { return values[k] }
	}
	cfg, err := configFrom(env(map[string]string{"API_PORT": "15001", "DATA_DIR": "/tmp/x"}))
	if err != nil || cfg.addr != "127.0.0.1:15001" || cfg.dataDir != "/tmp/x" {
		t.Fatalf("%+v %v", cfg, err)
	}
	cfg, err = configFrom(env(map[string]string{"API_PORT": "80"}))
	if err != nil || cfg.dataDir != "data" {
		t.Fatalf("default data dir: %+v %v", cfg, err)
	}
	for _, bad := range []string{"", "0", "65536", "-1", "http", "15001 "} {
		if _, err := configFrom(env(map[string]string{"API_PORT": bad})); err == nil {
			t.Fatalf("API_PORT %q accepted", bad)
		}
	}
}
