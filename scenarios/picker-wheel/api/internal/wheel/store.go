// Package wheel is the picker wheel's state and HTTP API: wheels with weighted options, spins
// and a bounded history of results.
//
// Invariants: the state lives in one JSON file (StateFile) in the data directory, replaced
// atomically (a temporary file in the same directory, synced, then renamed over it), so a
// kill at any moment leaves the previous state or the new one, never a mix. A change is kept
// in memory only once it is on disk: a failed write leaves the state as it was and the client
// gets an error. A state file that cannot be read is an error at start, never overwritten.
package wheel

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// StateFile is the name of the state file in the data directory.
const StateFile = "wheels.json"

// tempPrefix starts the names of the temporary files a save writes before renaming.
const tempPrefix = ".wheels.json.tmp-"

// Limits on what a client may store.
const (
	MaxWheels     = 200
	MaxOptions    = 50
	MaxNameLength = 100
	MaxWeight     = 1000
	MaxHistory    = 100
)

// Option is one slice of a wheel: its label and its weight (the chance of landing on it is
// its weight over the sum of the wheel's weights).
type Option struct {
	Label  string `json:"label"`
	Weight int64  `json:"weight"`
}

// Wheel is a named set of options.
type Wheel struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Options   []Option  `json:"options"`
	CreatedAt time.Time `json:"created_at"`
}

// Result is one spin's outcome.
type Result struct {
	WheelID string    `json:"wheel_id"`
	Wheel   string    `json:"wheel"`
	Label   string    `json:"label"`
	Index   int       `json:"index"`
	At      time.Time `json:"at"`
}

// state is what the state file holds.
type state struct {
	Wheels  []Wheel  `json:"wheels"`
	History []Result `json:"history"`
}

// ErrNotFound is returned for an unknown wheel id.
var ErrNotFound = errors.New("no such wheel")

// ValidationError is a client's mistake, reported as 400.
type ValidationError struct{ Msg string }

func (e *ValidationError) Error() string { return e.Msg }

func invalid(format string, args ...interface{}) error {
	return &ValidationError{Msg: fmt.Sprintf(format, args...)}
}

// Store holds the state and writes it through to its directory.
type Store struct {
	dir string
	// Pick returns a uniform random integer in [0, n); crypto/rand by default (tests
	// replace it).
	Pick func(n int64) (int64, error)
	// Now is the clock (tests replace it).
	Now func() time.Time

	mu    sync.Mutex
	state state
}

// Open loads the state of dir (created if missing); a missing state file is an empty state.
// Temporary files a save killed midway left behind are removed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("no data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the data directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the data directory: %w", err)
	}
	for _, entry := range entries {
		if strings.HasPrefix(entry.Name(), tempPrefix) && entry.Type().IsRegular() {
			_ = os.Remove(filepath.Join(dir, entry.Name()))
		}
	}
	s := &Store{dir: dir, Pick: cryptoPick, Now: time.Now}
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", StateFile, err)
	default:
		if err := json.Unmarshal(data, &s.state); err != nil {
			return nil, fmt.Errorf("%s in %s is not valid (move it away to start empty): %w", StateFile, dir, err)
		}
	}
	return s, nil
}

func cryptoPick(n int64) (int64, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		return 0, err
	}
	return v.Int64(), nil
}

// save writes next to the state file atomically, then makes it the state.
func (s *Store) save(next state) error {
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(name, filepath.Join(s.dir, StateFile))
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("save %s: %w", StateFile, err)
	}
	s.state = next
	return nil
}

// Wheels returns every wheel, oldest first.
func (s *Store) Wheels() []Wheel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Wheel{}, s.state.Wheels...)
}

// Wheel returns the wheel with this id.
func (s *Store) Wheel(id string) (Wheel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(id)
	if i < 0 {
		return Wheel{}, ErrNotFound
	}
	return s.state.Wheels[i], nil
}

