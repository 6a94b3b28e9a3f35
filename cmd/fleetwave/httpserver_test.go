package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHTTPCutsOffSlowClients: a client that stops half way through its headers, or through a
// body it announced, is disconnected instead of holding a connection (and a handler) for ever.
func TestHTTPCutsOffSlowClients(t *testing.T) {
	old := httpLimits
	httpLimits.ReadHeader, httpLimits.Read, httpLimits.Idle = 300*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	t.Cleanup(func() { httpLimits = old })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "slow body", http.StatusRequestTimeout)
		}
	})
	url, done, err := serveHTTP(ctx, slog.New(slog.DiscardHandler), "127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	addr := strings.TrimPrefix(url, "http://")
	for name, send := range map[string]string{
		"headers": "POST /hooks/git HTTP/1.1\r\nHost: x\r\n",
		"body":    "POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"ref\":",
		"idle":    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			if _, err := io.WriteString(conn, send); err != nil {
				t.Fatal(err)
			}
			// The server must close the connection long before this deadline.
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			_, err = io.ReadAll(conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server kept the connection open for %s", time.Since(start).Round(time.Second))
			}
		})
	}
}

// TestMetricsToken: with FLEETWAVE_METRICS_TOKEN set, /metrics answers only its bearer token.
func TestMetricsToken(t *testing.T) {
	h := guardMetrics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fleetwave_up 1\n") }), "s3cret-token")
	for _, tc := range []struct {
		auth string
		code int
	}{{"", http.StatusUnauthorized}, {"Bearer wrong", http.StatusUnauthorized}, {"s3cret-token", http.StatusUnauthorized},
		{"Bearer s3cret-token", http.StatusOK}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || (tc.code == http.StatusOK) != strings.Contains(rec.Body.String(), "fleetwave_up") {
			t.Errorf("Authorization %q: %d %q, want %d", tc.auth, rec.Code, rec.Body.String(), tc.code)
		}
	}
	rec := httptest.NewRecorder()
	guardMetrics(http.NotFoundHandler(), "").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("no token set: %d, want the handler's own answer", rec.Code)
	}
}
