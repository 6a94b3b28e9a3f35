package kubelab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure Start.
type Options struct {
	// Bin is the directory holding etcd, kube-apiserver, source-controller and
	// kustomize-controller. "" means $FLEETWAVE_KUBE_BIN, else .tools/bin in the repository
	// root (the first directory upwards from the working directory with a go.mod), where
	// `make kube-tools` builds them.
	Bin string
	// GitURL is the clone URL of the fleet repository over HTTP, e.g.
	// http://127.0.0.1:4321/fleet.git.
	GitURL string
	// Sites are the site names (lowercase letters, digits and '-'). Site s follows the branch
	// "sites/<s>".
	Sites []string
	// SourceInterval is the GitRepository's interval; 0 means 1m. KustomizationInterval is the
	// Kustomization's; 0 means 10m. The defaults are long so that tests see a new commit only
	// when they request a reconcile (reconcile.fluxcd.io/requestedAt), as fleetwave does.
	SourceInterval, KustomizationInterval time.Duration
}

// Names of the Flux objects Start creates on each site.
const (
	Namespace         = "flux-system"
	GitRepositoryName = "fleet"
	KustomizationName = "apps"
	// TargetNamespace is where the Kustomization applies the manifests of ./deploy.
	TargetNamespace = "default"
)

// Timeouts of Start.
const (
	// siteUpTimeout bounds bringing one site up: kube-apiserver ready, CRDs established,
	// controllers ready.
	siteUpTimeout = 2 * time.Minute
	// syncTimeout bounds the wait, once every site is up, for every Kustomization to be ready.
	syncTimeout = 90 * time.Second
	// parallelSites is how many sites start at once: a kube-apiserver takes a core for a
	// couple of seconds while it starts.
	parallelSites = 2
)

var (
	// KustomizationGVR is the resource of Flux Kustomizations.
	KustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	// GitRepositoryGVR is the resource of Flux GitRepositories.
	GitRepositoryGVR = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}

	siteName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// Lab is a set of running sites sharing one etcd. Start makes one; it stops when the test
// that made it ends.
type Lab struct {
	// Kubeconfig is a kubeconfig file with one context per site, named after the site, for
	// the user "fleetwave", whose only rights are those of the ClusterRole fleetwave-site in
	// deploy/install/site/site-rbac.yaml. It is what fleetwave itself would be given.
	Kubeconfig string
	// AdminKubeconfig has the same contexts for the user "admin" (group system:masters).
	AdminKubeconfig string
	// Sites are the sites by name.
	Sites map[string]*Site
	// Dir holds the lab's logs, keys and data. It is removed when the test ends.
	Dir string

	opts  Options
	bin   string
	rbac  []byte // deploy/install/site/site-rbac.yaml
	pki   *pki
	ports ports
	etcd  *process
	// etcdURL is the client URL of etcd.
	etcdURL string
	order   []*Site // Sites in the order of Options.Sites
	// reported is set once a failure has shown the logs, so cleanup does not show them again.
	reported bool
}

// Site is one site of a Lab: a kube-apiserver with the Flux controllers.
type Site struct {
	// Name is the site's name; Context is its context in the lab's kubeconfigs (the same).
	Name, Context string
	// URL is the kube-apiserver's address, https://127.0.0.1:<port>.
	URL string
	// Kustomization is the namespace/name of the Kustomization that applies the site's branch:
	// "flux-system/apps".
	Kustomization string

	lab                          *Lab
	dir                          string
	cfg                          *rest.Config // admin
	dyn                          dynamic.Interface
	apiserver, source, kustomize *process
	// sourceHealth and kustomizeHealth are the controllers' readiness URLs.
	sourceHealth, kustomizeHealth string
}

