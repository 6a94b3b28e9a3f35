package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/fleetwave/fleetwave/rollout"
)

// Checker measures the plan's health checks on a site: Prometheus instant queries and HTTP
// probes. A measurement that cannot be taken (Prometheus or the probe unreachable, a timeout,
// a server error) is Unknown, never a pass.
type Checker struct {
	// Client makes the requests; nil means a client without a global timeout (every check
	// has its own).
	Client *http.Client
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
	// Getenv fills in {env.NAME} in check URLs and queries; nil means os.Getenv. Only the
	// variables named rollout.CheckEnvPrefix* are ever looked up.
	Getenv func(string) string
	// AllowLinkLocal lets checks reach link-local addresses (169.254.0.0/16, fe80::/10), where
	// the clouds serve their instance metadata and credentials (serve
	// --allow-link-local-checks). Off, such a check is Unknown, naming the address.
	AllowLinkLocal bool
}

// maxProbeBody bounds how much of a probe's answer is read to match Body.
const maxProbeBody = 1 << 20

// Run measures one check, already expanded for its site (rollout.Check.ForSite).
func (c *Checker) Run(ctx context.Context, check rollout.Check) rollout.CheckResult {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	check, secrets, err := c.withEnv(check)
	var res rollout.CheckResult
	if err == nil && !c.AllowLinkLocal {
		err = refuseLinkLocalURL(check)
	}
	switch {
	case err != nil:
		res = rollout.CheckResult{Unknown: true, Message: err.Error()}
	case check.Prometheus != nil:
		res = c.prometheus(ctx, *check.Prometheus)
	case check.HTTP != nil:
		res = c.probe(ctx, *check.HTTP)
	default:
		res = rollout.CheckResult{Unknown: true, Message: "check has neither prometheus nor http"}
	}
	res.Name = check.Name
	res.At = now().UTC()
	for _, v := range secrets {
		if len(v) >= 4 {
			res.Message = strings.ReplaceAll(res.Message, v, "xxxxx")
		}
	}
	if len(res.Message) > maxMessage {
		// An error page quoted by a client library must not fill the status, Slack and the
		// revert trailers.
		res.Message = strings.ToValidUTF8(res.Message[:maxMessage], "") + "..."
	}
	return res
}

// withEnv fills in {env.NAME} in the check's URL and query from the worker's environment, and
// returns the values it put in.
func (c *Checker) withEnv(check rollout.Check) (rollout.Check, []string, error) {
	getenv := c.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var all []string
	check, err := check.Rewrite(func(s string) (string, error) {
		out, values, err := rollout.ExpandEnv(s, getenv)
		all = append(all, values...)
		return out, err
	})
	return check, all, err
}

// maxMessage bounds what a check result keeps of a message.
const maxMessage = 300

// RunAll measures every check for the site at once, each within its own timeout; results
// come in the order of checks.
func (c *Checker) RunAll(ctx context.Context, checks []rollout.Check, site rollout.Site) []rollout.CheckResult {
	out := make([]rollout.CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		expanded, err := check.ForSite(site)
		if err != nil {
			out[i] = rollout.CheckResult{Name: check.Name, Unknown: true, Message: err.Error(), At: time.Now().UTC()}
			continue
		}
		wg.Go(func() { out[i] = c.Run(ctx, expanded) })
	}
	wg.Wait()
	return out
}

func (c *Checker) client() *http.Client {
	switch {
	case c.Client != nil:
		return c.Client
	case c.AllowLinkLocal:
		return linkLocalClient
	}
	return defaultClient
}

// defaultClient follows redirects only within the host the plan names: a check must not be
// led to another host (127.0.0.1, a cloud metadata address) whose answer would end up in the
// status, Slack and revert trailers. It never connects to a link-local address (RefuseLinkLocal),
// whatever name led there.
var defaultClient = newClient(false)

// linkLocalClient is defaultClient allowed to reach link-local addresses.
var linkLocalClient = newClient(true)

