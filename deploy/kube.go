package deploy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fleetwave/fleetwave/rollout"
)

// Defaults for a site without a cluster block (or with parts of it left out): the kubeconfig
// context named after the site, and the Kustomization `flux bootstrap` creates.
const (
	DefaultKustomization = "flux-system/flux-system"
	// InCluster as a site's context means the cluster fleetwave runs in (its service account).
	InCluster = "in-cluster"
)

// Client limits per context (Kube.QPS, Kube.Burst): a health round reads a context's sites in
// one list per namespace, but reconcile requests are a get and two patches per site, and a
// convergence round of a batch of a hundred sites on one cluster should not wait for a token
// bucket. An API server's own limits (--max-requests-inflight, 400 by default, and its priority
// and fairness) are far above this.
const (
	DefaultQPS   = 50
	DefaultBurst = 100
)

// ReconcileAnnotation is the annotation the Flux CLI sets to ask a controller to reconcile now.
const ReconcileAnnotation = "reconcile.fluxcd.io/requestedAt"

var kustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}

// sourceResources maps the kinds a Kustomization's sourceRef may name to their resources.
var sourceResources = map[string]schema.GroupVersionResource{
	"GitRepository": {Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"},
	"OCIRepository": {Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "ocirepositories"},
	"Bucket":        {Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "buckets"},
}

// ErrUnreachable wraps a failure to reach a site's API server.
var ErrUnreachable = errors.New("unreachable")

// Kube is the Driver for real sites: it reads each site's Flux Kustomization through the
// site's Kubernetes API server, with one client per kubeconfig context.
type Kube struct {
	rules *clientcmd.ClientConfigLoadingRules
	// Timeout bounds every request to an API server (default 10s), so an unreachable site is
	// reported as such instead of stalling a health round.
	Timeout time.Duration
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
	// QPS and Burst bound the requests to each context's API server (client-go's token
	// bucket); 0 means DefaultQPS and DefaultBurst. client-go's own defaults (5 and 10) would
	// make the first convergence round of 50 sites, a get and two reconcile patches each,
	// take 30 seconds.
	QPS   float32
	Burst int

	mu      sync.Mutex
	clients map[string]dynamic.Interface
	// watchers are the clients for watches (Watch), without Timeout.
	watchers map[string]dynamic.Interface
}

// NewKube returns a driver reading kubeconfig, a list of files separated like PATH; empty
// means $KUBECONFIG (also a list) or ~/.kube/config, as kubectl does.
func NewKube(kubeconfig string) *Kube {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = ""
		rules.Precedence = filepath.SplitList(kubeconfig)
	}
	return &Kube{rules: rules, Timeout: 10 * time.Second, clients: map[string]dynamic.Interface{}, watchers: map[string]dynamic.Interface{}}
}

// Ref names a Kustomization of a site.
type Ref struct{ Namespace, Name string }

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Target returns the kubeconfig context and the Kustomizations of a site: its cluster's
// kustomizations, or its kustomization, or DefaultKustomization.
func Target(site rollout.Site) (kubeContext string, refs []Ref) {
	kubeContext, names := site.Name, []string{DefaultKustomization}
	if c := site.Cluster; c != nil {
		if c.Context != "" {
			kubeContext = c.Context
		}
		switch {
		case len(c.Kustomizations) > 0:
			names = c.Kustomizations
		case c.Kustomization != "":
			names = []string{c.Kustomization}
		}
	}
	for _, ks := range names {
		ns, name, _ := strings.Cut(ks, "/")
		refs = append(refs, Ref{ns, name})
	}
	return kubeContext, refs
}

// client returns the dynamic client of a kubeconfig context, made once, whose requests time
// out after Timeout.
func (k *Kube) client(kubeContext string) (dynamic.Interface, error) {
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return k.dynamicClient(k.clients, kubeContext, timeout)
}

// dynamicClient returns cache's client of the context, making it when missing; a timeout of 0
// leaves requests without one (watches).
func (k *Kube) dynamicClient(cache map[string]dynamic.Interface, kubeContext string, timeout time.Duration) (dynamic.Interface, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := cache[kubeContext]; ok {
		return c, nil
	}
	cfg, err := k.restConfig(kubeContext)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	cfg.UserAgent = "fleetwave"
	cfg.QPS, cfg.Burst = k.QPS, k.Burst
	if cfg.QPS <= 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", kubeContext, err)
	}
	cache[kubeContext] = c
	return c, nil
}

