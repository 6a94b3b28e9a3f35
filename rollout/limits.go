package rollout

import "fmt"

// Limits on a plan file, checked before it is parsed: the worker parses the plan of every
// commit it rolls out, and `serve` the plan at the head when it starts, so a hostile or broken
// commit must not be able to exhaust their memory (a YAML parser given 100,000 nested "[" takes
// gigabytes).
const (
	MaxPlanBytes = 1 << 20
	MaxPlanDepth = 100
)

// checkLimits returns the issue of a file (what: "plan", "site file") over MaxPlanBytes or
// nested deeper than MaxPlanDepth, or nil. Depth counts the block levels (indentation) and the flow collections
// ("[", "{") open at a point, outside quotes and comments.
func checkLimits(data []byte, what string) *Issue {
	if len(data) > MaxPlanBytes {
		return &Issue{Line: 1, Column: 1, Message: fmt.Sprintf("the %s is %d bytes; a %s may have at most %d (1 MiB)", what, len(data), what, MaxPlanBytes)}
	}
	line, col := 1, 0
	var indents []int // indentation of the open block levels
	flow := 0
	var quote byte // the quote a scalar is open in, or 0
	atStart, indent, comment := true, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		col++
		if c == '\n' {
			// A quoted scalar may go on over several lines.
			line, col, atStart, indent, comment = line+1, 0, true, 0, false
			continue
		}
		if comment {
			continue
		}
		if atStart {
			if c == ' ' {
				indent++
				continue
			}
			atStart = false
			if c != '#' && flow == 0 && quote == 0 {
				for len(indents) > 0 && indents[len(indents)-1] >= indent {
					indents = indents[:len(indents)-1]
				}
				indents = append(indents, indent)
			}
		}
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' {
				i++
				col++
			}
			continue
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (col == 1 || data[i-1] == ' ' || data[i-1] == '\t'):
			comment = true
		case c == '[' || c == '{':
			flow++
		case (c == ']' || c == '}') && flow > 0:
			flow--
		case c == '-' && i+1 < len(data) && (data[i+1] == ' ' || data[i+1] == '\n') && flow == 0:
			// "- " opens a block level inside the line: a sequence entry.
			indents = append(indents, indent+col)
		}
		if depth := len(indents) + flow; depth > MaxPlanDepth {
			return &Issue{Line: line, Column: col, Message: fmt.Sprintf("the %s is nested more than %d levels deep", what, MaxPlanDepth)}
		}
	}
	return nil
}