// Start starts etcd, then each site (at most two at a time): its kube-apiserver, the Flux
// CRDs, the namespace flux-system, the RBAC of deploy/install/site/site-rbac.yaml bound to the user
// "fleetwave", the GitRepository and Kustomization, and the Flux controllers. It returns once
// every site's Kustomization is ready, having applied the head of the site's branch. It fails
// the test, showing the end of the logs that explain why, if anything does not start or sync
// in time. Everything stops when the test ends.
func Start(t testing.TB, o Options) *Lab {
	t.Helper()
	began := time.Now()
	l, err := newLab(t, o)
	if err != nil {
		t.Fatalf("kubelab: %v", err)
	}
	t.Cleanup(func() { l.stop(t) })

	if l.pki, err = newPKI(filepath.Join(l.Dir, "pki")); err != nil {
		t.Fatalf("kubelab: %v", err)
	}
	if err := l.startEtcd(t.Context()); err != nil {
		l.fatal(t, err, l.etcd)
	}
	for _, name := range o.Sites {
		s, err := l.newSite(name)
		if err != nil {
			t.Fatalf("kubelab: %v", err)
		}
		l.Sites[name], l.order = s, append(l.order, s)
	}
	if err := l.writeKubeconfigs(); err != nil {
		t.Fatalf("kubelab: %v", err)
	}

	errs := make([]error, len(l.order))
	sem := make(chan struct{}, parallelSites)
	var wg sync.WaitGroup
	for i, s := range l.order {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(t.Context(), siteUpTimeout)
			defer cancel()
			errs[i] = s.up(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			s := l.order[i]
			l.fatal(t, err, s.apiserver, s.source, s.kustomize)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), syncTimeout)
	defer cancel()
	for i, s := range l.order {
		wg.Go(func() { errs[i] = s.waitSynced(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			s := l.order[i]
			l.fatal(t, err, s.source, s.kustomize)
		}
	}
	t.Logf("kubelab: %d sites synced in %s", len(l.order), time.Since(began).Round(time.Millisecond))
	return l
}

// newLab checks the options and finds the binaries and the repository's RBAC manifest.
func newLab(t testing.TB, o Options) (*Lab, error) {
	if len(o.Sites) == 0 {
		return nil, errors.New("no sites")
	}
	if o.GitURL == "" {
		return nil, errors.New("no GitURL")
	}
	seen := map[string]bool{}
	for _, s := range o.Sites {
		if !siteName.MatchString(s) {
			return nil, fmt.Errorf("site name %q: want lowercase letters, digits and '-'", s)
		}
		if seen[s] {
			return nil, fmt.Errorf("site %q given twice", s)
		}
		seen[s] = true
	}
	if o.SourceInterval == 0 {
		o.SourceInterval = time.Minute
	}
	if o.KustomizationInterval == 0 {
		o.KustomizationInterval = 10 * time.Minute
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	bin := o.Bin
	if bin == "" {
		bin = os.Getenv("FLEETWAVE_KUBE_BIN")
	}
	if bin == "" {
		bin = filepath.Join(root, ".tools", "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "source-controller", "kustomize-controller"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make kube-tools` or set FLEETWAVE_KUBE_BIN", b, bin)
		}
	}
	rbac, err := os.ReadFile(filepath.Join(root, "deploy", "install", "site", "site-rbac.yaml"))
	if err != nil {
		return nil, fmt.Errorf("read the site RBAC: %w", err)
	}
	dir := t.TempDir()
	return &Lab{
		Kubeconfig:      filepath.Join(dir, "kubeconfig"),
		AdminKubeconfig: filepath.Join(dir, "admin.kubeconfig"),
		Sites:           map[string]*Site{},
		Dir:             dir,
		opts:            o,
		bin:             bin,
		rbac:            rbac,
	}, nil
}

// repoRoot returns the first directory upwards from the working directory that holds a go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the repository root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("find the repository root: no go.mod in %s or above", wd)
		}
	}
}

