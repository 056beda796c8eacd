// Package tools holds developer helpers for the picker wheel's data. The API does not import
// it, so it is not part of the binary: `go list -deps` of the API does not name it, and
// editing it must not rebuild the API (xbundle's discovered-inputs tests rely on that).
package tools

import (
	"encoding/json"
	"fmt"
	"os"
)

// Summary counts the wheels and results of a state file (`wheels.json`).
func Summary(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var state struct {
		Wheels  []json.RawMessage `json:"wheels"`
		History []json.RawMessage `json:"history"`
	}
	if err := json.Unmarshal(data, &state); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d wheels, %d results", len(state.Wheels), len(state.History)), nil
}
