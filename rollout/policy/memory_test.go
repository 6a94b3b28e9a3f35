package policy

import (
	"context"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// TestGreedyPolicyFailsClosed: a policy that allocates without end (20,000 strings of 100 KB, or
// 2^28 addresses of a /4) is stopped once the evaluation's heap passes the bound, and denies,
// long before the worker's memory is gone or the time limit is reached. The bound is lowered to
// 32 MiB so that a slow machine reaches it well within the time limit too (under -race on two
// busy cores, the strings policy grew the heap by about 15 MiB a second).
func TestGreedyPolicyFailsClosed(t *testing.T) {
	maxMemory = 32 << 20
	defer func() { maxMemory = MaxMemory }()
	for name, body := range map[string]string{
		"strings":   `xs := [x | some i in numbers.range(1, 20000); x := sprintf("%0100000d", [i])]; count(xs) > 0`,
		"addresses": `count(net.cidr_expand("10.0.0.0/4")) > 0`,
	} {
		t.Run(name, func(t *testing.T) {
			greedy(t, "package fleetwave.policy\n\ndeny contains \"many\" if {\n  "+body+"\n}\n")
		})
	}
}

func greedy(t *testing.T, src string) {
	runtime.GC()
	base := heapObjects()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, heapObjects())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	start := time.Now()
	d := Decide(context.Background(), Request{Files: []rollout.PolicyFile{file("greedy.rego", src)}, Input: input("eu", "a")})
	took := time.Since(start)
	close(done)
	wg.Wait()
	grew := float64(peak-min(peak, base)) / (1 << 20)
	t.Logf("denied after %s, heap grew %.0f MiB at most: %v", took, grew, d.Deny)
	if d.Outcome != rollout.PolicyDeny || len(d.Deny) != 1 || !strings.Contains(d.Deny[0], "memory") {
		t.Fatalf("Decide = %+v, want a deny for the memory bound", d)
	}
	if limit := float64(maxMemory)/(1<<20) + 64; grew > limit {
		t.Errorf("the heap grew %.0f MiB during the evaluation, more than the bound and its slack, %.0f MiB", grew, limit)
	}
	// Stopped by memory, not by time.
	if took >= EvalTimeout {
		t.Errorf("took %s, the time limit", took)
	}
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