// startEtcd starts the etcd every site stores its objects in, each under its own prefix.
func (l *Lab) startEtcd(ctx context.Context) error {
	client, err := l.ports.addr()
	if err != nil {
		return err
	}
	peer, err := l.ports.addr()
	if err != nil {
		return err
	}
	l.etcdURL = "http://" + client
	l.etcd = &process{
		name: "etcd",
		bin:  filepath.Join(l.bin, "etcd"),
		args: []string{
			"--name=kubelab", "--data-dir=" + filepath.Join(l.Dir, "etcd"),
			"--listen-client-urls=" + l.etcdURL, "--advertise-client-urls=" + l.etcdURL,
			"--listen-peer-urls=http://" + peer, "--initial-advertise-peer-urls=http://" + peer,
			"--initial-cluster=kubelab=http://" + peer,
			// Tests need no durability, and fsync is most of etcd's latency on a slow disk.
			"--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--log-level=warn",
		},
		log: filepath.Join(l.Dir, "etcd.log"),
	}
	if err := l.etcd.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return waitHTTP(ctx, l.etcd, http.DefaultClient, l.etcdURL+"/health")
}

// newSite picks the site's ports and prepares its processes and clients.
func (l *Lab) newSite(name string) (*Site, error) {
	addrs := make([]string, 6)
	for i := range addrs {
		a, err := l.ports.addr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	api, scMetrics, scHealth, scStorage, kcMetrics, kcHealth := addrs[0], addrs[1], addrs[2], addrs[3], addrs[4], addrs[5]
	dir := filepath.Join(l.Dir, name)
	for _, d := range []string{"source-tmp", "kustomize-tmp", "artifacts"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("site %s: %w", name, err)
		}
	}
	s := &Site{
		Name:            name,
		Context:         name,
		URL:             "https://" + api,
		Kustomization:   Namespace + "/" + KustomizationName,
		lab:             l,
		dir:             dir,
		sourceHealth:    "http://" + scHealth + "/readyz",
		kustomizeHealth: "http://" + kcHealth + "/readyz",
	}
	var err error
	s.cfg = &rest.Config{
		Host:            s.URL,
		BearerToken:     l.pki.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: l.pki.caPEM},
		QPS:             100,
		Burst:           200,
	}
	if s.dyn, err = dynamic.NewForConfig(s.cfg); err != nil {
		return nil, fmt.Errorf("site %s: create client: %w", name, err)
	}
	p := l.pki
	s.apiserver = &process{
		name: name + "/kube-apiserver",
		bin:  filepath.Join(l.bin, "kube-apiserver"),
		args: []string{
			"--etcd-servers=" + l.etcdURL, "--etcd-prefix=/" + name,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + portOf(api),
			"--tls-cert-file=" + p.certFile, "--tls-private-key-file=" + p.keyFile,
			"--token-auth-file=" + p.tokensFile, "--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + p.saPubFile, "--service-account-signing-key-file=" + p.saKeyFile,
			"--service-cluster-ip-range=10.0.0.0/24",
			// No controller manager creates service accounts, and no node serves the
			// kubernetes Service's endpoints.
			"--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none",
			"--allow-privileged=true",
		},
		log: filepath.Join(dir, "kube-apiserver.log"),
	}
	kubeconfig := "KUBECONFIG=" + filepath.Join(dir, "admin.kubeconfig")
	// The controllers have no --kubeconfig flag. Each gets its own TMPDIR: kustomize-controller
	// builds in temporary directories, and sharing one between processes races.
	s.source = &process{
		name: name + "/source-controller",
		bin:  filepath.Join(l.bin, "source-controller"),
		args: []string{
			"--watch-all-namespaces", "--enable-leader-election=false",
			"--metrics-addr=" + scMetrics, "--health-addr=" + scHealth,
			"--storage-path=" + filepath.Join(dir, "artifacts"),
			"--storage-addr=" + scStorage, "--storage-adv-addr=" + scStorage,
			"--log-level=info",
		},
		env: []string{kubeconfig, "TMPDIR=" + filepath.Join(dir, "source-tmp")},
		log: filepath.Join(dir, "source-controller.log"),
	}
	s.kustomize = &process{
		name: name + "/kustomize-controller",
		bin:  filepath.Join(l.bin, "kustomize-controller"),
		args: []string{
			"--watch-all-namespaces", "--enable-leader-election=false",
			"--metrics-addr=" + kcMetrics, "--health-addr=" + kcHealth,
			"--log-level=info",
		},
		env: []string{kubeconfig, "TMPDIR=" + filepath.Join(dir, "kustomize-tmp")},
		log: filepath.Join(dir, "kustomize-controller.log"),
	}
	return s, nil
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// writeKubeconfigs writes the lab's two kubeconfigs and, per site, an admin kubeconfig with
// only that site, which its controllers use.
func (l *Lab) writeKubeconfigs() error {
	if err := l.writeKubeconfig(l.Kubeconfig, "fleetwave", l.pki.fleetwaveToken, l.order); err != nil {
		return err
	}
	if err := l.writeKubeconfig(l.AdminKubeconfig, "admin", l.pki.adminToken, l.order); err != nil {
		return err
	}
	for _, s := range l.order {
		if err := l.writeKubeconfig(filepath.Join(s.dir, "admin.kubeconfig"), "admin", l.pki.adminToken, []*Site{s}); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfig writes a kubeconfig with a cluster and a context per site, all for user,
// whose current context is the first site.
func (l *Lab) writeKubeconfig(path, user, token string, sites []*Site) error {
	cfg := clientcmdapi.NewConfig()
	for _, s := range sites {
		cfg.Clusters[s.Context] = &clientcmdapi.Cluster{Server: s.URL, CertificateAuthorityData: l.pki.caPEM}
		cfg.Contexts[s.Context] = &clientcmdapi.Context{Cluster: s.Context, AuthInfo: user}
	}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.CurrentContext = sites[0].Context
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", filepath.Base(path), err)
	}
	return nil
}

// up starts the site's kube-apiserver, installs what Flux and fleetwave need, and starts the
// Flux controllers.
func (s *Site) up(ctx context.Context) error {
	if err := s.apiserver.start(); err != nil {
		return err
	}
	if err := s.waitAPIServer(ctx); err != nil {
		return err
	}
	a, err := newApplier(s.cfg)
	if err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	defs, err := crds()
	if err != nil {
		return err
	}
	if err := a.apply(ctx, defs...); err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	if err := a.waitEstablished(ctx, defs); err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	objs, err := decodeYAML(s.lab.rbac)
	if err != nil {
		return fmt.Errorf("site %s: deploy/install/site/site-rbac.yaml: %w", s.Name, err)
	}
	objs = append([]*unstructured.Unstructured{object("v1", "Namespace", "", Namespace, nil)}, objs...)
	objs = append(objs, object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "fleetwave", map[string]any{
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "fleetwave-site"},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "fleetwave"}},
	}))
	objs = append(objs, s.syncObjects()...)
	if err := a.apply(ctx, objs...); err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	for _, p := range []*process{s.source, s.kustomize} {
		if err := p.start(); err != nil {
			return err
		}
	}
	if err := s.waitControllers(ctx); err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	return nil
}

