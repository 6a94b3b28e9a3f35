package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/rollout"
)

// Handler serves the fleet to workers in other processes (Remote): POST /observe with a
// rollout.Site as JSON answers its rollout.SiteState, POST /reconcile asks for a Step (the
// reconcile request), and GET /watch streams one line each time a site applied a commit. A rehearsal keeps its fleet in one
// process and runs its worker in another, which it can kill and start again, as real sites
// outlive a worker.
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /observe", func(w http.ResponseWriter, r *http.Request) {
		var site rollout.Site
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&site); err != nil {
			http.Error(w, "observe: "+err.Error(), http.StatusBadRequest)
			return
		}
		st, err := f.Observe(r.Context(), site)
		if err != nil {
			http.Error(w, "observe: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /reconcile", func(w http.ResponseWriter, r *http.Request) {
		_ = f.RequestReconcile(r.Context(), rollout.Site{})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /watch", func(w http.ResponseWriter, r *http.Request) {
		changes, _ := f.Watch(r.Context(), nil)
		flusher, _ := w.(http.Flusher)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		for {
			if flusher != nil {
				flusher.Flush()
			}
			select {
			case <-r.Context().Done():
				return
			case <-changes:
				if _, err := io.WriteString(w, "changed\n"); err != nil {
					return
				}
			}
		}
	})
	return mux
}

// Remote is a deploy.Driver observing a Fleet that Handler serves at URL.
type Remote struct {
	URL    string
	Client *http.Client

	// A reconcile request made while one is on its way is sent once more after it, for all
	// that came meanwhile: the fleet steps for every site at once, and a wave of 9,000 sites
	// would otherwise send 9,000 requests.
	mu              sync.Mutex
	sending, resend bool
}

// Simulated says the fleet is not real (deploy.Simulator).
func (r *Remote) Simulated() bool { return true }

// RequestReconcile asks the fleet's process for a Step now. Requests made while one is on its
// way are merged into one sent after it, so each is followed by a Step that starts after it.
func (r *Remote) RequestReconcile(ctx context.Context, _ rollout.Site) error {
	r.mu.Lock()
	if r.sending {
		r.resend = true
		r.mu.Unlock()
		return nil
	}
	r.sending = true
	r.mu.Unlock()
	for {
		err := r.reconcile(ctx)
		r.mu.Lock()
		if err == nil && r.resend {
			r.resend = false
			r.mu.Unlock()
			continue
		}
		r.sending, r.resend = false, false
		r.mu.Unlock()
		return err
	}
}

func (r *Remote) reconcile(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/reconcile", nil)
	if err != nil {
		return err
	}
	resp, err := r.client().Do(req)
	if err != nil {
		return fmt.Errorf("simulated fleet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("simulated fleet: reconcile: %s", resp.Status)
	}
	return nil
}

// Watch follows the fleet's changes until ctx ends, connecting again a second after the
// stream breaks (the fleet's process restarted).
func (r *Remote) Watch(ctx context.Context, _ []rollout.Site) (<-chan struct{}, error) {
	ch := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			r.follow(ctx, ch)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return ch, nil
}

// follow reads one /watch stream until it ends; it notifies ch once on connecting, since a
// change may have come while it was not connected.
func (r *Remote) follow(ctx context.Context, ch chan struct{}) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/watch", nil)
	if err != nil {
		return
	}
	resp, err := r.client().Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	deploy.Notify(ch)
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		deploy.Notify(ch)
	}
}

func (r *Remote) client() *http.Client {
	if r.Client != nil {
		return r.Client
	}
	return http.DefaultClient
}

// Observe asks the fleet's process for the site's state.
func (r *Remote) Observe(ctx context.Context, site rollout.Site) (rollout.SiteState, error) {
	body, err := json.Marshal(site)
	if err != nil {
		return rollout.SiteState{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/observe", bytes.NewReader(body))
	if err != nil {
		return rollout.SiteState{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client().Do(req)
	if err != nil {
		return rollout.SiteState{}, fmt.Errorf("simulated fleet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return rollout.SiteState{}, fmt.Errorf("simulated fleet: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var st rollout.SiteState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return rollout.SiteState{}, fmt.Errorf("simulated fleet: %w", err)
	}
	return st, nil
}
