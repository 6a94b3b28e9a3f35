package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// promServer answers instant queries with the given Prometheus API body and status. The real
// Prometheus is exercised by the end-to-end tests; this pins the result handling.
func promServer(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func vector(values ...string) string {
	var samples []string
	for i, v := range values {
		samples = append(samples, fmt.Sprintf(`{"metric":{"pod":"p%d"},"value":[1700000000,"%s"]}`, i, v))
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(samples, ",") + `]}}`
}

func ptr(f float64) *float64 { return &f }

func TestPrometheusCheck(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		status  int
		body    string
		check   rollout.PrometheusCheck
		ok      bool
		unknown bool
		value   float64
		message string
	}{
		{name: "below max", status: 200, body: vector("0.004"), check: rollout.PrometheusCheck{Max: ptr(0.01)}, ok: true, value: 0.004},
		{name: "above max", status: 200, body: vector("0.2"), check: rollout.PrometheusCheck{Max: ptr(0.01)}, value: 0.2},
		{name: "worst sample decides", status: 200, body: vector("0.001", "0.3", "0.02"), check: rollout.PrometheusCheck{Max: ptr(0.01)}, value: 0.3, message: "worst of 3 samples"},
		{name: "closest in range reported", status: 200, body: vector("0.001", "0.009"), check: rollout.PrometheusCheck{Max: ptr(0.01)}, ok: true, value: 0.009},
		{name: "below min", status: 200, body: vector("0.95"), check: rollout.PrometheusCheck{Min: ptr(0.99)}, value: 0.95},
		{name: "scalar", status: 200, body: `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}`, check: rollout.PrometheusCheck{Min: ptr(1)}, ok: true, value: 1},
		{name: "empty fails", status: 200, body: vector(), check: rollout.PrometheusCheck{Max: ptr(1)}, message: "no samples"},
		{name: "empty allowed", status: 200, body: vector(), check: rollout.PrometheusCheck{Max: ptr(1), AllowEmpty: true}, ok: true, message: "allowEmpty"},
		{name: "NaN fails", status: 200, body: vector("NaN"), check: rollout.PrometheusCheck{Max: ptr(1)}, message: "NaN"},
		{name: "execution error is unknown", status: 422, body: `{"status":"error","errorType":"execution","error":"query processing would load too many samples"}`, check: rollout.PrometheusCheck{Max: ptr(1)}, unknown: true},
		{name: "bad query fails", status: 400, body: `{"status":"error","errorType":"bad_data","error":"parse error at char 4"}`, check: rollout.PrometheusCheck{Max: ptr(1)}, message: "parse error at char 4"},
		{name: "server error is unknown", status: 503, body: `{"status":"error","errorType":"unavailable","error":"overloaded"}`, check: rollout.PrometheusCheck{Max: ptr(1)}, unknown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Checker{Now: func() time.Time { return at }}
			tt.check.URL = promServer(t, tt.status, tt.body)
			tt.check.Query = "up"
			res := c.Run(context.Background(), rollout.Check{Name: "q", Prometheus: &tt.check})
			if res.OK != tt.ok || res.Unknown != tt.unknown {
				t.Fatalf("OK=%v Unknown=%v, want %v %v: %s", res.OK, res.Unknown, tt.ok, tt.unknown, res)
			}
			if !tt.unknown && res.Value != tt.value {
				t.Errorf("Value = %g, want %g", res.Value, tt.value)
			}
			if !strings.Contains(res.Message, tt.message) {
				t.Errorf("Message = %q, want it to contain %q", res.Message, tt.message)
			}
			if res.Name != "q" || !res.At.Equal(at) || res.Threshold != tt.check.Threshold() {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

func TestPrometheusUnreachableIsUnknown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := strings.Replace(srv.URL, "http://", "http://admin:hunter2@", 1)
	srv.Close()
	res := (&Checker{}).Run(context.Background(), rollout.Check{Name: "q",
		Prometheus: &rollout.PrometheusCheck{URL: url, Query: "up", Max: ptr(1)}})
	if !res.Unknown || res.OK {
		t.Fatalf("result = %s, want unknown", res)
	}
	if strings.Contains(res.Message, "hunter2") {
		t.Errorf("message leaks the password: %s", res.Message)
	}
}

func TestTokensInQueriesAreRedacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	res := (&Checker{}).Run(context.Background(), rollout.Check{Name: "smoke", HTTP: &rollout.HTTPCheck{URL: srv.URL + "/healthz?token=s3cr3t-token", Status: 200}})
	if res.OK || strings.Contains(res.Message, "s3cr3t-token") || !strings.Contains(res.Message, "token=xxxxx") {
		t.Errorf("message %q", res.Message)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL + "/healthz?token=s3cr3t-token"
	down.Close()
	res = (&Checker{}).Run(context.Background(), rollout.Check{Name: "smoke", HTTP: &rollout.HTTPCheck{URL: url, Status: 200}})
	if !res.Unknown || strings.Contains(res.Message, "s3cr3t-token") {
		t.Errorf("unreachable message %q", res.Message)
	}
}

func TestHTTPCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, "ok version=1.2.3")
		case "/slow":
			time.Sleep(300 * time.Millisecond)
			fmt.Fprint(w, "ok")
		default:
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct {
		name        string
		check       rollout.HTTPCheck
		ok, unknown bool
		value       float64
		message     string
	}{
		{name: "status", check: rollout.HTTPCheck{URL: srv.URL + "/ok", Status: 200}, ok: true, value: 200},
		{name: "body matches", check: rollout.HTTPCheck{URL: srv.URL + "/ok", Status: 200, Body: `version=1\.2`}, ok: true, value: 200},
		{name: "body differs", check: rollout.HTTPCheck{URL: srv.URL + "/ok", Status: 200, Body: `version=2`}, value: 200, message: `does not match`},
		{name: "wrong status", check: rollout.HTTPCheck{URL: srv.URL + "/bad", Status: 200}, value: 503, message: "503 Service Unavailable"},
		{name: "expected non-200", check: rollout.HTTPCheck{URL: srv.URL + "/bad", Status: 503}, ok: true, value: 503},
		{name: "timeout is unknown", check: rollout.HTTPCheck{URL: srv.URL + "/slow", Status: 200, Timeout: 50 * time.Millisecond}, unknown: true, message: "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := (&Checker{}).Run(context.Background(), rollout.Check{Name: "smoke", HTTP: &tt.check})
			if res.OK != tt.ok || res.Unknown != tt.unknown {
				t.Fatalf("OK=%v Unknown=%v, want %v %v: %s", res.OK, res.Unknown, tt.ok, tt.unknown, res)
			}
			if res.Value != tt.value {
				t.Errorf("Value = %g, want %g", res.Value, tt.value)
			}
			if !strings.Contains(res.Message, tt.message) {
				t.Errorf("Message = %q, want it to contain %q", res.Message, tt.message)
			}
		})
	}
}

func TestRunAllExpandsTemplates(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path)
	}))
	defer srv.Close()
	checks := []rollout.Check{
		{Name: "a", HTTP: &rollout.HTTPCheck{URL: srv.URL + "/{site}/{labels.region}", Status: 200}},
		{Name: "b", HTTP: &rollout.HTTPCheck{URL: srv.URL + "/{labels.zone}", Status: 200}},
	}
	res := (&Checker{}).RunAll(context.Background(), checks, rollout.Site{Name: "ams-1", Labels: map[string]string{"region": "eu"}})
	if len(got) != 1 || got[0] != "/ams-1/eu" {
		t.Errorf("requests = %v", got)
	}
	if !res[0].OK || !res[1].Unknown || !strings.Contains(res[1].Message, `no label "zone"`) {
		t.Errorf("results = %v", res)
	}
}

