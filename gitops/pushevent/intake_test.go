package pushevent

import (
	"errors"
	"strings"
	"testing"
)

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) + `"}`)
	secret := []byte("s3cret")
	good := Sign(body, secret)
	tests := []struct {
		name      string
		body      []byte
		signature string
		secret    []byte
		ok        bool
	}{
		{"valid", body, good, secret, true},
		{"wrong secret", body, good, []byte("other"), false},
		{"tampered body", append([]byte(" "), body...), good, secret, false},
		{"missing", body, "", secret, false},
		{"no prefix", body, strings.TrimPrefix(good, "sha256="), secret, false},
		{"not hex", body, "sha256=zz", secret, false},
		{"no secret configured fails closed", body, Sign(body, nil), nil, false},
	}
	for _, tt := range tests {
		err := VerifySignature(tt.body, tt.signature, tt.secret)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrSignature)) {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestParseGeneric(t *testing.T) {
	sha := strings.Repeat("b", 40)
	e, err := ParseGeneric([]byte(`{"repository":"fleet","ref":"refs/heads/main","after":"` + sha + `"}`))
	if err != nil || e.Branch() != "main" || e.After != sha || e.Deleted() {
		t.Fatalf("got %+v, %v", e, err)
	}
	if e, _ := ParseGeneric([]byte(`{"ref":"refs/tags/v1","after":"` + sha + `"}`)); e.Branch() != "" {
		t.Errorf("tag push has branch %q", e.Branch())
	}
	if e, _ := ParseGeneric([]byte(`{"ref":"refs/heads/x","after":"` + strings.Repeat("0", 40) + `"}`)); !e.Deleted() {
		t.Error("deletion not recognised")
	}
	for _, bad := range []string{`{`, `[]`, `{"ref":"refs/heads/main"}`, `{"ref":"refs/heads/main","after":"abc"}`,
		`{"after":"` + sha + `"}`, `{"ref":"refs/heads/main","after":"` + sha + `","extra":1}`} {
		if _, err := ParseGeneric([]byte(bad)); !errors.Is(err, ErrPayload) {
			t.Errorf("ParseGeneric(%s) = %v, want ErrPayload", bad, err)
		}
	}
}

func FuzzParseGeneric(f *testing.F) {
	f.Add([]byte(`{"repository":"fleet","ref":"refs/heads/main","after":"` + strings.Repeat("c", 40) + `"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := ParseGeneric(body)
		if err == nil && (e.Ref == "" || len(e.After) != 40) {
			t.Errorf("accepted %q as %+v", body, e)
		}
	})
}