func (k *Kube) restConfig(kubeContext string) (*rest.Config, error) {
	if kubeContext == InCluster {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", InCluster, err)
		}
		return cfg, nil
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(k.rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if _, ok := raw.Contexts[kubeContext]; !ok {
		return nil, fmt.Errorf("context %q not found in kubeconfig %s", kubeContext, k.describeFiles())
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", kubeContext, err)
	}
	return cfg, nil
}

func (k *Kube) describeFiles() string {
	if k.rules.ExplicitPath != "" {
		return k.rules.ExplicitPath
	}
	return strings.Join(k.rules.Precedence, string(filepath.ListSeparator))
}

// Observe reads the site's Kustomizations and judges them (Kustomization.State, Combine). A
// site that cannot be read (API server down, Kustomization missing, access denied, a broken
// kubeconfig) is reported unreachable with the reason: Unknown, never Healthy.
func (k *Kube) Observe(ctx context.Context, site rollout.Site) (rollout.SiteState, error) {
	kubeContext, refs := Target(site)
	states := make([]rollout.SiteState, len(refs))
	for i, ref := range refs {
		ks, err := k.kustomization(ctx, kubeContext, ref)
		if err != nil {
			if ctx.Err() != nil {
				return rollout.SiteState{}, ctx.Err()
			}
			states[i] = rollout.SiteState{Site: site.Name, Message: err.Error(), ObservedAt: k.now()}
			continue
		}
		states[i] = ks.State(site.Name, k.now())
		if u, err := k.source(ctx, kubeContext, ks.Source); err == nil {
			refuse(&states[i], ks.Source, u)
		}
	}
	return Combine(refs, states), nil
}

// source reads a Kustomization's source object.
func (k *Kube) source(ctx context.Context, kubeContext string, src SourceRef) (*unstructured.Unstructured, error) {
	gvr, ok := sourceResources[src.Kind]
	if !ok || src.Name == "" {
		return nil, fmt.Errorf("source %s: unknown kind", src)
	}
	c, err := k.client(kubeContext)
	if err != nil {
		return nil, err
	}
	return c.Resource(gvr).Namespace(src.Namespace).Get(ctx, src.Name, metav1.GetOptions{})
}

func (k *Kube) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

func (k *Kube) kustomization(ctx context.Context, kubeContext string, ref Ref) (Kustomization, error) {
	c, err := k.client(kubeContext)
	if err != nil {
		return Kustomization{}, err
	}
	u, err := c.Resource(kustomizationGVR).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return Kustomization{}, describe(err, kubeContext, "Kustomization "+ref.String())
	}
	return KustomizationFrom(u)
}

// Combine judges a site of several Kustomizations (refs, observed as states) by the one that
// holds it back, its message naming that Kustomization: the first unreachable, else suspended,
// else one whose source refused a commit, else failed (Stalled, or not Ready and done
// reconciling), else not Ready or reconciling.
// When every one is Ready but they applied different revisions, the site is still
// reconciling, at the revision of the first that differs from the first. A site of one
// Kustomization is judged by it alone, as before.
func Combine(refs []Ref, states []rollout.SiteState) rollout.SiteState {
	if len(states) == 1 {
		return states[0]
	}
	named := func(i int) rollout.SiteState {
		st := states[i]
		st.Message = "Kustomization " + refs[i].String() + ": " + st.Message
		return st
	}
	for _, bad := range []func(rollout.SiteState) bool{
		func(s rollout.SiteState) bool { return !s.Reachable },
		func(s rollout.SiteState) bool { return s.SourceRefused != "" },
		func(s rollout.SiteState) bool { return s.Suspended },
		func(s rollout.SiteState) bool { return s.Stalled || (!s.Ready && !s.Reconciling) },
		func(s rollout.SiteState) bool { return !s.Ready || s.Reconciling },
	} {
		for i, st := range states {
			if bad(st) {
				return named(i)
			}
		}
	}
	for i, st := range states[1:] {
		if st.Revision != states[0].Revision {
			out := named(i + 1)
			out.Reconciling = true
			out.Message = fmt.Sprintf("Kustomization %s applied %s, Kustomization %s %s: waiting for them to agree",
				refs[0], states[0].Revision, refs[i+1], st.Revision)
			return out
		}
	}
	out := states[0]
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.String()
	}
	out.Message = fmt.Sprintf("%s: %s", strings.Join(names, ", "), out.Message)
	return out
}

// describe turns a client-go error into a message naming the context and the object; a
// network failure wraps ErrUnreachable.
func describe(err error, kubeContext, object string) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("context %q: %s not found", kubeContext, object)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("context %q: reading %s: %s", kubeContext, object, apierrors.ReasonForError(err))
	case apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err),
		apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		// The API server (or a proxy in front of it) is in trouble: cannot tell, not wrong.
		return fmt.Errorf("context %q: %w", kubeContext, unreachableError{err})
	case apierrors.ReasonForError(err) != metav1.StatusReasonUnknown:
		return fmt.Errorf("context %q: %s: %w", kubeContext, object, err)
	}
	return fmt.Errorf("context %q: %w", kubeContext, unreachableError{err})
}