// TestChecksStayOnTheirHost: a check follows redirects within its own host only. A redirect
// to another host (here another port of 127.0.0.1, as a metadata address would be) is refused
// before any request reaches it, and the check is Unknown; a long error page quoted by the
// Prometheus client is cut short in the message.
func TestChecksStayOnTheirHost(t *testing.T) {
	var elsewhere int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere++
		fmt.Fprint(w, `{"secret":"instance credentials"}`)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/latest/meta-data", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusMovedPermanently)
		case "/ok":
			fmt.Fprint(w, "ok")
		case "/api/v1/query":
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>"+strings.Repeat("upstream trouble ", 10000)+"</html>")
		}
	}))
	defer srv.Close()

	res := (&Checker{}).Run(context.Background(), rollout.Check{Name: "smoke", HTTP: &rollout.HTTPCheck{URL: srv.URL + "/away", Status: 200}})
	if res.OK || !res.Unknown || !strings.Contains(res.Message, "refused a redirect to another host") || strings.Contains(res.Message, "credentials") {
		t.Errorf("redirect away: %s", res)
	}
	if elsewhere != 0 {
		t.Errorf("the other host got %d requests", elsewhere)
	}
	if res := (&Checker{}).Run(context.Background(), rollout.Check{Name: "smoke", HTTP: &rollout.HTTPCheck{URL: srv.URL + "/moved", Status: 200}}); !res.OK {
		t.Errorf("redirect within the host: %s", res)
	}
	res = (&Checker{}).Run(context.Background(), rollout.Check{Name: "errors", Prometheus: &rollout.PrometheusCheck{URL: srv.URL, Query: "up", Max: ptr(1)}})
	if !res.Unknown || len(res.Message) > maxMessage+3 {
		t.Errorf("error page: unknown %v, message of %d bytes: %.120s", res.Unknown, len(res.Message), res.Message)
	}
}