func (s *Store) find(id string) int {
	for i, w := range s.state.Wheels {
		if w.ID == id {
			return i
		}
	}
	return -1
}

// History returns the results, newest first, of one wheel (or all when wheelID is empty).
func (s *Store) History(wheelID string) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Result{}
	for i := len(s.state.History) - 1; i >= 0; i-- {
		if r := s.state.History[i]; wheelID == "" || r.WheelID == wheelID {
			out = append(out, r)
		}
	}
	return out
}

// Create checks and stores a new wheel.
func (s *Store) Create(name string, options []Option) (Wheel, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > MaxNameLength {
		return Wheel{}, invalid("name must be 1 to %d characters", MaxNameLength)
	}
	if len(options) < 2 || len(options) > MaxOptions {
		return Wheel{}, invalid("a wheel needs 2 to %d options", MaxOptions)
	}
	clean := make([]Option, len(options))
	for i, o := range options {
		label := strings.TrimSpace(o.Label)
		if label == "" || len(label) > MaxNameLength {
			return Wheel{}, invalid("option %d: label must be 1 to %d characters", i+1, MaxNameLength)
		}
		weight := o.Weight
		if weight == 0 {
			weight = 1
		}
		if weight < 1 || weight > MaxWeight {
			return Wheel{}, invalid("option %d: weight must be 1 to %d", i+1, MaxWeight)
		}
		clean[i] = Option{Label: label, Weight: weight}
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Wheel{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.state.Wheels) >= MaxWheels {
		return Wheel{}, invalid("at most %d wheels: delete one first", MaxWheels)
	}
	w := Wheel{ID: hex.EncodeToString(id[:]), Name: name, Options: clean, CreatedAt: s.Now().UTC()}
	next := state{
		Wheels:  append(append([]Wheel{}, s.state.Wheels...), w),
		History: s.state.History,
	}
	if err := s.save(next); err != nil {
		return Wheel{}, err
	}
	return w, nil
}

// Delete removes a wheel and its results.
func (s *Store) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(id)
	if i < 0 {
		return ErrNotFound
	}
	next := state{Wheels: []Wheel{}, History: []Result{}}
	next.Wheels = append(append(next.Wheels, s.state.Wheels[:i]...), s.state.Wheels[i+1:]...)
	for _, r := range s.state.History {
		if r.WheelID != id {
			next.History = append(next.History, r)
		}
	}
	return s.save(next)
}

// Spin picks one option of a wheel at random, each with the chance of its weight, and
// records the result (the history keeps the last MaxHistory).
func (s *Store) Spin(id string) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(id)
	if i < 0 {
		return Result{}, ErrNotFound
	}
	w := s.state.Wheels[i]
	index, err := pickWeighted(w.Options, s.Pick)
	if err != nil {
		return Result{}, err
	}
	r := Result{WheelID: w.ID, Wheel: w.Name, Label: w.Options[index].Label, Index: index, At: s.Now().UTC()}
	history := append(append([]Result{}, s.state.History...), r)
	if len(history) > MaxHistory {
		history = history[len(history)-MaxHistory:]
	}
	if err := s.save(state{Wheels: s.state.Wheels, History: history}); err != nil {
		return Result{}, err
	}
	return r, nil
}

// pickWeighted returns the index of the option a draw in [0, sum of weights) lands on.
func pickWeighted(options []Option, pick func(int64) (int64, error)) (int, error) {
	var total int64
	for _, o := range options {
		total += o.Weight
	}
	if total <= 0 {
		return 0, errors.New("the wheel has no weight")
	}
	draw, err := pick(total)
	if err != nil {
		return 0, err
	}
	if draw < 0 || draw >= total {
		return 0, fmt.Errorf("draw %d out of range", draw)
	}
	for i, o := range options {
		if draw < o.Weight {
			return i, nil
		}
		draw -= o.Weight
	}
	return len(options) - 1, nil
}
