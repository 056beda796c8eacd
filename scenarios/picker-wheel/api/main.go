// Command picker-wheel-api is the picker wheel's HTTP API, as the xbundle runtime runs it:
// it listens on 127.0.0.1:$API_PORT, keeps its state in $DATA_DIR (see package wheel) and
// stops cleanly on SIGTERM or an interrupt (requests in flight finish, within 5 s).
//
// Standard library only, no OS-specific code: it is cross-compiled with CGO_ENABLED=0 for
// every platform of a bundle.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"example.com/picker-wheel/api/internal/wheel"
)

// config is what the environment gives the API.
type config struct {
	addr    string
	dataDir string
}

// configFrom reads API_PORT (required, 1-65535) and DATA_DIR (default `data`).
func configFrom(getenv func(string) string) (config, error) {
	raw := getenv("API_PORT")
	port, err := strconv.Atoi(raw)
	if err != nil || port < 1 || port > 65535 {
		return config{}, fmt.Errorf("API_PORT must be a port number (1-65535), got %q", raw)
	}
	dir := getenv("DATA_DIR")
	if dir == "" {
		dir = "data"
	}
	return config{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dataDir: dir}, nil
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("picker-wheel-api: ")
	cfg, err := configFrom(os.Getenv)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	store, err := wheel.Open(cfg.dataDir)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	server := &http.Server{
		Handler:           wheel.Handler(store),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	log.Printf("listening on http://%s, data in %s", cfg.addr, cfg.dataDir)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Print("stopping")
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
