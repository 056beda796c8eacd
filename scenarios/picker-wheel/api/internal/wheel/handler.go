package wheel

import (
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"strings"
)

// MaxBody bounds a request body.
const MaxBody = 64 << 10

// Handler serves the API. Paths keep their `/api` prefix: the runtime's UI server proxies
// `/api/...` to the API unchanged.
//
//	GET    /health                  {"status":"healthy",...} (the runtime's health check)
//	GET    /api/wheels              every wheel
//	POST   /api/wheels              {"name":..., "options":[{"label":..., "weight":1}]} -> 201
//	GET    /api/wheels/{id}         one wheel
//	DELETE /api/wheels/{id}         204
//	POST   /api/wheels/{id}/spin    the result, recorded in the history
//	GET    /api/history[?wheel=id]  results, newest first
func Handler(store *Store) http.Handler {
	return &api{store: store}
}

type api struct{ store *Store }

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/health" || path == "/api/health":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "healthy", "service": "picker-wheel-api"})
		}
	case path == "/api/wheels":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeJSON(w, http.StatusOK, a.store.Wheels())
		case http.MethodPost:
			a.create(w, r)
		default:
			allow(w, r, http.MethodGet, http.MethodPost)
		}
	case path == "/api/history":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusOK, a.store.History(r.URL.Query().Get("wheel")))
		}
	case strings.HasPrefix(path, "/api/wheels/"):
		rest := strings.TrimPrefix(path, "/api/wheels/")
		id, action, _ := strings.Cut(rest, "/")
		switch {
		case action == "spin":
			if allow(w, r, http.MethodPost) {
				result, err := a.store.Spin(id)
				reply(w, http.StatusOK, result, err)
			}
		case action != "":
			writeError(w, http.StatusNotFound, "not found")
		case r.Method == http.MethodDelete:
			if err := a.store.Delete(id); err != nil {
				reply(w, 0, nil, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case allow(w, r, http.MethodGet, http.MethodHead, http.MethodDelete):
			wheel, err := a.store.Wheel(id)
			reply(w, http.StatusOK, wheel, err)
		}
	default:
		writeError(w, http.StatusNotFound, "not found")
	}
}

func (a *api) create(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name    string   `json:"name"`
		Options []Option `json:"options"`
	}
	decoder := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return
	}
	if _, err := decoder.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad JSON body: one object expected")
		return
	}
	wheel, err := a.store.Create(body.Name, body.Options)
	reply(w, http.StatusCreated, wheel, err)
}

// allow answers 405 unless the method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	return false
}

// reply writes value with status, or the error's status.
func reply(w http.ResponseWriter, status int, value interface{}, err error) {
	var invalid *ValidationError
	switch {
	case err == nil:
		writeJSON(w, status, value)
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		log.Printf("error: %v", err)
		writeError(w, http.StatusInternalServerError, "internal error (see the API's log)")
	}
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}

func writeJSON(w http.ResponseWriter, status int, value interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(value)
}
