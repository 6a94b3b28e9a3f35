// Package pushevent authenticates and decodes the push webhooks that start rollouts: GitHub,
// GitLab, Gitea and Forgejo payloads, recognised by their headers, and fleetwave's own generic
// format, signed with SignatureHeader.
//
// Authentication comes before decoding, and an empty secret refuses everything, so intake
// fails closed. Parse reports what went wrong as a sentinel an HTTP front end maps to a status
// code: ErrSignature (401), ErrNotPush (an authenticated event that starts nothing) or
// ErrPayload (400).
//
//	ev, err := pushevent.Parse(r.Header, body, secret)
//	switch {
//	case errors.Is(err, pushevent.ErrSignature):
//		// 401
//	case errors.Is(err, pushevent.ErrNotPush):
//		// 202, nothing started
//	case err != nil:
//		// 400
//	}
//
// The package parses and verifies only; which branches roll out is for the caller to decide
// (see Event.Branch and Event.Deleted).
package pushevent