func newClient(linkLocal bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if !linkLocal {
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: refuseLinkLocal}
		t.DialContext = dialer.DialContext
	}
	return &http.Client{Transport: t, CheckRedirect: sameHostRedirects}
}

// ErrLinkLocal says a check was refused a link-local or cloud metadata address.
var ErrLinkLocal = errors.New("link-local and cloud metadata addresses are refused to checks (serve --allow-link-local-checks allows them)")

// refuseLinkLocal is the dialer's last word before a connection: the address a name resolved
// to, so that no DNS name (or redirect) leads a check to the instance metadata.
func refuseLinkLocal(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip, err := netip.ParseAddr(host); err == nil && LinkLocal(ip) {
		return fmt.Errorf("%s: %w", host, ErrLinkLocal)
	}
	return nil
}

// refuseLinkLocalURL refuses a check whose URL names a link-local address outright: through an
// HTTP proxy the dialer sees only the proxy.
func refuseLinkLocalURL(check rollout.Check) error {
	raw := ""
	switch {
	case check.Prometheus != nil:
		raw = check.Prometheus.URL
	case check.HTTP != nil:
		raw = check.HTTP.URL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil // the request says what is wrong with it
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && LinkLocal(ip) {
		return fmt.Errorf("%s: %w", u.Hostname(), ErrLinkLocal)
	}
	return nil
}

// metadataV6 is AWS's IPv6 instance metadata address, in a unique-local range.
var metadataV6 = netip.MustParseAddr("fd00:ec2::254")

// LinkLocal reports whether ip is link-local (169.254.0.0/16, fe80::/10, and their multicast)
// or a cloud's instance metadata address.
func LinkLocal(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip == metadataV6
}

// sameHostRedirects allows up to 5 redirects to the first request's scheme and host.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	switch {
	case len(via) >= 5:
		return errors.New("stopped after 5 redirects")
	case req.URL.Scheme != first.Scheme || req.URL.Host != first.Host:
		return fmt.Errorf("refused a redirect to another host (%s://%s)", req.URL.Scheme, req.URL.Host)
	}
	return nil
}

func (c *Checker) prometheus(ctx context.Context, p rollout.PrometheusCheck) rollout.CheckResult {
	res := rollout.CheckResult{Threshold: p.Threshold()}
	client, err := promapi.NewClient(promapi.Config{Address: p.URL, Client: c.client()})
	if err != nil {
		res.Unknown, res.Message = true, "prometheus: "+redact(err.Error(), p.URL)
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, timeoutOr(p.Timeout))
	defer cancel()
	api, at := promv1.NewAPI(client), time.Now()
	opts := []promv1.Option{promv1.WithTimeout(timeoutOr(p.Timeout))}
	if p.StaleAfter > 0 {
		opts = append(opts, promv1.WithLookbackDelta(p.StaleAfter))
	}
	value, _, _, err := api.Query(ctx, p.Query, at, opts...)
	if err == nil && p.StaleAfter > 0 && empty(value) {
		// Nothing within staleAfter. If Prometheus still has older samples, the site (or its
		// scrape) went quiet: that says nothing about its health.
		var old model.Value
		if old, _, _, err = api.Query(ctx, p.Query, at, promv1.WithTimeout(timeoutOr(p.Timeout))); err == nil && !empty(old) {
			res.Unknown, res.Message = true, fmt.Sprintf("stale: the query has no sample newer than %s (staleAfter)", p.StaleAfter)
			return res
		}
	}
	if err != nil {
		var pe *promv1.Error
		if errors.As(err, &pe) && pe.Type == promv1.ErrBadData {
			// Prometheus answered that the query is wrong: the check fails. Execution errors
			// (a backend in trouble, too many samples) say nothing about the site: Unknown.
			res.Message = fmt.Sprintf("prometheus rejected the query: %s", pe.Msg)
			return res
		}
		res.Unknown, res.Message = true, "prometheus: "+redact(err.Error(), p.URL)
		return res
	}
	samples, err := sampleValues(value)
	if err != nil {
		res.Message = err.Error()
		return res
	}
	if len(samples) == 0 {
		res.OK = p.AllowEmpty
		res.Message = "the query returned no samples"
		if p.AllowEmpty {
			res.Message += " (allowEmpty)"
		}
		return res
	}
	// Every sample must be within the thresholds. The value reported is the sample that
	// decided: the worst one outside the thresholds, or else the one closest to them.
	res.OK, res.Value = true, samples[0]
	for _, v := range samples {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			// The value is not kept: JSON (and so Temporal payloads) cannot carry NaN or Inf.
			res.OK, res.Value, res.Message = false, 0, fmt.Sprintf("the query returned %g", v)
			return res
		}
		switch {
		case !p.Within(v) && res.OK:
			res.OK, res.Value = false, v
		case !p.Within(v) == !res.OK && worse(p, v, res.Value):
			res.Value = v
		}
	}
	if len(samples) > 1 {
		res.Message = fmt.Sprintf("worst of %d samples", len(samples))
	}
	return res
}