// syncObjects returns the GitRepository that follows the site's branch and the Kustomization
// that applies its ./deploy to the namespace default.
func (s *Site) syncObjects() []*unstructured.Unstructured {
	o := s.lab.opts
	return []*unstructured.Unstructured{
		object("source.toolkit.fluxcd.io/v1", "GitRepository", Namespace, GitRepositoryName, map[string]any{
			"spec": map[string]any{
				"url":      o.GitURL,
				"ref":      map[string]any{"branch": "sites/" + s.Name},
				"interval": o.SourceInterval.String(),
			},
		}),
		object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", Namespace, KustomizationName, map[string]any{
			"spec": map[string]any{
				"path":            "./deploy",
				"prune":           true,
				"wait":            true,
				"timeout":         "30s",
				"interval":        o.KustomizationInterval.String(),
				"targetNamespace": TargetNamespace,
				"sourceRef":       map[string]any{"kind": "GitRepository", "name": GitRepositoryName},
			},
		}),
	}
}

// object returns an object of kind named namespace/name (namespace "" for a cluster-scoped
// kind) with the given top-level fields, such as "spec".
func object(apiVersion, kind, namespace, name string, fields map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"name": name}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	o := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta}
	for k, v := range fields {
		o[k] = v
	}
	return &unstructured.Unstructured{Object: o}
}

