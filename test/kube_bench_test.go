//go:build e2e

package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/kubelab"
)

// BenchmarkPushToReady measures, on one real site running real Flux with its default-ish
// intervals (GitRepository every 1m, Kustomization every 10m), the time from a commit being on
// the site branch to Flux reporting it applied and Ready: with fleetwave's reconcile request,
// and without (waiting for Flux's own interval). Run it with
//
//	make bench-kube   (go test -tags e2e -run '^$' -bench PushToReady -benchtime 5x ./test/)
func BenchmarkPushToReady(b *testing.B) {
	for _, reconcile := range []bool{true, false} {
		name := "reconcile-request"
		if !reconcile {
			name = "flux-interval"
		}
		b.Run(name, func(b *testing.B) {
			gs := gittest.NewServer(b, "fleet", app("0"), "sites/a")
			lab := kubelab.Start(b, kubelab.Options{GitURL: gs.URL, Sites: []string{"a"}})
			kube := deploy.NewKube(lab.Kubeconfig)
			site := rollout.Site{Name: "a", Cluster: &rollout.Cluster{Kustomization: "flux-system/apps"}}
			ctx := context.Background()
			i := 0
			var worst time.Duration
			for b.Loop() {
				b.StopTimer()
				i++
				c := gs.CommitOn(b, "sites/a", fmt.Sprintf("v%d", i), app(fmt.Sprint(i)))
				start := time.Now()
				b.StartTimer()
				if reconcile {
					if err := kube.RequestReconcile(ctx, site); err != nil {
						b.Fatal(err)
					}
				}
				for {
					st, err := kube.Observe(ctx, site)
					if err != nil {
						b.Fatal(err)
					}
					if st.Converged(c) {
						break
					}
					if time.Since(start) > 3*time.Minute {
						b.Fatalf("Flux did not apply %s in 3m: %+v", rollout.Short(c), st)
					}
					time.Sleep(50 * time.Millisecond)
				}
				worst = max(worst, time.Since(start))
			}
			b.ReportMetric(worst.Seconds(), "worst-s")
		})
	}
}
