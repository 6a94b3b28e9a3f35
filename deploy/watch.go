package deploy

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"

	"github.com/fleetwave/fleetwave/rollout"
)

// watchTimeout is how long the API server keeps one watch open before fleetwave opens the next.
const watchTimeout = 5 * time.Minute

// Watch watches the sites' Kustomizations, one watch per context and namespace, and tells when
// one of them changes (Flux writes its status as it applies), until ctx ends. A watch that
// breaks (the site went down) is opened again a second later; a site whose client cannot be
// made is not watched, and WaitConverged polls it as before.
func (k *Kube) Watch(ctx context.Context, sites []rollout.Site) (<-chan struct{}, error) {
	type scope struct{ context, namespace string }
	names := map[scope]map[string]bool{}
	for _, s := range sites {
		kubeContext, refs := Target(s)
		for _, ref := range refs {
			key := scope{kubeContext, ref.Namespace}
			if names[key] == nil {
				names[key] = map[string]bool{}
			}
			names[key][ref.Name] = true
		}
	}
	ch := make(chan struct{}, 1)
	watched := 0
	for key, set := range names {
		c, err := k.watchClient(key.context)
		if err != nil {
			continue
		}
		watched++
		go follow(ctx, c, key.namespace, set, ch)
	}
	if watched == 0 && len(names) > 0 {
		return nil, fmt.Errorf("no site's API server can be watched")
	}
	return ch, nil
}

// follow keeps a watch on the Kustomizations names in namespace open until ctx ends, and
// notifies ch of every event on one of them.
func follow(ctx context.Context, c dynamic.Interface, namespace string, names map[string]bool, ch chan struct{}) {
	opts := metav1.ListOptions{TimeoutSeconds: new(int64(watchTimeout / time.Second))}
	if len(names) == 1 {
		for name := range names {
			opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
	}
	for ctx.Err() == nil {
		if w, err := c.Resource(kustomizationGVR).Namespace(namespace).Watch(ctx, opts); err == nil {
			for ev := range w.ResultChan() {
				if u, ok := ev.Object.(*unstructured.Unstructured); ok && names[u.GetName()] {
					Notify(ch)
				}
			}
			w.Stop()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// watchClient returns a client of the context for watches: like client's, without the request
// timeout, which would cut every watch short.
func (k *Kube) watchClient(kubeContext string) (dynamic.Interface, error) {
	return k.dynamicClient(k.watchers, kubeContext, 0)
}
