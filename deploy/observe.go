package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
// four requests. A scope with one Kustomization is read with a get, as Observe does; a site of
// several Kustomizations is judged by Combine.
func (k *Kube) ObserveSites(ctx context.Context, sites []rollout.Site) ([]rollout.SiteState, error) {
	type scope struct{ context, namespace string }
	type at struct{ site, ref int } // sites[site]'s refs[site][ref]
	refs := make([][]Ref, len(sites))
	states := make([][]rollout.SiteState, len(sites))
	read := make([][]*Kustomization, len(sites)) // the Kustomizations read, for their sources
	var order []scope
	members := map[scope][]at{}
	for i, s := range sites {
		kubeContext, rs := Target(s)
		refs[i], states[i], read[i] = rs, make([]rollout.SiteState, len(rs)), make([]*Kustomization, len(rs))
		for j, ref := range rs {
			key := scope{kubeContext, ref.Namespace}
			if members[key] == nil {
				order = append(order, key)
			}
			members[key] = append(members[key], at{i, j})
		}
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, parallelScopes)
	for _, key := range order {
		reads := members[key]
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			var byName map[string]*unstructured.Unstructured
			err := errListForbidden
			if len(reads) > 1 {
				byName, err = k.list(ctx, key.context, key.namespace)
			}
			at := k.now()
			for _, r := range reads {
				site, ref := sites[r.site], refs[r.site][r.ref]
				st := &states[r.site][r.ref]
				if errors.Is(err, errListForbidden) {
					// One Kustomization here, or rights to get them but not to list them.
					ks, err := k.kustomization(ctx, key.context, ref)
					if err != nil {
						*st = rollout.SiteState{Site: site.Name, Message: err.Error(), ObservedAt: k.now()}
					} else {
						*st, read[r.site][r.ref] = ks.State(site.Name, k.now()), &ks
					}
					continue
				}
				u, found := byName[ref.Name]
				switch {
				case err != nil:
					*st = rollout.SiteState{Site: site.Name, Message: err.Error(), ObservedAt: at}
				case !found:
					*st = rollout.SiteState{Site: site.Name, Message: notFound(key.context, ref).Error(), ObservedAt: at}
				default:
					ks, err := KustomizationFrom(u)
					if err != nil {
						*st = rollout.SiteState{Site: site.Name, Message: err.Error(), ObservedAt: at}
						continue
					}
					*st, read[r.site][r.ref] = ks.State(site.Name, at), &ks
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k.sources(ctx, sites, read, states)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]rollout.SiteState, len(sites))
	for i := range sites {
		out[i] = Combine(refs[i], states[i])
	}
	return out, nil
}

// sources reads the sources of the Kustomizations read, one list per context, namespace and
// kind (a get when there is one), and marks each state whose source refused a commit
// (refuse). A source that cannot be read says nothing: the Kustomization's state stands.
func (k *Kube) sources(ctx context.Context, sites []rollout.Site, read [][]*Kustomization, states [][]rollout.SiteState) {
	type scope struct{ context, namespace, kind string }
	type at struct{ site, ref int }
	var order []scope
	members := map[scope][]at{}
	for i := range read {
		kubeContext, _ := Target(sites[i])
		for j, ks := range read[i] {
			if ks == nil || ks.Source.Name == "" {
				continue
			}
			if _, ok := sourceResources[ks.Source.Kind]; !ok {
				continue
			}
			key := scope{kubeContext, ks.Source.Namespace, ks.Source.Kind}
			if members[key] == nil {
				order = append(order, key)
			}
			members[key] = append(members[key], at{i, j})
		}
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, parallelScopes)
	for _, key := range order {
		ats := members[key]
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			byName := map[string]*unstructured.Unstructured{}
			if len(ats) == 1 {
				src := read[ats[0].site][ats[0].ref].Source
				if u, err := k.source(ctx, key.context, src); err == nil {
					byName[src.Name] = u
				}
			} else if c, err := k.client(key.context); err == nil {
				opts := metav1.ListOptions{Limit: listPage}
				for {
					l, err := c.Resource(sourceResources[key.kind]).Namespace(key.namespace).List(ctx, opts)
					if err != nil {
						break
					}
					for i := range l.Items {
						byName[l.Items[i].GetName()] = &l.Items[i]
					}
					if opts.Continue = l.GetContinue(); opts.Continue == "" {
						break
					}
				}
			}
			for _, a := range ats {
				src := read[a.site][a.ref].Source
				if u, ok := byName[src.Name]; ok {
					refuse(&states[a.site][a.ref], src, u)
				}
			}
		})
	}
	wg.Wait()
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
func notFound(kubeContext string, ref Ref) error {
	return fmt.Errorf("context %q: Kustomization %s not found", kubeContext, ref)
}
