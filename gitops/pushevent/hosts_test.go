package pushevent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"testing"
)

var hookSecret = []byte("It's a Secret to Everybody")

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/hooks/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexHMAC(body, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// signed returns the headers a host sends with body, signed with secret.
func signed(host, event string, body, secret []byte) http.Header {
	h := http.Header{}
	switch host {
	case HostGitHub:
		h.Set("X-GitHub-Event", event)
		h.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		h.Set("X-Hub-Signature-256", "sha256="+hexHMAC(body, secret))
	case HostGitLab:
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e")
		h.Set("X-Gitlab-Token", string(secret))
	case HostGitea:
		h.Set("X-Gitea-Event", event)
		h.Set("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473")
		h.Set("X-Gitea-Signature", hexHMAC(body, secret))
	case "forgejo":
		h.Set("X-Forgejo-Event", event)
		h.Set("X-Forgejo-Signature", hexHMAC(body, secret))
	case HostGeneric:
		h.Set(SignatureHeader, Sign(body, secret))
	}
	return h
}

func TestParseHosts(t *testing.T) {
	generic := []byte(`{"repository":"fleet","ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}`)
	tests := []struct {
		name, host, event string
		body              []byte
		secret            []byte // signing secret; hookSecret when nil
		wantErr           error
		want              Event
	}{
		{name: "github push", host: HostGitHub, event: "push", body: fixture(t, "github-push.json"),
			want: Event{Host: HostGitHub, Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Repository: "acme/fleet", Pusher: "ada", Ref: "refs/heads/main",
				Before: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", After: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}},
		{name: "github branch deletion", host: HostGitHub, event: "push", body: fixture(t, "github-delete.json"),
			want: Event{Host: HostGitHub, Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Repository: "acme/fleet", Pusher: "ada", Ref: "refs/heads/main",
				Before: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", After: "0000000000000000000000000000000000000000"}},
		{name: "github ping", host: HostGitHub, event: "ping", body: fixture(t, "github-ping.json"), wantErr: ErrNotPush},
		{name: "github forged", host: HostGitHub, event: "push", body: fixture(t, "github-push.json"), secret: []byte("guess"), wantErr: ErrSignature},
		{name: "gitlab push", host: HostGitLab, event: "Push Hook", body: fixture(t, "gitlab-push.json"),
			want: Event{Host: HostGitLab, Delivery: "13792a34-cac6-4fda-95a8-c58e00a3954e", Repository: "platform/fleet", Pusher: "jsmith", Ref: "refs/heads/main",
				Before: "95790bf891e76fee5e1747ab589903a6a1f80f22", After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}},
		{name: "gitlab tag push", host: HostGitLab, event: "Tag Push Hook", body: fixture(t, "gitlab-tag-push.json"), wantErr: ErrNotPush},
		{name: "gitlab wrong token", host: HostGitLab, event: "Push Hook", body: fixture(t, "gitlab-push.json"), secret: []byte("guess"), wantErr: ErrSignature},
		{name: "gitea push", host: HostGitea, event: "push", body: fixture(t, "gitea-push.json"),
			want: Event{Host: HostGitea, Delivery: "f6266f16-1bf3-46a5-9ea4-602e06ead473", Repository: "acme/fleet", Pusher: "ada", Ref: "refs/heads/main",
				Before: "28e1879d029cb852e4844d9c718537df08844e03", After: "bffeb74224043ba2feb48d137756c8a9331c449a"}},
		{name: "forgejo push", host: "forgejo", event: "push", body: fixture(t, "gitea-push.json"),
			want: Event{Host: HostGitea, Repository: "acme/fleet", Pusher: "ada", Ref: "refs/heads/main",
				Before: "28e1879d029cb852e4844d9c718537df08844e03", After: "bffeb74224043ba2feb48d137756c8a9331c449a"}},
		{name: "gitea forged", host: HostGitea, event: "push", body: fixture(t, "gitea-push.json"), secret: []byte("guess"), wantErr: ErrSignature},
		{name: "generic push", host: HostGeneric, body: generic,
			want: Event{Host: HostGeneric, Repository: "fleet", Ref: "refs/heads/main", After: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}},
		{name: "generic forged", host: HostGeneric, body: generic, secret: []byte("guess"), wantErr: ErrSignature},
		{name: "signed garbage", host: HostGitHub, event: "push", body: []byte(`{"ref": 1}`), wantErr: ErrPayload},
		{name: "signed push without after", host: HostGitea, event: "push", body: []byte(`{"ref":"refs/heads/main"}`), wantErr: ErrPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := tt.secret
			if secret == nil {
				secret = hookSecret
			}
			got, err := Parse(signed(tt.host, tt.event, tt.body, secret), tt.body, hookSecret)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseFailsClosed(t *testing.T) {
	body := fixture(t, "github-push.json")
	for _, host := range []string{HostGitHub, HostGitLab, HostGitea, HostGeneric} {
		// No secret configured: even a request "signed" with the empty key is refused.
		if _, err := Parse(signed(host, "push", body, nil), body, nil); !errors.Is(err, ErrSignature) {
			t.Errorf("%s with no secret: err = %v, want ErrSignature", host, err)
		}
		// Headers of a host but no signature at all.
		h := signed(host, "push", body, hookSecret)
		for _, k := range []string{"X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature", SignatureHeader} {
			h.Del(k)
		}
		if _, err := Parse(h, body, hookSecret); !errors.Is(err, ErrSignature) {
			t.Errorf("%s unsigned: err = %v, want ErrSignature", host, err)
		}
	}
	// A valid signature over a different body (a replayed header on a tampered payload).
	h := signed(HostGitHub, "push", fixture(t, "github-ping.json"), hookSecret)
	h.Set("X-GitHub-Event", "push")
	if _, err := Parse(h, body, hookSecret); !errors.Is(err, ErrSignature) {
		t.Errorf("signature of another body: err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"github-push.json", "gitlab-push.json", "gitea-push.json", "github-delete.json"} {
		f.Add(fixture(f, name), uint8(0))
		f.Add(fixture(f, name), uint8(1))
		f.Add(fixture(f, name), uint8(2))
	}
	f.Add([]byte(`{"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}`), uint8(3))
	hosts := []string{HostGitHub, HostGitLab, HostGitea, HostGeneric}
	events := map[string]string{HostGitHub: "push", HostGitLab: "Push Hook", HostGitea: "push"}
	f.Fuzz(func(t *testing.T, body []byte, pick uint8) {
		host := hosts[int(pick)%len(hosts)]
		e, err := Parse(signed(host, events[host], body, hookSecret), body, hookSecret)
		if errors.Is(err, ErrSignature) {
			t.Fatalf("a correctly signed %s body was refused: %v", host, err)
		}
		if err == nil && (e.Ref == "" || len(e.After) != 40) {
			t.Fatalf("accepted %q as %+v", body, e)
		}
	})
}