// TestChecksTakeSecretsFromTheEnvironment: {env.NAME} is filled in from the worker's
// environment when the check is measured; the value reaches the server but never a message,
// and a variable that is not set makes the check Unknown, naming it.
func TestChecksTakeSecretsFromTheEnvironment(t *testing.T) {
	const token = "tok-e2e-98765"
	var seen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.URL.Query().Get("token")
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	env := map[string]string{"FLEETWAVE_CHECK_PROBE_TOKEN": token}
	c := &Checker{Getenv: func(k string) string { return env[k] }}
	check := rollout.Check{Name: "smoke", HTTP: &rollout.HTTPCheck{URL: srv.URL + "/{env.FLEETWAVE_CHECK_PROBE_TOKEN}/health?token={env.FLEETWAVE_CHECK_PROBE_TOKEN}", Status: 200}}
	res := c.Run(context.Background(), check)
	if seen != token {
		t.Errorf("the server got token %q, want the environment's", seen)
	}
	if res.OK || strings.Contains(res.Message, token) {
		t.Errorf("result %s: the token shows", res)
	}
	delete(env, "FLEETWAVE_CHECK_PROBE_TOKEN")
	res = c.Run(context.Background(), check)
	if !res.Unknown || !strings.Contains(res.Message, "environment variable FLEETWAVE_CHECK_PROBE_TOKEN is not set on the worker") {
		t.Errorf("unset variable: %s", res)
	}
}

