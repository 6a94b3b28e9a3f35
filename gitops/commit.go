package gitops

import (
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Trailer keys written by fleetwave.
const (
	// TrailerRollout names the rollout that wrote a promotion or revert commit.
	TrailerRollout = "Fleetwave-Rollout"
	// TrailerSource is the full sha of the source commit a promotion commit promotes.
	TrailerSource = "Fleetwave-Source"
	// TrailerWave names the wave a promotion commit belongs to.
	TrailerWave = "Fleetwave-Wave"
	// TrailerReason says why a revert commit was written.
	TrailerReason = "Fleetwave-Reason"
)

// CommitInfo describes one commit.
type CommitInfo struct {
	// SHA is the full commit sha.
	SHA string
	// Subject is the first line of the message.
	Subject string
	// Message is the whole commit message.
	Message string
	// Author is "Name <email>".
	Author string
	// Time is the author time.
	Time time.Time
	// Trailers are the "Key: value" lines of the message's last paragraph,
	// as `git interpret-trailers --parse` finds them; for a repeated key the
	// last value wins. Nil when there are none.
	Trailers map[string]string
}

func commitInfo(c *object.Commit) CommitInfo {
	return CommitInfo{
		SHA:      c.Hash.String(),
		Subject:  subject(c.Message),
		Message:  c.Message,
		Author:   c.Author.Name + " <" + c.Author.Email + ">",
		Time:     c.Author.When,
		Trailers: parseTrailers(c.Message),
	}
}

func subject(msg string) string {
	s, _, _ := strings.Cut(strings.TrimLeft(msg, "\n"), "\n")
	return strings.TrimSpace(s)
}

var trailerLine = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$`)

// parseTrailers reads the trailer block: the last paragraph of a message
// that has a body, made only of "Key: value" lines and their whitespace-led
// continuation lines. It is stricter than git, which accepts a block that is
// only 25% trailers, so anything it returns git parses the same way.
func parseTrailers(msg string) map[string]string {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(msg, "\r\n", "\n"), "\n \t"), "\n")
	// Drop leading blank lines, then the subject paragraph: trailers must
	// follow it.
	for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
		lines = lines[1:]
	}
	i := 0
	for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
		i++
	}
	if i == len(lines) {
		return nil // subject paragraph only
	}
	start := len(lines)
	for start > i && strings.TrimSpace(lines[start-1]) != "" {
		start--
	}
	block := lines[start:]
	if len(block) == 0 {
		return nil
	}
	out := map[string]string{}
	last := ""
	for _, l := range block {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && last != "" {
			out[last] += " " + strings.TrimSpace(l)
			continue
		}
		m := trailerLine.FindStringSubmatch(l)
		if m == nil {
			return nil
		}
		last = m[1]
		out[last] = strings.TrimSpace(m[2])
	}
	return out
}

var revertLine = regexp.MustCompile(`(?m)^This reverts commit ([0-9a-f]{40})\.`)

// revertedCommit returns the commit that a revert commit's message says it
// reverts, and whether there is one.
func revertedCommit(msg string) (plumbing.Hash, bool) {
	m := revertLine.FindStringSubmatch(msg)
	if m == nil {
		return plumbing.ZeroHash, false
	}
	return plumbing.NewHash(m[1]), true
}
