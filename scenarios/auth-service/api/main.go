// Command auth-service-api issues and checks signed API tokens (HS256 JWTs) for the other
// scenarios, as the xbundle runtime runs it: it listens on 127.0.0.1:$API_PORT and stops
// cleanly on SIGTERM or an interrupt.
//
// The signing key is, in this order: the file named by SECRET_FILE_JWT_SECRET (how the
// runtime hands a `jwt_secret` secret with a file target), the value of JWT_SECRET, or a key
// generated once and kept in $DATA_DIR/signing.key (written atomically: temp file, then
// rename), so tokens stay valid across restarts. A key shorter than 32 bytes is refused.
//
// Routes (paths keep their `/api` prefix, as the runtime's UI proxy forwards them unchanged):
//
//	GET  /health              {"status":"healthy",...}
//	POST /api/tokens          {"subject":"alice","ttl_seconds":3600} -> 201 {"token","expires_at"}
//	POST /api/tokens/verify   {"token":"..."} -> 200 {"valid":true,"subject",...} or 401
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	keyFile    = "signing.key"
	minKey     = 32
	maxBody    = 16 << 10
	defaultTTL = time.Hour
	maxTTL     = 30 * 24 * time.Hour
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("auth-service-api: ")
	raw := os.Getenv("API_PORT")
	port, err := strconv.Atoi(raw)
	if err != nil || port < 1 || port > 65535 {
		log.Printf("API_PORT must be a port number (1-65535), got %q", raw)
		os.Exit(2)
	}
	key, source, err := signingKey(os.Getenv)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
	server := &http.Server{Handler: handler(key, time.Now), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	log.Printf("listening on http://%s, signing key from %s", listener.Addr(), source)
	select {
	case err := <-served:
		log.Print(err)
		os.Exit(1)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// signingKey returns the key and where it came from.
func signingKey(getenv func(string) string) ([]byte, string, error) {
	check := func(key []byte, source string) ([]byte, string, error) {
		if len(key) < minKey {
			return nil, "", fmt.Errorf("the signing key from %s is shorter than %d bytes", source, minKey)
		}
		return key, source, nil
	}
	if path := getenv("SECRET_FILE_JWT_SECRET"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("read the signing key: %w", err)
		}
		return check([]byte(strings.TrimSpace(string(data))), "SECRET_FILE_JWT_SECRET")
	}
	if value := getenv("JWT_SECRET"); value != "" {
		return check([]byte(value), "JWT_SECRET")
	}
	dir := getenv("DATA_DIR")
	if dir == "" {
		return nil, "", errors.New("no signing key: set JWT_SECRET, SECRET_FILE_JWT_SECRET or DATA_DIR")
	}
	path := filepath.Join(dir, keyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		return check([]byte(strings.TrimSpace(string(data))), path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("read the signing key: %w", err)
	}
	var random [32]byte
	if _, err := rand.Read(random[:]); err != nil {
		return nil, "", err
	}
	key := []byte(hex.EncodeToString(random[:]))
	if err := writeAtomically(dir, keyFile, append(key, '\n')); err != nil {
		return nil, "", fmt.Errorf("keep the signing key: %w", err)
	}
	return key, path + " (generated)", nil
}

func writeAtomically(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

type claims struct {
	Subject   string `json:"sub"`
	IssuedAt  int64  `json:"iat"`
	ExpiresAt int64  `json:"exp"`
}

var b64 = base64.RawURLEncoding

const header = `{"alg":"HS256","typ":"JWT"}`

func sign(key []byte, c claims) string {
	payload, _ := json.Marshal(c)
	unsigned := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(unsigned))
	return unsigned + "." + b64.EncodeToString(mac.Sum(nil))
}

func verify(key []byte, token string, now time.Time) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, errors.New("malformed token")
	}
	if h, err := b64.DecodeString(parts[0]); err != nil || string(h) != header {
		return claims{}, errors.New("unsupported token header")
	}
	signature, err := b64.DecodeString(parts[2])
	if err != nil {
		return claims{}, errors.New("malformed signature")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(signature, mac.Sum(nil)) {
		return claims{}, errors.New("bad signature")
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return claims{}, errors.New("malformed payload")
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return claims{}, errors.New("malformed payload")
	}
	if now.Unix() >= c.ExpiresAt {
		return claims{}, errors.New("token expired")
	}
	return c, nil
}

func handler(key []byte, now func() time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "healthy", "service": "auth-service-api"})
	})
	mux.HandleFunc("/api/tokens", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Subject    string `json:"subject"`
			TTLSeconds int64  `json:"ttl_seconds"`
		}
		if !decode(w, r, &body) {
			return
		}
		ttl := time.Duration(body.TTLSeconds) * time.Second
		if body.TTLSeconds == 0 {
			ttl = defaultTTL
		}
		subject := strings.TrimSpace(body.Subject)
		if subject == "" || len(subject) > 256 || ttl <= 0 || ttl > maxTTL {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "subject must be 1 to 256 characters and ttl_seconds 1 to 2592000"})
			return
		}
		at := now()
		c := claims{Subject: subject, IssuedAt: at.Unix(), ExpiresAt: at.Add(ttl).Unix()}
		writeJSON(w, http.StatusCreated, map[string]interface{}{"token": sign(key, c), "expires_at": c.ExpiresAt})
	})
	mux.HandleFunc("/api/tokens/verify", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Token string `json:"token"`
		}
		if !decode(w, r, &body) {
			return
		}
		c, err := verify(key, body.Token, now())
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]interface{}{"valid": false, "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]interface{}{"valid": true, "subject": c.Subject, "expires_at": c.ExpiresAt})
	})
	return mux
}

// decode reads one JSON object of a POST into v, or answers the error.
func decode(w http.ResponseWriter, r *http.Request, v interface{}) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return false
	}
	decoder := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad JSON body: " + err.Error()})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, value interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(value)
}
