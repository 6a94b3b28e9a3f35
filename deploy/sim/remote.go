package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/fleetwave/fleetwave/rollout"
)

// Handler serves the fleet to workers in other processes (Remote): POST /observe with a
// rollout.Site as JSON answers its rollout.SiteState. A rehearsal keeps its fleet in one
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
	return mux
}

// Remote is a deploy.Driver observing a Fleet that Handler serves at URL.
type Remote struct {
	URL    string
	Client *http.Client
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
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
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