// worse reports whether v is further toward (or past) a threshold than cur.
func worse(p rollout.PrometheusCheck, v, cur float64) bool {
	if p.Max != nil {
		return v > cur
	}
	return v < cur
}

// empty reports whether an instant query found nothing.
func empty(v model.Value) bool {
	vec, ok := v.(model.Vector)
	return ok && len(vec) == 0
}

// sampleValues flattens an instant query result.
func sampleValues(v model.Value) ([]float64, error) {
	switch v := v.(type) {
	case model.Vector:
		out := make([]float64, len(v))
		for i, s := range v {
			out[i] = float64(s.Value)
		}
		return out, nil
	case *model.Scalar:
		return []float64{float64(v.Value)}, nil
	default:
		return nil, fmt.Errorf("the query returned a %s; use an expression that returns a vector or a scalar", v.Type())
	}
}

func (c *Checker) probe(ctx context.Context, h rollout.HTTPCheck) rollout.CheckResult {
	res := rollout.CheckResult{Threshold: fmt.Sprintf("status %d", h.Status)}
	if h.Body != "" {
		res.Threshold += fmt.Sprintf(", body ~ %q", h.Body)
	}
	ctx, cancel := context.WithTimeout(ctx, timeoutOr(h.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		res.Unknown, res.Message = true, redact(err.Error(), h.URL)
		return res
	}
	resp, err := c.client().Do(req)
	if err != nil {
		res.Unknown, res.Message = true, redact(err.Error(), h.URL)
		return res
	}
	defer func() { _ = resp.Body.Close() }()
	res.Value = float64(resp.StatusCode)
	if resp.StatusCode != h.Status {
		res.Message = fmt.Sprintf("GET %s answered %s", rollout.RedactURL(h.URL), resp.Status)
		return res
	}
	if h.Body != "" {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
		if err != nil {
			res.Unknown, res.Message = true, "reading the body: "+redact(err.Error(), h.URL)
			return res
		}
		re, err := regexp.Compile(h.Body)
		if err != nil {
			res.Message = "body pattern: " + err.Error()
			return res
		}
		if !re.Match(body) {
			res.Message = fmt.Sprintf("body %q does not match %q", snippet(body), h.Body)
			return res
		}
	}
	res.OK = true
	return res
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return rollout.DefaultCheckTimeout
	}
	return d
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// redact replaces raw (a URL that may carry a password or a token in its query) in msg by its
// redacted form, and any secret left over, so credentials never reach a status or a log.
func redact(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return msg
	}
	msg = strings.ReplaceAll(msg, raw, rollout.RedactURL(raw))
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if len(v) >= 4 {
				msg = strings.ReplaceAll(msg, v, "xxxxx")
			}
		}
	}
	return msg
}
