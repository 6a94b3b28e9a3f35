package rollout

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Check is a health check run against every site of a wave on every health round of its bake.
// Exactly one of Prometheus and HTTP is set. Strings may hold the templates {site} (the site
// name) and {labels.KEY} (the site's label KEY); ForSite expands them.
type Check struct {
	Name       string
	Prometheus *PrometheusCheck `json:",omitempty"`
	HTTP       *HTTPCheck       `json:",omitempty"`
}

// PrometheusCheck is an instant query through the Prometheus HTTP API. Every sample of the
// result must lie within Min and Max (those set). An empty result fails the check unless
// AllowEmpty is set: "no data" must not pass for "no errors" by accident.
type PrometheusCheck struct {
	URL        string
	Query      string
	Min        *float64 `json:",omitempty"`
	Max        *float64 `json:",omitempty"`
	AllowEmpty bool     `json:",omitempty"`
	Timeout    time.Duration
	// StaleAfter is the age past which a sample no longer counts: the query's lookback. A
	// query that finds samples only further back is Unknown (the site, or its scrape, went
	// quiet), never a pass. 0 leaves Prometheus's own lookback (5 minutes by default).
	StaleAfter time.Duration `json:",omitempty"`
}

// HTTPCheck is a GET request that must answer Status and, when Body is set, a body matching
// that regular expression, within Timeout.
type HTTPCheck struct {
	URL     string
	Status  int
	Body    string `json:",omitempty"`
	Timeout time.Duration
}

// DefaultStaleAfter is a Prometheus check's staleAfter when the plan does not say: two health
// intervals, but never under a minute, so that a site scraped every 30 s is not stale between
// two scrapes.
func DefaultStaleAfter(interval time.Duration) time.Duration {
	return max(2*interval, time.Minute)
}

// DefaultCheckTimeout bounds one measurement when the check does not say; MaxCheckTimeout is
// the most a check may ask for.
const (
	DefaultCheckTimeout = 10 * time.Second
	MaxCheckTimeout     = 30 * time.Second
)

// Threshold describes what a Prometheus check expects, e.g. "<= 0.01" or ">= 0.99, <= 1".
func (p PrometheusCheck) Threshold() string {
	var parts []string
	if p.Min != nil {
		parts = append(parts, fmt.Sprintf(">= %g", *p.Min))
	}
	if p.Max != nil {
		parts = append(parts, fmt.Sprintf("<= %g", *p.Max))
	}
	return strings.Join(parts, ", ")
}

// envRE matches {env.NAME}: a value of the worker's environment, filled in only when the check
// is measured, so that credentials stay out of the plan, git and every workflow history.
var envRE = regexp.MustCompile(`\{env\.([A-Za-z_][A-Za-z0-9_]*)\}`)

// CheckEnvPrefix is the prefix of the worker's environment variables a check may read
// ({env.FLEETWAVE_CHECK_PROBE_TOKEN}). A plan is written by whoever can push to the fleet
// repository; it must not read the worker's own secrets (the git token, the webhook secret, the
// Slack signing secret, from which the vote-proof and report-link keys derive) and send them
// to a URL it chose. The operator allows a variable by giving it this prefix.
const CheckEnvPrefix = "FLEETWAVE_CHECK_"

// EnvAllowed reports whether a check may read the worker's environment variable name.
func EnvAllowed(name string) bool {
	return strings.HasPrefix(name, CheckEnvPrefix) && len(name) > len(CheckEnvPrefix)
}

// envRefused is why a check may not read the variable name.
func envRefused(name string) error {
	return fmt.Errorf("{env.%s}: a check may read only the worker's variables named %s*: a plan must not reach the worker's own secrets; set the value as %s%s on the worker and write {env.%s%s}",
		name, CheckEnvPrefix, CheckEnvPrefix, name, CheckEnvPrefix, name)
}

// CheckEnvNames returns an error naming the first {env.NAME} in s that a check may not read.
func CheckEnvNames(s string) error {
	for _, m := range envRE.FindAllStringSubmatch(s, -1) {
		if !EnvAllowed(m[1]) {
			return envRefused(m[1])
		}
	}
	return nil
}

// ExpandEnv replaces {env.NAME} in s with getenv(NAME). It returns the values it put in, so
// messages can hide them, and an error naming a variable that is not set, or that a check may
// not read (EnvAllowed: that one is never looked up).
func ExpandEnv(s string, getenv func(string) string) (string, []string, error) {
	if err := CheckEnvNames(s); err != nil {
		return "", nil, err
	}
	var values []string
	var missing string
	out := envRE.ReplaceAllStringFunc(s, func(m string) string {
		name := envRE.FindStringSubmatch(m)[1]
		v := getenv(name)
		if v == "" && missing == "" {
			missing = name
		}
		values = append(values, v)
		return v
	})
	if missing != "" {
		return "", nil, fmt.Errorf("environment variable %s is not set on the worker", missing)
	}
	return out, values, nil
}

// Within reports whether v satisfies the thresholds.
func (p PrometheusCheck) Within(v float64) bool {
	return (p.Min == nil || v >= *p.Min) && (p.Max == nil || v <= *p.Max)
}

// templateRE matches the placeholders checks may use. Other braces are left alone: PromQL
// selectors such as {job="api"} are not templates.
var templateRE = regexp.MustCompile(`\{(site|labels\.[A-Za-z0-9_./-]+)\}`)

// Expand replaces {site} and {labels.KEY} in s for the site. A label the site does not have
// is an error, so a typo cannot turn into a query that matches nothing.
func Expand(s string, site Site) (string, error) {
	var missing []string
	out := templateRE.ReplaceAllStringFunc(s, func(m string) string {
		key := m[1 : len(m)-1]
		if key == "site" {
			return site.Name
		}
		label := strings.TrimPrefix(key, "labels.")
		v, ok := site.Labels[label]
		if !ok {
			missing = append(missing, label)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("site %q has no label %q", site.Name, missing[0])
	}
	return out, nil
}

// ForSite returns the check with its templates expanded for the site.
func (c Check) ForSite(site Site) (Check, error) {
	out, err := c.Rewrite(func(s string) (string, error) { return Expand(s, site) })
	if err != nil {
		return Check{}, fmt.Errorf("check %s: %w", c.Name, err)
	}
	return out, nil
}

// Rewrite returns the check with f applied to every string that may hold a template: the
// Prometheus URL and query, the HTTP URL. It stops at f's first error.
func (c Check) Rewrite(f func(string) (string, error)) (Check, error) {
	out := c
	var err error
	apply := func(s string) string {
		if err != nil {
			return s
		}
		var r string
		if r, err = f(s); err != nil {
			return s
		}
		return r
	}
	if p := c.Prometheus; p != nil {
		cp := *p
		cp.URL, cp.Query = apply(p.URL), apply(p.Query)
		out.Prometheus = &cp
	}
	if h := c.HTTP; h != nil {
		ch := *h
		ch.URL = apply(h.URL)
		out.HTTP = &ch
	}
	return out, err
}

// RedactURL hides the password and the query values of a check URL (tokens often travel
// there), for messages.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
