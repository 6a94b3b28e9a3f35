package gitops

import (
	"net/url"
	"strings"
)

// redactURL returns raw without credentials, plus the credential strings it
// held. HTTP(S) user names are dropped too, because tokens are often sent as
// the user name (https://<token>@host/...); an SSH user name is kept.
func redactURL(raw string) (safe string, secrets []string) {
	if !strings.Contains(raw, "://") {
		return raw, nil // scp-like git@host:path or a local path: no password
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable: hide everything between the scheme and the last '@'
		// of the authority.
		scheme, rest, _ := strings.Cut(raw, "://")
		host := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			host = rest[:i]
		}
		if i := strings.LastIndexByte(host, '@'); i >= 0 {
			return scheme + "://" + rest[i+1:], []string{host[:i]}
		}
		return raw, nil
	}
	if u.User == nil {
		return raw, nil
	}
	p, hasPassword := u.User.Password()
	if hasPassword && p != "" {
		secrets = append(secrets, p)
	}
	switch u.Scheme {
	case "http", "https":
		if name := u.User.Username(); name != "" && !hasPassword {
			secrets = append(secrets, name) // a token in the user name
		}
		u.User = nil
	default:
		u.User = url.User(u.User.Username())
	}
	return u.String(), secrets
}

// redactedError keeps the chain of err for errors.Is while its text has
// credentials replaced.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr replaces the raw url and every secret in err's text; transports
// sometimes quote the url they were given.
func redactErr(err error, raw, safe string, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	if raw != safe {
		clean = strings.ReplaceAll(clean, raw, safe)
	}
	for _, s := range secrets {
		if len(s) >= 3 { // do not mangle text over a one-letter user name
			clean = strings.ReplaceAll(clean, s, "xxxxx")
			if esc := url.QueryEscape(s); esc != s {
				clean = strings.ReplaceAll(clean, esc, "xxxxx")
			}
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}
