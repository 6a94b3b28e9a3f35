package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fleetwave/fleetwave/rollout"
)

// BatchObserver is a Driver that observes many sites at once for less than one request each:
// the Kubernetes driver reads every site of one context and namespace with one list.
type BatchObserver interface {
	// ObserveSites observes every site, as Observe would one: the states are in the order of
	// sites. An error is ctx's; a site that cannot be read is Unknown with the reason.
	ObserveSites(ctx context.Context, sites []rollout.Site) ([]rollout.SiteState, error)
}

// listPage is how many Kustomizations one list request returns; a namespace holding more is
// read in pages.
const listPage = 500

// parallelScopes is how many (context, namespace) lists run at once: each is one request, so
// hundreds of contexts are read in a few rounds of requests, none waiting behind a slow one.
const parallelScopes = 16

// ObserveSites reads the sites' Kustomizations with one list per context and namespace (in
// pages of 500), not one get per site: a health round of a hundred sites on four clusters is
// four requests. A scope with one site is read with a get, as Observe does.
func (k *Kube) ObserveSites(ctx context.Context, sites []rollout.Site) ([]rollout.SiteState, error) {
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	type scope struct{ context, namespace string }
	var order []scope
	members := map[scope][]int{}
	for i, s := range sites {
		kubeContext, ns, _ := Target(s)
		key := scope{kubeContext, ns}
		if members[key] == nil {
			order = append(order, key)
		}
		members[key] = append(members[key], i)
	}
	out := make([]rollout.SiteState, len(sites))
	var wg sync.WaitGroup
	slots := make(chan struct{}, parallelScopes)
	for _, key := range order {
		idx := members[key]
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			if len(idx) == 1 {
				st, err := k.Observe(ctx, sites[idx[0]])
				if err != nil {
					st = rollout.SiteState{Site: sites[idx[0]].Name, Message: err.Error(), ObservedAt: now()}
				}
				out[idx[0]] = st
				return
			}
			byName, err := k.list(ctx, key.context, key.namespace)
			if errors.Is(err, errListForbidden) {
				// Rights to get each Kustomization, not to list them: one get per site.
				for _, i := range idx {
					st, err := k.Observe(ctx, sites[i])
					if err != nil {
						st = rollout.SiteState{Site: sites[i].Name, Message: err.Error(), ObservedAt: now()}
					}
					out[i] = st
				}
				return
			}
			at := now()
			for _, i := range idx {
				site := sites[i]
				_, ns, name := Target(site)
				u, found := byName[name]
				switch {
				case err != nil:
					out[i] = rollout.SiteState{Site: site.Name, Message: err.Error(), ObservedAt: at}
				case !found:
					out[i] = rollout.SiteState{Site: site.Name, Message: notFound(key.context, ns, name).Error(), ObservedAt: at}
				default:
					ks, err := KustomizationFrom(u)
					if err != nil {
						out[i] = rollout.SiteState{Site: site.Name, Message: err.Error(), ObservedAt: at}
						continue
					}
					out[i] = ks.State(site.Name, at)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// list reads every Kustomization of a namespace in one context, by name.
func (k *Kube) list(ctx context.Context, kubeContext, namespace string) (map[string]*unstructured.Unstructured, error) {
	c, err := k.client(kubeContext)
	if err != nil {
		return nil, err
	}
	out := map[string]*unstructured.Unstructured{}
	opts := metav1.ListOptions{Limit: listPage}
	for {
		l, err := c.Resource(kustomizationGVR).Namespace(namespace).List(ctx, opts)
		if apierrors.IsForbidden(err) {
			return nil, errListForbidden
		}
		if err != nil {
			return nil, describe(err, kubeContext, "Kustomizations in "+namespace)
		}
		for i := range l.Items {
			out[l.Items[i].GetName()] = &l.Items[i]
		}
		if opts.Continue = l.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}

// errListForbidden says the identity may not list a namespace's Kustomizations.
var errListForbidden = errors.New("list forbidden")

// notFound is the error of a site whose Kustomization is not in its context, as Observe says it.
func notFound(kubeContext, namespace, name string) error {
	return fmt.Errorf("context %q: Kustomization %s/%s not found", kubeContext, namespace, name)
}