// waitAPIServer waits until the kube-apiserver answers /readyz.
func (s *Site) waitAPIServer(ctx context.Context) error {
	hc, err := rest.HTTPClientFor(s.cfg)
	if err != nil {
		return fmt.Errorf("site %s: create HTTP client: %w", s.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return waitHTTP(ctx, s.apiserver, hc, s.URL+"/readyz")
}

// waitControllers waits until both Flux controllers answer /readyz on their health address.
func (s *Site) waitControllers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitHTTP(ctx, s.source, http.DefaultClient, s.sourceHealth); err != nil {
		return err
	}
	return waitHTTP(ctx, s.kustomize, http.DefaultClient, s.kustomizeHealth)
}

// waitHTTP polls url until it answers 200 OK. It fails when p exits or ctx is done.
func waitHTTP(ctx context.Context, p *process, hc *http.Client, url string) error {
	var last error
	for {
		if err := p.failed(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			err = errors.New(resp.Status)
		}
		cancel()
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %v", p.name, url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitSynced waits until the site's Kustomization is ready, for its current generation,
// having applied the revision its GitRepository last fetched.
func (s *Site) waitSynced(ctx context.Context) error {
	var k, g *unstructured.Unstructured
	var last error
	for {
		for _, p := range []*process{s.source, s.kustomize, s.apiserver} {
			if err := p.failed(); err != nil {
				return fmt.Errorf("site %s: %w", s.Name, err)
			}
		}
		var err error
		if k, err = s.dyn.Resource(KustomizationGVR).Namespace(Namespace).Get(ctx, KustomizationName, metav1.GetOptions{}); err != nil {
			last = err
		} else if g, err = s.dyn.Resource(GitRepositoryGVR).Namespace(Namespace).Get(ctx, GitRepositoryName, metav1.GetOptions{}); err != nil {
			last = err
		} else if synced(k, g) {
			return nil
		}
		select {
		case <-ctx.Done():
			if last != nil && k == nil {
				return fmt.Errorf("site %s: Kustomization %s not ready: %w", s.Name, s.Kustomization, last)
			}
			applied, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
			return fmt.Errorf("site %s: Kustomization %s not ready (lastAppliedRevision %q): %s; GitRepository %s/%s: %s",
				s.Name, s.Kustomization, applied, conditionsText(k), Namespace, GitRepositoryName, conditionsText(g))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// synced reports whether Kustomization k is ready at its generation and has applied the
// artifact of GitRepository g.
func synced(k, g *unstructured.Unstructured) bool {
	observed, _, _ := unstructured.NestedInt64(k.Object, "status", "observedGeneration")
	applied, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
	fetched, _, _ := unstructured.NestedString(g.Object, "status", "artifact", "revision")
	return conditionStatus(k, "Ready") == "True" && observed == k.GetGeneration() &&
		applied != "" && applied == fetched
}

// StopAPIServer kills the site's kube-apiserver: until StartAPIServer, connections to URL are
// refused. The Flux controllers keep running and retry. It kills rather than terminates
// because on SIGTERM kube-apiserver stops listening at once but then waits for the
// controllers' watches to drain, which keeps it running for longer than the test wants to wait.
func (s *Site) StopAPIServer(t testing.TB) {
	t.Helper()
	s.apiserver.kill()
}

// StartAPIServer starts the site's kube-apiserver again, on the same port and with the same
// data, and waits until it is ready.
func (s *Site) StartAPIServer(t testing.TB) {
	t.Helper()
	if err := s.apiserver.start(); err != nil {
		t.Fatalf("kubelab: %v", err)
	}
	if err := s.waitAPIServer(t.Context()); err != nil {
		s.lab.fatal(t, err, s.apiserver)
	}
}

// Dynamic returns a client of the site's kube-apiserver as admin.
func (s *Site) Dynamic() dynamic.Interface { return s.dyn }

// GetKustomization returns the site's Kustomization, read as admin. It fails the test if the
// read fails. (Kustomization is the field naming it.)
func (s *Site) GetKustomization(t testing.TB) *unstructured.Unstructured {
	t.Helper()
	k, err := s.dyn.Resource(KustomizationGVR).Namespace(Namespace).Get(t.Context(), KustomizationName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubelab: get Kustomization %s of site %s: %v", s.Kustomization, s.Name, err)
	}
	return k
}

// RSS returns the resident memory in bytes of each running process of the lab, keyed "etcd",
// "<site>/kube-apiserver", "<site>/source-controller" and "<site>/kustomize-controller".
func (l *Lab) RSS() (map[string]int64, error) {
	rss := map[string]int64{}
	for _, p := range l.processes() {
		if p.pid() == 0 {
			continue
		}
		n, err := p.rss()
		if err != nil {
			return nil, err
		}
		rss[p.name] = n
	}
	return rss, nil
}

// processes returns every process of the lab that was set up, etcd first.
func (l *Lab) processes() []*process {
	var ps []*process
	if l.etcd != nil {
		ps = append(ps, l.etcd)
	}
	for _, s := range l.order {
		ps = append(ps, s.apiserver, s.source, s.kustomize)
	}
	return ps
}

// fatal shows the end of the logs of procs (those that were set up) and fails the test with err.
func (l *Lab) fatal(t testing.TB, err error, procs ...*process) {
	t.Helper()
	for _, p := range procs {
		if p.ran() {
			t.Logf("kubelab: last %d lines of %s:\n%s", tailLines, p.log, tail(p.log, tailLines))
		}
	}
	l.reported = true
	t.Fatalf("kubelab: %v", err)
}

// stop stops the controllers, then the kube-apiservers, then etcd. If the test failed, it
// first shows the end of every log; a process that exited by itself fails the test.
func (l *Lab) stop(t testing.TB) {
	for _, p := range l.processes() {
		if ok, err := p.exited(); ok {
			t.Errorf("kubelab: %s exited during the test: %v", p.name, err)
		}
	}
	if t.Failed() && !l.reported {
		for _, p := range l.processes() {
			if !p.ran() {
				continue
			}
			t.Logf("kubelab: last %d lines of %s:\n%s", tailLines, p.log, tail(p.log, tailLines))
		}
	}
	stopAll := func(ps ...*process) {
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Go(p.stop)
		}
		wg.Wait()
	}
	var controllers, apiservers []*process
	for _, s := range l.order {
		controllers = append(controllers, s.source, s.kustomize)
		apiservers = append(apiservers, s.apiserver)
	}
	stopAll(controllers...)
	stopAll(apiservers...)
	if l.etcd != nil {
		l.etcd.stop()
	}
}

// Config is a client configuration of the site's kube-apiserver for the admin.
func (s *Site) Config() *rest.Config { return rest.CopyConfig(s.cfg) }

// WriteKubeconfig writes a kubeconfig at path with a context per site (named after the site)
// for a user authenticated by token, such as a ServiceAccount token.
func (l *Lab) WriteKubeconfig(path, user, token string) error {
	return l.writeKubeconfig(path, user, token, l.order)
}

// WaitSynced waits until the site's Kustomization is ready at its generation and has applied
// its GitRepository's artifact, as Start does.
func (s *Site) WaitSynced(ctx context.Context) error { return s.waitSynced(ctx) }
