package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"time"
)

// errMemory is the cause of an evaluation stopped by MaxMemory.
var errMemory = errors.New("the evaluation used too much memory")

// memoryEvery is how often watchMemory looks at the heap. The Go runtime allocates about 1 GB
// a second at most on one core, so a policy overshoots the bound by some 10 MB.
const memoryEvery = 5 * time.Millisecond

// watchMemory returns a context that is cancelled, with errMemory as its cause, once the heap
// grew past limit bytes since the call; OPA's evaluator and its expanding builtins (numbers.range,
// net.cidr_expand) check for cancellation as they go. The heap counted includes garbage: before
// it cancels, a collection tells the evaluation's live objects from other goroutines' garbage.
// unwatch stops the watch.
func watchMemory(ctx context.Context, limit uint64) (_ context.Context, unwatch func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	base := heapBytes()
	trigger := base + limit // a collection first when the heap passes it
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(memoryEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if heapBytes() < trigger {
				continue
			}
			runtime.GC()
			used := heapBytes()
			if used >= base+limit {
				cancel(fmt.Errorf("%w: the heap grew by more than %d MiB (policy.MaxMemory)", errMemory, limit>>20))
				return
			}
			// It was garbage: collect again only after another half of the bound.
			trigger = max(base+limit, used+limit/2)
		}
	}()
	return ctx, func() {
		close(done)
		<-stopped
		cancel(nil)
	}
}

// heapBytes is the memory of the heap's objects, live or not yet collected.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