// lookbackServer is a Prometheus whose one series was last scraped age ago: an instant query
// finds it only when its lookback (lookback_delta, else Prometheus's 5 minutes) reaches back
// that far, as in Prometheus 2.43 and later.
func lookbackServer(t *testing.T, age time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse form: %v", err)
		}
		lookback := 5 * time.Minute
		if s := r.Form.Get("lookback_delta"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				t.Errorf("lookback_delta %q: %v", s, err)
			}
			lookback = d
		}
		w.Header().Set("Content-Type", "application/json")
		if age <= lookback {
			fmt.Fprint(w, vector("0.001"))
			return
		}
		fmt.Fprint(w, vector())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestPrometheusStaleSamplesAreUnknown(t *testing.T) {
	tests := []struct {
		name        string
		age         time.Duration
		staleAfter  time.Duration
		allowEmpty  bool
		ok, unknown bool
		message     string
	}{
		{name: "fresh", age: 10 * time.Second, staleAfter: time.Minute, ok: true},
		{name: "stale", age: 3 * time.Minute, staleAfter: time.Minute, unknown: true, message: "stale: the query has no sample newer than 1m0s"},
		{name: "stale never passes as empty", age: 3 * time.Minute, staleAfter: time.Minute, allowEmpty: true, unknown: true, message: "stale"},
		{name: "off leaves Prometheus's lookback", age: 3 * time.Minute, ok: true},
		{name: "gone for good is empty", age: 10 * time.Minute, staleAfter: time.Minute, message: "no samples"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := (&Checker{}).Run(context.Background(), rollout.Check{Name: "q", Prometheus: &rollout.PrometheusCheck{
				URL: lookbackServer(t, tt.age), Query: "up", Max: ptr(1), AllowEmpty: tt.allowEmpty, StaleAfter: tt.staleAfter}})
			if res.OK != tt.ok || res.Unknown != tt.unknown || !strings.Contains(res.Message, tt.message) {
				t.Fatalf("result = %s (OK=%v Unknown=%v), want OK=%v Unknown=%v with %q", res, res.OK, res.Unknown, tt.ok, tt.unknown, tt.message)
			}
		})
	}
}

// TestChecksRefuseLinkLocal: a check never reaches a link-local or cloud metadata address,
// named outright or reached through a name (the dialer sees the address), unless serve allows it.
func TestChecksRefuseLinkLocal(t *testing.T) {
	c := &Checker{}
	for _, url := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://[fe80::1]:8080/x"} {
		res := c.Run(context.Background(), rollout.Check{Name: "smoke", HTTP: &rollout.HTTPCheck{URL: url, Status: 200}})
		if !res.Unknown || !strings.Contains(res.Message, "link-local and cloud metadata addresses are refused") {
			t.Errorf("%s: %+v, want Unknown, refused", url, res)
		}
	}
	// The dialer refuses what a name resolved to: the check above never got that far.
	_, err := newClient(false).Get("http://169.254.169.254:9/")
	if !errors.Is(err, ErrLinkLocal) {
		t.Errorf("dial 169.254.169.254: %v, want ErrLinkLocal", err)
	}
	for addr, want := range map[string]bool{"169.254.0.1:80": true, "[fe80::1%eth0]:80": true, "[fd00:ec2::254]:80": true,
		"[::ffff:169.254.169.254]:80": true, "127.0.0.1:80": false, "10.0.0.1:443": false, "[fd00::1]:80": false} {
		if got := refuseLinkLocal("tcp", addr, nil) != nil; got != want {
			t.Errorf("refuseLinkLocal(%s) refused %v, want %v", addr, got, want)
		}
	}
	// Allowed: the request goes out (and fails on its own, nothing listens there).
	res := (&Checker{AllowLinkLocal: true}).Run(context.Background(), rollout.Check{Name: "smoke",
		HTTP: &rollout.HTTPCheck{URL: "http://169.254.169.254:9/", Status: 200, Timeout: 200 * time.Millisecond}})
	if strings.Contains(res.Message, "refused to checks") {
		t.Errorf("allowed: %+v", res)
	}
}

// TestChecksReadOnlyTheirVariables: a check reads only FLEETWAVE_CHECK_* variables; any other
// name (the git token, the Slack signing secret) is never looked up, and the check is Unknown.
func TestChecksReadOnlyTheirVariables(t *testing.T) {
	looked := map[string]bool{}
	c := &Checker{Getenv: func(name string) string { looked[name] = true; return "s3cret-value" }}
	res := c.Run(context.Background(), rollout.Check{Name: "smoke", HTTP: &rollout.HTTPCheck{URL: "http://127.0.0.1:9/?s={env.FLEETWAVE_SLACK_SIGNING_SECRET}", Status: 200}})
	if !res.Unknown || !strings.Contains(res.Message, "a check may read only the worker's variables named FLEETWAVE_CHECK_*") || len(looked) > 0 {
		t.Errorf("result %+v, looked up %v", res, looked)
	}
}