// unreachableError is a network failure talking to an API server; it matches ErrUnreachable.
type unreachableError struct{ err error }

func (e unreachableError) Error() string   { return "API server unreachable: " + e.err.Error() }
func (e unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// RequestReconcile asks Flux to reconcile the site's sources and Kustomizations now, the way
// `flux reconcile kustomization --with-source` does: it sets reconcile.fluxcd.io/requestedAt
// on each (a source shared by several Kustomizations once). It is the only write fleetwave
// makes to a cluster.
func (k *Kube) RequestReconcile(ctx context.Context, site rollout.Site) error {
	kubeContext, refs := Target(site)
	c, err := k.client(kubeContext)
	if err != nil {
		return err
	}
	stamp := time.Now().Format(time.RFC3339Nano)
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, ReconcileAnnotation, stamp)
	sources := map[string]bool{}
	for _, ref := range refs {
		u, err := c.Resource(kustomizationGVR).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return describe(err, kubeContext, "Kustomization "+ref.String())
		}
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "kind")
		srcName, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "name")
		srcNS, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "namespace")
		if srcNS == "" {
			srcNS = ref.Namespace
		}
		if gvr, ok := sourceResources[kind]; ok && srcName != "" && !sources[kind+" "+srcNS+"/"+srcName] {
			sources[kind+" "+srcNS+"/"+srcName] = true
			if _, err := c.Resource(gvr).Namespace(srcNS).Patch(ctx, srcName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "fleetwave"}); err != nil {
				return describe(err, kubeContext, kind+" "+srcNS+"/"+srcName)
			}
		}
		if _, err := c.Resource(kustomizationGVR).Namespace(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "fleetwave"}); err != nil {
			return describe(err, kubeContext, "Kustomization "+ref.String())
		}
	}
	return nil
}

// Validate checks that the site's context exists in the kubeconfig and that its Kustomization
// exists and can be read. A site that cannot be reached gives an error wrapping ErrUnreachable,
// so callers can tell "wrong" from "down right now".
// Configured checks that the kubeconfig has the site's context and that a client can be made
// from it, without a request: serve checks every site so at start, rather than at the first
// rollout.
func (k *Kube) Configured(site rollout.Site) error {
	kubeContext, _ := Target(site)
	if _, err := k.restConfig(kubeContext); err != nil {
		return &SiteError{Site: site.Name, Field: "cluster.context", Err: err}
	}
	return nil
}

func (k *Kube) Validate(ctx context.Context, site rollout.Site) error {
	kubeContext, refs := Target(site)
	if _, err := k.client(kubeContext); err != nil {
		return &SiteError{Site: site.Name, Field: "cluster.context", Err: err}
	}
	field := "cluster.kustomization"
	if site.Cluster != nil && len(site.Cluster.Kustomizations) > 0 {
		field = "cluster.kustomizations"
	}
	var errs []error
	for _, ref := range refs {
		if _, err := k.kustomization(ctx, kubeContext, ref); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &SiteError{Site: site.Name, Field: field, Err: errors.Join(errs...)}
	}
	return nil
}

// Verifying returns the sources of the site's Kustomizations that verify commit signatures
// (a GitRepository's spec.verify), as "GitRepository flux-system/fleet": such a site applies
// only signed commits.
func (k *Kube) Verifying(ctx context.Context, site rollout.Site) ([]string, error) {
	kubeContext, refs := Target(site)
	var out []string
	for _, ref := range refs {
		ks, err := k.kustomization(ctx, kubeContext, ref)
		if err != nil {
			return nil, err
		}
		u, err := k.source(ctx, kubeContext, ks.Source)
		if err != nil {
			return nil, describe(err, kubeContext, ks.Source.String())
		}
		if mode, _, _ := unstructured.NestedString(u.Object, "spec", "verify", "mode"); mode != "" && !slices.Contains(out, ks.Source.String()) {
			out = append(out, ks.Source.String())
		}
	}
	return out, nil
}

// SiteError is a problem with one site's cluster settings.
type SiteError struct {
	Site, Field string
	Err         error
}

func (e *SiteError) Error() string {
	return fmt.Sprintf("site %s: %s: %v", e.Site, e.Field, e.Err)
}

func (e *SiteError) Unwrap() error { return e.Err }
